/* Fuzz target for the model loader (imago_model_load_memory) and the
 * imago.config parser.
 *
 * Two ways to run it:
 *   - standalone (default build): a deterministic mutation driver. It builds
 *     seed files in memory (valid F32/F16/BF16 models with several configs),
 *     plus any files given on the command line, and applies N seeded
 *     mutations (bit flips, interesting bytes, truncation, header-length
 *     edits, number/dtype/string replacements inside the JSON header,
 *     splices). Exit status 0 when every input was handled (accepted, or
 *     refused with a consistent error), 1 otherwise; a crash or a sanitizer
 *     report fails it too. Options: --iterations N, --seed S, files...,
 *     --write-seeds DIR (writes the generated seeds as a corpus and exits).
 *   - libFuzzer (coverage-guided), e.g. from the repository root:
 *       clang -std=c11 -D_GNU_SOURCE -O1 -g -DIMAGO_LIBFUZZER \
 *         -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
 *         -Icommon -Iengine -Itests -IBUILDDIR common/{error,log,alloc}.c \
 *         engine/{sha256,model,model_config,safetensors,model_synth}.c \
 *         tests/fuzz/fuzz_safetensors.c -ljansson -lm -lpthread -o fuzz
 *       BUILDDIR/engine/fuzz_safetensors --write-seeds corpus
 *       ./fuzz -max_total_time=150 -max_len=4096 corpus
 */
#include "engine/model.h"
#include "../unit/test_engine_model_util.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;

static void fail(const char *what, const uint8_t *data, size_t size)
{
    failures++;
    if (failures <= 5) {
        fprintf(stderr, "fuzz_safetensors: %s (input of %zu bytes)\n", what, size);
        FILE *f = fopen("fuzz_safetensors_failure.bin", "wb");
        if (f) {
            fwrite(data, 1, size, f);
            fclose(f);
        }
    }
}

static void check_model(imago_model *m, const uint8_t *data, size_t size)
{
    const imago_model_config *c = imago_model_get_config(m);
    if (strlen(c->fingerprint) != 64)
        fail("fingerprint is not 64 hex digits", data, size);
    imago_error err;
    imago_error_clear(&err);
    if (imago_model_config_validate(c, &err) != 0)
        fail("loaded config does not validate", data, size);
    int n = imago_model_n_tensors(m);
    volatile float sink = 0;
    for (int i = 0; i < n; i++) {
        const char *name;
        imago_tensor t;
        if (imago_model_tensor_at(m, i, &name, &t, &err) != 0) {
            fail("tensor_at failed", data, size);
            continue;
        }
        int64_t numel = 1;
        for (int d = 0; d < t.ndim; d++)
            numel *= t.dims[d];
        if (numel != t.numel || t.ndim < 0 || t.ndim > IMAGO_TENSOR_MAX_DIMS)
            fail("numel does not match dims", data, size);
        /* read every value: an over-read shows up under ASan */
        for (int64_t k = 0; k < t.numel; k++)
            sink += t.data[k];
        imago_tensor u;
        if (imago_model_tensor(m, name, &u, &err) != 0 || u.data != t.data)
            fail("lookup by name disagrees with tensor_at", data, size);
        /* fold anything that looks like a weight, with and without a BN */
        size_t len = strlen(name);
        if (len > 7 && strcmp(name + len - 7, ".weight") == 0 && len < 200) {
            char prefix[200];
            memcpy(prefix, name, len - 7);
            prefix[len - 7] = '\0';
            float *w = NULL, *b = NULL;
            imago_error_clear(&err);
            int rc = imago_model_conv_bn(m, prefix, "bn", NULL, &w, &b, &err);
            if (rc == 0) {
                free(w);
                free(b);
            } else if (err.code != rc || !err.msg[0]) {
                fail("conv_bn error without a message", data, size);
            }
            imago_error_clear(&err);
            rc = imago_model_linear_bn(m, prefix, NULL, NULL, &w, &b, &err);
            if (rc == 0) {
                free(w);
                free(b);
            }
        }
    }
    (void)sink;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    imago_model *m = NULL;
    imago_error err;
    imago_error_clear(&err);
    int rc = imago_model_load_memory(data, size, &m, &err);
    if (rc == 0) {
        if (!m)
            fail("success without a model", data, size);
        else
            check_model(m, data, size);
    } else {
        if (m)
            fail("failure with a model", data, size);
        if (err.code != rc || !err.msg[0])
            fail("error code/message mismatch", data, size);
        if (rc != IMAGO_ERR_FORMAT && rc != IMAGO_ERR_UNSUPPORTED && rc != IMAGO_ERR_NOMEM &&
            rc != IMAGO_ERR_TOO_LARGE) {
            fprintf(stderr, "unexpected code %d: %s\n", rc, err.msg);
            fail("unexpected error code", data, size);
        }
    }
    imago_model_free(m);

    /* the same bytes as an imago.config string */
    char *s = malloc(size + 1);
    memcpy(s, data, size);
    s[size] = '\0';
    imago_model_config c;
    imago_error_clear(&err);
    rc = imago_model_config_parse(s, &c, &err);
    if (rc == 0 && imago_model_config_validate(&c, &err) != 0)
        fail("parsed config does not validate", data, size);
    if (rc != 0 && (err.code != rc || !err.msg[0]))
        fail("config error code/message mismatch", data, size);
    free(s);
    return 0;
}

#ifndef IMAGO_LIBFUZZER

static uint64_t rng_state;

static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static size_t rnd_below(size_t n)
{
    return n ? (size_t)(rnd() % n) : 0;
}

typedef struct seed {
    uint8_t *p;
    size_t n;
} seed;

static seed seeds[64];
static int nseeds;

static void add_seed(uint8_t *p, size_t n)
{
    if (nseeds < 64) {
        seeds[nseeds].p = p;
        seeds[nseeds].n = n;
        nseeds++;
    } else {
        free(p);
    }
}

static void make_seeds(void)
{
    static float f[24];
    static uint16_t h[24], bf[24];
    for (int i = 0; i < 24; i++) {
        f[i] = (float)(i - 12) * 0.37f;
        h[i] = (uint16_t)(0x3c00 + i * 97);
        bf[i] = (uint16_t)(0x3f80 + i * 31);
    }
    h[3] = 0x0001;
    h[4] = 0x7c00;
    h[5] = 0x7e00;
    float p = 3.0f;
    const char *configs[] = {
        TST_CONFIG,
        TST_CONFIG_NOP,
        "{\"format\": 1, \"name\": \"rSfM120k-resnet101-agem\", \"backbone\": \"resnet101\", "
        "\"head\": \"agem\", \"pooling\": {\"type\": \"gem\", \"p\": \"from tensor pool.p\"}, "
        "\"dim\": 2048, \"whitening\": \"lw\", \"input\": {\"max_side\": 1024, \"mean\": "
        "[0.485,0.456,0.406], \"std\": [0.229,0.224,0.225]}, \"scales\": [1, 0.70710678, "
        "0.5], \"source\": \"converted\", \"trained\": false}",
        "{\"format\": 1, \"backbone\": \"mobilenet_v2\", \"head\": \"glam\", \"dim\": 512, "
        "\"pooling\": \"mac\", \"padding\": \"tf_same\"}",
    };
    for (int ci = 0; ci < 4; ci++) {
        tst_tensor t[] = {
            {"conv.weight", "F32", 4, {2, 1, 2, 2}, f, 32},
            {"conv.bias", "F32", 1, {2}, f + 8, 8},
            {"bn.weight", "F16", 1, {2}, h, 4},
            {"bn.bias", "BF16", 1, {2}, bf, 4},
            {"bn.running_mean", "F32", 1, {2}, f + 10, 8},
            {"bn.running_var", "F32", 1, {2}, f + 14, 8},
            {"fc.weight", "BF16", 2, {3, 4}, bf + 2, 24},
            {"half", "F16", 3, {2, 3, 2}, h + 6, 24},
            {"pool.p", "F32", 1, {1}, &p, 4},
            {"empty", "F32", 2, {0, 3}, NULL, 0},
        };
        size_t len;
        uint8_t *img = tst_build(configs[ci], t, 10, ci & 1, &len);
        add_seed(img, len);
        /* a small one too */
        img = tst_build(configs[ci], t + 8, 1, 1, &len);
        add_seed(img, len);
    }
    /* raw config strings, to fuzz the config parser from good starting points */
    for (int ci = 0; ci < 4; ci++) {
        size_t n = strlen(configs[ci]);
        uint8_t *p2 = malloc(n);
        memcpy(p2, configs[ci], n);
        add_seed(p2, n);
    }
}

static const char *const NUMBERS[] = {"0",
                                      "1",
                                      "-1",
                                      "2",
                                      "3",
                                      "4",
                                      "7",
                                      "8",
                                      "255",
                                      "65536",
                                      "2147483647",
                                      "2147483648",
                                      "4294967296",
                                      "9223372036854775807",
                                      "9223372036854775808",
                                      "18446744073709551615",
                                      "-9223372036854775808",
                                      "1e308",
                                      "1e400",
                                      "0.5",
                                      "-0",
                                      "1.5",
                                      "NaN"};
static const char *const STRINGS[] = {"\"F32\"",
                                      "\"F16\"",
                                      "\"BF16\"",
                                      "\"I64\"",
                                      "\"F64\"",
                                      "\"\"",
                                      "\"__metadata__\"",
                                      "\"imago.config\"",
                                      "\"pool.p\"",
                                      "\"gem\"",
                                      "\"agem\"",
                                      "\"resnet152\"",
                                      "[]",
                                      "{}",
                                      "null",
                                      "true",
                                      "[0,0]",
                                      "[1,2,3,4,5]",
                                      "\"\\u0000\"",
                                      "\"\\ud800\""};
static const uint8_t BYTES[] = {0,   0xff, '"', '[', ']',  '{', '}',  ',',
                                ':', '-',  '0', '9', '\\', ' ', 0x80, 'e'};

/* Replaces buf[a, b) with rep[0, n); returns the new length. */
static size_t splice_bytes(uint8_t *buf, size_t len, size_t cap, size_t a, size_t b,
                           const void *rep, size_t n)
{
    if (a > b || b > len || len - (b - a) + n > cap)
        return len;
    memmove(buf + a + n, buf + b, len - b);
    memcpy(buf + a, rep, n);
    return len - (b - a) + n;
}

static uint64_t read_hlen(const uint8_t *b, size_t len)
{
    uint64_t h = 0;
    if (len < 8)
        return 0;
    for (int i = 7; i >= 0; i--)
        h = h << 8 | b[i];
    return h;
}

static void write_hlen(uint8_t *b, size_t len, uint64_t h)
{
    if (len < 8)
        return;
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(h >> (8 * i));
}

/* One mutation; the header length is kept consistent half of the time when
 * the header changes size. */
static size_t mutate(uint8_t *buf, size_t len, size_t cap)
{
    uint64_t hlen = read_hlen(buf, len);
    int in_header = len >= 8 && hlen > 0 && hlen <= len - 8;
    int fix = in_header && (rnd() & 1);
    size_t old = len;
    switch (rnd_below(10)) {
    case 0: /* bit flips */
        for (int k = 1 + (int)rnd_below(4); k > 0 && len; k--) {
            size_t i = rnd_below(len);
            buf[i] ^= (uint8_t)(1u << rnd_below(8));
        }
        break;
    case 1: /* interesting byte */
        if (len)
            buf[rnd_below(len)] = BYTES[rnd_below(sizeof BYTES)];
        break;
    case 2: /* truncate */
        len = rnd_below(len + 1);
        fix = 0;
        break;
    case 3: { /* header length */
        static const int64_t deltas[] = {-8, -1, 1, 8, 1000};
        uint64_t v;
        switch (rnd_below(4)) {
        case 0: v = hlen + (uint64_t)deltas[rnd_below(5)]; break;
        case 1: v = rnd(); break;
        case 2: v = len >= 8 ? len - 8 : 0; break;
        default: v = rnd_below(len + 1); break;
        }
        write_hlen(buf, len, v);
        fix = 0;
        break;
    }
    case 4:
    case 5: { /* replace a number in the header */
        if (!in_header)
            break;
        size_t start = 8 + rnd_below((size_t)hlen);
        size_t a = start;
        while (a < 8 + hlen && !(buf[a] >= '0' && buf[a] <= '9'))
            a++;
        if (a >= 8 + hlen)
            break;
        size_t b = a;
        while (b < 8 + hlen && ((buf[b] >= '0' && buf[b] <= '9') || buf[b] == '.'))
            b++;
        const char *rep = NUMBERS[rnd_below(sizeof NUMBERS / sizeof NUMBERS[0])];
        len = splice_bytes(buf, len, cap, a, b, rep, strlen(rep));
        break;
    }
    case 6: { /* replace a string or value token in the header */
        if (!in_header)
            break;
        size_t a = 8 + rnd_below((size_t)hlen);
        while (a < 8 + hlen && buf[a] != '"')
            a++;
        if (a >= 8 + hlen)
            break;
        size_t b = a + 1;
        while (b < 8 + hlen && buf[b] != '"')
            b++;
        if (b >= 8 + hlen)
            break;
        const char *rep = STRINGS[rnd_below(sizeof STRINGS / sizeof STRINGS[0])];
        len = splice_bytes(buf, len, cap, a, b + 1, rep, strlen(rep));
        break;
    }
    case 7: { /* delete a chunk */
        if (!len)
            break;
        size_t a = rnd_below(len), n = 1 + rnd_below(16);
        if (a + n > len)
            n = len - a;
        len = splice_bytes(buf, len, cap, a, a + n, "", 0);
        break;
    }
    case 8: { /* duplicate a chunk */
        if (!len)
            break;
        size_t a = rnd_below(len), n = 1 + rnd_below(32);
        if (a + n > len)
            n = len - a;
        uint8_t tmp[32];
        memcpy(tmp, buf + a, n);
        len = splice_bytes(buf, len, cap, a, a, tmp, n);
        break;
    }
    default: { /* splice in a piece of another seed */
        const seed *s = &seeds[rnd_below((size_t)nseeds)];
        if (!s->n || !len)
            break;
        size_t a = rnd_below(len), sa = rnd_below(s->n), n = 1 + rnd_below(64);
        if (sa + n > s->n)
            n = s->n - sa;
        size_t b = a + rnd_below(n + 1);
        if (b > len)
            b = len;
        len = splice_bytes(buf, len, cap, a, b, s->p + sa, n);
        break;
    }
    }
    if (fix && len != old && len >= 8) {
        int64_t nh = (int64_t)hlen + ((int64_t)len - (int64_t)old);
        if (nh > 0)
            write_hlen(buf, len, (uint64_t)nh);
    }
    return len;
}

static uint8_t *read_file(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (sz < 0 || sz > (64 << 20)) {
        fclose(f);
        return NULL;
    }
    uint8_t *p = malloc((size_t)sz + 1);
    if (fread(p, 1, (size_t)sz, f) != (size_t)sz) {
        free(p);
        fclose(f);
        return NULL;
    }
    fclose(f);
    *n = (size_t)sz;
    return p;
}

int main(int argc, char **argv)
{
    long iterations = 20000;
    uint64_t seed0 = 1;
    make_seeds();
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--iterations") == 0 && i + 1 < argc) {
            iterations = atol(argv[++i]);
        } else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc) {
            seed0 = strtoull(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--write-seeds") == 0 && i + 1 < argc) {
            /* a starting corpus for libFuzzer */
            const char *dir = argv[++i];
            for (int k = 0; k < nseeds; k++) {
                char path[1024];
                snprintf(path, sizeof path, "%s/seed%02d.bin", dir, k);
                FILE *f = fopen(path, "wb");
                if (!f || fwrite(seeds[k].p, 1, seeds[k].n, f) != seeds[k].n) {
                    fprintf(stderr, "cannot write %s\n", path);
                    return 2;
                }
                fclose(f);
            }
            printf("wrote %d seeds to %s\n", nseeds, dir);
            return 0;
        } else {
            size_t n;
            uint8_t *p = read_file(argv[i], &n);
            if (!p) {
                fprintf(stderr, "cannot read %s\n", argv[i]);
                return 2;
            }
            add_seed(p, n);
        }
    }
    imago_log_setup(IMAGO_LOG_OFF, IMAGO_LOG_TEXT, NULL);
    rng_state = seed0;

    /* every seed as is: the generated model seeds must load */
    int loaded = 0;
    for (int i = 0; i < nseeds; i++) {
        imago_model *m = NULL;
        if (imago_model_load_memory(seeds[i].p, seeds[i].n, &m, NULL) == 0)
            loaded++;
        imago_model_free(m);
        LLVMFuzzerTestOneInput(seeds[i].p, seeds[i].n);
    }
    if (loaded < 8) {
        fprintf(stderr, "only %d of the generated seeds load: the seeds are broken\n", loaded);
        failures++;
    }

    size_t cap = 1 << 16;
    uint8_t *buf = malloc(cap);
    long accepted = 0;
    for (long it = 0; it < iterations; it++) {
        const seed *s = &seeds[rnd_below((size_t)nseeds)];
        if (s->n > cap)
            continue;
        memcpy(buf, s->p, s->n);
        size_t len = s->n;
        for (int k = 1 + (int)rnd_below(4); k > 0; k--)
            len = mutate(buf, len, cap);
        /* the target gets an exact-size copy, so ASan sees any over-read */
        uint8_t *in = malloc(len ? len : 1);
        memcpy(in, buf, len);
        imago_model *m = NULL;
        if (imago_model_load_memory(in, len, &m, NULL) == 0)
            accepted++;
        imago_model_free(m);
        LLVMFuzzerTestOneInput(in, len);
        free(in);
    }
    free(buf);
    for (int i = 0; i < nseeds; i++)
        free(seeds[i].p);
    printf("fuzz_safetensors: %ld iterations, %ld mutated inputs accepted, %d seeds (%d load), "
           "%d failures\n",
           iterations, accepted, nseeds, loaded, failures);
    return failures ? 1 : 0;
}
#endif
