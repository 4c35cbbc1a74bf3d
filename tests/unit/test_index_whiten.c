/* The collection-learned PCA whitening (index/whiten.c) against numpy's
 * float64 eigh (tools/whiten_ref.py run with $IMAGO_PYTHON): mean,
 * eigenvalues and P = diag((lambda + eps)^-power) U_d^T (rows compared up to
 * their sign) and the applied L2N(P (x - m)), to 1e-5, for all components
 * and for d < D with power 0, 0.25 and 0.5. Also in C: the typed errors
 * (NaN, zero variance, too few rows, rank), force, the uniform sample. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "index/index.h"
#include "tap.h"
#include "testutil.h"

#define N 300
#define D 24

static unsigned long long rng = 0x9E3779B97F4A7C15ull;
static double nrand(void)
{
    return testutil_nrand(&rng);
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

/* ---- the index with a learned whitening -------------------------------- */

static int copy_file(const char *from, const char *to)
{
    FILE *a = fopen(from, "rb"), *b = a ? fopen(to, "wb") : NULL;
    char buf[65536];
    size_t n;
    int rc = a && b ? 0 : -1;
    while (rc == 0 && (n = fread(buf, 1, sizeof buf, a)) > 0)
        if (fwrite(buf, 1, n, b) != n)
            rc = -1;
    if (a)
        fclose(a);
    if (b)
        fclose(b);
    return rc;
}

static void index_tests(const float *X)
{
    char d[256];
    snprintf(d, sizeof d, "/tmp/imago_test_whiten_ix_XXXXXX");
    if (!mkdtemp(d))
        tap_bail("mkdtemp");
    imago_index_params p = imago_index_params_default();
    p.data_dir = d;
    p.model_fingerprint = "fp-whiten";
    p.dim = D;
    imago_error err;
    imago_error_clear(&err);
    imago_index *ix = NULL;
    is_int(imago_index_open(&p, &ix, &err), 0, "open a collection");
    if (!ix)
        return;
    static imago_index_item items[N];
    static char names[N][16];
    static float U[N][D]; /* the stored (L2-normalised) raw descriptors */
    for (int i = 0; i < N; i++) {
        double s = 0;
        for (int j = 0; j < D; j++)
            s += (double)X[i * D + j] * X[i * D + j];
        for (int j = 0; j < D; j++)
            U[i][j] = (float)(X[i * D + j] / sqrt(s));
        snprintf(names[i], sizeof names[i], "img%d", i);
        memset(&items[i], 0, sizeof items[i]);
        items[i].external_id = names[i];
        items[i].vector = U[i];
    }
    static int64_t ids[N];
    is_int(imago_index_add(ix, items, N - 1, ids, &err), 0, "add %d images", N - 1);

    imago_whiten_params wp = imago_whiten_params_default();
    wp.dim = 8;
    wp.power = 0.5;
    imago_index_reindex_params rp = imago_index_reindex_params_default();
    rp.whiten = 1;
    rp.whiten_params = &wp;
    char snap[400], old_snap[420];
    imago_index_snapshot_path(d, snap, sizeof snap, NULL);
    snprintf(old_snap, sizeof old_snap, "%s.before", snap);
    imago_index_snapshot(ix, &err);
    copy_file(snap, old_snap);
    is_int(imago_index_reindex(ix, &rp, &err), 0, "reindex learning a whitening (d 8, power 0.5)");
    imago_index_stats st;
    imago_index_stats_get(ix, &st, NULL);
    is_int(st.dim, D, "the collection still takes %d-d model descriptors", D);
    is_int(st.index_dim, 8, "the index holds 8-d vectors");
    ok(st.has_whitening && st.whitening.version > 0 && st.whitening.n_trained == N - 1,
       "stats describe it (version %lld, trained on %lld rows)", (long long)st.whitening.version,
       (long long)st.whitening.n_trained);
    char fp1[40];
    snprintf(fp1, sizeof fp1, "%s", st.whitening.fingerprint);
    is_int(imago_index_verify(ix, &err), 0, "index = the stored vectors through the whitening");

    /* a search with a raw descriptor finds that image (whitened by the index) */
    imago_index_search_params sp = imago_index_search_params_default();
    sp.k = 3;
    imago_index_hit h[3];
    int cnt = 0;
    is_int(imago_index_search(ix, U[5], 1, &sp, h, &cnt, NULL, &err), 0, "search");
    ok(cnt == 3 && h[0].id == ids[5] && fabs(h[0].score - 1) < 1e-5,
       "a stored raw descriptor finds its image first (score %.6f)", h[0].score);
    /* an image added now is whitened on the way in */
    int64_t nid = 0;
    is_int(imago_index_add(ix, &items[N - 1], 1, &nid, &err), 0, "add one more");
    float v[D], ref[D];
    is_int(imago_index_get_indexed_vector(ix, nid, v, &err), 0, "its indexed vector");
    imago_index_free(ix);
    ix = NULL;

    /* restart: the store's whitening, the snapshot under it */
    is_int(imago_index_open(&p, &ix, &err), 0, "reopen");
    if (!ix)
        return;
    imago_index_stats_get(ix, &st, NULL);
    ok(st.has_whitening && strcmp(st.whitening.fingerprint, fp1) == 0 && st.index_dim == 8,
       "the whitening survives the restart (same fingerprint)");
    ok(st.snapshot_seq == st.seq, "the snapshot under it was loaded");
    is_int(imago_index_verify(ix, &err), 0, "verify after restart");
    imago_index_free(ix);
    ix = NULL;

    /* a crash after the commit and before the new snapshot: the old snapshot
     * (raw vectors) is refused and the index rebuilt under the new whitening */
    copy_file(old_snap, snap);
    is_int(imago_index_open(&p, &ix, &err), 0, "reopen with the pre-whitening snapshot");
    if (!ix)
        return;
    imago_index_stats_get(ix, &st, NULL);
    ok(st.index_dim == 8 && strcmp(st.whitening.fingerprint, fp1) == 0,
       "rebuilt under the new whitening, not the old snapshot");
    is_int(imago_index_verify(ix, &err), 0, "verify after the rebuild");
    is_int(imago_index_get_indexed_vector(ix, nid, ref, &err), 0, "indexed vector after rebuild");
    double dv = 0;
    for (int j = 0; j < 8; j++)
        dv = fmax(dv, fabs(v[j] - ref[j]));
    ok(dv < 1e-5, "an image added after the learning got the same whitened vector (%.2g)", dv);

    /* DBA on top keeps the whitening */
    rp = imago_index_reindex_params_default();
    rp.dba = 1;
    is_int(imago_index_reindex(ix, &rp, &err), 0, "reindex with DBA, whitening kept");
    imago_index_stats_get(ix, &st, NULL);
    ok(st.dba && st.index_dim == 8 && strcmp(st.whitening.fingerprint, fp1) == 0,
       "DBA over the whitened vectors");
    sp.qe = 1;
    is_int(imago_index_search(ix, U[5], 1, &sp, h, &cnt, NULL, &err), 0, "QE search");
    ok(cnt == 3 && h[0].id == ids[5], "QE + DBA + whitening finds the image first");

    /* removal: back to the raw descriptors */
    rp = imago_index_reindex_params_default();
    rp.whiten = 0;
    rp.dba = 0;
    is_int(imago_index_reindex(ix, &rp, &err), 0, "reindex removing the whitening");
    imago_index_stats_get(ix, &st, NULL);
    ok(!st.has_whitening && st.index_dim == D, "index dim back to %d", D);
    is_int(imago_index_get_indexed_vector(ix, ids[7], v, &err), 0, "indexed vector");
    ok(memcmp(v, U[7], sizeof v) == 0, "the index holds the raw vector again");
    imago_index_free(ix);
    ix = NULL;
    is_int(imago_index_open(&p, &ix, &err), 0, "reopen");
    if (ix) {
        imago_index_stats_get(ix, &st, NULL);
        ok(!st.has_whitening && st.index_dim == D, "the removal survives the restart");
        /* a too-small collection is refused, the index untouched */
        wp = imago_whiten_params_default();
        wp.dim = 200;
        rp = imago_index_reindex_params_default();
        rp.whiten = 1;
        rp.whiten_params = &wp;
        imago_error_clear(&err);
        is_int(imago_index_reindex(ix, &rp, &err), IMAGO_ERR_INVALID, "d 200 > D refused");
        wp.dim = 20;
        wp.sample = 30;
        imago_error_clear(&err);
        is_int(imago_index_reindex(ix, &rp, &err), IMAGO_ERR_CONFLICT,
               "d 20 from a sample of 30 rows refused");
        imago_index_stats_get(ix, &st, NULL);
        ok(!st.has_whitening && st.index_dim == D, "... and nothing changed");
        imago_index_free(ix);
    }
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", d);
    if (system(cmd) != 0)
        tap_diag("cleanup failed");
}

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
    is_int(learn(Y, N, &p, &w, &err), IMAGO_ERR_UNSUPPORTED, "zero variance is refused");
    ok(strstr(err.msg, "zero variance") != NULL, "the message says zero variance: %s", err.msg);
    is_int(learn(X, 1, &p, &w, &err), IMAGO_ERR_CONFLICT, "one row is refused");
    p.dim = 20;
    is_int(learn(X, 30, &p, &w, &err), IMAGO_ERR_CONFLICT, "30 rows for d = 20 (< 2 x d) refused");
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
    is_int(learn(Y, N, &p, &w, &err), IMAGO_ERR_UNSUPPORTED, "d = 10 on rank-5 data refused");
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

    index_tests(X);

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
    const wcase cases[] = {{"all_p025", 0, 0.25},
                           {"d10_p0", 10, 0.0},
                           {"d10_p025", 10, 0.25},
                           {"d10_p05", 10, 0.5},
                           {"d16_p05", 16, 0.5}};
    const int nc = (int)(sizeof cases / sizeof cases[0]);
    char json[4096];
    size_t jl =
        (size_t)snprintf(json, sizeof json, "{\"n\": %d, \"dim_in\": %d, \"cases\": [", N, D);
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
        jl +=
            (size_t)snprintf(json + jl, sizeof json - jl,
                             "%s{\"name\": \"%s\", \"dim\": %d, \"power\": %.17g, \"eps\": %.17g}",
                             c ? ", " : "", cases[c].name, info.dim, info.power, info.eps);
        if (c == 0)
            is_int(info.dim, D, "all components: d = min(D, N-1) = %d", D);
        imago_whiten_free(w);
    }
    snprintf(json + jl, sizeof json - jl, "]}\n");
    write_file("case.json", json, strlen(json));
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "%s %s/tools/whiten_ref.py %s 1e-5 2>&1", py, src, dir);
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
