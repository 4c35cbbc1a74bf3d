/* index DBA and alpha-QE against a numpy implementation of the formulas
 * (tools/dba_qe_ref.py run with $IMAGO_PYTHON): the full DBA pass of
 * a reindex (two parameter sets), the online augmentation of a vector added
 * after the pass, and QE searches (two parameter sets), all to 1e-5. Also
 * checks in C that DBA off stores raw vectors and that QE changes results,
 * and that the exact self-kNN of the DBA pass (upper block triangle of
 * X X^T in 2048 x 2048 tiles) equals a brute force over several tiles. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "index/index.h"
#include "index/index_int.h"
#include "tap.h"
#include "testutil.h"

#define N 600
#define D 32

static unsigned long long rng = 0x2545F4914F6CDD1Dull;
static double nrand(void)
{
    return testutil_nrand(&rng);
}
static void normalize(float *v)
{
    double s = 0;
    for (int i = 0; i < D; i++)
        s += (double)v[i] * v[i];
    for (int i = 0; i < D; i++)
        v[i] = (float)(v[i] / sqrt(s));
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

static int dump_index(imago_index *ix, const int64_t *ids, const char *name)
{
    float *A = malloc((size_t)N * D * sizeof *A);
    imago_error err;
    imago_error_clear(&err);
    for (int i = 0; i < N; i++)
        if (imago_index_get_indexed_vector(ix, ids[i], A + (size_t)i * D, &err)) {
            tap_diag("indexed vector %d: %s", i, err.msg);
            free(A);
            return -1;
        }
    int rc = write_file(name, A, (size_t)N * D * sizeof *A);
    free(A);
    return rc;
}

static int qe_run(imago_index *ix, const float *Q, int nq, int n, double alpha, int k,
                  const char *tag)
{
    imago_index_search_params sp = imago_index_search_params_default();
    sp.k = k;
    sp.qe = 1;
    sp.qe_n = n;
    sp.qe_alpha = alpha;
    imago_index_hit *h = malloc((size_t)nq * k * sizeof *h);
    imago_error err;
    imago_error_clear(&err);
    if (imago_index_search(ix, Q, (size_t)nq, &sp, h, NULL, NULL, &err)) {
        tap_diag("qe search: %s", err.msg);
        free(h);
        return -1;
    }
    int64_t *ids = malloc((size_t)nq * k * sizeof *ids);
    float *sc = malloc((size_t)nq * k * sizeof *sc);
    for (int i = 0; i < nq * k; i++) {
        ids[i] = h[i].id;
        sc[i] = h[i].score;
    }
    char a[64], b[64];
    snprintf(a, sizeof a, "qe_%s_ids.i64", tag);
    snprintf(b, sizeof b, "qe_%s_scores.f32", tag);
    int rc = write_file(a, ids, (size_t)nq * k * sizeof *ids) |
             write_file(b, sc, (size_t)nq * k * sizeof *sc);
    free(h);
    free(ids);
    free(sc);
    return rc;
}

/* ix_knn_self_exact over 3 tiles (2048, 2048, 404 rows): every row's
 * neighbours and scores against a double-precision brute force. Scores are
 * compared (to 1e-4), not ids, so a near-tie that float rounding orders
 * differently does not fail the check; ids must be distinct, not the row
 * itself, and carry the score of their pair. */
static void check_knn_tiles(void)
{
    const size_t n = 4500;
    const int d = 16, k = 4;
    float *X = malloc(n * (size_t)d * sizeof *X);
    for (size_t i = 0; i < n; i++) {
        double s = 0;
        for (int c = 0; c < d; c++) {
            X[i * d + c] = (float)nrand();
            s += (double)X[i * d + c] * X[i * d + c];
        }
        for (int c = 0; c < d; c++)
            X[i * d + c] = (float)(X[i * d + c] / sqrt(s));
    }
    int64_t *nb = malloc(n * (size_t)k * sizeof *nb);
    float *sim = malloc(n * (size_t)k * sizeof *sim);
    imago_error err;
    imago_error_clear(&err);
    is_int(ix_knn_self_exact(X, n, d, k, nb, sim, &err), 0, "self kNN of %zu rows", n);
    size_t bad = 0, first_bad = 0;
    double *dots = malloc(n * sizeof *dots);
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < n; j++) {
            double s = 0;
            for (int c = 0; c < d; c++)
                s += (double)X[i * d + c] * X[j * d + c];
            dots[j] = j == i ? -INFINITY : s;
        }
        int wrong = 0;
        for (int m = 0; m < k; m++) {
            /* m-th best brute-force score: take the max and knock it out */
            size_t b = 0;
            for (size_t j = 1; j < n; j++)
                if (dots[j] > dots[b])
                    b = j;
            double best = dots[b];
            dots[b] = -INFINITY;
            int64_t l = nb[i * k + m];
            if (l < 0 || (size_t)l >= n || (size_t)l == i) {
                wrong = 1;
                continue;
            }
            double s = 0;
            for (int c = 0; c < d; c++)
                s += (double)X[i * d + c] * X[(size_t)l * d + c];
            for (int m2 = 0; m2 < m; m2++)
                wrong |= nb[i * k + m2] == l;
            wrong |= fabs(sim[i * k + m] - best) > 1e-4 || fabs(sim[i * k + m] - s) > 1e-4;
        }
        if (wrong && bad++ == 0)
            first_bad = i;
    }
    ok(bad == 0, "self kNN equals a brute force on all %zu rows (k=%d, 3 tiles)", n, k);
    if (bad)
        tap_diag("%zu rows differ, the first row %zu", bad, first_bad);
    free(dots);
    free(nb);
    free(sim);
    free(X);
}

int main(void)
{
    const char *py = getenv("IMAGO_PYTHON");
    const char *src = getenv("IMAGO_SOURCE_ROOT");
    if (!py || access(py, X_OK) != 0 || !src)
        tap_skip_all("IMAGO_PYTHON / IMAGO_SOURCE_ROOT not set (run through meson test)");
    char chk[600];
    snprintf(chk, sizeof chk, "%s -c 'import numpy' 2>/dev/null", py);
    if (system(chk) != 0)
        tap_skip_all("the reference python has no numpy");
    snprintf(dir, sizeof dir, "/tmp/imago_test_dba_XXXXXX");
    if (!mkdtemp(dir))
        tap_bail("mkdtemp");
    imago_log_setup(IMAGO_LOG_WARN, IMAGO_LOG_TEXT, stderr);

    /* clustered unit vectors: 60 centres, 10 noisy views each */
    static float X[N][D], C[60][D], Q[20][D], xnew[D];
    for (int c = 0; c < 60; c++) {
        for (int i = 0; i < D; i++)
            C[c][i] = (float)nrand();
        normalize(C[c]);
    }
    for (int n = 0; n < N; n++) {
        for (int i = 0; i < D; i++)
            X[n][i] = C[n % 60][i] + 0.35f * (float)nrand();
        normalize(X[n]);
    }
    for (int q = 0; q < 20; q++) {
        for (int i = 0; i < D; i++)
            Q[q][i] = C[(q * 7) % 60][i] + 0.4f * (float)nrand();
        normalize(Q[q]);
    }
    for (int i = 0; i < D; i++)
        xnew[i] = C[5][i] + 0.3f * (float)nrand();
    normalize(xnew);
    write_file("raw.f32", X, sizeof X);
    write_file("queries.f32", Q, sizeof Q);

    char db[300];
    snprintf(db, sizeof db, "%s/db", dir);
    imago_index_params p = imago_index_params_default();
    p.data_dir = db;
    p.model_fingerprint = "fp-dba";
    p.dim = D;
    p.dba = 0;
    imago_index *ix = NULL;
    imago_error err;
    imago_error_clear(&err);
    if (imago_index_open(&p, &ix, &err))
        tap_bail(err.msg);
    imago_index_item items[N];
    char names[N][16];
    int64_t ids[N];
    for (int n = 0; n < N; n++) {
        snprintf(names[n], 16, "x%d", n);
        items[n] = (imago_index_item){.external_id = names[n], .vector = X[n]};
    }
    is_int(imago_index_add(ix, items, N, ids, &err), 0, "add %d vectors", N);
    write_file("ids.i64", ids, sizeof ids);
    float v[D];
    imago_index_get_indexed_vector(ix, ids[3], v, &err);
    ok(memcmp(v, X[3], sizeof v) == 0, "DBA off: the index holds the raw vector");

    /* full DBA pass, defaults k = 2, beta = 1 */
    imago_index_reindex_params rp = imago_index_reindex_params_default();
    rp.dba = 1;
    is_int(imago_index_reindex(ix, &rp, &err), 0, "reindex with DBA (k=2, beta=1) %s", err.msg);
    imago_index_stats st;
    imago_index_stats_get(ix, &st, NULL);
    is_int(st.dba, 1, "stats report DBA on");
    dump_index(ix, ids, "dba_k2_b1.f32");
    imago_index_get_indexed_vector(ix, ids[3], v, &err);
    double moved = 0;
    for (int i = 0; i < D; i++)
        moved += fabs(v[i] - X[3][i]);
    ok(moved > 1e-3, "DBA changes the indexed vector (L1 change %.3f)", moved);
    float raw[D];
    imago_index_get_vector(ix, ids[3], raw, &err);
    ok(memcmp(raw, X[3], sizeof raw) == 0, "raw vector stays in the store");

    /* QE with defaults n = 2, alpha = 0 and with n = 3, alpha = 3 */
    qe_run(ix, &Q[0][0], 20, 2, 0.0, 10, "n2_a0");
    qe_run(ix, &Q[0][0], 20, 3, 3.0, 10, "n3_a3");
    /* QE changes the ranking somewhere */
    imago_index_search_params sp = imago_index_search_params_default();
    sp.k = 10;
    imago_index_hit h0[200], h1[200];
    imago_index_search(ix, &Q[0][0], 20, &sp, h0, NULL, NULL, &err);
    sp.qe = 1;
    imago_index_search(ix, &Q[0][0], 20, &sp, h1, NULL, NULL, &err);
    int differs = 0;
    for (int i = 0; i < 200; i++)
        differs |= h0[i].id != h1[i].id || fabsf(h0[i].score - h1[i].score) > 1e-6f;
    ok(differs, "QE changes scores/ranking");

    /* online augmentation of a new vector */
    imago_index_item it = {.external_id = "new", .vector = xnew};
    int64_t nid = 0;
    is_int(imago_index_add(ix, &it, 1, &nid, &err), 0, "add one vector after the pass");
    float aug[D];
    imago_index_get_indexed_vector(ix, nid, aug, &err);
    write_file("raw_new.f32", xnew, sizeof xnew);
    write_file("aug_new.f32", aug, sizeof aug);
    imago_index_delete(ix, nid, &err);

    /* second parameter set: k = 4, beta = 3 */
    rp.dba_k = 4;
    rp.dba_beta = 3.0;
    is_int(imago_index_reindex(ix, &rp, &err), 0, "reindex with DBA (k=4, beta=3)");
    dump_index(ix, ids, "dba_k4_b3.f32");
    imago_index_free(ix);

    /* reopen with the same settings: the snapshot carries the augmented vectors */
    p.dba = 1;
    p.dba_k = 4;
    p.dba_beta = 3.0;
    imago_error_clear(&err);
    ix = NULL;
    is_int(imago_index_open(&p, &ix, &err), 0, "reopen with DBA k=4 beta=3");
    if (ix) {
        dump_index(ix, ids, "dba_k4_b3_reopen.f32");
        imago_index_free(ix);
    }

    FILE *f;
    char path[400];
    snprintf(path, sizeof path, "%s/case.json", dir);
    f = fopen(path, "w");
    fprintf(f,
            "{\"n\": %d, \"dim\": %d,\n"
            " \"dba_runs\": [{\"file\": \"dba_k2_b1.f32\", \"k\": 2, \"beta\": 1},\n"
            "   {\"file\": \"dba_k4_b3.f32\", \"k\": 4, \"beta\": 3},\n"
            "   {\"file\": \"dba_k4_b3_reopen.f32\", \"k\": 4, \"beta\": 3}],\n"
            " \"online\": {\"index_before\": \"dba_k2_b1.f32\", \"raw_new\": \"raw_new.f32\",\n"
            "   \"aug_new\": \"aug_new.f32\", \"k\": 2, \"beta\": 1},\n"
            " \"qe_runs\": [\n"
            "   {\"index\": \"dba_k2_b1.f32\", \"queries\": \"queries.f32\", \"nq\": 20, \"k\": 10,"
            " \"n\": 2, \"alpha\": 0, \"hit_ids\": \"qe_n2_a0_ids.i64\","
            " \"hit_scores\": \"qe_n2_a0_scores.f32\"},\n"
            "   {\"index\": \"dba_k2_b1.f32\", \"queries\": \"queries.f32\", \"nq\": 20, \"k\": 10,"
            " \"n\": 3, \"alpha\": 3, \"hit_ids\": \"qe_n3_a3_ids.i64\","
            " \"hit_scores\": \"qe_n3_a3_scores.f32\"}]}\n",
            N, D);
    fclose(f);

    char cmd[1200];
    snprintf(cmd, sizeof cmd, "%s %s/tools/dba_qe_ref.py %s 1e-5 2>&1", py, src, dir);
    FILE *pp = popen(cmd, "r");
    char line[512];
    while (pp && fgets(line, sizeof line, pp)) {
        line[strcspn(line, "\n")] = 0;
        tap_diag("%s", line);
    }
    int st_py = pp ? pclose(pp) : -1;
    ok(st_py == 0, "C DBA / online DBA / QE equal the numpy formulas to 1e-5");

    check_knn_tiles();

    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        tap_diag("cleanup failed");
    return tap_done();
}
