/* index/whiten.c: the PCA whitening a collection learns from its own raw
 * descriptors (the "L2N -> PCA whitening -> L2N" step): float64 mean and
 * covariance over all rows or a uniform sample, LAPACK dsyevr, the
 * projection P = diag((lambda_j + eps)^-power) U_d^T, and its application
 * y = L2N(P (x - m)). Immutable once learned; shared by reference count.
 */
#include <cblas.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "index_int.h"

#define MOD "index"

/* LAPACK (Fortran ABI; the trailing lengths are the hidden string lengths). */
extern void dsyevr_(const char *jobz, const char *range, const char *uplo, const int *n, double *a,
                    const int *lda, const double *vl, const double *vu, const int *il,
                    const int *iu, const double *abstol, int *m, double *w, double *z,
                    const int *ldz, int *isuppz, double *work, const int *lwork, int *iwork,
                    const int *liwork, int *info, size_t l1, size_t l2, size_t l3);

/* Components whose eigenvalue is below this fraction of the largest count
 * as numerically zero (rank of the sample). */
#define RANK_TOL 1e-9
#define MAX_DIM_IN 16384

struct imago_whiten {
    _Atomic int refs;
    imago_whiten_info info;
    double *mean;   /* dim_in */
    double *P;      /* dim x dim_in, row-major */
    double *lambda; /* dim, descending */
    float *mean_f;  /* float copies for the application */
    float *P_f;
};

imago_whiten_params imago_whiten_params_default(void)
{
    imago_whiten_params p;
    memset(&p, 0, sizeof p);
    p.dim = 0;
    p.power = 0.25;
    p.sample = 200000;
    p.force = 0;
    p.eps = -1;
    p.seed = 0x5eed1234abcdull;
    return p;
}

/* ---- fingerprint (not cryptographic: identifies a learned whitening) ---- */

static uint64_t fp_mix(uint64_t h, uint64_t w)
{
    h ^= w + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

static void fp_bytes(uint64_t h[2], const void *data, size_t len)
{
    const unsigned char *p = data;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h[0] = fp_mix(h[0], w);
        h[1] = fp_mix(h[1], w ^ 0xc2b2ae3d27d4eb4full);
    }
    uint64_t t = 0;
    memcpy(&t, p + i, len - i);
    h[0] = fp_mix(h[0], t ^ len);
    h[1] = fp_mix(h[1], t ^ (len << 1));
}

static void set_fingerprint(imago_whiten *w)
{
    uint64_t h[2] = {0x243f6a8885a308d3ull, 0x13198a2e03707344ull};
    int32_t dims[2] = {w->info.dim_in, w->info.dim};
    fp_bytes(h, dims, sizeof dims);
    fp_bytes(h, &w->info.power, sizeof w->info.power);
    fp_bytes(h, &w->info.eps, sizeof w->info.eps);
    fp_bytes(h, w->mean, (size_t)w->info.dim_in * sizeof *w->mean);
    fp_bytes(h, w->P, (size_t)w->info.dim * w->info.dim_in * sizeof *w->P);
    snprintf(w->info.fingerprint, sizeof w->info.fingerprint, "%016llx%016llx",
             (unsigned long long)h[0], (unsigned long long)h[1]);
}

/* ---- construction ---------------------------------------------------------- */

static imago_whiten *whiten_alloc(int dim_in, int dim, imago_error *err)
{
    imago_whiten *w = imago_xcalloc(1, sizeof *w);
    atomic_init(&w->refs, 1);
    w->info.dim_in = dim_in;
    w->info.dim = dim;
    size_t pd = (size_t)dim * (size_t)dim_in;
    w->mean = malloc((size_t)dim_in * sizeof *w->mean);
    w->P = malloc(pd * sizeof *w->P);
    w->lambda = malloc((size_t)dim * sizeof *w->lambda);
    w->mean_f = malloc((size_t)dim_in * sizeof *w->mean_f);
    w->P_f = malloc(pd * sizeof *w->P_f);
    if (!w->mean || !w->P || !w->lambda || !w->mean_f || !w->P_f) {
        imago_whiten_free(w);
        imago_error_set(err, IMAGO_ERR_NOMEM, "whitening: out of memory (%d x %d)", dim, dim_in);
        return NULL;
    }
    return w;
}

static void finish_floats(imago_whiten *w)
{
    size_t pd = (size_t)w->info.dim * (size_t)w->info.dim_in;
    for (int j = 0; j < w->info.dim_in; j++)
        w->mean_f[j] = (float)w->mean[j];
    for (size_t i = 0; i < pd; i++)
        w->P_f[i] = (float)w->P[i];
}

int ix_whiten_from_parts(const imago_whiten_info *info, const double *mean, const double *P,
                         const double *lambda, imago_whiten **out, imago_error *err)
{
    if (info->dim_in < 1 || info->dim_in > MAX_DIM_IN || info->dim < 1 || info->dim > info->dim_in)
        return imago_error_set(err, IMAGO_ERR_FORMAT, "stored whitening has bad dims %d x %d",
                               info->dim, info->dim_in);
    imago_whiten *w = whiten_alloc(info->dim_in, info->dim, err);
    if (!w)
        return IMAGO_ERR_NOMEM;
    w->info = *info;
    memcpy(w->mean, mean, (size_t)info->dim_in * sizeof *mean);
    memcpy(w->P, P, (size_t)info->dim * info->dim_in * sizeof *P);
    memcpy(w->lambda, lambda, (size_t)info->dim * sizeof *lambda);
    finish_floats(w);
    char want[sizeof w->info.fingerprint];
    memcpy(want, info->fingerprint, sizeof want);
    want[sizeof want - 1] = '\0';
    set_fingerprint(w);
    if (strcmp(want, w->info.fingerprint) != 0) {
        imago_whiten_free(w);
        return imago_error_set(err, IMAGO_ERR_FORMAT,
                               "stored whitening %s does not match its fingerprint", want);
    }
    *out = w;
    return 0;
}

void ix_whiten_set_version(imago_whiten *w, int64_t version)
{
    w->info.version = version;
}

imago_whiten *ix_whiten_ref(imago_whiten *w)
{
    if (w)
        atomic_fetch_add(&w->refs, 1);
    return w;
}

void imago_whiten_free(imago_whiten *w)
{
    if (!w || atomic_fetch_sub(&w->refs, 1) != 1)
        return;
    free(w->mean);
    free(w->P);
    free(w->lambda);
    free(w->mean_f);
    free(w->P_f);
    free(w);
}

void imago_whiten_get_info(const imago_whiten *w, imago_whiten_info *out)
{
    *out = w->info;
}

const double *imago_whiten_mean(const imago_whiten *w)
{
    return w->mean;
}

const double *imago_whiten_projection(const imago_whiten *w)
{
    return w->P;
}

const double *imago_whiten_eigenvalues(const imago_whiten *w)
{
    return w->lambda;
}

/* ---- learning ---------------------------------------------------------------- */

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return (x > y) - (x < y);
}

static void progress(const imago_whiten_params *p, const char *stage, double frac)
{
    if (p->progress)
        p->progress(p->progress_user, stage, frac);
}

int imago_whiten_learn(const float *X, size_t n, int D, const imago_whiten_params *pp,
                       imago_whiten **out, imago_error *err)
{
    imago_whiten_params p = pp ? *pp : imago_whiten_params_default();
    if (!X || D < 1)
        return imago_error_set(err, IMAGO_ERR_INVALID, "whitening: no data");
    if (D > MAX_DIM_IN)
        return imago_error_set(err, IMAGO_ERR_UNSUPPORTED,
                               "whitening: descriptor dim %d is over %d", D, MAX_DIM_IN);
    if (!(p.power >= 0 && p.power <= 1))
        return imago_error_set(err, IMAGO_ERR_INVALID, "whitening: power must be in [0, 1]");
    if (p.dim < 0 || p.dim > D)
        return imago_error_set(err, IMAGO_ERR_INVALID, "whitening: dim %d out of 1..%d", p.dim, D);
    if (p.sample < 0)
        return imago_error_set(err, IMAGO_ERR_INVALID, "whitening: sample must be >= 0");
    if (isnan(p.eps) || isinf(p.eps))
        return imago_error_set(err, IMAGO_ERR_INVALID, "whitening: eps must be finite");
    if (n < 2)
        return imago_error_set(err, IMAGO_ERR_CONFLICT,
                               "whitening needs at least 2 descriptors, the collection has %zu", n);
    for (size_t i = 0; i < n * (size_t)D; i++)
        if (!isfinite(X[i]))
            return imago_error_set(err, IMAGO_ERR_FORMAT,
                                   "whitening: descriptor %zu has a value that is not finite",
                                   i / (size_t)D);

    /* the rows used: all, or a uniform sample without replacement */
    size_t m = n;
    size_t *rows = NULL;
    if (p.sample > 0 && (size_t)p.sample < n) {
        m = (size_t)p.sample;
        rows = imago_xmalloc(n * sizeof *rows);
        for (size_t i = 0; i < n; i++)
            rows[i] = i;
        uint64_t s = p.seed;
        for (size_t i = 0; i < m; i++) {
            size_t j = i + (size_t)(splitmix(&s) % (uint64_t)(n - i));
            size_t t = rows[i];
            rows[i] = rows[j];
            rows[j] = t;
        }
        qsort(rows, m, sizeof *rows, cmp_size);
    }
    if (m < 2) {
        free(rows);
        return imago_error_set(err, IMAGO_ERR_INVALID, "whitening: sample must be >= 2");
    }
    int dmax = m - 1 < (size_t)D ? (int)(m - 1) : D;
    if (p.dim > 0 && !p.force && (size_t)p.dim * 2 > m) {
        free(rows);
        return imago_error_set(err, IMAGO_ERR_CONFLICT,
                               "whitening to %d dimensions needs at least %d descriptors, %zu "
                               "are used: learn fewer dimensions or set force",
                               p.dim, 2 * p.dim, m);
    }

    size_t DD = (size_t)D * (size_t)D;
    double *C = NULL, *Z = NULL;
    int rc = imago_alloc_array(DD, sizeof(double), 1, (void **)&C, err);
    if (rc == 0)
        rc = imago_alloc_array(DD, sizeof(double), 0, (void **)&Z, err);
    if (rc) {
        free(rows);
        imago_free_aligned(C);
        return rc;
    }
    double *mean = imago_xcalloc((size_t)D, sizeof *mean);
    /* pass 1: the mean; and whether any row differs from the first (the
     * rounding of the mean would hide exactly equal rows from the trace) */
    const float *x0 = X + (rows ? rows[0] : 0) * (size_t)D;
    int varies = 0;
    for (size_t i = 0; i < m; i++) {
        const float *x = X + (rows ? rows[i] : i) * (size_t)D;
        varies = varies || memcmp(x, x0, (size_t)D * sizeof *x) != 0;
        for (int j = 0; j < D; j++)
            mean[j] += x[j];
    }
    for (int j = 0; j < D; j++)
        mean[j] /= (double)m;
    /* pass 2: the covariance of the centred rows, blocked (dsyrk, upper) */
    const size_t blk = 512;
    double *B = imago_xmalloc(blk * (size_t)D * sizeof *B);
    for (size_t b0 = 0; b0 < m; b0 += blk) {
        size_t nb = m - b0 < blk ? m - b0 : blk;
        for (size_t r = 0; r < nb; r++) {
            const float *x = X + (rows ? rows[b0 + r] : b0 + r) * (size_t)D;
            for (int j = 0; j < D; j++)
                B[r * (size_t)D + j] = (double)x[j] - mean[j];
        }
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, D, (int)nb, 1.0, B, D, 1.0, C, D);
        progress(&p, "covariance", (double)(b0 + nb) / (double)m);
    }
    free(B);
    free(rows);
    double trace = 0;
    for (int j = 0; j < D; j++) {
        for (int k = j; k < D; k++)
            C[(size_t)j * D + k] /= (double)(m - 1);
        trace += C[(size_t)j * D + j];
    }
    if (!varies || !(trace > 0)) {
        free(mean);
        imago_free_aligned(C);
        imago_free_aligned(Z);
        return imago_error_set(err, IMAGO_ERR_UNSUPPORTED,
                               "whitening: the descriptors have zero variance (all %zu equal)", m);
    }

    /* eigendecomposition: row-major upper = column-major lower */
    progress(&p, "eigendecomposition", 0);
    double *lam = imago_xmalloc((size_t)D * sizeof *lam);
    int *isuppz = imago_xmalloc(2 * (size_t)D * sizeof *isuppz);
    int n_ = D, lda = D, il = 1, iu = D, mfound = 0, info = 0, lwork = -1, liwork = -1, iwq = 0;
    double vl = 0, vu = 0, abstol = 0, wq = 0;
    dsyevr_("V", "A", "L", &n_, C, &lda, &vl, &vu, &il, &iu, &abstol, &mfound, lam, Z, &lda, isuppz,
            &wq, &lwork, &iwq, &liwork, &info, 1, 1, 1);
    double *work = NULL;
    int *iwork = NULL;
    if (info == 0) {
        lwork = (int)wq + 1;
        liwork = iwq + 1;
        work = imago_xmalloc((size_t)lwork * sizeof *work);
        iwork = imago_xmalloc((size_t)liwork * sizeof *iwork);
        dsyevr_("V", "A", "L", &n_, C, &lda, &vl, &vu, &il, &iu, &abstol, &mfound, lam, Z, &lda,
                isuppz, work, &lwork, iwork, &liwork, &info, 1, 1, 1);
    }
    free(work);
    free(iwork);
    free(isuppz);
    imago_free_aligned(C);
    if (info != 0 || mfound != D) {
        free(mean);
        free(lam);
        imago_free_aligned(Z);
        return imago_error_set(err, IMAGO_ERR_BACKEND,
                               "whitening: LAPACK dsyevr failed (info %d, %d of %d eigenvalues)",
                               info, mfound, D);
    }
    progress(&p, "eigendecomposition", 1);
    /* ascending -> descending; the rank of the sample */
    double lmax = lam[D - 1];
    int rank = 0;
    for (int j = D - 1; j >= 0 && lam[j] > RANK_TOL * lmax; j--)
        rank++;
    int d = p.dim;
    if (d == 0)
        d = dmax < rank ? dmax : rank;
    if (p.dim == 0 && !p.force && (size_t)d * 2 > m) {
        free(mean);
        free(lam);
        imago_free_aligned(Z);
        return imago_error_set(err, IMAGO_ERR_CONFLICT,
                               "whitening to all %d dimensions needs at least %d descriptors, %zu "
                               "are used: give a dim of at most %zu or set force",
                               d, 2 * d, m, m / 2);
    }
    if (d > rank && !p.force) {
        free(mean);
        free(lam);
        imago_free_aligned(Z);
        return imago_error_set(err, IMAGO_ERR_UNSUPPORTED,
                               "whitening: the descriptors span only %d dimensions (%d asked): "
                               "learn fewer dimensions or set force",
                               rank, d);
    }
    double eps = p.eps >= 0 ? p.eps : 1e-6 * lmax;
    imago_whiten *w = whiten_alloc(D, d, err);
    if (!w) {
        free(mean);
        free(lam);
        imago_free_aligned(Z);
        return IMAGO_ERR_NOMEM;
    }
    memcpy(w->mean, mean, (size_t)D * sizeof *mean);
    free(mean);
    for (int r = 0; r < d; r++) {
        int col = D - 1 - r; /* column-major: eigenvector col is Z[col*D .. +D] */
        const double *u = Z + (size_t)col * D;
        double l = lam[col] > 0 ? lam[col] : 0;
        w->lambda[r] = lam[col];
        double scale = pow(l + eps, -p.power);
        /* sign convention: the largest-magnitude component is positive */
        int arg = 0;
        for (int j = 1; j < D; j++)
            if (fabs(u[j]) > fabs(u[arg]))
                arg = j;
        if (u[arg] < 0)
            scale = -scale;
        for (int j = 0; j < D; j++)
            w->P[(size_t)r * D + j] = scale * u[j];
    }
    free(lam);
    imago_free_aligned(Z);
    w->info.power = p.power;
    w->info.eps = eps;
    w->info.n_trained = (int64_t)m;
    w->info.n_rows = (int64_t)n;
    w->info.rank = rank;
    w->info.created_at = (int64_t)time(NULL);
    finish_floats(w);
    set_fingerprint(w);
    *out = w;
    return 0;
}

/* ---- application --------------------------------------------------------------- */

int imago_whiten_apply(const imago_whiten *w, const float *X, size_t n, float *Y, imago_error *err)
{
    (void)err;
    const int D = w->info.dim_in, d = w->info.dim;
    const size_t blk = 1024;
    float *B = imago_xmalloc((n < blk ? (n ? n : 1) : blk) * (size_t)D * sizeof *B);
    for (size_t b0 = 0; b0 < n; b0 += blk) {
        size_t nb = n - b0 < blk ? n - b0 : blk;
        for (size_t r = 0; r < nb; r++)
            for (int j = 0; j < D; j++)
                B[r * (size_t)D + j] = X[(b0 + r) * (size_t)D + j] - w->mean_f[j];
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nb, d, D, 1.0f, B, D, w->P_f, D,
                    0.0f, Y + b0 * (size_t)d, d);
        for (size_t r = 0; r < nb; r++)
            ix_normalize(Y + (b0 + r) * (size_t)d, d);
    }
    free(B);
    return 0;
}
