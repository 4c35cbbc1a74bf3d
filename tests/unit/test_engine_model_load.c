/* Unit tests for the safetensors loader (engine/safetensors.c): valid F32 /
 * F16 / BF16 files (values checked, F16 subnormals and infinities, in-place
 * vs copied F32), and every malformed-file case with its error code and a
 * message naming the tensor or key. Files are written by the test. */
#include "engine/model_int.h"
#include "tap.h"
#include "test_engine_model_util.h"

#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static imago_error err;

/* Loads a file image through both entry points; returns the file rc and
 * checks that the memory loader agrees. */
static int load_both(const char *what, const uint8_t *img, size_t len, imago_model **out)
{
    const char *path = tst_write("t.safetensors", img, len);
    imago_model *m = NULL, *mm = NULL;
    imago_error e2;
    imago_error_clear(&err);
    imago_error_clear(&e2);
    int rc = imago_model_load(path, &m, &err);
    int rc2 = imago_model_load_memory(img, len, &mm, &e2);
    if (rc != rc2)
        tap_diag("%s: file rc %d (%s), memory rc %d (%s)", what, rc, err.msg, rc2, e2.msg);
    ok(rc == rc2, "%s: file and memory loaders agree", what);
    ok(rc != 0 ? m == NULL && mm == NULL && err.code == rc && err.msg[0] : m != NULL && mm != NULL,
       "%s: output set only on success, error recorded on failure", what);
    if (rc == 0 && rc2 == 0)
        is_str(m->cfg.fingerprint, mm->cfg.fingerprint, "%s: same fingerprint", what);
    imago_model_free(mm);
    if (out)
        *out = m;
    else
        imago_model_free(m);
    return rc;
}

static void expect_error(const char *what, const uint8_t *img, size_t len, int code,
                         const char *needle)
{
    int rc = load_both(what, img, len, NULL);
    is_int(rc, code, "%s: %s", what, imago_error_name(code));
    if (needle) {
        ok(strstr(err.msg, needle) != NULL, "%s: message mentions '%s': %s", what, needle, err.msg);
    }
}

static void expect_header_error(const char *what, const char *header, size_t dlen, int code,
                                const char *needle)
{
    uint8_t *data = calloc(1, dlen + 1);
    size_t len;
    uint8_t *img = tst_raw(header, strlen(header), data, dlen, &len);
    expect_error(what, img, len, code, needle);
    free(img);
    free(data);
}

static uint16_t f16_bits[] = {0x3c00, 0xc000, 0x7bff, 0x0001, 0x03ff, 0x7c00,
                              0xfc00, 0x8000, 0x3555, 0x0400, 0x7e00, 0x8001};

static void test_valid(void)
{
    float a[6] = {0, 1.5f, -2.25f, 3e-3f, 1e30f, -0.0f};
    float p = 3.0f;
    uint16_t bf[5] = {0x3f80, 0xc040, 0x7f80, 0x0001, 0xff80};
    tst_tensor t[] = {
        {"backbone.conv1.weight", "F32", 2, {2, 3}, a, sizeof a},
        {"pool.p", "F32", 1, {1}, &p, sizeof p},
        {"half", "F16", 2, {3, 4}, f16_bits, sizeof f16_bits},
        {"brain", "BF16", 1, {5}, bf, sizeof bf},
        {"empty", "F32", 2, {0, 7}, NULL, 0},
        {"scalar", "F32", 0, {0}, &p, sizeof p},
    };
    size_t len;
    uint8_t *img = tst_build(TST_CONFIG, t, 6, 1, &len);
    imago_model *m = NULL;
    is_int(load_both("valid file", img, len, &m), 0, "valid file loads");
    if (!m)
        tap_bail("cannot continue without the valid model");
    is_int(imago_model_n_tensors(m), 6, "6 tensors");

    imago_tensor x;
    is_int(imago_model_tensor(m, "backbone.conv1.weight", &x, &err), 0, "lookup by name");
    is_int(x.ndim, 2, "ndim");
    ok(x.dims[0] == 2 && x.dims[1] == 3 && x.numel == 6, "dims and numel");
    ok(memcmp(x.data, a, sizeof a) == 0, "F32 values bit-exact");
    const uint8_t *base = m->map;
    ok((const uint8_t *)x.data > base && (const uint8_t *)x.data < base + m->map_len,
       "aligned F32 data is used in place (points into the mapping)");

    is_int(imago_model_tensor(m, "half", &x, &err), 0, "F16 tensor");
    const float want16[12] = {1.0f,
                              -2.0f,
                              65504.0f,
                              ldexpf(1.0f, -24),
                              ldexpf(1023.0f, -24),
                              INFINITY,
                              -INFINITY,
                              -0.0f,
                              0.333251953125f,
                              ldexpf(1.0f, -14),
                              NAN,
                              -ldexpf(1.0f, -24)};
    int same = 1;
    for (int i = 0; i < 12; i++) {
        if (isnan(want16[i]))
            same &= isnan(x.data[i]) != 0;
        else
            same &= x.data[i] == want16[i] && !!signbit(x.data[i]) == !!signbit(want16[i]);
        if (!same) {
            tap_diag("F16 element %d: got %.9g want %.9g", i, (double)x.data[i], (double)want16[i]);
            break;
        }
    }
    ok(same, "F16 values: normal, max, subnormals, +-inf, -0, NaN exact");
    is_int(imago_model_tensor(m, "brain", &x, &err), 0, "BF16 tensor");
    ok(x.data[0] == 1.0f && x.data[1] == -3.0f && isinf(x.data[2]) && x.data[2] > 0 &&
           x.data[3] == ldexpf(1.0f, -133) && isinf(x.data[4]) && x.data[4] < 0,
       "BF16 values exact (1, -3, inf, subnormal 2^-133, -inf)");
    is_int(imago_model_tensor(m, "empty", &x, &err), 0, "empty tensor");
    ok(x.numel == 0 && x.dims[0] == 0 && x.dims[1] == 7, "empty tensor shape [0, 7]");
    is_int(imago_model_tensor(m, "scalar", &x, &err), 0, "0-d tensor");
    ok(x.ndim == 0 && x.numel == 1 && x.data[0] == 3.0f, "0-d tensor has one value");

    const imago_model_config *cfg = imago_model_get_config(m);
    is_str(cfg->backbone, "resnet50", "config backbone");
    is_int(cfg->dim, 2048, "config dim");
    is_int(cfg->trained, 1, "files are trained by default");
    is_str(cfg->p_tensor, "pool.p", "p from tensor pool.p by default");
    char hex[65];
    uint8_t d[32];
    imago_sha256(img, len, d);
    imago_sha256_hex(d, hex);
    is_str(cfg->fingerprint, hex, "fingerprint = SHA-256 of the whole file");

    /* lookups */
    imago_error_clear(&err);
    is_int(imago_model_tensor(m, "backbone.nope", &x, &err), IMAGO_ERR_NOT_FOUND,
           "missing tensor: NOT_FOUND");
    ok(strstr(err.msg, "backbone.nope") != NULL, "message names it: %s", err.msg);
    ok(imago_model_has_tensor(m, "pool.p") && !imago_model_has_tensor(m, "pool"), "has_tensor");
    const char *name = NULL;
    is_int(imago_model_tensor_at(m, 0, &name, &x, &err), 0, "tensor_at(0)");
    ok(name && imago_model_has_tensor(m, name), "tensor_at gives a real name");
    imago_error_clear(&err);
    is_int(imago_model_tensor_at(m, 6, &name, &x, &err), IMAGO_ERR_INVALID,
           "tensor_at out of range");

    /* tensor_shape */
    int64_t want[2] = {2, -1};
    is_int(imago_model_tensor_shape(m, "backbone.conv1.weight", 2, want, &x, &err), 0,
           "shape [2, *] matches");
    int64_t bad[2] = {3, 3};
    imago_error_clear(&err);
    is_int(imago_model_tensor_shape(m, "backbone.conv1.weight", 2, bad, &x, &err), IMAGO_ERR_FORMAT,
           "shape [3, 3] does not match");
    ok(strstr(err.msg, "backbone.conv1.weight") && strstr(err.msg, "[2, 3]") &&
           strstr(err.msg, "want [3, 3]"),
       "message names tensor, got and want: %s", err.msg);
    int64_t four[4] = {2, 3, 1, 1};
    imago_error_clear(&err);
    is_int(imago_model_tensor_shape(m, "backbone.conv1.weight", 4, four, &x, &err),
           IMAGO_ERR_FORMAT, "wrong ndim does not match");
    imago_error_clear(&err);
    is_int(imago_model_tensor_shape(m, "nope", 2, want, &x, &err), IMAGO_ERR_NOT_FOUND,
           "shape check of a missing tensor: NOT_FOUND");

    /* reference counting: data stays valid until the last reference goes */
    imago_model *r = imago_model_retain(m);
    ok(r == m, "retain returns the model");
    imago_model_free(m);
    is_int(imago_model_tensor(r, "pool.p", &x, &err), 0, "still usable after one free");
    is_close(x.data[0], 3.0, 0, "value still readable");
    imago_model_free(r);
    free(img);
}

static void test_misaligned_f32(void)
{
    /* header of odd length: the data area starts at an odd address, so F32
     * data must be copied to be aligned */
    float a[3] = {1.25f, -7.0f, 1e-40f};
    float p = 2.0f;
    tst_tensor t[] = {{"w", "F32", 1, {3}, a, sizeof a}, {"pool.p", "F32", 1, {1}, &p, 4}};
    size_t len;
    uint8_t *img = NULL;
    for (int extra = 0; extra < 8; extra++) {
        free(img);
        img = tst_build(TST_CONFIG, t, 2, 0, &len);
        /* find a header length whose data area is misaligned by adding spaces */
        uint64_t hlen = 0;
        for (int i = 7; i >= 0; i--)
            hlen = hlen << 8 | img[i];
        if ((8 + hlen) % 4 != 0)
            break;
        /* rebuild with one more trailing space in the header */
        char *h = malloc(hlen + 2);
        memcpy(h, img + 8, hlen);
        h[hlen] = ' ';
        uint8_t *img2 = tst_raw(h, hlen + 1, img + 8 + hlen, len - 8 - hlen, &len);
        free(h);
        free(img);
        img = img2;
        break;
    }
    imago_model *m = NULL;
    is_int(load_both("misaligned F32", img, len, &m), 0, "file with a misaligned data area loads");
    imago_tensor x;
    if (m && imago_model_tensor(m, "w", &x, &err) == 0) {
        ok(((uintptr_t)x.data & 3) == 0, "F32 data is 4-byte aligned after the copy");
        ok(memcmp(x.data, a, sizeof a) == 0, "copied values bit-exact (incl. subnormal)");
    } else {
        ok(0, "tensor w present");
        ok(0, "values");
    }
    imago_model_free(m);
    free(img);
}

static void test_f16_all(void)
{
    /* every half value: the portable converter against ldexp, and the F16C path
     * (when the CPU has it) against the portable one, bit for bit */
    uint16_t *h = malloc(65536 * 2);
    float *pf = malloc(65536 * 4), *af = malloc(65536 * 4);
    for (uint32_t i = 0; i < 65536; i++)
        h[i] = (uint16_t)i;
    imago_model_f16_to_f32_(h, pf, 65536, 0);
    int bad = 0;
    for (uint32_t i = 0; i < 65536 && bad < 3; i++) {
        int sgn = i >> 15, e = (i >> 10) & 31, mant = i & 1023;
        double v;
        if (e == 0)
            v = ldexp(mant, -24);
        else if (e == 31)
            v = mant ? NAN : INFINITY;
        else
            v = ldexp(1024 + mant, e - 25);
        if (sgn)
            v = -v;
        int good =
            isnan(v) ? isnan(pf[i]) != 0 : (double)pf[i] == v && !!signbit(pf[i]) == !!signbit(v);
        if (!good) {
            tap_diag("half 0x%04x: got %.9g, want %.9g", i, (double)pf[i], v);
            bad++;
        }
    }
    ok(!bad, "portable F16 conversion exact for all 65536 values");
    if (imago_model_f16c_available_()) {
        imago_model_f16_to_f32_(h, af, 65536, 1);
        ok(memcmp(pf, af, 65536 * 4) == 0, "F16C path bit-identical to portable (NaNs too)");
        /* odd lengths exercise the scalar tail */
        imago_model_f16_to_f32_(h + 3, af, 13, 1);
        ok(memcmp(pf + 3, af, 13 * 4) == 0, "F16C path with a 13-element tail");
    } else {
        tap_skip(2, "CPU has no F16C");
    }
    free(h);
    free(pf);
    free(af);
}

static void test_errors(void)
{
    float v[4] = {1, 2, 3, 4};
    size_t len;
    uint8_t *img;

    expect_error("empty file", (const uint8_t *)"", 0, IMAGO_ERR_FORMAT, "truncated");
    expect_error("5-byte file", (const uint8_t *)"\x10\0\0\0\0", 5, IMAGO_ERR_FORMAT, "truncated");
    uint8_t zero_len[16] = {0};
    expect_error("header length 0", zero_len, sizeof zero_len, IMAGO_ERR_FORMAT, "header length 0");
    uint8_t beyond[12] = {100, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' '};
    expect_error("header length beyond EOF", beyond, sizeof beyond, IMAGO_ERR_FORMAT,
                 "does not fit");
    uint8_t huge[12] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, '{', '}', ' ', ' '};
    expect_error("header length 2^64-1", huge, sizeof huge, IMAGO_ERR_FORMAT, "does not fit");

    /* data shorter than the last offset: a valid file cut short */
    tst_tensor t[] = {{"a", "F32", 1, {4}, v, 16}, {"b", "F32", 1, {4}, v, 16}};
    img = tst_build(TST_CONFIG_NOP, t, 2, 1, &len);
    expect_error("data truncated by 1 byte", img, len - 1, IMAGO_ERR_FORMAT, "'b'");
    expect_error("data truncated to the header", img, len - 32, IMAGO_ERR_FORMAT, "past the end");
    free(img);

    /* the header itself */
    expect_header_error("bad JSON", "{\"__metadata__\": {\"imago.config\": \"{}\"}, \"a\": ", 0,
                        IMAGO_ERR_FORMAT, "column");
    expect_header_error("header not an object", "[1, 2, 3]", 0, IMAGO_ERR_FORMAT,
                        "not a JSON object");
    expect_header_error("duplicate tensor names",
                        "{\"__metadata__\":{\"imago.config\":\""
                        "{}"
                        "\"},"
                        "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                        "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                        8, IMAGO_ERR_FORMAT, "duplicate");

#define META                                                                                       \
    "{\"__metadata__\":{\"imago.config\":\"{\\\"format\\\":1,\\\"backbone\\\":"                    \
    "\\\"resnet50\\\",\\\"head\\\":\\\"gem\\\",\\\"dim\\\":8,\\\"pooling\\\":"                     \
    "\\\"mac\\\"}\"},"
    expect_header_error("valid raw header (control)",
                        META "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
                        0, NULL);
    expect_header_error("dtype I64",
                        META "\"x.num_batches_tracked\":{\"dtype\":\"I64\","
                             "\"shape\":[],\"data_offsets\":[0,8]}}",
                        8, IMAGO_ERR_UNSUPPORTED, "x.num_batches_tracked");
    ok(strstr(err.msg, "I64") != NULL, "message names the dtype: %s", err.msg);
    expect_header_error("dtype F64",
                        META "\"d\":{\"dtype\":\"F64\",\"shape\":[1],"
                             "\"data_offsets\":[0,8]}}",
                        8, IMAGO_ERR_UNSUPPORTED, "F64");
    expect_header_error("dtype not a string",
                        META "\"d\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 8,
                        IMAGO_ERR_FORMAT, "'d'");
    expect_header_error("overlapping tensors",
                        META "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                             "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                        16, IMAGO_ERR_FORMAT, "overlap");
    ok(strstr(err.msg, "'a'") && strstr(err.msg, "'b'"), "overlap names both tensors: %s", err.msg);
    expect_header_error("identical ranges overlap",
                        META "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                             "\"b\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[0,8]}}",
                        16, IMAGO_ERR_FORMAT, "overlap");
    expect_header_error("empty tensors may share an offset",
                        META "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                             "\"e\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]}}",
                        16, 0, NULL);
    expect_header_error("shape/offset mismatch",
                        META "\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 16,
                        IMAGO_ERR_FORMAT, "needs 12");
    expect_header_error("F16 size mismatch",
                        META "\"h\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[0,4]}}",
                        16, IMAGO_ERR_FORMAT, "'h'");
    expect_header_error("negative dim",
                        META "\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,0]}}", 16,
                        IMAGO_ERR_FORMAT, "shape[0]");
    expect_header_error("fractional dim",
                        META "\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}",
                        16, IMAGO_ERR_FORMAT, "shape[0]");
    expect_header_error("5 dims",
                        META "\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1],"
                             "\"data_offsets\":[0,4]}}",
                        16, IMAGO_ERR_UNSUPPORTED, "5 dimensions");
    expect_header_error("shape product overflows",
                        META "\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],"
                             "\"data_offsets\":[0,0]}}",
                        16, IMAGO_ERR_FORMAT, "overflows");
    expect_header_error("byte size overflows",
                        META "\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904],"
                             "\"data_offsets\":[0,0]}}",
                        16, IMAGO_ERR_FORMAT, "overflows");
    expect_header_error("end < begin",
                        META "\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,4]}}", 16,
                        IMAGO_ERR_FORMAT, "end 4 < begin 8");
    expect_header_error("offsets beyond data area",
                        META "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[16,24]}}",
                        16, IMAGO_ERR_FORMAT, "past the end");
    expect_header_error("offset beyond 2^63",
                        META "\"a\":{\"dtype\":\"F32\",\"shape\":[2],"
                             "\"data_offsets\":[18446744073709551608,18446744073709551616]}}",
                        16, IMAGO_ERR_FORMAT, NULL);
    expect_header_error("three offsets",
                        META "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}",
                        16, IMAGO_ERR_FORMAT, "data_offsets");
    expect_header_error("missing shape", META "\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}",
                        16, IMAGO_ERR_FORMAT, "shape");
    expect_header_error("entry not an object", META "\"a\":[1,2]}", 16, IMAGO_ERR_FORMAT, "'a'");
    expect_header_error("empty tensor name",
                        META "\"\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 16,
                        IMAGO_ERR_FORMAT, "empty name");

    /* metadata and config */
    expect_header_error("no __metadata__",
                        "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                        IMAGO_ERR_FORMAT, "imago.config");
    expect_header_error("__metadata__ without imago.config",
                        "{\"__metadata__\":{\"format\":\"pt\"},"
                        "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
                        4, IMAGO_ERR_FORMAT, "imago.config");
    expect_header_error("__metadata__ value not a string",
                        "{\"__metadata__\":{\"imago.config\":\"{}\",\"n\":5}}", 0, IMAGO_ERR_FORMAT,
                        "'n'");
    expect_header_error("__metadata__ not an object", "{\"__metadata__\":[]}", 0, IMAGO_ERR_FORMAT,
                        "__metadata__");
    expect_header_error("imago.config not JSON", "{\"__metadata__\":{\"imago.config\":\"{\"}}", 0,
                        IMAGO_ERR_FORMAT, "imago.config");
    expect_header_error("bad config value",
                        "{\"__metadata__\":{\"imago.config\":\"{\\\"format\\\":1,"
                        "\\\"backbone\\\":\\\"vgg16\\\",\\\"head\\\":\\\"gem\\\","
                        "\\\"dim\\\":8}\"}}",
                        0, IMAGO_ERR_UNSUPPORTED, "vgg16");
    {
        /* GeM with p from tensor pool.p, but no such tensor */
        tst_tensor t1[] = {{"a", "F32", 1, {4}, v, 16}};
        img = tst_build(TST_CONFIG, t1, 1, 1, &len);
        expect_error("missing pool.p", img, len, IMAGO_ERR_FORMAT, "pool.p");
        free(img);
        tst_tensor t2[] = {{"pool.p", "F32", 1, {4}, v, 16}};
        img = tst_build(TST_CONFIG, t2, 1, 1, &len);
        expect_error("pool.p with 4 elements", img, len, IMAGO_ERR_FORMAT, "pool.p");
        free(img);
    }
    expect_header_error("trailing spaces after the JSON are fine",
                        META "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}"
                             "        ",
                        8, 0, NULL);
    expect_header_error("trailing garbage after the JSON",
                        META "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}x", 8,
                        IMAGO_ERR_FORMAT, "JSON");
}

static void test_files(void)
{
    imago_model *m = NULL;
    imago_error_clear(&err);
    is_int(imago_model_load("/nonexistent/dir/m.safetensors", &m, &err), IMAGO_ERR_IO,
           "missing file: IO");
    ok(strstr(err.msg, "/nonexistent/dir/m.safetensors") != NULL, "names the path: %s", err.msg);
    imago_error_clear(&err);
    is_int(imago_model_load(tst_tmpdir(), &m, &err), IMAGO_ERR_IO, "a directory: IO");
    ok(m == NULL, "no model");

    /* header length over the 100 MiB limit, in a sparse file that is big enough */
    char path[600];
    snprintf(path, sizeof path, "%s/sparse.safetensors", tst_tmpdir());
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    uint64_t hlen = ((uint64_t)100 << 20) + 1;
    uint8_t hb[8];
    for (int i = 0; i < 8; i++)
        hb[i] = (uint8_t)(hlen >> (8 * i));
    int okw = fd >= 0 && write(fd, hb, 8) == 8 && ftruncate(fd, (off_t)(hlen + 64)) == 0;
    if (fd >= 0)
        close(fd);
    if (okw) {
        imago_error_clear(&err);
        is_int(imago_model_load(path, &m, &err), IMAGO_ERR_FORMAT, "header over 100 MiB refused");
        ok(strstr(err.msg, "limit") != NULL, "message says why: %s", err.msg);
    } else {
        tap_skip(2, "cannot write a sparse file");
    }
    unlink(path);
}

static void test_many_tensors(void)
{
    /* 3000 tensors (a ResNet-152 + AGeM file has about 1000): every name found,
     * with its own data, after the table grew several times */
    enum { N = 3000 };
    tst_tensor *t = calloc(N, sizeof *t);
    char(*names)[48] = calloc(N, sizeof *names);
    float *vals = calloc(N, sizeof *vals);
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "backbone.layer%d.%d.conv%d.weight", i % 4, i / 12,
                 i % 3);
        vals[i] = (float)i;
        t[i] = (tst_tensor){names[i], "F32", 1, {1}, &vals[i], 4};
    }
    size_t len;
    uint8_t *img = tst_build(TST_CONFIG_NOP, t, N, 1, &len);
    imago_model *m = NULL;
    imago_error_clear(&err);
    is_int(imago_model_load_memory(img, len, &m, &err), 0, "3000-tensor file loads");
    int found = 0;
    for (int i = 0; m && i < N; i++) {
        imago_tensor x;
        found += imago_model_tensor(m, names[i], &x, NULL) == 0 && x.data[0] == (float)i;
    }
    is_int(found, N, "every tensor found by name with its own value");
    ok(m && !imago_model_has_tensor(m, "backbone.layer0.0.conv0.bias"), "absent name absent");
    imago_model_free(m);
    free(img);
    free(t);
    free(names);
    free(vals);
}

int main(void)
{
    test_valid();
    test_misaligned_f32();
    test_f16_all();
    test_errors();
    test_files();
    test_many_tensors();
    tst_cleanup();
    return tap_done();
}
