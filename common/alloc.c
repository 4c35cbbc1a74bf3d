/* Checked allocation: overflow-safe size arithmetic, aborting helpers for
 * small bookkeeping, error-returning aligned allocation for big buffers. */
#include "common.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

int imago_size_mul(size_t a, size_t b, size_t *out)
{
    size_t r;
    if (__builtin_mul_overflow(a, b, &r))
        return IMAGO_ERR_TOO_LARGE;
    *out = r;
    return 0;
}

int imago_size_mul3(size_t a, size_t b, size_t c, size_t *out)
{
    size_t ab, r;
    if (__builtin_mul_overflow(a, b, &ab) || __builtin_mul_overflow(ab, c, &r))
        return IMAGO_ERR_TOO_LARGE;
    *out = r;
    return 0;
}

int imago_size_add(size_t a, size_t b, size_t *out)
{
    size_t r;
    if (__builtin_add_overflow(a, b, &r))
        return IMAGO_ERR_TOO_LARGE;
    *out = r;
    return 0;
}

static void oom(size_t n)
{
    fprintf(stderr, "imago: out of memory allocating %zu bytes\n", n);
    abort();
}

void *imago_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        oom(n);
    return p;
}

void *imago_xcalloc(size_t count, size_t size)
{
    size_t n;
    if (imago_size_mul(count, size, &n) != 0)
        oom(SIZE_MAX);
    void *p = calloc(n ? n : 1, 1);
    if (!p)
        oom(n);
    return p;
}

void *imago_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        oom(n);
    return q;
}

char *imago_xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = imago_xmalloc(n);
    memcpy(p, s, n);
    return p;
}

int imago_alloc_array(size_t count, size_t size, int zero, void **out, imago_error *err)
{
    size_t n;
    if (imago_size_mul(count, size, &n) != 0)
        return imago_error_set(err, IMAGO_ERR_TOO_LARGE,
                               "allocation of %zu x %zu bytes overflows", count, size);
    /* aligned_alloc wants a multiple of the alignment */
    size_t rounded;
    if (imago_size_add(n, 63, &rounded) != 0)
        return imago_error_set(err, IMAGO_ERR_TOO_LARGE, "allocation of %zu bytes overflows", n);
    rounded &= ~(size_t)63;
    if (rounded == 0)
        rounded = 64;
    void *p = aligned_alloc(64, rounded);
    if (!p)
        return imago_error_set(err, IMAGO_ERR_NOMEM, "out of memory allocating %zu bytes", n);
    if (zero)
        memset(p, 0, rounded);
    *out = p;
    return 0;
}

void imago_free_aligned(void *p)
{
    free(p);
}

int64_t imago_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

double imago_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
