/* index/index_build.c: what several index operations share: building an
 * in-memory core from one read of the store (whitening, full DBA pass),
 * adding one stored row to a core (online DBA), replaying the store's
 * changes after a core's sequence, and writing the snapshot. The contracts
 * are in index_int.h.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "index_int.h"

#define MOD "index"

ix_snap_meta ix_index_snap_meta(const imago_index *ix, const imago_whiten *wh, char *fp_buf)
{
    ix_snap_meta m = {ix->dim,      ix->prec,    ix->dba,        ix->dba_k,
                      ix->dba_beta, ix->factory, ix->fingerprint};
    if (wh) {
        imago_whiten_info wi;
        imago_whiten_get_info(wh, &wi);
        m.dim = wi.dim;
        snprintf(fp_buf, 72, "%.32s+w%.32s", ix->fingerprint, wi.fingerprint);
        m.fingerprint = fp_buf;
    }
    return m;
}

int ix_index_vectors(const imago_whiten *wh, const float *raw, size_t n, float **out,
                     imago_error *err)
{
    if (!wh) {
        *out = (float *)raw;
        return 0;
    }
    imago_whiten_info wi;
    imago_whiten_get_info(wh, &wi);
    float *Y = NULL;
    int rc = imago_alloc_array(n ? n : 1, (size_t)wi.dim * sizeof(float), 0, (void **)&Y, err);
    if (rc == 0)
        rc = imago_whiten_apply(wh, raw, n, Y, err);
    if (rc) {
        imago_free_aligned(Y);
        return rc;
    }
    *out = Y;
    return 0;
}

/* ---- DBA -------------------------------------------------------------- */

/* Neighbours of every row of X among X (self excluded): exact blocked BLAS
 * for Flat; FAISS HNSW for the approximate types on large sets. */
static int dba_full(const imago_index *ix, const float *X, size_t n, int dim, float **out,
                    imago_error *err)
{
    int k = ix->dba_k;
    int64_t *nb = imago_xmalloc((n ? n : 1) * (size_t)k * sizeof *nb);
    float *sim = imago_xmalloc((n ? n : 1) * (size_t)k * sizeof *sim);
    int rc = 0;
    double t0 = imago_now_s();
    if (ix_factory_is_flat(ix->factory) || n <= 50000) {
        rc = ix_knn_self_exact(X, n, dim, k, nb, sim, err);
    } else {
        /* approximate kNN graph: HNSW over the raw vectors, k+1 hits, drop self */
        int64_t *ids = imago_xmalloc(n * sizeof *ids);
        for (size_t i = 0; i < n; i++)
            ids[i] = (int64_t)i;
        ix_core *tmp = NULL;
        rc = ix_core_build(dim, IX_FP32, "HNSW32", ids, X, n, 0, &tmp, err);
        if (rc == 0)
            rc = ix_core_set_defaults(tmp, 0, 128, err);
        free(ids);
        const size_t blk = 4096;
        imago_index_hit *h = imago_xmalloc(blk * (size_t)(k + 1) * sizeof *h);
        for (size_t b = 0; rc == 0 && b < n; b += blk) {
            size_t m = n - b < blk ? n - b : blk;
            rc = ix_core_search(tmp, X + b * (size_t)dim, m, k + 1, NULL, 0, 128, h, NULL, err);
            for (size_t r = 0; rc == 0 && r < m; r++) {
                int w = 0;
                for (int j = 0; j <= k && w < k; j++) {
                    int64_t l = h[r * (size_t)(k + 1) + j].id;
                    if (l < 0 || (size_t)l == b + r)
                        continue;
                    nb[(b + r) * (size_t)k + w] = l;
                    sim[(b + r) * (size_t)k + w] = h[r * (size_t)(k + 1) + j].score;
                    w++;
                }
                for (; w < k; w++)
                    nb[(b + r) * (size_t)k + w] = -1;
            }
        }
        free(h);
        ix_core_free(tmp);
    }
    if (rc == 0) {
        float *A = NULL;
        rc = imago_alloc_array(n ? n : 1, (size_t)dim * sizeof(float), 0, (void **)&A, err);
        if (rc == 0) {
            ix_dba_apply(X, n, dim, nb, sim, k, ix->dba_beta, A);
            *out = A;
            IMAGO_INFO(MOD, "DBA pass over %zu vectors (k=%d, beta=%g) in %.2f s", n, k,
                       ix->dba_beta, imago_now_s() - t0);
        }
    }
    free(nb);
    free(sim);
    return rc;
}

/* Online DBA of one new (whitened when the core is) vector x (image id):
 * neighbours found in the current core (holding augmented vectors),
 * weighted with and summed over their un-augmented vectors (the stored raw
 * ones through the core's whitening), as a full pass would. */
static int dba_online(imago_index *ix, ix_core *c, ix_conn *conn, int64_t id, const float *x,
                      float *out, imago_error *err)
{
    int k = ix->dba_k;
    const int dim = c->dim;
    float *rawbuf = imago_xmalloc((size_t)ix->dim * sizeof *rawbuf);
    imago_index_hit *h = imago_xmalloc((size_t)k * sizeof *h);
    int cnt = 0;
    ix_filter f = {NULL, 0, NULL, NULL, id};
    int rc = ix_core_search(c, x, 1, k, &f, ix->nprobe, ix->ef, h, &cnt, err);
    float *nbr = imago_xmalloc((size_t)(k ? k : 1) * dim * sizeof *nbr);
    float *sim = imago_xmalloc((size_t)(k ? k : 1) * sizeof *sim);
    int m = 0;
    for (int j = 0; rc == 0 && j < cnt; j++) {
        float *dst = nbr + (size_t)m * dim;
        rc = ix_store_get_vector(conn, h[j].id, ix->dim, c->wh ? rawbuf : dst, err);
        if (rc == 0 && c->wh)
            rc = imago_whiten_apply(c->wh, rawbuf, 1, dst, err);
        if (rc)
            break;
        double s = 0;
        for (int t = 0; t < dim; t++)
            s += (double)x[t] * nbr[(size_t)m * dim + t];
        sim[m++] = (float)s;
    }
    if (rc == 0) {
        int64_t nb[IMAGO_DBA_K_MAX];
        for (int j = 0; j < m && j < IMAGO_DBA_K_MAX; j++)
            nb[j] = j + 1; /* rows 1..m of [x; nbr] */
        /* ix_dba_apply expects one matrix: x followed by its neighbours */
        float *M = imago_xmalloc((size_t)(m + 1) * dim * sizeof *M);
        memcpy(M, x, (size_t)dim * sizeof *M);
        memcpy(M + dim, nbr, (size_t)m * dim * sizeof *M);
        ix_dba_apply(M, 1, dim, nb, sim, m, ix->dba_beta, out);
        free(M);
    }
    free(h);
    free(nbr);
    free(sim);
    free(rawbuf);
    return rc;
}

/* ---- building, replay --------------------------------------------------- */

int ix_index_build(imago_index *ix, ix_conn *conn, const imago_whiten_params *learn,
                   imago_whiten **wh, ix_core **out, imago_error *err)
{
    int64_t *ids = NULL;
    float *X = NULL;
    size_t n = 0;
    int64_t seq = 0;
    double t0 = imago_now_s();
    int rc = ix_store_load_all(conn, ix->dim, &ids, &X, &n, &seq, err);
    if (rc)
        return rc;
    if (learn) {
        *wh = NULL;
        rc = imago_whiten_learn(X, n, ix->dim, learn, wh, err);
        if (rc == 0) {
            imago_whiten_info wi;
            imago_whiten_get_info(*wh, &wi);
            IMAGO_INFO(MOD,
                       "whitening learned: %d -> %d dims, power %g, from %lld of %zu rows "
                       "(%s), %.2f s",
                       wi.dim_in, wi.dim, wi.power, (long long)wi.n_trained, n, wi.fingerprint,
                       imago_now_s() - t0);
        }
    }
    float *W = X;
    if (rc == 0)
        rc = ix_index_vectors(*wh, X, n, &W, err);
    int dim = ix->dim;
    if (rc == 0 && *wh) {
        imago_whiten_info wi;
        imago_whiten_get_info(*wh, &wi);
        dim = wi.dim;
    }
    float *A = W;
    if (rc == 0 && ix->dba && n > 1) {
        rc = dba_full(ix, W, n, dim, &A, err);
        if (rc)
            A = NULL;
    }
    ix_core *c = NULL;
    if (rc == 0)
        rc = ix_core_build(dim, ix->prec, ix->factory, ids, A, n, ix->nprobe, &c, err);
    if (A != W)
        imago_free_aligned(A);
    if (W != X)
        imago_free_aligned(W);
    imago_free_aligned(X);
    free(ids);
    if (rc == 0)
        c->wh = ix_whiten_ref(*wh);
    if (rc && learn) {
        imago_whiten_free(*wh);
        *wh = NULL;
    }
    if (rc == 0)
        rc = ix_core_set_defaults(c, ix->nprobe, ix->ef, err);
    if (rc) {
        ix_core_free(c);
        return rc;
    }
    c->seq = seq;
    IMAGO_INFO(MOD, "index built from the store: %zu vectors, type %s%s, seq %lld, %.2f s", n,
               ix->factory, c->untrained ? " (untrained: exact search)" : "", (long long)seq,
               imago_now_s() - t0);
    *out = c;
    return 0;
}

typedef struct replay_ctx {
    imago_index *ix;
    ix_core *c;
    ix_conn *conn;
    int lock; /* take the write lock around mutations (core is live) */
    float *v, *w, *a;
    size_t n_applied;
} replay_ctx;

int ix_index_apply_add(imago_index *ix, ix_core *c, ix_conn *conn, int lock, int64_t id,
                       const float *raw, float *wbuf, float *aug, int64_t seq, imago_error *err)
{
    const float *v = raw;
    if (c->wh) {
        int wrc = imago_whiten_apply(c->wh, raw, 1, wbuf, err);
        if (wrc)
            return wrc;
        v = wbuf;
    }
    if (ix->dba && ix_core_live(c) > 0) {
        int rc = dba_online(ix, c, conn, id, v, aug, err);
        if (rc)
            return rc;
        v = aug;
    }
    if (lock)
        pthread_rwlock_wrlock(&ix->rw);
    int rc = ix_core_append(c, &id, v, 1, err);
    if (rc == 0)
        c->seq = seq;
    if (lock)
        pthread_rwlock_unlock(&ix->rw);
    return rc;
}

static int replay_one(void *user, int64_t id, int deleted, int64_t seq, imago_error *err)
{
    replay_ctx *r = user;
    if (deleted) {
        if (r->lock)
            pthread_rwlock_wrlock(&r->ix->rw);
        ix_core_tombstone(r->c, id);
        r->c->seq = seq;
        if (r->lock)
            pthread_rwlock_unlock(&r->ix->rw);
        r->n_applied++;
        return 0;
    }
    int rc = ix_store_get_vector(r->conn, id, r->ix->dim, r->v, err);
    if (rc)
        return rc;
    rc = ix_index_apply_add(r->ix, r->c, r->conn, r->lock, id, r->v, r->w, r->a, seq, err);
    r->n_applied++;
    return rc;
}

int ix_index_replay(imago_index *ix, ix_core *c, ix_conn *conn, int lock, size_t *n_applied,
                    imago_error *err)
{
    replay_ctx r = {ix, c, conn, lock, NULL, NULL, NULL, 0};
    r.v = imago_xmalloc((size_t)ix->dim * sizeof(float));
    r.w = imago_xmalloc((size_t)ix->dim * sizeof(float));
    r.a = imago_xmalloc((size_t)ix->dim * sizeof(float));
    int rc = ix_store_changes(conn, c->seq, replay_one, &r, err);
    free(r.v);
    free(r.w);
    free(r.a);
    if (n_applied)
        *n_applied = r.n_applied;
    return rc;
}

int ix_index_write_snapshot(imago_index *ix, imago_error *err)
{
    char fpb[72];
    ix_snap_meta m = ix_index_snap_meta(ix, ix->cur->wh, fpb);
    double t0 = imago_now_s();
    int rc = ix_snapshot_write(ix->cur, &m, ix->snap_path, err);
    if (rc == 0) {
        ix->snapshot_seq = ix->cur->seq;
        ix->changes_since_snap = 0;
        IMAGO_DEBUG(MOD, "snapshot at seq %lld written in %.3f s", (long long)ix->cur->seq,
                    imago_now_s() - t0);
    }
    return rc;
}
