/* The collection-learned PCA whitening (index/whiten.c) against numpy's
 * float64 eigh (tests/index/whiten_ref.py run with $IMAGO_PYTHON): mean,
 * eigenvalues and P = diag((lambda + eps)^-power) U_d^T (rows compared up to
 * their sign) and the applied L2N(P (x - m)), to 1e-5, for all components
 * and for d < D with power 0, 0.25 and 0.5. Also in C: the typed errors
 * (NaN, zero variance, too few rows, rank), force, the uniform sample. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "index.h"
#include "tap.h"

#define N 300
#define D 24

static unsigned long long rng = 0x9E3779B97F4A7C15ull;
static double urand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}
static double nrand(void)
{
    return sqrt(-2 * log(urand() + 1e-12)) * cos(2 * M_PI * urand());
}

static char dir[256];

static int write_file(const char *name, const void *data, size_t bytes)
{
    char path[400];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t w = fwrite(data, 1, bytes, f);
    fclose(f);
    return w == bytes ? 0 : -1;
}

/* Anisotropic data with a mean offset: x = A z + c, A a random matrix with
 * column scales 1/(1+j)^0.7 (a distinct spectrum), rank r (r <= D). */
static void make_data(float *X, size_t n, int r)
{
    static double A[D][D];
    for (int i = 0; i < D; i++)
        for (int j = 0; j < D; j++)
            A[i][j] = nrand() / pow(1.0 + j, 0.7);
    double c[D];
    for (int i = 0; i < D; i++)
        c[i] = 0.3 + 0.1 * nrand();
    for (size_t k = 0; k < n; k++) {
        double z[D];
        for (int j = 0; j < D; j++)
            z[j] = j < r ? nrand() : 0;
        for (int i = 0; i < D; i++) {
            double s = c[i];
            for (int j = 0; j < D; j++)
                s += A[i][j] * z[j];
            X[k * D + i] = (float)s;
        }
    }
}

/* imago_error keeps the first error: clear it before each call */
static int learn(const float *X, size_t n, const imago_whiten_params *p, imago_whiten **w,
                 imago_error *err)
{
    imago_error_clear(err);
    return imago_whiten_learn(X, n, D, p, w, err);
}

typedef struct wcase {
    const char *name;
    int dim;
    double power;
} wcase;

int main(void)
{
    const char *py = getenv("IMAGO_PYTHON");
    const char *src = getenv("IMAGO_SOURCE_ROOT");
    imago_log_setup(IMAGO_LOG_WARN, IMAGO_LOG_TEXT, stderr);
    static float X[N * D];
    make_data(X, N, D);
    imago_error err;
    imago_error_clear(&err);

    /* ---- errors -------------------------------------------------------- */
    imago_whiten *w = NULL;
    imago_whiten_params p = imago_whiten_params_default();
    static float Y[N * D];
    memcpy(Y, X, sizeof Y);
    Y[17 * D + 3] = NAN;
    is_int(learn(Y, N, &p, &w, &err), IMAGO_ERR_FORMAT, "a NaN is refused");
    ok(w == NULL && strstr(err.msg, "descriptor 17"), "the message names the row");
    Y[17 * D + 3] = INFINITY;
    is_int(learn(Y, N, &p, &w, &err), IMAGO_ERR_FORMAT, "an Inf is refused");
    for (size_t i = 0; i < N; i++)
        memcpy(Y + i * D, X, D * sizeof *X);
    is_int(learn(Y, N, &p, &w, &err), IMAGO_ERR_UNSUPPORTED,
           "zero variance is refused");
    ok(strstr(err.msg, "zero variance") != NULL, "the message says zero variance: %s", err.msg);
    is_int(learn(X, 1, &p, &w, &err), IMAGO_ERR_CONFLICT, "one row is refused");
    p.dim = 20;
    is_int(learn(X, 30, &p, &w, &err), IMAGO_ERR_CONFLICT,
           "30 rows for d = 20 (< 2 x d) refused");
    p.force = 1;
    is_int(learn(X, 30, &p, &w, &err), 0, "... and learned with force");
    imago_whiten_info info;
    if (w) {
        imago_whiten_get_info(w, &info);
        is_int(info.dim, 20, "forced: d = 20");
        imago_whiten_free(w);
        w = NULL;
    }
    p = imago_whiten_params_default();
    is_int(learn(X, 30, &p, &w, &err), IMAGO_ERR_CONFLICT,
           "default d = min(D, N-1) = 24 from 30 rows refused");
    p.power = 1.5;
    is_int(learn(X, N, &p, &w, &err), IMAGO_ERR_INVALID, "power 1.5 refused");
    p.power = NAN;
    is_int(learn(X, N, &p, &w, &err), IMAGO_ERR_INVALID, "power NaN refused");
    p = imago_whiten_params_default();
    p.dim = D + 1;
    is_int(learn(X, N, &p, &w, &err), IMAGO_ERR_INVALID, "dim > D refused");
    /* rank 5 data */
    make_data(Y, N, 5);
    p = imago_whiten_params_default();
    p.dim = 10;
    is_int(learn(Y, N, &p, &w, &err), IMAGO_ERR_UNSUPPORTED,
           "d = 10 on rank-5 data refused");
    p.dim = 0;
    is_int(learn(Y, N, &p, &w, &err), 0, "default d on rank-5 data");
    if (w) {
        imago_whiten_get_info(w, &info);
        is_int(info.dim, 5, "default d is the rank (5)");
        is_int(info.rank, 5, "rank reported");
        imago_whiten_free(w);
        w = NULL;
    }

    /* ---- the sample ---------------------------------------------------- */
    p = imago_whiten_params_default();
    p.dim = 8;
    p.sample = 100;
    imago_whiten *s1 = NULL, *s2 = NULL, *s3 = NULL;
    is_int(learn(X, N, &p, &s1, &err), 0, "learn on a sample of 100");
    is_int(learn(X, N, &p, &s2, &err), 0, "again");
    p.sample = 0;
    is_int(learn(X, N, &p, &s3, &err), 0, "learn on all rows");
    if (s1 && s2 && s3) {
        imago_whiten_info i1, i2, i3;
        imago_whiten_get_info(s1, &i1);
        imago_whiten_get_info(s2, &i2);
        imago_whiten_get_info(s3, &i3);
        is_int((int)i1.n_trained, 100, "trained on 100 rows");
        is_int((int)i1.n_rows, N, "of %d", N);
        is_int((int)i3.n_trained, N, "all rows: trained on %d", N);
        is_str(i1.fingerprint, i2.fingerprint, "the sample is deterministic (same fingerprint)");
        ok(strcmp(i1.fingerprint, i3.fingerprint) != 0, "the sample differs from all rows");
        ok(strlen(i1.fingerprint) == 32, "fingerprint is 32 hex digits");
    }
    imago_whiten_free(s1);
    imago_whiten_free(s2);
    imago_whiten_free(s3);

    /* ---- against numpy ------------------------------------------------- */
    if (!py || access(py, X_OK) != 0 || !src) {
        tap_skip(1, "IMAGO_PYTHON / IMAGO_SOURCE_ROOT not set (run through meson test)");
        return tap_done();
    }
    char chk[600];
    snprintf(chk, sizeof chk, "%s -c 'import numpy' 2>/dev/null", py);
    if (system(chk) != 0) {
        tap_skip(1, "the reference python has no numpy");
        return tap_done();
    }
    snprintf(dir, sizeof dir, "/tmp/imago_test_whiten_XXXXXX");
    if (!mkdtemp(dir))
        tap_bail("mkdtemp");
    write_file("X.f32", X, sizeof X);
    const wcase cases[] = {{"all_p025", 0, 0.25}, {"d10_p0", 10, 0.0},
                           {"d10_p025", 10, 0.25}, {"d10_p05", 10, 0.5},
                           {"d16_p05", 16, 0.5}};
    const int nc = (int)(sizeof cases / sizeof cases[0]);
    char json[4096];
    size_t jl = (size_t)snprintf(json, sizeof json, "{\"n\": %d, \"dim_in\": %d, \"cases\": [", N, D);
    for (int c = 0; c < nc; c++) {
        p = imago_whiten_params_default();
        p.dim = cases[c].dim;
        p.power = cases[c].power;
        w = NULL;
        is_int(learn(X, N, &p, &w, &err), 0, "learn %s", cases[c].name);
        if (!w)
            continue;
        imago_whiten_get_info(w, &info);
        char name[128];
        snprintf(name, sizeof name, "%s.mean.f64", cases[c].name);
        write_file(name, imago_whiten_mean(w), D * sizeof(double));
        snprintf(name, sizeof name, "%s.P.f64", cases[c].name);
        write_file(name, imago_whiten_projection(w), (size_t)info.dim * D * sizeof(double));
        snprintf(name, sizeof name, "%s.lambda.f64", cases[c].name);
        write_file(name, imago_whiten_eigenvalues(w), (size_t)info.dim * sizeof(double));
        float *Z = malloc((size_t)N * info.dim * sizeof *Z);
        imago_whiten_apply(w, X, N, Z, &err);
        snprintf(name, sizeof name, "%s.Y.f32", cases[c].name);
        write_file(name, Z, (size_t)N * info.dim * sizeof *Z);
        free(Z);
        jl += (size_t)snprintf(json + jl, sizeof json - jl,
                               "%s{\"name\": \"%s\", \"dim\": %d, \"power\": %.17g, \"eps\": %.17g}",
                               c ? ", " : "", cases[c].name, info.dim, info.power, info.eps);
        if (c == 0)
            is_int(info.dim, D, "all components: d = min(D, N-1) = %d", D);
        imago_whiten_free(w);
    }
    snprintf(json + jl, sizeof json - jl, "]}\n");
    write_file("case.json", json, strlen(json));
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "%s %s/tests/index/whiten_ref.py %s 1e-5 2>&1", py, src, dir);
    FILE *pp = popen(cmd, "r");
    char line[512];
    while (pp && fgets(line, sizeof line, pp)) {
        line[strcspn(line, "\n")] = 0;
        tap_diag("%s", line);
    }
    int st_py = pp ? pclose(pp) : -1;
    ok(st_py == 0, "mean, eigenvalues, P and L2N(P(x-m)) equal numpy float64 eigh to 1e-5");
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        tap_diag("cleanup failed");
    return tap_done();
}
