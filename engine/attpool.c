/* The AP-GeM and GLAP poolings (see attpool.h for the formulas) on fp32
 * NHWC maps: OpenMP over channel blocks, double accumulators for AP-GeM's
 * weighted sums, one OpenBLAS product for GLAP's K weighted means.
 */
#include "attpool.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#define EPS 1e-6

static double powp(double t, double p)
{
    return p == 3.0 ? t * t * t : pow(t, p);
}

void imago_apgem_pool(const float *x, const float *a, int n, int hw, int c, float p, int threads,
                      float *out)
{
    if (threads <= 0)
        threads = omp_get_max_threads();
    const double pp = p;
    for (int img = 0; img < n; img++) {
        const float *xi = x + (size_t)img * hw * c;
        const float *ai = a + (size_t)img * hw;
        double asum = 0;
        for (int i = 0; i < hw; i++)
            asum += ai[i];
        double den = asum > EPS ? asum : EPS;
        float *o = out + (size_t)img * c;
#pragma omp parallel for num_threads(threads) schedule(static)
        for (int c0 = 0; c0 < c; c0 += 64) {
            int c1 = c0 + 64 < c ? c0 + 64 : c;
            double acc[64] = {0};
            for (int i = 0; i < hw; i++) {
                const float *row = xi + (size_t)i * c;
                double w = ai[i];
                for (int ch = c0; ch < c1; ch++) {
                    double t = row[ch] > (float)EPS ? row[ch] : EPS;
                    acc[ch - c0] += w * powp(t, pp);
                }
            }
            for (int ch = c0; ch < c1; ch++)
                o[ch] = (float)pow(acc[ch - c0] / den, 1.0 / pp);
        }
    }
}

/* sum_k L2N(v_k) (in double, into v: c entries), then the embedding */
static void finish_one(const float *vk, int k, int c, const float *fc_w, const float *fc_b,
                       int fc_out, double *v, float *out)
{
    memset(v, 0, (size_t)c * sizeof(double));
    for (int j = 0; j < k; j++) {
        const float *vj = vk + (size_t)j * c;
        double nrm = 0;
        for (int ch = 0; ch < c; ch++)
            nrm += (double)vj[ch] * vj[ch];
        double inv = 1.0 / (sqrt(nrm) + 1e-6);
        for (int ch = 0; ch < c; ch++)
            v[ch] += vj[ch] * inv;
    }
    if (!fc_w) {
        for (int ch = 0; ch < c; ch++)
            out[ch] = (float)v[ch];
        return;
    }
    for (int r = 0; r < fc_out; r++) {
        const float *row = fc_w + (size_t)r * c;
        double acc = fc_b ? fc_b[r] : 0.0;
        for (int ch = 0; ch < c; ch++)
            acc += (double)row[ch] * v[ch];
        out[r] = (float)acc;
    }
}

void imago_glap_finish(const float *vk, int n, int k, int c, const float *fc_w, const float *fc_b,
                       int fc_out, float *out)
{
    double *v = imago_xmalloc((size_t)c * sizeof(double));
    for (int img = 0; img < n; img++)
        finish_one(vk + (size_t)img * k * c, k, c, fc_w, fc_b, fc_out, v,
                   out + (size_t)img * (fc_w ? fc_out : c));
    free(v);
}

int imago_glap_pool(const float *x, const float *s, int n, int hw, int c, int k, float p,
                    const float *fc_w, const float *fc_b, int fc_out, int threads, float *out,
                    float *vk, imago_error *err)
{
    if (hw < 1 || c < 1 || k < 1)
        return imago_error_set(err, IMAGO_ERR_INVALID, "GLAP pooling of an empty map");
    if (threads <= 0)
        threads = omp_get_max_threads();
    float *xp = NULL, *A = NULL, *V = NULL;
    double *v = NULL;
    int rc;
    if ((rc = imago_alloc_array((size_t)hw, (size_t)c * sizeof(float), 0, (void **)&xp, err)) ||
        (rc = imago_alloc_array((size_t)hw, (size_t)k * sizeof(float), 0, (void **)&A, err)) ||
        (rc = imago_alloc_array((size_t)k, (size_t)c * sizeof(float), 0, (void **)&V, err)) ||
        (rc = imago_alloc_array((size_t)c, sizeof(double), 1, (void **)&v, err)))
        goto done;
    const double pp = p;
    for (int img = 0; img < n; img++) {
        const float *xi = x + (size_t)img * hw * c;
        const float *si = s + (size_t)img * hw * k;
        /* softmax of each map over the hw locations (A is hw x k, like S) */
        for (int j = 0; j < k; j++) {
            float mx = si[j];
            for (int i = 1; i < hw; i++)
                mx = si[(size_t)i * k + j] > mx ? si[(size_t)i * k + j] : mx;
            double sum = 0;
            for (int i = 0; i < hw; i++) {
                double e = exp((double)si[(size_t)i * k + j] - mx);
                A[(size_t)i * k + j] = (float)e;
                sum += e;
            }
            for (int i = 0; i < hw; i++)
                A[(size_t)i * k + j] = (float)(A[(size_t)i * k + j] / sum);
        }
#pragma omp parallel for num_threads(threads) schedule(static)
        for (int i = 0; i < hw; i++)
            for (int ch = 0; ch < c; ch++) {
                float t = xi[(size_t)i * c + ch];
                xp[(size_t)i * c + ch] = (float)powp(t > (float)EPS ? t : EPS, pp);
            }
        /* V = A^T Xp: k x c */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, k, c, hw, 1.0f, A, k, xp, c, 0.0f, V,
                    c);
        for (int j = 0; j < k; j++) {
            float *vj = V + (size_t)j * c;
            for (int ch = 0; ch < c; ch++)
                vj[ch] = vj[ch] > 0.0f ? (float)pow(vj[ch], 1.0 / pp) : 0.0f;
            if (vk)
                memcpy(vk + ((size_t)img * k + j) * c, vj, (size_t)c * sizeof(float));
        }
        finish_one(V, k, c, fc_w, fc_b, fc_out, v, out + (size_t)img * (fc_w ? fc_out : c));
    }
done:
    imago_free_aligned(xp);
    imago_free_aligned(A);
    imago_free_aligned(V);
    imago_free_aligned(v);
    return rc;
}
