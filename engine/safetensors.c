/* The .safetensors loader: header length and JSON header checks, tensor
 * table validation (dtype, shape, offsets, overlaps), imago.config from
 * __metadata__, F16/BF16 -> fp32 conversion, and the SHA-256 fingerprint.
 * Files are mmapped read-only; aligned F32 data is used in place. Everything
 * read from the file is checked before use: no input makes it read outside
 * the buffer. */
#include "model_int.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#define IMAGO_ST_X86 1
#else
#define IMAGO_ST_X86 0
#endif

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the safetensors loader reads little-endian data in place"
#endif

#define MAX_HEADER ((uint64_t)100 << 20)

enum { DT_F32 = 0, DT_F16, DT_BF16 };
static const char *const DT_NAMES[] = {"F32", "F16", "BF16"};
static const int DT_SIZE[] = {4, 2, 2};

/* ---- F16 / BF16 conversion ---------------------------------------------- */

static inline uint16_t load16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

static inline float bits_to_float(uint32_t b)
{
    float f;
    memcpy(&f, &b, 4);
    return f;
}

/* Exact IEEE half -> single, including subnormals, infinities and NaN (a
 * signalling NaN comes out quiet, as the F16C instruction does). */
static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    uint32_t bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else {
            /* subnormal: mant * 2^-24; normalise the mantissa */
            int e = 0;
            while (!(mant & 0x400)) {
                mant <<= 1;
                e++;
            }
            bits = sign | (uint32_t)(127 - 14 - e) << 23 | (mant & 0x3ff) << 13;
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | mant << 13 | (mant ? 0x400000u : 0);
    } else {
        bits = sign | (exp + 112) << 23 | mant << 13;
    }
    return bits_to_float(bits);
}

static void f16_portable(const uint8_t *src, float *dst, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = half_to_float(load16(src + 2 * i));
}

#if IMAGO_ST_X86
__attribute__((target("f16c,avx"))) static void f16_f16c(const uint8_t *src, float *dst, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm_loadu_si128((const __m128i *)(const void *)(src + 2 * i));
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
    }
    for (; i < n; i++)
        dst[i] = half_to_float(load16(src + 2 * i));
}
#endif

int imago_model_f16c_available_(void)
{
#if IMAGO_ST_X86
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return 0;
    /* F16C is VEX-encoded: needs AVX state enabled by the OS as well */
    return ((c >> 29) & 1) && __builtin_cpu_supports("avx");
#else
    return 0;
#endif
}

void imago_model_f16_to_f32_(const void *src, float *dst, size_t n, int accel)
{
#if IMAGO_ST_X86
    static atomic_int have = -1;
    int h = atomic_load_explicit(&have, memory_order_relaxed);
    if (h < 0) {
        h = imago_model_f16c_available_();
        atomic_store_explicit(&have, h, memory_order_relaxed);
    }
    if (accel && h) {
        f16_f16c(src, dst, n);
        return;
    }
#else
    (void)accel;
#endif
    f16_portable(src, dst, n);
}

void imago_model_bf16_to_f32_(const void *src, float *dst, size_t n)
{
    const uint8_t *p = src;
    for (size_t i = 0; i < n; i++)
        dst[i] = bits_to_float((uint32_t)load16(p + 2 * i) << 16);
}

/* ---- header parsing ----------------------------------------------------- */

typedef struct st_entry {
    const char *name; /* borrowed from the JSON tree */
    int dtype, ndim;
    int64_t dims[IMAGO_TENSOR_MAX_DIMS];
    int64_t numel;
    uint64_t begin, end;
} st_entry;

static int cmp_entry(const void *a, const void *b)
{
    const st_entry *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int get_u64(json_t *v, uint64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return -1;
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

static int parse_entry(const char *name, json_t *v, uint64_t data_len, st_entry *e,
                       imago_error *err)
{
    memset(e, 0, sizeof *e);
    e->name = name;
    if (!name[0])
        return imago_error_set(err, IMAGO_ERR_FORMAT, "tensor with an empty name");
    if (!json_is_object(v))
        return imago_error_set(err, IMAGO_ERR_FORMAT, "tensor '%.200s': entry is not an object",
                               name);
    json_t *dt = json_object_get(v, "dtype");
    if (!json_is_string(dt))
        return imago_error_set(err, IMAGO_ERR_FORMAT, "tensor '%.200s': missing string 'dtype'",
                               name);
    const char *dts = json_string_value(dt);
    e->dtype = -1;
    for (int i = 0; i < 3; i++)
        if (strcmp(dts, DT_NAMES[i]) == 0)
            e->dtype = i;
    if (e->dtype < 0)
        return imago_error_set(err, IMAGO_ERR_UNSUPPORTED,
                               "tensor '%.200s': dtype '%.32s' is not supported (F32, F16, "
                               "BF16)",
                               name, dts);

    json_t *shape = json_object_get(v, "shape");
    if (!json_is_array(shape))
        return imago_error_set(err, IMAGO_ERR_FORMAT, "tensor '%.200s': missing array 'shape'",
                               name);
    size_t nd = json_array_size(shape);
    if (nd > IMAGO_TENSOR_MAX_DIMS)
        return imago_error_set(err, IMAGO_ERR_UNSUPPORTED,
                               "tensor '%.200s': %zu dimensions (at most %d are supported)", name,
                               nd, IMAGO_TENSOR_MAX_DIMS);
    e->ndim = (int)nd;
    int64_t numel = 1;
    for (size_t i = 0; i < nd; i++) {
        uint64_t d;
        if (get_u64(json_array_get(shape, i), &d) != 0)
            return imago_error_set(err, IMAGO_ERR_FORMAT,
                                   "tensor '%.200s': shape[%zu] is not a non-negative integer",
                                   name, i);
        e->dims[i] = (int64_t)d;
        if (__builtin_mul_overflow(numel, (int64_t)d, &numel))
            return imago_error_set(err, IMAGO_ERR_FORMAT,
                                   "tensor '%.200s': shape overflows 64 bits", name);
    }
    e->numel = numel;
    uint64_t bytes;
    if (__builtin_mul_overflow((uint64_t)numel, (uint64_t)DT_SIZE[e->dtype], &bytes))
        return imago_error_set(err, IMAGO_ERR_FORMAT, "tensor '%.200s': size overflows 64 bits",
                               name);

    json_t *off = json_object_get(v, "data_offsets");
    if (!json_is_array(off) || json_array_size(off) != 2 ||
        get_u64(json_array_get(off, 0), &e->begin) != 0 ||
        get_u64(json_array_get(off, 1), &e->end) != 0)
        return imago_error_set(err, IMAGO_ERR_FORMAT,
                               "tensor '%.200s': data_offsets must be [begin, end] with "
                               "non-negative integers",
                               name);
    if (e->end < e->begin)
        return imago_error_set(err, IMAGO_ERR_FORMAT,
                               "tensor '%.200s': data_offsets end %llu < begin %llu", name,
                               (unsigned long long)e->end, (unsigned long long)e->begin);
    if (e->end > data_len)
        return imago_error_set(err, IMAGO_ERR_FORMAT,
                               "tensor '%.200s': data [%llu, %llu) runs past the end of the "
                               "data area (%llu bytes; file truncated?)",
                               name, (unsigned long long)e->begin, (unsigned long long)e->end,
                               (unsigned long long)data_len);
    if (e->end - e->begin != bytes)
        return imago_error_set(err, IMAGO_ERR_FORMAT,
                               "tensor '%.200s': data_offsets span %llu bytes but shape x %s "
                               "needs %llu",
                               name, (unsigned long long)(e->end - e->begin), DT_NAMES[e->dtype],
                               (unsigned long long)bytes);
    return 0;
}

static int parse_metadata(json_t *meta, imago_model_config *cfg, imago_error *err)
{
    if (!json_is_object(meta))
        return imago_error_set(err, IMAGO_ERR_FORMAT, "__metadata__ is not an object");
    const char *key;
    json_t *v;
    json_object_foreach(meta, key, v)
    {
        if (!json_is_string(v))
            return imago_error_set(err, IMAGO_ERR_FORMAT, "__metadata__['%.100s'] is not a string",
                                   key);
    }
    json_t *c = json_object_get(meta, "imago.config");
    if (!c)
        return imago_error_set(err, IMAGO_ERR_FORMAT,
                               "no imago.config in __metadata__ (not an imago model file?)");
    if (strlen(json_string_value(c)) != json_string_length(c))
        return imago_error_set(err, IMAGO_ERR_FORMAT, "imago.config contains a NUL character");
    return imago_model_config_parse(json_string_value(c), cfg, err);
}

/* Builds m's tensors from the file image buf[0, size). buf stays alive as
 * long as m (mapping or copy). */
static int parse_image(imago_model *m, const uint8_t *buf, size_t size, imago_error *err)
{
    if (size < 8)
        return imago_error_set(err, IMAGO_ERR_FORMAT,
                               "truncated: %zu bytes, shorter than the 8-byte header length", size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | buf[i];
    if (hlen == 0 || hlen > (uint64_t)size - 8)
        return imago_error_set(err, IMAGO_ERR_FORMAT,
                               "header length %llu does not fit the file (%zu bytes; "
                               "truncated?)",
                               (unsigned long long)hlen, size);
    if (hlen > MAX_HEADER)
        return imago_error_set(err, IMAGO_ERR_FORMAT,
                               "header length %llu is over the %llu-byte limit",
                               (unsigned long long)hlen, (unsigned long long)MAX_HEADER);
    json_error_t jerr;
    json_t *root = json_loadb((const char *)buf + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return imago_error_set(err, IMAGO_ERR_FORMAT,
                               "header is not valid JSON: %s (line %d, column %d)", jerr.text,
                               jerr.line, jerr.column);
    int rc = 0;
    st_entry *ents = NULL;
    if (!json_is_object(root)) {
        rc = imago_error_set(err, IMAGO_ERR_FORMAT, "header is not a JSON object");
        goto done;
    }
    const uint8_t *data = buf + 8 + hlen;
    uint64_t data_len = (uint64_t)size - 8 - hlen;

    imago_model_config cfg;
    json_t *meta = json_object_get(root, "__metadata__");
    if (!meta) {
        rc = imago_error_set(err, IMAGO_ERR_FORMAT,
                             "no __metadata__ with imago.config (not an imago model file?)");
        goto done;
    }
    if ((rc = parse_metadata(meta, &cfg, err)))
        goto done;

    size_t n = json_object_size(root) - 1, k = 0;
    ents = imago_xcalloc(n ? n : 1, sizeof *ents);
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v)
    {
        if (strcmp(key, "__metadata__") == 0)
            continue;
        if ((rc = parse_entry(key, v, data_len, &ents[k], err)))
            goto done;
        k++;
    }
    qsort(ents, n, sizeof *ents, cmp_entry);
    const st_entry *prev = NULL;
    for (size_t i = 0; i < n; i++) {
        if (ents[i].begin == ents[i].end)
            continue; /* empty tensors occupy no bytes */
        if (prev && ents[i].begin < prev->end) {
            rc = imago_error_set(
                err, IMAGO_ERR_FORMAT,
                "tensors '%.150s' [%llu, %llu) and '%.150s' [%llu, %llu) "
                "overlap",
                prev->name, (unsigned long long)prev->begin, (unsigned long long)prev->end,
                ents[i].name, (unsigned long long)ents[i].begin, (unsigned long long)ents[i].end);
            goto done;
        }
        prev = &ents[i];
    }

    for (size_t i = 0; i < n; i++) {
        const st_entry *e = &ents[i];
        const uint8_t *src = data + e->begin;
        const float *ptr = (const float *)(const void *)src;
        float *owned = NULL;
        if (e->dtype != DT_F32 || ((uintptr_t)src & 3) != 0) {
            void *p;
            if ((rc = imago_alloc_array((size_t)e->numel, sizeof(float), 0, &p, err))) {
                imago_error_prefix(err, "tensor '%.200s'", e->name);
                goto done;
            }
            owned = p;
            if (e->dtype == DT_F32)
                memcpy(owned, src, (size_t)e->numel * sizeof(float));
            else if (e->dtype == DT_F16)
                imago_model_f16_to_f32_(src, owned, (size_t)e->numel, 1);
            else
                imago_model_bf16_to_f32_(src, owned, (size_t)e->numel);
            ptr = owned;
        }
        if ((rc = imago_model_add_(m, e->name, e->ndim, e->dims, e->numel, ptr, owned, err)))
            goto done;
    }

    if ((rc = imago_model_check_p_(m, &cfg, err)))
        goto done;
    m->cfg = cfg;
done:
    free(ents);
    json_decref(root);
    return rc;
}

static void fingerprint(imago_model *m, const void *buf, size_t len)
{
    uint8_t d[32];
    imago_sha256(buf, len, d);
    imago_sha256_hex(d, m->cfg.fingerprint);
}

int imago_model_load(const char *path, imago_model **out, imago_error *err)
{
    if (!path || !out)
        return imago_error_set(err, IMAGO_ERR_INVALID, "imago_model_load: no path or output");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return imago_error_set(err, IMAGO_ERR_IO, "cannot open model '%s': %s", path,
                               strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return imago_error_set(err, IMAGO_ERR_IO, "cannot stat model '%s': %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return imago_error_set(err, IMAGO_ERR_IO, "model '%s' is not a regular file", path);
    }
    size_t size = (size_t)st.st_size;
    if (size < 8) {
        close(fd);
        imago_error_set(err, IMAGO_ERR_FORMAT,
                        "truncated: %zu bytes, shorter than the 8-byte header length", size);
        imago_error_prefix(err, "model '%s'", path);
        return IMAGO_ERR_FORMAT;
    }
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (map == MAP_FAILED)
        return imago_error_set(err, IMAGO_ERR_IO, "cannot map model '%s': %s", path, strerror(e));
    madvise(map, size, MADV_WILLNEED);
    imago_model *m = imago_model_new_();
    m->map = map;
    m->map_len = size;
    int rc = parse_image(m, map, size, err);
    if (rc) {
        imago_error_prefix(err, "model '%s'", path);
        imago_model_free(m);
        return rc;
    }
    /* The fingerprint covers every byte, including the tensor data that was
     * converted or not read at all. */
    fingerprint(m, map, size);
    *out = m;
    return 0;
}

int imago_model_load_memory(const void *data, size_t len, imago_model **out, imago_error *err)
{
    if ((!data && len) || !out)
        return imago_error_set(err, IMAGO_ERR_INVALID,
                               "imago_model_load_memory: no data or output");
    imago_model *m = imago_model_new_();
    /* an exact-size copy, so that a sanitizer catches any over-read */
    m->mem = imago_xmalloc(len);
    if (len)
        memcpy(m->mem, data, len);
    int rc = parse_image(m, m->mem, len, err);
    if (rc) {
        imago_model_free(m);
        return rc;
    }
    fingerprint(m, m->mem, len);
    *out = m;
    return 0;
}
