/* index/index.c: the public index API: opening a collection (fingerprint
 * check, snapshot load + replay, or rebuild), adds/deletes (commit, then the
 * in-memory update), search with filters and alpha-QE, online and full DBA,
 * reindex/compaction with an atomic swap, snapshots, and the jobs API.
 *
 * DESIGN (threads): `wmu` serialises every writer (store writes, core
 * mutation, snapshot, swap). The core is only mutated by a thread holding
 * wmu, so a writer may read it without the rwlock; it takes the write side
 * of `rw` only around the mutation itself. Searches hold the read side for
 * the whole search (core pointer and contents stay valid). The rwlock
 * prefers writers so a steady search load cannot starve ingest.
 * A reindex builds the new core outside wmu from one read transaction at
 * sequence S, then takes wmu, replays the rows changed after S, and swaps.
 */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "index_int.h"

#define MOD "index"

struct imago_index {
    char *data_dir, *fingerprint, *snap_path;
    char factory[64];
    int dim, prec;
    int dba, dba_k;
    double dba_beta;
    int qe, qe_n;
    double qe_alpha;
    int nprobe, ef;
    long snapshot_interval;
    int snapshot_on_close;
    ix_store *st;
    pthread_mutex_t wmu;
    pthread_rwlock_t rw;
    ix_core *cur;
    int64_t store_seq;    /* last committed sequence (writer) */
    int64_t purge_seq;    /* snapshots older than this are invalid */
    int64_t snapshot_seq; /* last snapshot written/loaded (-1 none) */
    long changes_since_snap;
};

imago_index_params imago_index_params_default(void)
{
    imago_index_params p;
    memset(&p, 0, sizeof p);
    p.factory = "Flat";
    p.precision = "fp32";
    p.durability = "normal";
    p.dba_k = 2;
    p.dba_beta = 1.0;
    p.qe_n = 2;
    p.qe_alpha = 0.0;
    p.nprobe = 32;
    p.ef_search = 128;
    p.snapshot_interval = 10000;
    p.snapshot_on_close = 1;
    return p;
}

imago_index_search_params imago_index_search_params_default(void)
{
    imago_index_search_params s;
    memset(&s, 0, sizeof s);
    s.k = 10;
    s.qe = -1;
    s.qe_alpha = -1.0;
    return s;
}

imago_index_reindex_params imago_index_reindex_params_default(void)
{
    imago_index_reindex_params r;
    memset(&r, 0, sizeof r);
    r.dba = -1;
    r.dba_beta = -1.0;
    return r;
}

int imago_index_snapshot_path(const char *data_dir, char *buf, size_t len, imago_error *err)
{
    int n = snprintf(buf, len, "%s/index.snap", data_dir);
    if (n < 0 || (size_t)n >= len)
        return imago_error_set(err, IMAGO_ERR_INVALID, "snapshot path too long");
    return 0;
}

static ix_snap_meta snap_meta(const imago_index *ix)
{
    ix_snap_meta m = {ix->dim,      ix->prec,    ix->dba,        ix->dba_k,
                      ix->dba_beta, ix->factory, ix->fingerprint};
    return m;
}

/* ---- DBA -------------------------------------------------------------- */

/* Neighbours of every row of X among X (self excluded): exact blocked BLAS
 * for Flat; FAISS HNSW for the approximate types on large sets. */
static int dba_full(const imago_index *ix, const float *X, size_t n, float **out, imago_error *err)
{
    int k = ix->dba_k;
    int64_t *nb = imago_xmalloc((n ? n : 1) * (size_t)k * sizeof *nb);
    float *sim = imago_xmalloc((n ? n : 1) * (size_t)k * sizeof *sim);
    int rc = 0;
    double t0 = imago_now_s();
    if (ix_factory_is_flat(ix->factory) || n <= 50000) {
        rc = ix_knn_self_exact(X, n, ix->dim, k, nb, sim, err);
    } else {
        /* approximate kNN graph: HNSW over the raw vectors, k+1 hits, drop self */
        int64_t *ids = imago_xmalloc(n * sizeof *ids);
        for (size_t i = 0; i < n; i++)
            ids[i] = (int64_t)i;
        ix_core *tmp = NULL;
        rc = ix_core_build(ix->dim, IX_FP32, "HNSW32", ids, X, n, 0, &tmp, err);
        if (rc == 0)
            rc = ix_core_set_defaults(tmp, 0, 128, err);
        free(ids);
        const size_t blk = 4096;
        imago_index_hit *h = imago_xmalloc(blk * (size_t)(k + 1) * sizeof *h);
        for (size_t b = 0; rc == 0 && b < n; b += blk) {
            size_t m = n - b < blk ? n - b : blk;
            rc = ix_core_search(tmp, X + b * (size_t)ix->dim, m, k + 1, NULL, 0, 128, h, NULL, err);
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
        rc = imago_alloc_array(n ? n : 1, (size_t)ix->dim * sizeof(float), 0, (void **)&A, err);
        if (rc == 0) {
            ix_dba_apply(X, n, ix->dim, nb, sim, k, ix->dba_beta, A);
            *out = A;
            IMAGO_INFO(MOD, "DBA pass over %zu vectors (k=%d, beta=%g) in %.2f s", n, k,
                       ix->dba_beta, imago_now_s() - t0);
        }
    }
    free(nb);
    free(sim);
    return rc;
}

/* Online DBA of one new raw vector x (image id): neighbours found in the
 * current core (holding augmented vectors), weighted with and summed over
 * their raw stored vectors, as a full pass would. */
static int dba_online(imago_index *ix, ix_core *c, ix_conn *conn, int64_t id, const float *x,
                      float *out, imago_error *err)
{
    int k = ix->dba_k;
    imago_index_hit *h = imago_xmalloc((size_t)k * sizeof *h);
    int cnt = 0;
    ix_filter f = {NULL, 0, NULL, NULL, id};
    int rc = ix_core_search(c, x, 1, k, &f, ix->nprobe, ix->ef, h, &cnt, err);
    float *nbr = imago_xmalloc((size_t)(k ? k : 1) * ix->dim * sizeof *nbr);
    float *sim = imago_xmalloc((size_t)(k ? k : 1) * sizeof *sim);
    int m = 0;
    for (int j = 0; rc == 0 && j < cnt; j++) {
        rc = ix_store_get_vector(conn, h[j].id, ix->dim, nbr + (size_t)m * ix->dim, err);
        if (rc)
            break;
        double s = 0;
        for (int t = 0; t < ix->dim; t++)
            s += (double)x[t] * nbr[(size_t)m * ix->dim + t];
        sim[m++] = (float)s;
    }
    if (rc == 0) {
        int64_t nb[IMAGO_DBA_K_MAX];
        for (int j = 0; j < m && j < IMAGO_DBA_K_MAX; j++)
            nb[j] = j + 1; /* rows 1..m of [x; nbr] */
        /* ix_dba_apply expects one matrix: x followed by its neighbours */
        float *M = imago_xmalloc((size_t)(m + 1) * ix->dim * sizeof *M);
        memcpy(M, x, (size_t)ix->dim * sizeof *M);
        memcpy(M + ix->dim, nbr, (size_t)m * ix->dim * sizeof *M);
        ix_dba_apply(M, 1, ix->dim, nb, sim, m, ix->dba_beta, out);
        free(M);
    }
    free(h);
    free(nbr);
    free(sim);
    return rc;
}

/* ---- building, replay --------------------------------------------------- */

static int build_from_store(imago_index *ix, ix_conn *conn, ix_core **out, imago_error *err)
{
    int64_t *ids = NULL;
    float *X = NULL;
    size_t n = 0;
    int64_t seq = 0;
    double t0 = imago_now_s();
    int rc = ix_store_load_all(conn, ix->dim, &ids, &X, &n, &seq, err);
    if (rc)
        return rc;
    float *A = X;
    if (ix->dba && n > 1) {
        rc = dba_full(ix, X, n, &A, err);
        if (rc)
            A = NULL;
    }
    ix_core *c = NULL;
    if (rc == 0)
        rc = ix_core_build(ix->dim, ix->prec, ix->factory, ids, A, n, ix->nprobe, &c, err);
    if (A != X)
        imago_free_aligned(A);
    imago_free_aligned(X);
    free(ids);
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
    float *v, *a;
    size_t n_applied;
} replay_ctx;

static int apply_add(imago_index *ix, ix_core *c, ix_conn *conn, int lock, int64_t id,
                     const float *raw, float *aug, int64_t seq, imago_error *err)
{
    const float *v = raw;
    if (ix->dba && ix_core_live(c) > 0) {
        int rc = dba_online(ix, c, conn, id, raw, aug, err);
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
    rc = apply_add(r->ix, r->c, r->conn, r->lock, id, r->v, r->a, seq, err);
    r->n_applied++;
    return rc;
}

static int replay(imago_index *ix, ix_core *c, ix_conn *conn, int lock, size_t *n_applied,
                  imago_error *err)
{
    replay_ctx r = {ix, c, conn, lock, NULL, NULL, 0};
    r.v = imago_xmalloc((size_t)ix->dim * sizeof(float));
    r.a = imago_xmalloc((size_t)ix->dim * sizeof(float));
    int rc = ix_store_changes(conn, c->seq, replay_one, &r, err);
    free(r.v);
    free(r.a);
    if (n_applied)
        *n_applied = r.n_applied;
    return rc;
}

static int write_snapshot_locked(imago_index *ix, imago_error *err)
{
    ix_snap_meta m = snap_meta(ix);
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

/* ---- open / close ------------------------------------------------------- */

static int meta_int(ix_store *st, const char *key, long long *v, int *present, imago_error *err)
{
    char *s = NULL;
    int rc = ix_store_meta_get(st, key, &s, err);
    if (rc)
        return rc;
    *present = s != NULL;
    if (s)
        *v = strtoll(s, NULL, 10);
    free(s);
    return 0;
}

static int meta_put_settings(imago_index *ix, imago_error *err)
{
    char buf[64];
    int rc = ix_store_meta_set(ix->st, "factory", ix->factory, err);
    if (rc == 0)
        rc = ix_store_meta_set(ix->st, "precision", ix_prec_name(ix->prec), err);
    snprintf(buf, sizeof buf, "%d", ix->dba);
    if (rc == 0)
        rc = ix_store_meta_set(ix->st, "dba", buf, err);
    snprintf(buf, sizeof buf, "%d", ix->dba_k);
    if (rc == 0)
        rc = ix_store_meta_set(ix->st, "dba_k", buf, err);
    snprintf(buf, sizeof buf, "%.17g", ix->dba_beta);
    if (rc == 0)
        rc = ix_store_meta_set(ix->st, "dba_beta", buf, err);
    return rc;
}

static int check_params(const imago_index_params *p, imago_error *err)
{
    if (!p || !p->data_dir || !*p->data_dir)
        return imago_error_set(err, IMAGO_ERR_INVALID, "index: data_dir is required");
    if (!p->model_fingerprint || !*p->model_fingerprint || strlen(p->model_fingerprint) >= 72)
        return imago_error_set(err, IMAGO_ERR_INVALID,
                               "index: model_fingerprint is required (hex, < 72 chars)");
    if (p->dim < 1 || p->dim > 65536)
        return imago_error_set(err, IMAGO_ERR_INVALID, "index: dim %d out of 1..65536", p->dim);
    if (p->factory && (strlen(p->factory) >= 64 || !*p->factory))
        return imago_error_set(err, IMAGO_ERR_INVALID, "index: bad factory string");
    if (p->dba_k < 0 || p->dba_k > IMAGO_DBA_K_MAX)
        return imago_error_set(err, IMAGO_ERR_INVALID, "index: dba_k %d out of 0..%d", p->dba_k,
                               IMAGO_DBA_K_MAX);
    if (!(p->dba_beta >= 0) || !(p->qe_alpha >= 0) || p->qe_n < 0 || p->qe_n > IMAGO_QE_K_MAX)
        return imago_error_set(err, IMAGO_ERR_INVALID,
                               "index: dba_beta and qe_alpha must be >= 0, qe_n 0..%d",
                               IMAGO_QE_K_MAX);
    return 0;
}

int imago_index_open(const imago_index_params *p, imago_index **out, imago_error *err)
{
    int rc = check_params(p, err);
    if (rc)
        return rc;
    int prec;
    if (ix_prec_parse(p->precision, &prec))
        return imago_error_set(err, IMAGO_ERR_INVALID,
                               "index: precision must be fp32, fp16 or bf16, not '%s'",
                               p->precision);
    imago_index *ix = imago_xcalloc(1, sizeof *ix);
    ix->data_dir = imago_xstrdup(p->data_dir);
    ix->fingerprint = imago_xstrdup(p->model_fingerprint);
    size_t sl = strlen(p->data_dir) + 32;
    ix->snap_path = imago_xmalloc(sl);
    imago_index_snapshot_path(p->data_dir, ix->snap_path, sl, NULL);
    ix->dim = p->dim;
    ix->prec = prec;
    ix->dba = p->dba != 0;
    ix->dba_k = p->dba_k > 0 ? p->dba_k : 2;
    ix->dba_beta = p->dba_beta;
    ix->qe = p->qe != 0;
    ix->qe_n = p->qe_n > 0 ? p->qe_n : 2;
    ix->qe_alpha = p->qe_alpha;
    ix->nprobe = p->nprobe > 0 ? p->nprobe : 32;
    ix->ef = p->ef_search > 0 ? p->ef_search : 128;
    ix->snapshot_interval = p->snapshot_interval;
    ix->snapshot_on_close = p->snapshot_on_close;
    ix->snapshot_seq = -1;
    snprintf(ix->factory, sizeof ix->factory, "%s", p->factory ? p->factory : "Flat");
    pthread_mutex_init(&ix->wmu, NULL);
    pthread_rwlockattr_t ra;
    pthread_rwlockattr_init(&ra);
    pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&ix->rw, &ra);
    pthread_rwlockattr_destroy(&ra);

    rc = ix_store_open(p->data_dir, p->durability, &ix->st, err);
    if (rc)
        goto fail;
    char *fp = NULL;
    if ((rc = ix_store_meta_get(ix->st, "model_fingerprint", &fp, err)))
        goto fail;
    int rebuild_reason = 0;
    if (!fp) {
        char dimbuf[16];
        snprintf(dimbuf, sizeof dimbuf, "%d", ix->dim);
        rc = ix_store_meta_set(ix->st, "model_fingerprint", ix->fingerprint, err);
        if (rc == 0)
            rc = ix_store_meta_set(ix->st, "dim", dimbuf, err);
        if (rc == 0)
            rc = meta_put_settings(ix, err);
        if (rc)
            goto fail;
        IMAGO_INFO(MOD, "new collection in %s (type %s, dim %d)", ix->data_dir, ix->factory,
                   ix->dim);
    } else {
        if (strcmp(fp, ix->fingerprint) != 0) {
            rc = imago_error_set(
                err, IMAGO_ERR_CONFLICT,
                "the collection in %s was indexed with model %.16s..., the loaded model is "
                "%.16s...: their descriptors are not comparable. Load the original model, or "
                "index the collection again with this model into a new data dir "
                "(index.data_dir) with a bulk ingest job (POST /v1/admin/jobs)",
                ix->data_dir, fp, ix->fingerprint);
            free(fp);
            goto fail;
        }
        free(fp);
        long long v = 0;
        int present = 0;
        if ((rc = meta_int(ix->st, "dim", &v, &present, err)))
            goto fail;
        if (present && v != ix->dim) {
            rc = imago_error_set(err, IMAGO_ERR_CONFLICT,
                                 "the collection in %s has dim %lld, the model gives %d",
                                 ix->data_dir, v, ix->dim);
            goto fail;
        }
        char *stored = NULL;
        if ((rc = ix_store_meta_get(ix->st, "factory", &stored, err)))
            goto fail;
        if (stored && !p->force_factory)
            snprintf(ix->factory, sizeof ix->factory, "%s", stored);
        else if (stored && strcmp(stored, ix->factory) != 0)
            IMAGO_INFO(MOD, "index type changes from %s to %s", stored, ix->factory);
        free(stored);
        if ((rc = meta_put_settings(ix, err)))
            goto fail;
    }
    long long ps = 0;
    int present = 0;
    if ((rc = meta_int(ix->st, "purge_seq", &ps, &present, err)))
        goto fail;
    ix->purge_seq = present ? ps : 0;
    ix_conn *w = ix_store_writer(ix->st);
    if ((rc = ix_store_seq(w, &ix->store_seq, err)))
        goto fail;

    /* snapshot + replay, or rebuild */
    ix_snap_meta m = snap_meta(ix);
    imago_error serr;
    imago_error_clear(&serr);
    ix_core *c = NULL;
    int src = ix_snapshot_read(ix->snap_path, &m, ix->nprobe, &c, &serr);
    if (src == 0 && (src = ix_core_set_defaults(c, ix->nprobe, ix->ef, &serr)) != 0) {
        ix_core_free(c);
        c = NULL;
    }
    if (src == 0 && (c->seq > ix->store_seq || c->seq < ix->purge_seq)) {
        imago_error_set(&serr, IMAGO_ERR_CONFLICT,
                        "snapshot seq %lld outside the store's [%lld, %lld]", (long long)c->seq,
                        (long long)ix->purge_seq, (long long)ix->store_seq);
        ix_core_free(c);
        c = NULL;
        src = IMAGO_ERR_CONFLICT;
    }
    if (src == 0) {
        size_t n_replayed = 0;
        int64_t snap_seq = c->seq;
        imago_error rerr;
        imago_error_clear(&rerr);
        int rr = replay(ix, c, w, 0, &n_replayed, &rerr);
        int64_t live = 0, del = 0;
        if (rr == 0)
            rr = ix_store_counts(w, &live, &del, &rerr);
        if (rr == 0 && (int64_t)ix_core_live(c) != live)
            rr = imago_error_set(&rerr, IMAGO_ERR_FORMAT,
                                 "snapshot + replay has %zu live vectors, the store %lld",
                                 ix_core_live(c), (long long)live);
        if (rr) {
            IMAGO_WARN(MOD, "snapshot %s unusable (%s): rebuilding the index from the store",
                       ix->snap_path, rerr.msg);
            ix_core_free(c);
            c = NULL;
            rebuild_reason = 1;
        } else {
            IMAGO_INFO(MOD, "snapshot %s loaded (seq %lld), %zu newer store rows replayed",
                       ix->snap_path, (long long)snap_seq, n_replayed);
            ix->snapshot_seq = snap_seq;
            ix->changes_since_snap = (long)n_replayed;
        }
    } else {
        if (src == IMAGO_ERR_NOT_FOUND)
            IMAGO_INFO(MOD, "no snapshot in %s: building the index from the store", ix->data_dir);
        else
            IMAGO_WARN(MOD, "snapshot %s unusable (%s): rebuilding the index from the store",
                       ix->snap_path, serr.msg);
        rebuild_reason = 1;
    }
    if (!c) {
        if ((rc = build_from_store(ix, w, &c, err)))
            goto fail;
    }
    ix->cur = c;
    if (rebuild_reason && ix_core_live(c) > 0) {
        imago_error werr;
        imago_error_clear(&werr);
        if (write_snapshot_locked(ix, &werr))
            IMAGO_WARN(MOD, "cannot write snapshot: %s", werr.msg);
    }
    *out = ix;
    return 0;
fail:
    imago_index_free(ix);
    return rc;
}

void imago_index_free(imago_index *ix)
{
    if (!ix)
        return;
    if (ix->cur && ix->snapshot_on_close && ix->cur->seq != ix->snapshot_seq) {
        imago_error e;
        imago_error_clear(&e);
        if (write_snapshot_locked(ix, &e))
            IMAGO_WARN(MOD, "snapshot at close failed: %s", e.msg);
    }
    ix_core_free(ix->cur);
    ix_store_free(ix->st);
    pthread_rwlock_destroy(&ix->rw);
    pthread_mutex_destroy(&ix->wmu);
    free(ix->data_dir);
    free(ix->fingerprint);
    free(ix->snap_path);
    free(ix);
}

/* ---- writes -------------------------------------------------------------- */

static int validate_item(const imago_index *ix, const imago_index_item *it, size_t i,
                         imago_error *err)
{
    if (!it->external_id || !*it->external_id)
        return imago_error_set(err, IMAGO_ERR_INVALID, "item %zu: external_id is required", i);
    if (!it->vector)
        return imago_error_set(err, IMAGO_ERR_INVALID, "item %zu: vector is required", i);
    double s = 0;
    for (int d = 0; d < ix->dim; d++) {
        if (!isfinite(it->vector[d]))
            return imago_error_set(err, IMAGO_ERR_INVALID, "item %zu: vector is not finite", i);
        s += (double)it->vector[d] * it->vector[d];
    }
    if (s == 0)
        return imago_error_set(err, IMAGO_ERR_INVALID, "item %zu: vector is zero", i);
    if (it->metadata_json) {
        json_error_t je;
        json_t *j = json_loads(it->metadata_json, JSON_REJECT_DUPLICATES, &je);
        int is_obj = j && json_is_object(j);
        json_decref(j);
        if (!j)
            return imago_error_set(err, IMAGO_ERR_INVALID, "item %zu: metadata: %s", i, je.text);
        if (!is_obj)
            return imago_error_set(err, IMAGO_ERR_INVALID,
                                   "item %zu: metadata must be a JSON object", i);
    }
    if (it->width < 0 || it->height < 0)
        return imago_error_set(err, IMAGO_ERR_INVALID, "item %zu: negative size", i);
    return 0;
}

static int cmp_item_ext(const void *a, const void *b, void *base)
{
    const imago_index_item *items = base;
    return strcmp(items[*(const size_t *)a].external_id, items[*(const size_t *)b].external_id);
}

static void maybe_autosnapshot(imago_index *ix)
{
    if (ix->snapshot_interval > 0 && ix->changes_since_snap >= ix->snapshot_interval) {
        imago_error e;
        imago_error_clear(&e);
        if (write_snapshot_locked(ix, &e))
            IMAGO_WARN(MOD, "automatic snapshot failed: %s", e.msg);
    }
}

int imago_index_add(imago_index *ix, const imago_index_item *items, size_t n, int64_t *ids_out,
                    imago_error *err)
{
    if (n == 0)
        return 0;
    if (!items)
        return imago_error_set(err, IMAGO_ERR_INVALID, "index add: items is NULL");
    for (size_t i = 0; i < n; i++) {
        int rc = validate_item(ix, &items[i], i, err);
        if (rc)
            return rc;
    }
    if (n > 1) {
        size_t *ord = imago_xmalloc(n * sizeof *ord);
        for (size_t i = 0; i < n; i++)
            ord[i] = i;
        qsort_r(ord, n, sizeof *ord, cmp_item_ext, (void *)items);
        for (size_t i = 1; i < n; i++) {
            if (strcmp(items[ord[i]].external_id, items[ord[i - 1]].external_id) == 0) {
                const char *dup = items[ord[i]].external_id;
                free(ord);
                return imago_error_set(err, IMAGO_ERR_CONFLICT,
                                       "external_id '%s' appears twice in one batch", dup);
            }
        }
        free(ord);
    }
    int64_t *ids = imago_xmalloc(n * sizeof *ids);
    pthread_mutex_lock(&ix->wmu);
    ix_conn *w = ix_store_writer(ix->st);
    int rc = ix_conn_begin(w, 1, err);
    int64_t seq = ix->store_seq;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        int replaced = 0;
        rc = ix_store_put_image(w, &items[i], ix->fingerprint, ix->dim, ++seq, &ids[i], &replaced,
                                err);
        if (rc)
            imago_error_prefix(err, "item %zu ('%s')", i, items[i].external_id);
    }
    if (rc == 0)
        rc = ix_store_set_seq(w, seq, err);
    if (rc == 0)
        rc = ix_conn_commit(w, err);
    if (rc) {
        ix_conn_rollback(w);
        pthread_mutex_unlock(&ix->wmu);
        free(ids);
        return rc;
    }
    int64_t first = ix->store_seq + 1;
    ix->store_seq = seq;
    /* committed: now the in-memory index, item by item (same order as replay) */
    if (!ix->dba) {
        /* no augmentation: one append (one FAISS add call for the batch) */
        float *V = NULL;
        rc = imago_alloc_array(n, (size_t)ix->dim * sizeof(float), 0, (void **)&V, err);
        for (size_t i = 0; rc == 0 && i < n; i++)
            memcpy(V + i * (size_t)ix->dim, items[i].vector, (size_t)ix->dim * sizeof(float));
        if (rc == 0) {
            pthread_rwlock_wrlock(&ix->rw);
            rc = ix_core_append(ix->cur, ids, V, n, err);
            if (rc == 0)
                ix->cur->seq = seq;
            pthread_rwlock_unlock(&ix->rw);
        }
        imago_free_aligned(V);
    } else {
        float *aug = imago_xmalloc((size_t)ix->dim * sizeof *aug);
        for (size_t i = 0; rc == 0 && i < n; i++)
            rc =
                apply_add(ix, ix->cur, w, 1, ids[i], items[i].vector, aug, first + (int64_t)i, err);
        free(aug);
    }
    if (rc) {
        /* The rows are durable; the in-memory index is behind. Rebuild it so
         * that it agrees with the store again. */
        IMAGO_ERROR(MOD, "in-memory add failed after commit (%s): rebuilding", err ? err->msg : "");
        ix_core *c = NULL;
        imago_error e2;
        imago_error_clear(&e2);
        if (build_from_store(ix, w, &c, &e2) == 0) {
            pthread_rwlock_wrlock(&ix->rw);
            ix_core *old = ix->cur;
            ix->cur = c;
            pthread_rwlock_unlock(&ix->rw);
            ix_core_free(old);
            rc = 0;
            if (err)
                imago_error_clear(err);
        }
    }
    ix->changes_since_snap += (long)n;
    if (rc == 0)
        maybe_autosnapshot(ix);
    pthread_mutex_unlock(&ix->wmu);
    if (rc == 0 && ids_out)
        memcpy(ids_out, ids, n * sizeof *ids);
    free(ids);
    return rc;
}

int imago_index_delete(imago_index *ix, int64_t id, imago_error *err)
{
    pthread_mutex_lock(&ix->wmu);
    ix_conn *w = ix_store_writer(ix->st);
    int64_t seq = ix->store_seq + 1;
    int rc = ix_conn_begin(w, 1, err);
    if (rc == 0)
        rc = ix_store_delete_image(w, id, seq, err);
    if (rc == 0)
        rc = ix_store_set_seq(w, seq, err);
    if (rc == 0)
        rc = ix_conn_commit(w, err);
    if (rc) {
        ix_conn_rollback(w);
        pthread_mutex_unlock(&ix->wmu);
        return rc;
    }
    ix->store_seq = seq;
    pthread_rwlock_wrlock(&ix->rw);
    ix_core_tombstone(ix->cur, id);
    ix->cur->seq = seq;
    pthread_rwlock_unlock(&ix->rw);
    ix->changes_since_snap++;
    maybe_autosnapshot(ix);
    pthread_mutex_unlock(&ix->wmu);
    return 0;
}

/* ---- reads ---------------------------------------------------------------- */

#define WITH_READER(ix, c, err, body)                                                              \
    do {                                                                                           \
        ix_conn *c = NULL;                                                                         \
        int rc_ = ix_store_acquire((ix)->st, &c, err);                                             \
        if (rc_)                                                                                   \
            return rc_;                                                                            \
        rc_ = (body);                                                                              \
        ix_store_release((ix)->st, c);                                                             \
        return rc_;                                                                                \
    } while (0)

int imago_index_get(imago_index *ix, int64_t id, imago_image_info **out, imago_error *err)
{
    WITH_READER(ix, c, err, ix_store_get_info(c, id, NULL, out, err));
}

int imago_index_get_by_external(imago_index *ix, const char *external_id, imago_image_info **out,
                                imago_error *err)
{
    if (!external_id)
        return imago_error_set(err, IMAGO_ERR_INVALID, "external_id is NULL");
    WITH_READER(ix, c, err, ix_store_get_info(c, 0, external_id, out, err));
}

void imago_image_info_free(imago_image_info *info)
{
    if (!info)
        return;
    free(info->external_id);
    free(info->sha256);
    free(info->uri);
    free(info->metadata_json);
    free(info);
}

int imago_index_thumbnail(imago_index *ix, int64_t id, void **data, size_t *len, imago_error *err)
{
    WITH_READER(ix, c, err, ix_store_get_thumbnail(c, id, data, len, err));
}

int imago_index_get_vector(imago_index *ix, int64_t id, float *out, imago_error *err)
{
    WITH_READER(ix, c, err, ix_store_get_vector(c, id, ix->dim, out, err));
}

int imago_index_get_indexed_vector(imago_index *ix, int64_t id, float *out, imago_error *err)
{
    pthread_rwlock_rdlock(&ix->rw);
    int64_t pos = ix_core_pos(ix->cur, id);
    int rc = pos < 0 ? imago_error_set(err, IMAGO_ERR_NOT_FOUND, "image %lld is not indexed",
                                       (long long)id)
                     : ix_core_vector(ix->cur, pos, out, err);
    pthread_rwlock_unlock(&ix->rw);
    return rc;
}

/* ---- search ---------------------------------------------------------------- */

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* One search pass with the metadata predicate applied by over-fetching. */
static int search_filtered(imago_index *ix, const ix_core *c, ix_conn **conn, const float *q,
                           size_t nq, int k, const ix_filter *f,
                           const imago_index_search_params *sp, int nprobe, int ef,
                           imago_index_hit *hits, int *counts, imago_error *err)
{
    if (!sp->meta_filter)
        return ix_core_search(c, q, nq, k, f, nprobe, ef, hits, counts, err);
    int rc = 0;
    if (!*conn && (rc = ix_store_acquire(ix->st, conn, err)))
        return rc;
    size_t live = ix_core_live(c);
    for (size_t j = 0; rc == 0 && j < nq; j++) {
        size_t kk = (size_t)k * 4 < 64 ? 64 : (size_t)k * 4;
        for (;;) {
            if (kk > live)
                kk = live ? live : 1;
            imago_index_hit *tmp = imago_xmalloc(kk * sizeof *tmp);
            int cnt = 0;
            rc = ix_core_search(c, q + j * (size_t)ix->dim, 1, (int)kk, f, nprobe, ef, tmp, &cnt,
                                err);
            int m = 0;
            for (int i = 0; rc == 0 && i < cnt && m < k; i++) {
                char *meta = NULL;
                int found = 0;
                rc = ix_store_get_metadata(*conn, tmp[i].id, &meta, &found, err);
                if (rc == 0 && found && sp->meta_filter(tmp[i].id, meta, sp->filter_user))
                    hits[j * (size_t)k + m++] = tmp[i];
                free(meta);
            }
            free(tmp);
            if (rc || m >= k || kk >= live || (size_t)cnt < kk) {
                for (int i = m; i < k; i++) {
                    hits[j * (size_t)k + i].id = -1;
                    hits[j * (size_t)k + i].score = 0;
                }
                if (counts)
                    counts[j] = m;
                break;
            }
            kk *= 4;
        }
    }
    return rc;
}

int imago_index_search(imago_index *ix, const float *queries, size_t nq,
                       const imago_index_search_params *spp, imago_index_hit *hits, int *n_hits,
                       int64_t *seq, imago_error *err)
{
    imago_index_search_params sp = spp ? *spp : imago_index_search_params_default();
    if (sp.k < 1 || sp.k > IMAGO_SEARCH_K_MAX)
        return imago_error_set(err, IMAGO_ERR_INVALID, "k must be in 1..%d, not %d",
                               IMAGO_SEARCH_K_MAX, sp.k);
    if (!queries || !hits || nq == 0)
        return imago_error_set(err, IMAGO_ERR_INVALID, "search: no queries");
    if (nq > 4096)
        return imago_error_set(err, IMAGO_ERR_INVALID, "search: at most 4096 queries per call");
    int qe = sp.qe < 0 ? ix->qe : sp.qe != 0;
    int qe_n = sp.qe_n > 0 ? sp.qe_n : ix->qe_n;
    double qe_alpha = sp.qe_alpha >= 0 ? sp.qe_alpha : ix->qe_alpha;
    if (qe_n > IMAGO_QE_K_MAX)
        return imago_error_set(err, IMAGO_ERR_INVALID, "qe_k must be <= %d", IMAGO_QE_K_MAX);
    int nprobe = sp.nprobe > 0 ? sp.nprobe : ix->nprobe;
    int ef = sp.ef_search > 0 ? sp.ef_search : ix->ef;
    for (size_t i = 0; i < nq * (size_t)ix->dim; i++)
        if (!isfinite(queries[i]))
            return imago_error_set(err, IMAGO_ERR_INVALID, "search: query is not finite");

    int64_t *allow = NULL;
    ix_filter f = {NULL, 0, sp.id_filter, sp.filter_user, -1};
    if (sp.allow_ids) {
        allow = imago_xmalloc((sp.n_allow_ids ? sp.n_allow_ids : 1) * sizeof *allow);
        memcpy(allow, sp.allow_ids, sp.n_allow_ids * sizeof *allow);
        qsort(allow, sp.n_allow_ids, sizeof *allow, cmp_i64);
        f.allow = allow;
        f.n_allow = sp.n_allow_ids;
    }
    ix_conn *conn = NULL;
    pthread_rwlock_rdlock(&ix->rw);
    const ix_core *c = ix->cur;
    int rc = 0;
    if (!qe) {
        rc = search_filtered(ix, c, &conn, queries, nq, sp.k, &f, &sp, nprobe, ef, hits, n_hits,
                             err);
    } else {
        /* alpha-QE: top qe_n of a first pass, expand, search again */
        imago_index_hit *h1 = imago_xmalloc(nq * (size_t)qe_n * sizeof *h1);
        int *c1 = imago_xmalloc(nq * sizeof *c1);
        rc = search_filtered(ix, c, &conn, queries, nq, qe_n, &f, &sp, nprobe, ef, h1, c1, err);
        float *q2 = imago_xmalloc(nq * (size_t)ix->dim * sizeof *q2);
        float *nbr = imago_xmalloc((size_t)qe_n * ix->dim * sizeof *nbr);
        float *sims = imago_xmalloc((size_t)qe_n * sizeof *sims);
        for (size_t j = 0; rc == 0 && j < nq; j++) {
            const float *q = queries + j * (size_t)ix->dim;
            int m = 0;
            for (int i = 0; rc == 0 && i < c1[j]; i++) {
                int64_t pos = ix_core_pos(c, h1[j * (size_t)qe_n + i].id);
                if (pos < 0)
                    continue;
                float *x = nbr + (size_t)m * ix->dim;
                rc = ix_core_vector(c, pos, x, err);
                double s = 0;
                for (int t = 0; t < ix->dim; t++)
                    s += (double)q[t] * x[t];
                sims[m++] = (float)s;
            }
            if (rc == 0)
                ix_qe_apply(q, ix->dim, nbr, sims, m, qe_alpha, q2 + j * (size_t)ix->dim);
        }
        if (rc == 0)
            rc =
                search_filtered(ix, c, &conn, q2, nq, sp.k, &f, &sp, nprobe, ef, hits, n_hits, err);
        free(h1);
        free(c1);
        free(q2);
        free(nbr);
        free(sims);
    }
    if (seq)
        *seq = c->seq;
    pthread_rwlock_unlock(&ix->rw);
    if (conn)
        ix_store_release(ix->st, conn);
    free(allow);
    return rc;
}

/* ---- maintenance ------------------------------------------------------------ */

int imago_index_snapshot(imago_index *ix, imago_error *err)
{
    pthread_mutex_lock(&ix->wmu);
    int rc = write_snapshot_locked(ix, err);
    pthread_mutex_unlock(&ix->wmu);
    return rc;
}

int imago_index_reindex(imago_index *ix, const imago_index_reindex_params *rpp, imago_error *err)
{
    imago_index_reindex_params rp = rpp ? *rpp : imago_index_reindex_params_default();
    if (rp.factory && (!*rp.factory || strlen(rp.factory) >= 64))
        return imago_error_set(err, IMAGO_ERR_INVALID, "reindex: bad factory string");
    if (rp.dba_k > IMAGO_DBA_K_MAX)
        return imago_error_set(err, IMAGO_ERR_INVALID, "reindex: dba_k must be <= %d",
                               IMAGO_DBA_K_MAX);
    /* Settings for the new index: a copy of ix with the changes. */
    imago_index tmp_settings = *ix;
    if (rp.factory)
        snprintf(tmp_settings.factory, sizeof tmp_settings.factory, "%s", rp.factory);
    if (rp.dba >= 0)
        tmp_settings.dba = rp.dba != 0;
    if (rp.dba_k > 0)
        tmp_settings.dba_k = rp.dba_k;
    if (rp.dba_beta >= 0)
        tmp_settings.dba_beta = rp.dba_beta;

    /* Build from one consistent read, without blocking writers or searches. */
    ix_conn *rconn = NULL;
    int rc = ix_store_acquire(ix->st, &rconn, err);
    if (rc)
        return rc;
    ix_core *nc = NULL;
    rc = build_from_store(&tmp_settings, rconn, &nc, err);
    ix_store_release(ix->st, rconn);
    if (rc)
        return rc;

    pthread_mutex_lock(&ix->wmu);
    ix_conn *w = ix_store_writer(ix->st);
    /* Adopt the new settings before the replay (online DBA uses them). */
    snprintf(ix->factory, sizeof ix->factory, "%s", tmp_settings.factory);
    ix->dba = tmp_settings.dba;
    ix->dba_k = tmp_settings.dba_k;
    ix->dba_beta = tmp_settings.dba_beta;
    size_t replayed = 0;
    rc = replay(ix, nc, w, 0, &replayed, err);
    int64_t purged = 0;
    if (rc == 0)
        rc = meta_put_settings(ix, err);
    if (rc == 0) {
        /* compaction: tombstoned rows go; older snapshots become invalid */
        rc = ix_conn_begin(w, 1, err);
        if (rc == 0)
            rc = ix_store_purge_deleted(w, &purged, err);
        char buf[32];
        snprintf(buf, sizeof buf, "%lld", (long long)ix->store_seq);
        if (rc == 0)
            rc = ix_store_meta_set(ix->st, "purge_seq", buf, err);
        if (rc == 0)
            rc = ix_conn_commit(w, err);
        if (rc)
            ix_conn_rollback(w);
        else
            ix->purge_seq = ix->store_seq;
    }
    if (rc) {
        pthread_mutex_unlock(&ix->wmu);
        ix_core_free(nc);
        return rc;
    }
    pthread_rwlock_wrlock(&ix->rw);
    ix_core *old = ix->cur;
    ix->cur = nc;
    pthread_rwlock_unlock(&ix->rw);
    ix_core_free(old);
    IMAGO_INFO(MOD, "reindex: %zu vectors, type %s, dba %d, %zu rows replayed, %lld purged",
               ix_core_live(nc), ix->factory, ix->dba, replayed, (long long)purged);
    rc = write_snapshot_locked(ix, err);
    pthread_mutex_unlock(&ix->wmu);
    return rc;
}

int imago_index_stats_get(imago_index *ix, imago_index_stats *out, imago_error *err)
{
    (void)err;
    memset(out, 0, sizeof *out);
    pthread_rwlock_rdlock(&ix->rw);
    out->count = (int64_t)ix_core_live(ix->cur);
    out->deleted = (int64_t)ix->cur->n_dead;
    out->seq = ix->cur->seq;
    out->snapshot_seq = ix->snapshot_seq;
    out->dim = ix->dim;
    out->dba = ix->dba;
    snprintf(out->type, sizeof out->type, "%s%s", ix->cur->factory,
             ix->cur->untrained ? " (untrained)" : "");
    snprintf(out->precision, sizeof out->precision, "%s", ix_prec_name(ix->prec));
    snprintf(out->fingerprint, sizeof out->fingerprint, "%s", ix->fingerprint);
    pthread_rwlock_unlock(&ix->rw);
    return 0;
}

int imago_index_verify(imago_index *ix, imago_error *err)
{
    pthread_mutex_lock(&ix->wmu);
    ix_conn *w = ix_store_writer(ix->st);
    int64_t *ids = NULL;
    float *X = NULL;
    size_t n = 0;
    int64_t seq = 0;
    int rc = ix_store_load_all(w, ix->dim, &ids, &X, &n, &seq, err);
    const ix_core *c = ix->cur;
    if (rc == 0 && seq != c->seq)
        rc = imago_error_set(err, IMAGO_ERR_INTERNAL, "index covers seq %lld, store is at %lld",
                             (long long)c->seq, (long long)seq);
    if (rc == 0 && n != ix_core_live(c))
        rc = imago_error_set(err, IMAGO_ERR_INTERNAL, "index has %zu live vectors, store %zu",
                             ix_core_live(c), n);
    float *v = imago_xmalloc((size_t)ix->dim * sizeof *v);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        int64_t pos = ix_core_pos(c, ids[i]);
        if (pos < 0) {
            rc = imago_error_set(err, IMAGO_ERR_INTERNAL, "image %lld missing from the index",
                                 (long long)ids[i]);
            break;
        }
        if (c->kind == IX_CORE_FLAT && !ix->dba) {
            ix_core_vector(c, pos, v, NULL);
            double tol = ix->prec == IX_FP32 ? 0 : ix->prec == IX_FP16 ? 1e-3 : 1e-2;
            for (int d = 0; d < ix->dim; d++) {
                double diff = fabs((double)v[d] - X[i * (size_t)ix->dim + d]);
                if (diff > tol * (fabs(X[i * (size_t)ix->dim + d]) + 1e-3) && diff > tol) {
                    rc =
                        imago_error_set(err, IMAGO_ERR_INTERNAL,
                                        "vector of image %lld differs at %d", (long long)ids[i], d);
                    break;
                }
            }
        }
    }
    free(v);
    free(ids);
    imago_free_aligned(X);
    pthread_mutex_unlock(&ix->wmu);
    return rc;
}

/* ---- jobs ------------------------------------------------------------------- */

#define WITH_WRITER_TXN(ix, c, err, body)                                                          \
    do {                                                                                           \
        pthread_mutex_lock(&(ix)->wmu);                                                            \
        ix_conn *c = ix_store_writer((ix)->st);                                                    \
        int rc_ = ix_conn_begin(c, 1, err);                                                        \
        if (rc_ == 0)                                                                              \
            rc_ = (body);                                                                          \
        if (rc_ == 0)                                                                              \
            rc_ = ix_conn_commit(c, err);                                                          \
        if (rc_)                                                                                   \
            ix_conn_rollback(c);                                                                   \
        pthread_mutex_unlock(&(ix)->wmu);                                                          \
        return rc_;                                                                                \
    } while (0)

int imago_job_create(imago_index *ix, const char *kind, const char *params_json, int64_t *job_id,
                     imago_error *err)
{
    if (params_json) {
        json_error_t je;
        json_t *j = json_loads(params_json, 0, &je);
        if (!j)
            return imago_error_set(err, IMAGO_ERR_INVALID, "job params: %s", je.text);
        json_decref(j);
    }
    WITH_WRITER_TXN(ix, c, err, ix_job_create(c, kind, params_json, job_id, err));
}

int imago_job_add_items(imago_index *ix, int64_t job_id, const char *const *sources,
                        const char *const *external_ids, size_t n, imago_error *err)
{
    if (n && !sources)
        return imago_error_set(err, IMAGO_ERR_INVALID, "job items: sources is NULL");
    WITH_WRITER_TXN(ix, c, err, ix_job_add_items(c, job_id, sources, external_ids, n, err));
}

int imago_job_set_state(imago_index *ix, int64_t job_id, imago_job_state state, const char *error,
                        imago_error *err)
{
    WITH_WRITER_TXN(ix, c, err, ix_job_set_state(c, job_id, state, error, err));
}

int imago_job_claim(imago_index *ix, int64_t job_id, size_t max, imago_job_item **items, size_t *n,
                    imago_error *err)
{
    WITH_WRITER_TXN(ix, c, err, ix_job_claim(c, job_id, max, items, n, err));
}

int imago_job_item_done(imago_index *ix, int64_t item_id, int64_t image_id, imago_error *err)
{
    WITH_WRITER_TXN(ix, c, err, ix_job_item_finish(c, item_id, 1, image_id, 0, NULL, err));
}

int imago_job_item_failed(imago_index *ix, int64_t item_id, int error_code, const char *message,
                          imago_error *err)
{
    WITH_WRITER_TXN(ix, c, err, ix_job_item_finish(c, item_id, 0, -1, error_code, message, err));
}

int imago_job_get(imago_index *ix, int64_t job_id, imago_job_info *out, imago_error *err)
{
    WITH_READER(ix, c, err, ix_job_get(c, job_id, out, err));
}

int imago_job_list(imago_index *ix, int64_t *ids, size_t max, size_t *n, imago_error *err)
{
    WITH_READER(ix, c, err, ix_job_list(c, ids, max, n, err));
}

int imago_job_errors(imago_index *ix, int64_t job_id, size_t max, imago_job_item **items, size_t *n,
                     imago_error *err)
{
    WITH_READER(ix, c, err, ix_job_errors(c, job_id, max, items, n, err));
}

int imago_job_resume(imago_index *ix, int64_t **ids, size_t *n, imago_error *err)
{
    WITH_WRITER_TXN(ix, c, err, ix_job_resume(c, ids, n, err));
}
