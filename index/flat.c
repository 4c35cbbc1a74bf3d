/* index/flat.c: imago's exact-search hot loop and the dense math of DBA and
 * alpha-QE. fp32 rows are scored with OpenBLAS (sgemv for one query, sgemm
 * for a batch); fp16 / bf16 rows with AVX-512 kernels (F16C / AVX512-BF16,
 * picked at run time, scalar fallback) parallelised with OpenMP; the exact
 * self-kNN of DBA; and the exact ranking of `imago eval` (imago_eval_rank).
 * The top k is selected with the heap of topk.c.
 */
#include <cblas.h>
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "index_int.h"

/* ---- precisions ---------------------------------------------------------- */

int ix_prec_parse(const char *s, int *out)
{
    if (!s || !*s || strcmp(s, "fp32") == 0)
        *out = IX_FP32;
    else if (strcmp(s, "fp16") == 0)
        *out = IX_FP16;
    else if (strcmp(s, "bf16") == 0)
        *out = IX_BF16;
    else
        return IMAGO_ERR_INVALID;
    return 0;
}

const char *ix_prec_name(int p)
{
    return p == IX_FP16 ? "fp16" : p == IX_BF16 ? "bf16" : "fp32";
}

size_t ix_prec_size(int p)
{
    return p == IX_FP32 ? 4 : 2;
}

static inline uint16_t f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);         /* round to nearest even */
    return (uint16_t)(u >> 16);
}

static inline float bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* IEEE half <-> float in software (round to nearest even); the hot loop
 * uses the AVX-512 conversion instead. */
static inline uint16_t f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) /* inf / nan */
        return (uint16_t)(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u : 0));
    if (ax >= 0x477ff000u) /* overflows half: inf */
        return (uint16_t)(sign | 0x7c00u);
    if (ax < 0x38800000u) { /* subnormal half or zero */
        if (ax < 0x33000000u)
            return (uint16_t)sign;
        uint32_t e = ax >> 23;
        uint32_t m = (ax & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126 - e; /* 13 mantissa bits + (113 - e) of denormalisation */
        uint32_t hm = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (hm & 1)))
            hm++;
        return (uint16_t)(sign | hm);
    }
    uint32_t r = ax + 0xfffu + ((ax >> 13) & 1u); /* round mantissa to 10 bits */
    return (uint16_t)(sign | ((r - 0x38000000u) >> 13));
}

static inline float f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu, x;
    if (e == 0) {
        if (m == 0) {
            x = sign;
        } else { /* subnormal */
            e = 113;
            while (!(m & 0x400u)) {
                m <<= 1;
                e--;
            }
            x = sign | (e << 23) | ((m & 0x3ffu) << 13);
        }
    } else if (e == 31) {
        x = sign | 0x7f800000u | (m << 13);
    } else {
        x = sign | ((e + 112) << 23) | (m << 13);
    }
    float f;
    memcpy(&f, &x, 4);
    return f;
}

void ix_to_prec(const float *src, int prec, size_t count, void *dst)
{
    if (prec == IX_FP32) {
        memcpy(dst, src, count * sizeof(float));
        return;
    }
    uint16_t *d = dst;
    for (size_t i = 0; i < count; i++)
        d[i] = prec == IX_BF16 ? f32_to_bf16(src[i]) : f32_to_f16(src[i]);
}

void ix_from_prec(const void *src, int prec, size_t count, float *dst)
{
    if (prec == IX_FP32) {
        memcpy(dst, src, count * sizeof(float));
        return;
    }
    const uint16_t *s = src;
    for (size_t i = 0; i < count; i++)
        dst[i] = prec == IX_BF16 ? bf16_to_f32(s[i]) : f16_to_f32(s[i]);
}

/* ---- half-precision dot kernels ------------------------------------------ */

static float dot_bf16_scalar(const uint16_t *r, const float *q, int d)
{
    float s = 0;
    for (int i = 0; i < d; i++)
        s += bf16_to_f32(r[i]) * q[i];
    return s;
}

static float dot_f16_scalar(const uint16_t *r, const float *q, int d)
{
    float s = 0;
    for (int i = 0; i < d; i++)
        s += f16_to_f32(r[i]) * q[i];
    return s;
}

__attribute__((target("avx512f,avx512bw,avx512bf16"))) static void
scores_bf16_avx512(const uint16_t *rows, size_t n, int d, const float *q, float *out)
{
    /* The query is rounded to bf16 once, pairs are multiplied with vdpbf16ps
     * (fp32 accumulation). Rows are processed 4 at a time to reuse q loads. */
    int d32 = d & ~31;
    __m512bh *qb = aligned_alloc(64, ((size_t)d32 / 32 + 1) * 64);
    for (int i = 0; i < d32; i += 32) {
        __m512 lo = _mm512_loadu_ps(q + i), hi = _mm512_loadu_ps(q + i + 16);
        qb[i / 32] = _mm512_cvtne2ps_pbh(hi, lo);
    }
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < n; r++) {
        const uint16_t *row = rows + r * (size_t)d;
        __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
        int i = 0;
        for (; i + 64 <= d32; i += 64) {
            __m512bh a0 = (__m512bh)_mm512_loadu_si512((const void *)(row + i));
            __m512bh a1 = (__m512bh)_mm512_loadu_si512((const void *)(row + i + 32));
            acc0 = _mm512_dpbf16_ps(acc0, a0, qb[i / 32]);
            acc1 = _mm512_dpbf16_ps(acc1, a1, qb[i / 32 + 1]);
        }
        for (; i < d32; i += 32) {
            __m512bh a0 = (__m512bh)_mm512_loadu_si512((const void *)(row + i));
            acc0 = _mm512_dpbf16_ps(acc0, a0, qb[i / 32]);
        }
        float s = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
        for (; i < d; i++)
            s += bf16_to_f32(row[i]) * q[i];
        out[r] = s;
    }
    free(qb);
}

__attribute__((target("avx512f"))) static void scores_f16_avx512(const uint16_t *rows, size_t n,
                                                                 int d, const float *q, float *out)
{
    int d16 = d & ~15;
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < n; r++) {
        const uint16_t *row = rows + r * (size_t)d;
        __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
        int i = 0;
        for (; i + 32 <= d16; i += 32) {
            __m512 a0 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(row + i)));
            __m512 a1 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(row + i + 16)));
            acc0 = _mm512_fmadd_ps(a0, _mm512_loadu_ps(q + i), acc0);
            acc1 = _mm512_fmadd_ps(a1, _mm512_loadu_ps(q + i + 16), acc1);
        }
        for (; i < d16; i += 16) {
            __m512 a0 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(row + i)));
            acc0 = _mm512_fmadd_ps(a0, _mm512_loadu_ps(q + i), acc0);
        }
        float s = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
        for (; i < d; i++)
            s += f16_to_f32(row[i]) * q[i];
        out[r] = s;
    }
}

static int cpu_bf16(void)
{
    static int v = -1;
    if (v < 0)
        v = __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw");
    return v;
}

static int cpu_avx512(void)
{
    static int v = -1;
    if (v < 0)
        v = __builtin_cpu_supports("avx512f");
    return v;
}

void ix_scores(const void *rows, int prec, size_t n, int d, const float *q, float *scores)
{
    if (n == 0)
        return;
    if (prec == IX_FP32) {
        /* sgemv takes int sizes: go in chunks that fit. */
        const size_t chunk = (size_t)1 << 24; /* rows per BLAS call (int sizes) */
        for (size_t off = 0; off < n; off += chunk) {
            size_t m = n - off < chunk ? n - off : chunk;
            cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)m, d, 1.0f,
                        (const float *)rows + off * (size_t)d, d, q, 1, 0.0f, scores + off, 1);
        }
        return;
    }
    const uint16_t *r = rows;
    if (prec == IX_BF16 && cpu_bf16()) {
        scores_bf16_avx512(r, n, d, q, scores);
        return;
    }
    if (prec == IX_FP16 && cpu_avx512()) {
        scores_f16_avx512(r, n, d, q, scores);
        return;
    }
    float *qr = NULL;
    if (prec == IX_BF16) {
        /* the query is rounded to bf16 as the AVX512-BF16 kernel and the
         * batched path do, so every path gives the same scores on any CPU */
        qr = imago_xmalloc((size_t)d * sizeof *qr);
        for (int i = 0; i < d; i++)
            qr[i] = bf16_to_f32(f32_to_bf16(q[i]));
        q = qr;
    }
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++)
        scores[i] = prec == IX_BF16 ? dot_bf16_scalar(r + i * (size_t)d, q, d)
                                    : dot_f16_scalar(r + i * (size_t)d, q, d);
    free(qr);
}

void ix_scores_batch(const void *rows, int prec, size_t n, int d, const float *q, size_t nq,
                     float *scores)
{
    if (n == 0 || nq == 0)
        return;
    if (nq == 1) {
        ix_scores(rows, prec, n, d, q, scores);
        return;
    }
    if (prec == IX_FP32) {
        const size_t chunk = (size_t)1 << 24; /* rows per BLAS call (int sizes) */
        for (size_t off = 0; off < n; off += chunk) {
            size_t m = n - off < chunk ? n - off : chunk;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)nq, d, 1.0f,
                        (const float *)rows + off * (size_t)d, d, q, d, 0.0f, scores + off * nq,
                        (int)nq);
        }
        return;
    }
    /* Half precision: convert blocks of rows to fp32 and use sgemm. bf16
     * queries are rounded to bf16 as the single-query kernel does, so a
     * batch gives the same scores as one query at a time. */
    float *qr = NULL;
    if (prec == IX_BF16) {
        qr = imago_xmalloc(nq * (size_t)d * sizeof *qr);
        for (size_t i = 0; i < nq * (size_t)d; i++)
            qr[i] = bf16_to_f32(f32_to_bf16(q[i]));
        q = qr;
    }
    const size_t blk = 1024;
    float *tmp = malloc(blk * (size_t)d * sizeof(float));
    if (!tmp) {
        float *col = imago_xmalloc(n * sizeof(float));
        for (size_t j = 0; j < nq; j++) {
            ix_scores(rows, prec, n, d, q + j * (size_t)d, col);
            for (size_t i = 0; i < n; i++)
                scores[i * nq + j] = col[i];
        }
        free(col);
        free(qr);
        return;
    }
    for (size_t off = 0; off < n; off += blk) {
        size_t m = n - off < blk ? n - off : blk;
        ix_from_prec((const uint16_t *)rows + off * (size_t)d, prec, m * (size_t)d, tmp);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)nq, d, 1.0f, tmp, d, q, d,
                    0.0f, scores + off * nq, (int)nq);
    }
    free(tmp);
    free(qr);
}

double ix_normalize(float *v, int d)
{
    double s = 0;
    for (int i = 0; i < d; i++)
        s += (double)v[i] * v[i];
    double nrm = sqrt(s);
    if (nrm > 0) {
        float inv = (float)(1.0 / nrm);
        for (int i = 0; i < d; i++)
            v[i] *= inv;
    }
    return nrm;
}

/* ---- kNN of a set with itself (DBA) ------------------------------------- */

/* S = X X^T is symmetric, so only its upper block triangle is computed: T x T
 * tiles (one sgemm each, the packing of both operands amortised over the
 * tile), every off-diagonal score going to the heap of its row and to the
 * heap of its column. Half the flops of a full N x N pass, no N x N matrix,
 * and the same result: the heaps keep a total order (score, then smaller
 * key), so the order of the pushes does not matter. nb/sim hold the heaps. */
int ix_knn_self_exact(const float *X, size_t n, int d, int k, int64_t *nb, float *sim,
                      imago_error *err)
{
    if (n == 0 || k <= 0)
        return 0;
    const size_t T = 2048;
    size_t t = n < T ? n : T;
    float *G = NULL;
    int rc = imago_alloc_array(t, t * sizeof(float), 0, (void **)&G, err);
    if (rc)
        return rc;
    ix_topk *h = imago_xmalloc(n * sizeof *h);
    for (size_t i = 0; i < n; i++)
        ix_topk_init(&h[i], k, sim + i * (size_t)k, nb + i * (size_t)k);
    for (size_t i0 = 0; i0 < n; i0 += T) {
        size_t mi = n - i0 < T ? n - i0 : T;
        for (size_t j0 = i0; j0 < n; j0 += T) {
            size_t mj = n - j0 < T ? n - j0 : T;
            /* G (mi x mj) = X[i0:i0+mi] X[j0:j0+mj]^T */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)mi, (int)mj, d, 1.0f,
                        X + i0 * (size_t)d, d, X + j0 * (size_t)d, d, 0.0f, G, (int)mj);
            for (size_t r = 0; r < mi; r++) {
                const float *row = G + r * mj;
                ix_topk *hr = &h[i0 + r];
                if (j0 == i0) {
                    /* diagonal tile: whole, so each row takes its own scores */
                    for (size_t c = 0; c < mj; c++)
                        if (c != r)
                            ix_topk_push(hr, row[c], (int64_t)(j0 + c));
                    continue;
                }
                ix_topk *hc = &h[j0];
                for (size_t c = 0; c < mj; c++) {
                    ix_topk_push(hr, row[c], (int64_t)(j0 + c));
                    ix_topk_push(&hc[c], row[c], (int64_t)(i0 + r));
                }
            }
        }
    }
    for (size_t i = 0; i < n; i++) {
        ix_topk_sort(&h[i]);
        for (int j = h[i].n; j < k; j++) {
            nb[i * (size_t)k + j] = -1;
            sim[i * (size_t)k + j] = 0.0f;
        }
    }
    free(h);
    imago_free_aligned(G);
    return 0;
}

static double weight(double s, double e)
{
    if (e == 0)
        return 1.0;
    return pow(s > 0 ? s : 0.0, e);
}

void ix_dba_apply(const float *X, size_t n, int d, const int64_t *nb, const float *sim, int k,
                  double beta, float *out)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float *o = out + i * (size_t)d;
        const float *x = X + i * (size_t)d;
        double *acc = malloc((size_t)d * sizeof *acc);
        for (int c = 0; c < d; c++)
            acc[c] = x[c];
        for (int j = 0; j < k; j++) {
            int64_t nj = nb[i * (size_t)k + j];
            if (nj < 0)
                continue;
            double w = weight(sim[i * (size_t)k + j], beta);
            const float *y = X + (size_t)nj * d;
            for (int c = 0; c < d; c++)
                acc[c] += w * y[c];
        }
        double s = 0;
        for (int c = 0; c < d; c++)
            s += acc[c] * acc[c];
        double inv = s > 0 ? 1.0 / sqrt(s) : 0.0;
        for (int c = 0; c < d; c++)
            o[c] = (float)(acc[c] * inv);
        free(acc);
    }
}

void ix_qe_apply(const float *q, int d, const float *nbrs, const float *sims, int m, double alpha,
                 float *out)
{
    double *acc = imago_xmalloc((size_t)d * sizeof *acc);
    for (int c = 0; c < d; c++)
        acc[c] = q[c];
    for (int j = 0; j < m; j++) {
        double w = weight(sims[j], alpha);
        for (int c = 0; c < d; c++)
            acc[c] += w * nbrs[(size_t)j * d + c];
    }
    double s = 0;
    for (int c = 0; c < d; c++)
        s += acc[c] * acc[c];
    double inv = s > 0 ? 1.0 / sqrt(s) : 0.0;
    for (int c = 0; c < d; c++)
        out[c] = (float)(acc[c] * inv);
    free(acc);
}

/* ---- ranking for evaluation ---------------------------------------------- */

imago_eval_rank_params imago_eval_rank_params_default(void)
{
    imago_eval_rank_params p = {0, 2, 1.0, 0, 2, 0.0};
    return p;
}

int imago_eval_rank(const float *db, size_t n, const float *queries, size_t nq, int d, size_t k,
                    const imago_eval_rank_params *pp, int64_t *ranks, imago_error *err)
{
    imago_eval_rank_params p = pp ? *pp : imago_eval_rank_params_default();
    if (d <= 0 || n == 0 || k == 0 || k > n || (p.dba && (p.dba_k < 1 || p.dba_k > IMAGO_DBA_K_MAX)) ||
        (p.qe && (p.qe_n < 1 || p.qe_n > IMAGO_QE_K_MAX || (size_t)p.qe_n > n)))
        return imago_error_set(err, IMAGO_ERR_INVALID, "eval rank: bad sizes or parameters");
    const float *X = db;
    float *A = NULL;
    int rc = 0;
    if (p.dba && n > 1) {
        int kk = p.dba_k < (int)n - 1 ? p.dba_k : (int)n - 1;
        int64_t *nb = imago_xmalloc(n * (size_t)kk * sizeof *nb);
        float *sim = imago_xmalloc(n * (size_t)kk * sizeof *sim);
        rc = ix_knn_self_exact(db, n, d, kk, nb, sim, err);
        if (rc == 0)
            rc = imago_alloc_array(n, (size_t)d * sizeof(float), 0, (void **)&A, err);
        if (rc == 0) {
            ix_dba_apply(db, n, d, nb, sim, kk, p.dba_beta, A);
            X = A;
        }
        free(nb);
        free(sim);
        if (rc)
            return rc;
    }
    const size_t qb = 64; /* queries per sgemm */
    float *S = NULL;
    rc = imago_alloc_array(n, qb * sizeof(float), 0, (void **)&S, err);
    float *hs = imago_xmalloc(k * sizeof *hs);
    int64_t *hk = imago_xmalloc(k * sizeof *hk);
    float *q2 = imago_xmalloc(qb * (size_t)d * sizeof *q2);
    float *nbr = imago_xmalloc((size_t)(p.qe_n > 0 ? p.qe_n : 1) * d * sizeof *nbr);
    for (size_t b = 0; rc == 0 && b < nq; b += qb) {
        size_t m = nq - b < qb ? nq - b : qb;
        const float *Q = queries + b * (size_t)d;
        ix_scores_batch(X, IX_FP32, n, d, Q, m, S);
        if (p.qe) {
            for (size_t j = 0; j < m; j++) {
                ix_topk t;
                float ts[IMAGO_QE_K_MAX];
                int64_t tk[IMAGO_QE_K_MAX];
                ix_topk_init(&t, p.qe_n, ts, tk);
                for (size_t i = 0; i < n; i++)
                    ix_topk_push(&t, S[i * m + j], (int64_t)i);
                ix_topk_sort(&t);
                for (int i = 0; i < t.n; i++)
                    memcpy(nbr + (size_t)i * d, X + (size_t)t.key[i] * d,
                           (size_t)d * sizeof(float));
                ix_qe_apply(Q + j * (size_t)d, d, nbr, t.score, t.n, p.qe_alpha,
                            q2 + j * (size_t)d);
            }
            ix_scores_batch(X, IX_FP32, n, d, q2, m, S);
        }
        for (size_t j = 0; j < m; j++) {
            ix_topk t;
            ix_topk_init(&t, (int)k, hs, hk);
            for (size_t i = 0; i < n; i++)
                ix_topk_push(&t, S[i * m + j], (int64_t)i);
            ix_topk_sort(&t);
            memcpy(ranks + (b + j) * k, t.key, k * sizeof *ranks);
        }
    }
    free(hs);
    free(hk);
    free(q2);
    free(nbr);
    imago_free_aligned(S);
    imago_free_aligned(A);
    return rc;
}
