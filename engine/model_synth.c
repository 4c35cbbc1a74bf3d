/* Synthetic models (the demo model and tests): every tensor filled from its
 * own xoshiro256** stream seeded from (seed, name) with splitmix64. Only
 * integer arithmetic and correctly rounded IEEE operations (+, *, /, sqrt)
 * touch the values, so a seed gives bit-identical weights everywhere. */
#include "model_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct xoshiro {
    uint64_t s[4];
} xoshiro;

static inline uint64_t rotl64(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline uint64_t xo_next(xoshiro *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl64(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return result;
}

static void xo_seed(xoshiro *r, uint64_t seed, const char *name)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a of the name */
    for (const char *p = name; *p; p++) {
        h ^= (unsigned char)*p;
        h *= 1099511628211ULL;
    }
    uint64_t st = seed ^ rotl64(h, 29);
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&st);
}

/* Irwin-Hall(4) over 16-bit uniforms: integer sum symmetric around 0, then one
 * double multiply and one rounding to float. */
static void fill_normal(float *dst, int64_t n, double sigma, xoshiro *r)
{
    const double scale = sigma / sqrt((65536.0 * 65536.0 - 1.0) / 3.0);
    for (int64_t i = 0; i < n; i++) {
        uint64_t x = xo_next(r);
        int64_t s = (int64_t)(x & 0xffff) + (int64_t)((x >> 16) & 0xffff) +
                    (int64_t)((x >> 32) & 0xffff) + (int64_t)(x >> 48) - 131070;
        dst[i] = (float)((double)s * scale);
    }
}

static void put_u64(imago_sha256_ctx *c, uint64_t v)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    imago_sha256_update(c, b, 8);
}

static int check_spec(const imago_tensor_spec *s, int i, int64_t *numel, imago_error *err)
{
    if (!s->name || !s->name[0] || strlen(s->name) > 400)
        return imago_error_set(err, IMAGO_ERR_INVALID, "tensor spec %d: missing or bad name", i);
    if (s->ndim < 0 || s->ndim > IMAGO_TENSOR_MAX_DIMS)
        return imago_error_set(err, IMAGO_ERR_INVALID, "tensor spec '%s': ndim %d (want 0..%d)",
                               s->name, s->ndim, IMAGO_TENSOR_MAX_DIMS);
    if ((int)s->init < IMAGO_INIT_CONV_HE || (int)s->init > IMAGO_INIT_IDENTITY)
        return imago_error_set(err, IMAGO_ERR_INVALID, "tensor spec '%s': unknown init %d", s->name,
                               (int)s->init);
    if (s->init == IMAGO_INIT_IDENTITY && s->ndim != 2)
        return imago_error_set(err, IMAGO_ERR_INVALID,
                               "tensor spec '%s': identity init needs 2 dims, not %d", s->name,
                               s->ndim);
    if (!isfinite(s->gain))
        return imago_error_set(err, IMAGO_ERR_INVALID, "tensor spec '%s': gain is not finite",
                               s->name);
    int64_t n = 1;
    for (int d = 0; d < s->ndim; d++) {
        if (s->dims[d] < 0)
            return imago_error_set(err, IMAGO_ERR_INVALID,
                                   "tensor spec '%s': dims[%d] = %lld is negative", s->name, d,
                                   (long long)s->dims[d]);
        if (__builtin_mul_overflow(n, s->dims[d], &n) || n > ((int64_t)1 << 40))
            return imago_error_set(err, IMAGO_ERR_INVALID, "tensor spec '%s': too many elements",
                                   s->name);
    }
    *numel = n;
    return 0;
}

static void fill(float *dst, const imago_tensor_spec *s, int64_t numel, uint64_t seed)
{
    float gain = s->gain;
    if (gain == 0.0f && s->init != IMAGO_INIT_CONST)
        gain = 1.0f;
    switch (s->init) {
    case IMAGO_INIT_CONV_HE:
    case IMAGO_INIT_NORMAL: {
        double sigma = gain;
        if (s->init == IMAGO_INIT_CONV_HE) {
            int64_t fan_in = s->ndim > 0 && s->dims[0] > 0 ? numel / s->dims[0] : 1;
            sigma *= sqrt(2.0 / (double)(fan_in > 0 ? fan_in : 1));
        }
        xoshiro r;
        xo_seed(&r, seed, s->name);
        fill_normal(dst, numel, sigma, &r);
        break;
    }
    case IMAGO_INIT_ZEROS: memset(dst, 0, (size_t)numel * sizeof(float)); break;
    case IMAGO_INIT_ONES:
    case IMAGO_INIT_CONST:
        for (int64_t i = 0; i < numel; i++)
            dst[i] = gain;
        break;
    case IMAGO_INIT_IDENTITY:
        memset(dst, 0, (size_t)numel * sizeof(float));
        for (int64_t i = 0; i < s->dims[0] && i < s->dims[1]; i++)
            dst[i * s->dims[1] + i] = gain;
        break;
    }
}

int imago_model_synthetic(const imago_model_config *cfg, const imago_tensor_spec *specs, int n,
                          uint64_t seed, imago_model **out, imago_error *err)
{
    if (!cfg || !out || n < 0 || (n > 0 && !specs))
        return imago_error_set(err, IMAGO_ERR_INVALID, "imago_model_synthetic: bad arguments");
    int rc = imago_model_config_validate(cfg, err);
    if (rc)
        return rc;
    int64_t *numel = imago_xcalloc((size_t)n + 1, sizeof *numel);
    int64_t total = 0;
    for (int i = 0; i < n; i++) {
        if ((rc = check_spec(&specs[i], i, &numel[i], err))) {
            free(numel);
            return rc;
        }
        /* 64-byte aligned tensors */
        if (__builtin_add_overflow(total, (numel[i] + 15) / 16 * 16, &total)) {
            free(numel);
            return imago_error_set(err, IMAGO_ERR_INVALID, "synthetic model: too many values");
        }
    }

    imago_model *m = imago_model_new_();
    void *arena = NULL;
    if ((rc = imago_alloc_array((size_t)total, sizeof(float), 0, &arena, err))) {
        free(numel);
        imago_model_free(m);
        return rc;
    }
    m->arena = arena;
    int64_t off = 0;
    for (int i = 0; i < n; i++) {
        float *dst = m->arena + off;
        if (imago_model_has_tensor(m, specs[i].name)) {
            free(numel);
            imago_model_free(m);
            return imago_error_set(err, IMAGO_ERR_INVALID,
                                   "synthetic model: duplicate tensor spec '%s'", specs[i].name);
        }
        fill(dst, &specs[i], numel[i], seed);
        imago_model_add_(m, specs[i].name, specs[i].ndim, specs[i].dims, numel[i], dst, NULL, NULL);
        off += (numel[i] + 15) / 16 * 16;
    }
    free(numel);

    m->cfg = *cfg;
    m->cfg.trained = 0;
    if ((rc = imago_model_check_p_(m, &m->cfg, err))) {
        imago_model_free(m);
        return rc;
    }
    /* fingerprint: a canonical byte string of everything that decides the values */
    imago_sha256_ctx c;
    imago_sha256_init(&c);
    static const char tag[] = "imago-synthetic-v1";
    imago_sha256_update(&c, tag, sizeof tag);
    size_t nl = strnlen(cfg->name, sizeof cfg->name);
    imago_sha256_update(&c, cfg->name, nl);
    imago_sha256_update(&c, "", 1);
    put_u64(&c, seed);
    put_u64(&c, (uint64_t)n);
    for (int i = 0; i < n; i++) {
        const imago_tensor_spec *s = &specs[i];
        imago_sha256_update(&c, s->name, strlen(s->name) + 1);
        put_u64(&c, (uint64_t)s->ndim);
        for (int d = 0; d < s->ndim; d++)
            put_u64(&c, (uint64_t)s->dims[d]);
        uint32_t gbits;
        memcpy(&gbits, &s->gain, 4);
        put_u64(&c, (uint64_t)s->init << 32 | gbits);
    }
    uint8_t digest[32];
    imago_sha256_final(&c, digest);
    imago_sha256_hex(digest, m->cfg.fingerprint);
    *out = m;
    return 0;
}
