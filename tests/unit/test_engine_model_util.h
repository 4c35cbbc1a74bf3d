/* Test helper (header-only) for the model-file tests and the safetensors fuzz
 * driver: builds safetensors file images in memory, either from a tensor list
 * (a well-formed file) or from a raw header string (for malformed ones), and
 * writes them to temporary files. Not part of the library. */
#ifndef IMAGO_TEST_ENGINE_MODEL_UTIL_H
#define IMAGO_TEST_ENGINE_MODEL_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct tst_tensor {
    const char *name;
    const char *dtype; /* "F32", "F16", "BF16" or anything (written as given) */
    int ndim;
    int64_t dims[4];
    const void *data; /* raw little-endian bytes */
    size_t nbytes;
} tst_tensor;

typedef struct tst_buf {
    char *p;
    size_t n, cap;
} tst_buf;

static inline void tst_put(tst_buf *b, const void *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        b->cap = (b->n + n + 1) * 2;
        b->p = realloc(b->p, b->cap);
        if (!b->p)
            abort();
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static inline void tst_puts(tst_buf *b, const char *s)
{
    tst_put(b, s, strlen(s));
}

/* JSON string literal of s (quotes included). */
static inline void tst_put_json_string(tst_buf *b, const char *s)
{
    tst_puts(b, "\"");
    for (; *s; s++) {
        char esc[8];
        if (*s == '"' || *s == '\\') {
            esc[0] = '\\';
            esc[1] = *s;
            tst_put(b, esc, 2);
        } else if ((unsigned char)*s < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", (unsigned char)*s);
            tst_puts(b, esc);
        } else {
            tst_put(b, s, 1);
        }
    }
    tst_puts(b, "\"");
}

/* [8-byte header length][header][data]; returns a malloc'ed image. */
static inline uint8_t *tst_raw(const char *header, size_t hlen, const void *data, size_t dlen,
                               size_t *len)
{
    uint8_t *p = malloc(8 + hlen + dlen + 1);
    if (!p)
        abort();
    uint64_t h = hlen;
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(h >> (8 * i));
    memcpy(p + 8, header, hlen);
    if (dlen)
        memcpy(p + 8 + hlen, data, dlen);
    *len = 8 + hlen + dlen;
    return p;
}

/* A well-formed file: __metadata__ {"imago.config": config} (omitted when
 * config is NULL), tensors in order, data 8-byte aligned (with pad_header
 * != 0 the header is padded so that the data area starts at a multiple of 8;
 * otherwise it may start anywhere). */
static inline uint8_t *tst_build(const char *config, const tst_tensor *t, int n, int pad_header,
                                 size_t *len)
{
    tst_buf h = {0}, d = {0};
    tst_puts(&h, "{");
    int first = 1;
    if (config) {
        tst_puts(&h, "\"__metadata__\":{\"imago.config\":");
        tst_put_json_string(&h, config);
        tst_puts(&h, "}");
        first = 0;
    }
    for (int i = 0; i < n; i++) {
        static const char zeros[8] = {0};
        if (d.n % 8)
            tst_put(&d, zeros, 8 - d.n % 8);
        size_t begin = d.n;
        if (t[i].nbytes)
            tst_put(&d, t[i].data, t[i].nbytes);
        char tmp[160];
        if (!first)
            tst_puts(&h, ",");
        first = 0;
        tst_put_json_string(&h, t[i].name);
        snprintf(tmp, sizeof tmp, ":{\"dtype\":\"%s\",\"shape\":[", t[i].dtype);
        tst_puts(&h, tmp);
        for (int k = 0; k < t[i].ndim; k++) {
            snprintf(tmp, sizeof tmp, "%s%lld", k ? "," : "", (long long)t[i].dims[k]);
            tst_puts(&h, tmp);
        }
        snprintf(tmp, sizeof tmp, "],\"data_offsets\":[%zu,%zu]}", begin, d.n);
        tst_puts(&h, tmp);
    }
    tst_puts(&h, "}");
    while (pad_header && (8 + h.n) % 8)
        tst_puts(&h, " ");
    uint8_t *img = tst_raw(h.p, h.n, d.p, d.n, len);
    free(h.p);
    free(d.p);
    return img;
}

/* The smallest valid config (GeM with p from tensor pool.p). */
#define TST_CONFIG "{\"format\": 1, \"backbone\": \"resnet50\", \"head\": \"gem\", \"dim\": 2048}"
/* ... and one that needs no pool.p tensor. */
#define TST_CONFIG_NOP                                                                             \
    "{\"format\": 1, \"backbone\": \"resnet50\", \"head\": \"gem\", \"dim\": 2048, "               \
    "\"pooling\": {\"type\": \"gem\", \"p\": 3}}"

/* A temporary directory for the test's files (removed by tst_cleanup). */
static char tst_dir_[256];

static inline const char *tst_tmpdir(void)
{
    if (!tst_dir_[0]) {
        const char *base = getenv("TMPDIR");
        snprintf(tst_dir_, sizeof tst_dir_, "%s/imago-model-test-XXXXXX",
                 base && base[0] ? base : "/tmp");
        if (!mkdtemp(tst_dir_))
            abort();
    }
    return tst_dir_;
}

/* Writes buf to <tmpdir>/name; returns the path (static buffer per call slot). */
static inline const char *tst_write(const char *name, const void *buf, size_t len)
{
    static char paths[8][512];
    static int slot;
    char *path = paths[slot++ % 8];
    snprintf(path, 512, "%s/%s", tst_tmpdir(), name);
    FILE *f = fopen(path, "wb");
    if (!f || (len && fwrite(buf, 1, len, f) != len) || fclose(f) != 0)
        abort();
    return path;
}

static inline void tst_cleanup(void)
{
    if (!tst_dir_[0])
        return;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tst_dir_);
    if (system(cmd) != 0)
        fprintf(stderr, "# could not remove %s\n", tst_dir_);
    tst_dir_[0] = '\0';
}

#endif
