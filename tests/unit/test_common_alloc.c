/* Unit tests for common/alloc.c: overflow-safe sizes, aligned big buffers. */
#include "common/common.h"
#include "tap.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int main(void)
{
    size_t r = 0;
    is_int(imago_size_mul(1000, 1000, &r), 0, "small product ok");
    is_int(r, 1000000, "product value");
    r = 42;
    is_int(imago_size_mul(SIZE_MAX / 2 + 1, 2, &r), IMAGO_ERR_TOO_LARGE, "overflow detected");
    is_int(r, 42, "output untouched on overflow");
    is_int(imago_size_mul3(60000, 60000, 3, &r), 0, "60000^2*3 fits in 64 bits");
    is_int(imago_size_mul3(SIZE_MAX / 4, 3, 2, &r), IMAGO_ERR_TOO_LARGE, "mul3 overflow");
    is_int(imago_size_add(SIZE_MAX, 1, &r), IMAGO_ERR_TOO_LARGE, "add overflow");

    void *p = NULL;
    imago_error err;
    imago_error_clear(&err);
    is_int(imago_alloc_array(100, 3, 1, &p, &err), 0, "aligned alloc");
    ok(p && ((uintptr_t)p % 64) == 0, "64-byte aligned");
    int zero = 1;
    for (int i = 0; i < 300; i++)
        zero &= ((unsigned char *)p)[i] == 0;
    ok(zero, "zeroed");
    imago_free_aligned(p);

    p = NULL;
    is_int(imago_alloc_array(SIZE_MAX / 2, 4, 0, &p, &err), IMAGO_ERR_TOO_LARGE,
           "overflowing array refused");
    ok(p == NULL, "no output on failure");
    ok(strstr(err.msg, "overflows") != NULL, "message says why: %s", err.msg);

    imago_error_clear(&err);
    is_int(imago_alloc_array((size_t)1 << 50, 16, 0, &p, &err), IMAGO_ERR_NOMEM,
           "impossible allocation gives NOMEM, not a crash");

    char *s = imago_xstrdup("hello");
    is_str(s, "hello", "xstrdup");
    free(s);
    int64_t t0 = imago_now_us(), t1 = imago_now_us();
    ok(t1 >= t0, "monotonic clock");
    return tap_done();
}
