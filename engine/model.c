/* The model container: tensor table with hash lookup by name, shape checks,
 * BatchNorm folding (conv + BN, linear + BN1d), reference counting. Loading is
 * in safetensors.c, the config in model_config.c, synthetic weights in
 * model_synth.c. */
#include "model_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define BN_EPS 1e-5

static uint64_t hash_name(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

imago_model *imago_model_new_(void)
{
    imago_model *m = imago_xcalloc(1, sizeof *m);
    atomic_init(&m->refs, 1);
    imago_model_config_default(&m->cfg);
    return m;
}

static long find(const imago_model *m, const char *name)
{
    if (!m->nslots)
        return -1;
    size_t mask = m->nslots - 1;
    for (size_t i = (size_t)hash_name(name) & mask;; i = (i + 1) & mask) {
        uint32_t s = m->slots[i];
        if (!s)
            return -1;
        if (strcmp(m->t[s - 1].name, name) == 0)
            return (long)(s - 1);
    }
}

static void insert_slot(imago_model *m, int idx)
{
    size_t mask = m->nslots - 1;
    size_t i = (size_t)hash_name(m->t[idx].name) & mask;
    while (m->slots[i])
        i = (i + 1) & mask;
    m->slots[i] = (uint32_t)idx + 1;
}

int imago_model_add_(imago_model *m, const char *name, int ndim, const int64_t *dims, int64_t numel,
                     const float *data, float *owned, imago_error *err)
{
    if (find(m, name) >= 0) {
        imago_free_aligned(owned);
        return imago_error_set(err, IMAGO_ERR_FORMAT, "duplicate tensor '%.200s'", name);
    }
    if (m->n == m->cap) {
        m->cap = m->cap ? 2 * m->cap : 64;
        m->t = imago_xrealloc(m->t, (size_t)m->cap * sizeof *m->t);
    }
    imago_model_rec *r = &m->t[m->n];
    memset(r, 0, sizeof *r);
    r->name = imago_xstrdup(name);
    r->ndim = ndim;
    for (int i = 0; i < ndim; i++)
        r->dims[i] = dims[i];
    r->numel = numel;
    r->data = data;
    r->owned = owned;
    m->n++;
    if ((size_t)m->n * 2 > m->nslots) {
        free(m->slots);
        m->nslots = m->nslots ? m->nslots * 2 : 128;
        m->slots = imago_xcalloc(m->nslots, sizeof *m->slots);
        for (int i = 0; i < m->n; i++)
            insert_slot(m, i);
    } else {
        insert_slot(m, m->n - 1);
    }
    return 0;
}

int imago_model_check_p_(const imago_model *m, const imago_model_config *cfg, imago_error *err)
{
    if (strcmp(cfg->pooling, "gem") != 0 || !cfg->p_tensor[0])
        return 0;
    long i = find(m, cfg->p_tensor);
    if (i < 0)
        return imago_error_set(err, IMAGO_ERR_FORMAT,
                               "imago.config takes pooling.p from tensor '%s', which the model "
                               "does not have",
                               cfg->p_tensor);
    if (m->t[i].numel != 1)
        return imago_error_set(err, IMAGO_ERR_FORMAT,
                               "tensor '%s' (pooling p) has %lld elements, want 1", cfg->p_tensor,
                               (long long)m->t[i].numel);
    return 0;
}

imago_model *imago_model_retain(imago_model *m)
{
    if (m)
        atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
    return m;
}

void imago_model_free(imago_model *m)
{
    if (!m)
        return;
    if (atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (int i = 0; i < m->n; i++) {
        free(m->t[i].name);
        imago_free_aligned(m->t[i].owned);
    }
    free(m->t);
    free(m->slots);
    if (m->map)
        munmap(m->map, m->map_len);
    free(m->mem);
    imago_free_aligned(m->arena);
    free(m);
}

const imago_model_config *imago_model_get_config(const imago_model *m)
{
    return &m->cfg;
}

static void fill_tensor(const imago_model_rec *r, imago_tensor *out)
{
    memset(out, 0, sizeof *out);
    out->ndim = r->ndim;
    for (int i = 0; i < r->ndim; i++)
        out->dims[i] = r->dims[i];
    out->numel = r->numel;
    out->data = r->data;
}

int imago_model_n_tensors(const imago_model *m)
{
    return m->n;
}

int imago_model_tensor_at(const imago_model *m, int i, const char **name, imago_tensor *out,
                          imago_error *err)
{
    if (i < 0 || i >= m->n)
        return imago_error_set(err, IMAGO_ERR_INVALID, "tensor index %d out of range [0, %d)", i,
                               m->n);
    if (name)
        *name = m->t[i].name;
    if (out)
        fill_tensor(&m->t[i], out);
    return 0;
}

int imago_model_has_tensor(const imago_model *m, const char *name)
{
    return name && find(m, name) >= 0;
}

int imago_model_tensor(const imago_model *m, const char *name, imago_tensor *out, imago_error *err)
{
    long i = name ? find(m, name) : -1;
    if (i < 0)
        return imago_error_set(err, IMAGO_ERR_NOT_FOUND, "model has no tensor '%.200s'",
                               name ? name : "(null)");
    fill_tensor(&m->t[i], out);
    return 0;
}

static void format_shape(char *buf, size_t cap, int ndim, const int64_t *dims)
{
    size_t n = 0;
    n += (size_t)snprintf(buf + n, cap - n, "[");
    for (int i = 0; i < ndim && n < cap; i++) {
        if (dims[i] < 0)
            n += (size_t)snprintf(buf + n, cap - n, "%s*", i ? ", " : "");
        else
            n += (size_t)snprintf(buf + n, cap - n, "%s%lld", i ? ", " : "", (long long)dims[i]);
    }
    if (n < cap)
        snprintf(buf + n, cap - n, "]");
}

int imago_model_tensor_shape(const imago_model *m, const char *name, int ndim, const int64_t *want,
                             imago_tensor *out, imago_error *err)
{
    imago_tensor t;
    int rc = imago_model_tensor(m, name, &t, err);
    if (rc)
        return rc;
    int okay = t.ndim == ndim;
    for (int i = 0; okay && i < ndim; i++)
        okay = want[i] < 0 || want[i] == t.dims[i];
    if (!okay) {
        char w[96], g[96];
        format_shape(w, sizeof w, ndim < 0 ? 0 : ndim > 4 ? 4 : ndim, want);
        format_shape(g, sizeof g, t.ndim, t.dims);
        return imago_error_set(err, IMAGO_ERR_FORMAT, "tensor '%.200s' has shape %s, want %s", name,
                               g, w);
    }
    if (out)
        *out = t;
    return 0;
}

/* Looks up "<prefix>.<suffix>". */
static int lookup(const imago_model *m, const char *prefix, const char *suffix, imago_tensor *out,
                  int required, imago_error *err)
{
    char name[512];
    int n = snprintf(name, sizeof name, "%s.%s", prefix, suffix);
    if (n < 0 || (size_t)n >= sizeof name)
        return imago_error_set(err, IMAGO_ERR_INVALID, "tensor name too long: '%.200s.%s'", prefix,
                               suffix);
    if (!required && !imago_model_has_tensor(m, name))
        return IMAGO_ERR_NOT_FOUND;
    return imago_model_tensor(m, name, out, err);
}

static int check_vec(const imago_tensor *t, const char *prefix, const char *suffix, int64_t o,
                     imago_error *err)
{
    if (t->numel != o || t->ndim > 1)
        return imago_error_set(err, IMAGO_ERR_FORMAT,
                               "tensor '%.200s.%s' has %lld elements (%d dims), want [%lld] "
                               "(the output channels)",
                               prefix, suffix, (long long)t->numel, t->ndim, (long long)o);
    return 0;
}

static int alloc_floats(int64_t n, float **out, imago_error *err)
{
    size_t bytes;
    if (n < 0 || imago_size_mul((size_t)n, sizeof(float), &bytes) != 0 ||
        imago_size_add(bytes, 63, &bytes) != 0)
        return imago_error_set(err, IMAGO_ERR_TOO_LARGE, "array of %lld floats is too large",
                               (long long)n);
    bytes = bytes / 64 * 64;
    float *p = aligned_alloc(64, bytes ? bytes : 64);
    if (!p)
        return imago_error_set(err, IMAGO_ERR_NOMEM, "out of memory allocating %zu bytes", bytes);
    *out = p;
    return 0;
}

static int fold_bn(const imago_model *m, const char *prefix, const char *bn_prefix, int min_dims,
                   int max_dims, const char *what, imago_tensor *wshape, float **wout, float **bout,
                   imago_error *err)
{
    if (!m || !prefix)
        return imago_error_set(err, IMAGO_ERR_INVALID, "%s: no model or prefix", what);
    imago_tensor wt, bias;
    int rc = lookup(m, prefix, "weight", &wt, 1, err);
    if (rc)
        return rc;
    if (wt.ndim < min_dims || wt.ndim > max_dims || wt.dims[0] <= 0)
        return imago_error_set(err, IMAGO_ERR_FORMAT,
                               "tensor '%.200s.weight' has %d dims, want a %s weight "
                               "(%d..%d dims, O > 0)",
                               prefix, wt.ndim, what, min_dims, max_dims);
    int64_t o = wt.dims[0];
    int64_t per = wt.numel / o;
    rc = lookup(m, prefix, "bias", &bias, 0, err);
    if (rc && rc != IMAGO_ERR_NOT_FOUND)
        return rc;
    int has_bias = rc == 0;
    if (has_bias && (rc = check_vec(&bias, prefix, "bias", o, err)))
        return rc;

    imago_tensor g, be, mu, var;
    if (bn_prefix) {
        if ((rc = lookup(m, bn_prefix, "weight", &g, 1, err)) ||
            (rc = lookup(m, bn_prefix, "bias", &be, 1, err)) ||
            (rc = lookup(m, bn_prefix, "running_mean", &mu, 1, err)) ||
            (rc = lookup(m, bn_prefix, "running_var", &var, 1, err)))
            return rc;
        if ((rc = check_vec(&g, bn_prefix, "weight", o, err)) ||
            (rc = check_vec(&be, bn_prefix, "bias", o, err)) ||
            (rc = check_vec(&mu, bn_prefix, "running_mean", o, err)) ||
            (rc = check_vec(&var, bn_prefix, "running_var", o, err)))
            return rc;
        for (int64_t c = 0; c < o; c++)
            if (!((double)var.data[c] + BN_EPS > 0.0))
                return imago_error_set(err, IMAGO_ERR_FORMAT,
                                       "tensor '%.200s.running_var'[%lld] = %g: variance + "
                                       "eps must be > 0",
                                       bn_prefix, (long long)c, (double)var.data[c]);
    }

    float *w = NULL, *b = NULL;
    if ((rc = alloc_floats(wt.numel, &w, err)))
        return rc;
    if ((rc = alloc_floats(o, &b, err))) {
        free(w);
        return rc;
    }
    for (int64_t c = 0; c < o; c++) {
        double a = 1.0, shift = 0.0;
        double cb = has_bias ? (double)bias.data[c] : 0.0;
        if (bn_prefix) {
            a = (double)g.data[c] / sqrt((double)var.data[c] + BN_EPS);
            shift = (double)be.data[c] - a * (double)mu.data[c];
        }
        b[c] = (float)(shift + a * cb);
        const float *src = wt.data + c * per;
        float *dst = w + c * per;
        for (int64_t i = 0; i < per; i++)
            dst[i] = (float)(a * (double)src[i]);
    }
    if (wshape) {
        *wshape = wt;
        wshape->data = w;
    }
    *wout = w;
    *bout = b;
    return 0;
}

int imago_model_conv_bn(const imago_model *m, const char *conv_prefix, const char *bn_prefix,
                        imago_tensor *wshape, float **w, float **b, imago_error *err)
{
    return fold_bn(m, conv_prefix, bn_prefix, 3, 4, "convolution", wshape, w, b, err);
}

int imago_model_linear_bn(const imago_model *m, const char *fc_prefix, const char *bn_prefix,
                          imago_tensor *wshape, float **w, float **b, imago_error *err)
{
    return fold_bn(m, fc_prefix, bn_prefix, 2, 2, "linear", wshape, w, b, err);
}
