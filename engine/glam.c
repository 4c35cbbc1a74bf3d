/* The GLAM head (docs/models.md) over the fp32 NHWC layer4 map: weight
 * validation and preparation, the four attention forms, fusion, GeM and the
 * folded FC + BatchNorm1d, with OpenBLAS for the products and OpenMP for the
 * element-wise parts. See glam.h for the layout of the prepared weights and
 * the memory bound.
 */
#include "glam.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#define MAX_K 15   /* 1-D kernel sizes accepted for the channel convolutions */
#define MAX_TAPS 25 /* distinct offsets of the local spatial branches */

struct imago_glam {
    int c, cl, cg, k, out;
    float lc[MAX_K], gq[MAX_K], gk[MAX_K];
    /* local spatial, folded: s(y,x) = s_bias + sum over taps t whose source
     * (y + dy_t, x + dx_t) is inside the map of (F(src) . w_eff[t] + b_tap[t]) */
    int n_taps;
    int dy[MAX_TAPS], dx[MAX_TAPS];
    float b_tap[MAX_TAPS];
    float s_bias;
    float *w_eff; /* n_taps x c */
    float *w_qkv; /* 3cg x c: gs_q, gs_k, gs_v */
    float *b_qkv; /* 3cg */
    float *w_out; /* c x cg (gs_out) */
    float *b_out; /* c */
    float fuse[3];  /* softmax(fusion): local, global, identity */
    float *w_fc;    /* out x c, BatchNorm1d folded */
    float *b_fc;    /* out */
};

void imago_glam_free(imago_glam *g)
{
    if (!g)
        return;
    free(g->w_eff);
    free(g->w_qkv);
    free(g->b_qkv);
    free(g->w_out);
    free(g->b_out);
    free(g->w_fc);
    free(g->b_fc);
    free(g);
}

int imago_glam_out_dim(const imago_glam *g)
{
    return g->out;
}

int imago_glam_channels(const imago_glam *g)
{
    return g->c;
}

static int get(const imago_model *m, const char *name, int ndim, int64_t d0, int64_t d1,
               int64_t d2, int64_t d3, imago_tensor *t, imago_error *err)
{
    int64_t want[4] = {d0, d1, d2, d3};
    return imago_model_tensor_shape(m, name, ndim, want, t, err);
}

/* A 1x1 or kxk Conv2d "glam.<name>" with [cout, cin, k, k] weight and [cout] bias. */
static int get_conv(const imago_model *m, const char *name, int cout, int cin, int k,
                    imago_tensor *w, imago_tensor *b, imago_error *err)
{
    char n[64];
    int rc;
    snprintf(n, sizeof n, "glam.%s.weight", name);
    if ((rc = get(m, n, 4, cout, cin, k, k, w, err)))
        return rc;
    snprintf(n, sizeof n, "glam.%s.bias", name);
    return get(m, n, 1, cout, 0, 0, 0, b, err);
}

static int get_k(const imago_model *m, const char *name, int k, float *dst, imago_error *err)
{
    imago_tensor t;
    int rc = get(m, name, 3, 1, 1, k, 0, &t, err);
    if (rc)
        return rc;
    memcpy(dst, t.data, (size_t)k * sizeof(float));
    return 0;
}

static int find_tap(int *dy, int *dx, int *n, int y, int x)
{
    for (int i = 0; i < *n; i++)
        if (dy[i] == y && dx[i] == x)
            return i;
    dy[*n] = y;
    dx[*n] = x;
    return (*n)++;
}

/* Folds ls_reduce -> {ls_b1, ls_d1, ls_d2, ls_d3} -> ls_out into per-tap
 * c-vectors (in double). */
static int prepare_local_spatial(const imago_model *m, imago_glam *g, imago_error *err)
{
    int c = g->c, cl = g->cl, rc;
    imago_tensor rw, rb, ow, ob, bw[4], bb[4];
    if ((rc = get_conv(m, "ls_reduce", cl, c, 1, &rw, &rb, err)) ||
        (rc = get_conv(m, "ls_b1", cl, cl, 1, &bw[0], &bb[0], err)) ||
        (rc = get_conv(m, "ls_d1", cl, cl, 3, &bw[1], &bb[1], err)) ||
        (rc = get_conv(m, "ls_d2", cl, cl, 3, &bw[2], &bb[2], err)) ||
        (rc = get_conv(m, "ls_d3", cl, cl, 3, &bw[3], &bb[3], err)) ||
        (rc = get_conv(m, "ls_out", 1, 4 * cl, 1, &ow, &ob, err)))
        return rc;
    double *v = imago_xcalloc((size_t)MAX_TAPS * cl, sizeof(double));
    double sb = ob.data[0];
    g->n_taps = 0;
    for (int br = 0; br < 4; br++) {
        const float *u = ow.data + (size_t)br * cl; /* concat order b1, d1, d2, d3 */
        const float *W = bw[br].data;
        for (int o = 0; o < cl; o++)
            sb += (double)u[o] * bb[br].data[o];
        int ks = br == 0 ? 1 : 3, dil = br;
        for (int ky = 0; ky < ks; ky++)
            for (int kx = 0; kx < ks; kx++) {
                int t = br == 0 ? find_tap(g->dy, g->dx, &g->n_taps, 0, 0)
                                : find_tap(g->dy, g->dx, &g->n_taps, (ky - 1) * dil,
                                           (kx - 1) * dil);
                double *vt = v + (size_t)t * cl;
                for (int o = 0; o < cl; o++) {
                    double uo = u[o];
                    const float *row = W + (size_t)o * cl * ks * ks;
                    for (int i = 0; i < cl; i++)
                        vt[i] += uo * row[((size_t)i * ks + ky) * ks + kx];
                }
            }
    }
    g->s_bias = (float)sb;
    g->w_eff = imago_xmalloc((size_t)g->n_taps * c * sizeof(float));
    double *acc = imago_xmalloc((size_t)c * sizeof(double));
    for (int t = 0; t < g->n_taps; t++) {
        const double *vt = v + (size_t)t * cl;
        double bt = 0;
        memset(acc, 0, (size_t)c * sizeof(double));
        for (int i = 0; i < cl; i++) {
            const float *wr = rw.data + (size_t)i * c;
            for (int ch = 0; ch < c; ch++)
                acc[ch] += vt[i] * wr[ch];
            bt += vt[i] * rb.data[i];
        }
        for (int ch = 0; ch < c; ch++)
            g->w_eff[(size_t)t * c + ch] = (float)acc[ch];
        g->b_tap[t] = (float)bt;
    }
    free(acc);
    free(v);
    return 0;
}

int imago_glam_new(const imago_model *m, int c, imago_glam **out, imago_error *err)
{
    imago_tensor t, w, b;
    int rc;
    if (c < 1)
        return imago_error_set(err, IMAGO_ERR_INVALID, "GLAM head on %d channels", c);
    /* widths from the shapes */
    if ((rc = get(m, "glam.lc_conv.weight", 3, 1, 1, -1, 0, &t, err)))
        return rc;
    int k = (int)t.dims[2];
    if (k < 1 || k > MAX_K || k % 2 == 0)
        return imago_error_set(err, IMAGO_ERR_FORMAT,
                               "tensor 'glam.lc_conv.weight': kernel size %d is not odd in "
                               "[1, %d]",
                               k, MAX_K);
    if ((rc = get(m, "glam.ls_reduce.weight", 4, -1, c, 1, 1, &t, err)))
        return rc;
    int64_t cl = t.dims[0];
    if ((rc = get(m, "glam.gs_q.weight", 4, -1, c, 1, 1, &t, err)))
        return rc;
    int64_t cg = t.dims[0];
    if ((rc = get(m, "glam.fc.weight", 2, -1, c, 0, 0, &t, err)))
        return rc;
    int64_t od = t.dims[0];
    if (cl < 1 || cl > 65536 || cg < 1 || cg > 65536 || od < 1 || od > 65536)
        return imago_error_set(err, IMAGO_ERR_FORMAT,
                               "GLAM widths out of range (local %lld, global %lld, out %lld)",
                               (long long)cl, (long long)cg, (long long)od);

    imago_glam *g = imago_xcalloc(1, sizeof *g);
    g->c = c;
    g->cl = (int)cl;
    g->cg = (int)cg;
    g->k = k;
    g->out = (int)od;
    if ((rc = get_k(m, "glam.lc_conv.weight", k, g->lc, err)) ||
        (rc = get_k(m, "glam.gc_q.weight", k, g->gq, err)) ||
        (rc = get_k(m, "glam.gc_k.weight", k, g->gk, err)))
        goto fail;
    if ((rc = prepare_local_spatial(m, g, err)))
        goto fail;

    g->w_qkv = imago_xmalloc((size_t)3 * g->cg * c * sizeof(float));
    g->b_qkv = imago_xmalloc((size_t)3 * g->cg * sizeof(float));
    static const char *const qkv[3] = {"gs_q", "gs_k", "gs_v"};
    for (int i = 0; i < 3; i++) {
        if ((rc = get_conv(m, qkv[i], g->cg, c, 1, &w, &b, err)))
            goto fail;
        memcpy(g->w_qkv + (size_t)i * g->cg * c, w.data, (size_t)g->cg * c * sizeof(float));
        memcpy(g->b_qkv + (size_t)i * g->cg, b.data, (size_t)g->cg * sizeof(float));
    }
    if ((rc = get_conv(m, "gs_out", c, g->cg, 1, &w, &b, err)))
        goto fail;
    g->w_out = imago_xmalloc((size_t)c * g->cg * sizeof(float));
    g->b_out = imago_xmalloc((size_t)c * sizeof(float));
    memcpy(g->w_out, w.data, (size_t)c * g->cg * sizeof(float));
    memcpy(g->b_out, b.data, (size_t)c * sizeof(float));

    if ((rc = get(m, "glam.fusion", 1, 3, 0, 0, 0, &t, err)))
        goto fail;
    {
        double mx = fmax(fmax(t.data[0], t.data[1]), t.data[2]), e[3], s = 0;
        for (int i = 0; i < 3; i++)
            s += e[i] = exp((double)t.data[i] - mx);
        for (int i = 0; i < 3; i++)
            g->fuse[i] = (float)(e[i] / s);
    }
    imago_tensor fs;
    if ((rc = imago_model_linear_bn(m, "glam.fc", "glam.bn", &fs, &g->w_fc, &g->b_fc, err)))
        goto fail;
    *out = g;
    return 0;
fail:
    imago_glam_free(g);
    return rc;
}

/* ---- forward ------------------------------------------------------------ */

static void conv1d_sigmoid(const float *z, int c, const float *wt, int k, float *out)
{
    int h = k / 2;
    for (int i = 0; i < c; i++) {
        double s = 0;
        for (int t = 0; t < k; t++) {
            int j = i + t - h;
            if (j >= 0 && j < c)
                s += (double)wt[t] * z[j];
        }
        out[i] = (float)(1.0 / (1.0 + exp(-s)));
    }
}

/* Row-wise softmax of rows x n in place. */
static void softmax_rows(float *a, int rows, int n, int threads)
{
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int r = 0; r < rows; r++) {
        float *x = a + (size_t)r * n;
        float mx = x[0];
        for (int i = 1; i < n; i++)
            mx = x[i] > mx ? x[i] : mx;
        double s = 0;
        for (int i = 0; i < n; i++) {
            x[i] = expf(x[i] - mx);
            s += x[i];
        }
        float inv = (float)(1.0 / s);
        for (int i = 0; i < n; i++)
            x[i] *= inv;
    }
}

static int alloc_f(size_t a, size_t b, float **out, imago_error *err)
{
    return imago_alloc_array(a, b * sizeof(float), 0, (void **)out, err);
}

int imago_glam_forward(const imago_glam *g, const float *x, int h, int w, float p, int threads,
                       float *y, imago_glam_trace *tr, imago_error *err)
{
    if (h < 1 || w < 1)
        return imago_error_set(err, IMAGO_ERR_INVALID, "GLAM head on an empty %dx%d map", w, h);
    if (threads <= 0)
        threads = omp_get_max_threads();
    const int c = g->c, cg = g->cg, hw = h * w, T = g->n_taps;
    const int nb = hw < IMAGO_GLAM_BLOCK ? hw : IMAGO_GLAM_BLOCK;
    int rc = 0;
    float *z = imago_xmalloc((size_t)c * 4 * sizeof(float));
    float *a = z + c, *q = a + c, *k = q + c;
    float *S = NULL, *At = NULL, *Gc = NULL, *QKV = NULL, *L = NULL, *Gt = NULL, *Gs = NULL;
    double *acc = NULL;
    if ((rc = alloc_f((size_t)hw, (size_t)T + 1, &S, err)) ||
        (rc = alloc_f((size_t)c, (size_t)c, &At, err)) ||
        (rc = alloc_f((size_t)hw, (size_t)c, &Gc, err)) ||
        (rc = alloc_f((size_t)hw, (size_t)c, &Gs, err)) ||
        (rc = alloc_f((size_t)hw, (size_t)3 * cg, &QKV, err)) ||
        (rc = alloc_f((size_t)nb, (size_t)hw, &L, err)) ||
        (rc = alloc_f((size_t)hw, (size_t)cg, &Gt, err)))
        goto done;
    float *s = S + (size_t)hw * T; /* the local spatial map */

    /* z = GAP(F) */
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int c0 = 0; c0 < c; c0 += 64) {
        int c1 = c0 + 64 < c ? c0 + 64 : c;
        double sum[64] = {0};
        for (int i = 0; i < hw; i++) {
            const float *row = x + (size_t)i * c;
            for (int ch = c0; ch < c1; ch++)
                sum[ch - c0] += row[ch];
        }
        for (int ch = c0; ch < c1; ch++)
            z[ch] = (float)(sum[ch - c0] / hw);
    }

    /* local channel: a = sigmoid(conv1d(z)) */
    conv1d_sigmoid(z, c, g->lc, g->k, a);

    /* local spatial: the folded taps, then the shifted sums with zero padding */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, hw, T, c, 1.0f, x, c, g->w_eff, c, 0.0f,
                S, T);
    for (int yy = 0; yy < h; yy++)
        for (int xx = 0; xx < w; xx++) {
            double v = g->s_bias;
            for (int t = 0; t < T; t++) {
                int sy = yy + g->dy[t], sx = xx + g->dx[t];
                if (sy >= 0 && sy < h && sx >= 0 && sx < w)
                    v += (double)S[((size_t)sy * w + sx) * T + t] + g->b_tap[t];
            }
            s[yy * w + xx] = (float)v;
        }

    /* global channel: At[j][i] = softmax_i(k_i q_j), G_c = F A = F At^T */
    conv1d_sigmoid(z, c, g->gq, g->k, q);
    conv1d_sigmoid(z, c, g->gk, g->k, k);
    {
        float kmax = k[0];
        for (int i = 1; i < c; i++)
            kmax = k[i] > kmax ? k[i] : kmax;
        /* q_j > 0, so max_i k_i q_j = kmax q_j */
#pragma omp parallel for num_threads(threads) schedule(static)
        for (int j = 0; j < c; j++) {
            float *row = At + (size_t)j * c;
            double sum = 0;
            for (int i = 0; i < c; i++) {
                row[i] = expf(k[i] * q[j] - kmax * q[j]);
                sum += row[i];
            }
            float inv = (float)(1.0 / sum);
            for (int i = 0; i < c; i++)
                row[i] *= inv;
        }
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, hw, c, c, 1.0f, x, c, At, c, 0.0f, Gc,
                c);

    /* global spatial: Q, K, V (hw x c' each, interleaved rows of 3c') */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, hw, 3 * cg, c, 1.0f, x, c, g->w_qkv, c,
                0.0f, QKV, 3 * cg);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int i = 0; i < hw; i++)
        for (int j = 0; j < 3 * cg; j++)
            QKV[(size_t)i * 3 * cg + j] += g->b_qkv[j];
    /* per block of query positions n: L[n][m] = Q[n] . K[m], softmax over m,
     * G^T[n] = sum_m L[n][m] V[m] */
    for (int n0 = 0; n0 < hw; n0 += nb) {
        int bn = hw - n0 < nb ? hw - n0 : nb;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, bn, hw, cg, 1.0f,
                    QKV + (size_t)n0 * 3 * cg, 3 * cg, QKV + cg, 3 * cg, 0.0f, L, hw);
        softmax_rows(L, bn, hw, threads);
        if (tr && tr->As)
            for (int r = 0; r < bn; r++)
                for (int m = 0; m < hw; m++)
                    tr->As[(size_t)m * hw + n0 + r] = L[(size_t)r * hw + m];
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, bn, cg, hw, 1.0f, L, hw,
                    QKV + 2 * cg, 3 * cg, 0.0f, Gt + (size_t)n0 * cg, cg);
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, hw, c, cg, 1.0f, Gt, cg, g->w_out, cg,
                0.0f, Gs, c);

    /* fusion and GeM, per block of channels */
    if ((rc = imago_alloc_array((size_t)c, sizeof(double), 1, (void **)&acc, err)))
        goto done;
    {
        const float wl = g->fuse[0], wg = g->fuse[1], wi = g->fuse[2];
        const int cube = p == 3.0f;
#pragma omp parallel for num_threads(threads) schedule(static)
        for (int c0 = 0; c0 < c; c0 += 64) {
            int c1 = c0 + 64 < c ? c0 + 64 : c;
            for (int i = 0; i < hw; i++) {
                size_t o = (size_t)i * c;
                float si = s[i];
                for (int ch = c0; ch < c1; ch++) {
                    float xv = x[o + ch], gs = Gs[o + ch] + g->b_out[ch];
                    float fc = xv * a[ch] + xv;
                    float fl = fc * si + fc;
                    float fg1 = xv * Gc[o + ch];
                    float fg = fg1 * gs + fg1;
                    float f = wl * fl + wg * fg + wi * xv;
                    double t = f > 1e-6f ? f : 1e-6;
                    acc[ch] += cube ? t * t * t : pow(t, p);
                    if (tr) {
                        if (tr->Fc)
                            tr->Fc[o + ch] = fc;
                        if (tr->Fl)
                            tr->Fl[o + ch] = fl;
                        if (tr->Gs)
                            tr->Gs[o + ch] = gs;
                        if (tr->Fg)
                            tr->Fg[o + ch] = fg;
                        if (tr->Fgl)
                            tr->Fgl[o + ch] = f;
                    }
                }
            }
        }
    }
    float *pooled = z; /* z is no longer needed */
    for (int ch = 0; ch < c; ch++)
        pooled[ch] = (float)pow(acc[ch] / hw, 1.0 / p);
    if (tr) {
        if (tr->a_lc)
            memcpy(tr->a_lc, a, (size_t)c * sizeof(float));
        if (tr->s)
            memcpy(tr->s, s, (size_t)hw * sizeof(float));
        if (tr->Gc)
            memcpy(tr->Gc, Gc, (size_t)hw * c * sizeof(float));
        if (tr->Ac)
            for (int i = 0; i < c; i++)
                for (int j = 0; j < c; j++)
                    tr->Ac[(size_t)i * c + j] = At[(size_t)j * c + i];
        if (tr->pooled)
            memcpy(tr->pooled, pooled, (size_t)c * sizeof(float));
    }
    /* FC + BatchNorm1d (folded) */
    for (int r = 0; r < g->out; r++) {
        const float *row = g->w_fc + (size_t)r * c;
        double v = g->b_fc[r];
        for (int ch = 0; ch < c; ch++)
            v += (double)row[ch] * pooled[ch];
        y[r] = (float)v;
    }
done:
    free(z);
    imago_free_aligned(S);
    imago_free_aligned(At);
    imago_free_aligned(Gc);
    imago_free_aligned(Gs);
    imago_free_aligned(QKV);
    imago_free_aligned(L);
    imago_free_aligned(Gt);
    imago_free_aligned(acc);
    return rc;
}

int imago_glam_run(const imago_glam *g, const float *fm, int n, int h, int w, float p,
                   int threads, float *out, imago_error *err)
{
    for (int i = 0; i < n; i++) {
        int rc = imago_glam_forward(g, fm + (size_t)i * h * w * g->c, h, w, p, threads,
                                    out + (size_t)i * g->out, NULL, err);
        if (rc)
            return rc;
    }
    return 0;
}

/* ---- synthetic (demo) weights ------------------------------------------- */

static int spec(imago_tensor_spec *s, int n, const char *name, int ndim, int64_t d0, int64_t d1,
                int64_t d2, int64_t d3, imago_init_kind init, float gain)
{
    if (s) {
        imago_tensor_spec *t = &s[n];
        memset(t, 0, sizeof *t);
        t->name = name;
        t->ndim = ndim;
        t->dims[0] = d0;
        t->dims[1] = d1;
        t->dims[2] = d2;
        t->dims[3] = d3;
        t->init = init;
        t->gain = gain;
    }
    return n + 1;
}

/* a convolution: its He-initialised weight, then its zero bias */
static int conv_spec(imago_tensor_spec *s, int n, const char *weight, const char *bias, int cout,
                     int cin, int k, float gain)
{
    n = spec(s, n, weight, 4, cout, cin, k, k, IMAGO_INIT_CONV_HE, gain);
    return spec(s, n, bias, 1, cout, 0, 0, 0, IMAGO_INIT_ZEROS, 0);
}

int imago_glam_specs(int c, int cl, int cg, int out_dim, imago_tensor_spec *s)
{
    int n = 0;
    /* smaller gains keep the attention maps O(1) on demo weights */
    n = spec(s, n, "glam.lc_conv.weight", 3, 1, 1, 3, 0, IMAGO_INIT_CONV_HE, 0.5f);
    n = conv_spec(s, n, "glam.ls_reduce.weight", "glam.ls_reduce.bias", cl, c, 1, 1.0f);
    n = conv_spec(s, n, "glam.ls_b1.weight", "glam.ls_b1.bias", cl, cl, 1, 0.5f);
    n = conv_spec(s, n, "glam.ls_d1.weight", "glam.ls_d1.bias", cl, cl, 3, 0.5f);
    n = conv_spec(s, n, "glam.ls_d2.weight", "glam.ls_d2.bias", cl, cl, 3, 0.5f);
    n = conv_spec(s, n, "glam.ls_d3.weight", "glam.ls_d3.bias", cl, cl, 3, 0.5f);
    n = conv_spec(s, n, "glam.ls_out.weight", "glam.ls_out.bias", 1, 4 * cl, 1, 0.1f);
    n = spec(s, n, "glam.gc_q.weight", 3, 1, 1, 3, 0, IMAGO_INIT_CONV_HE, 0.5f);
    n = spec(s, n, "glam.gc_k.weight", 3, 1, 1, 3, 0, IMAGO_INIT_CONV_HE, 0.5f);
    n = conv_spec(s, n, "glam.gs_q.weight", "glam.gs_q.bias", cg, c, 1, 0.1f);
    n = conv_spec(s, n, "glam.gs_k.weight", "glam.gs_k.bias", cg, c, 1, 0.1f);
    n = conv_spec(s, n, "glam.gs_v.weight", "glam.gs_v.bias", cg, c, 1, 1.0f);
    n = conv_spec(s, n, "glam.gs_out.weight", "glam.gs_out.bias", c, cg, 1, 0.1f);
    n = spec(s, n, "glam.fusion", 1, 3, 0, 0, 0, IMAGO_INIT_ZEROS, 0);
    n = spec(s, n, "glam.fc.weight", 2, out_dim, c, 0, 0, IMAGO_INIT_CONV_HE, 1.0f);
    n = spec(s, n, "glam.fc.bias", 1, out_dim, 0, 0, 0, IMAGO_INIT_ZEROS, 0);
    n = spec(s, n, "glam.bn.weight", 1, out_dim, 0, 0, 0, IMAGO_INIT_ONES, 1.0f);
    n = spec(s, n, "glam.bn.bias", 1, out_dim, 0, 0, 0, IMAGO_INIT_ZEROS, 0);
    n = spec(s, n, "glam.bn.running_mean", 1, out_dim, 0, 0, 0, IMAGO_INIT_ZEROS, 0);
    n = spec(s, n, "glam.bn.running_var", 1, out_dim, 0, 0, 0, IMAGO_INIT_ONES, 1.0f);
    return n;
}
