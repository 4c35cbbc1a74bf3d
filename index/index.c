/* index/index.c: opening and closing a collection: parameter defaults and
 * checks, the fingerprint/dim check against the store's meta, the stored
 * whitening, snapshot load + replay or a rebuild from the store, and the
 * snapshot written at close. The rest of the public API: index_write.c
 * (adds, deletes), index_read.c (reads, search), index_maint.c (snapshot,
 * reindex, stats, verify), index_jobs.c (jobs); the shared builders in
 * index_build.c; struct imago_index and its DESIGN note in index_int.h.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "index_int.h"

#define MOD "index"

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
    r.whiten = -1;
    return r;
}

int imago_index_snapshot_path(const char *data_dir, char *buf, size_t len, imago_error *err)
{
    int n = snprintf(buf, len, "%s/index.snap", data_dir);
    if (n < 0 || (size_t)n >= len)
        return imago_error_set(err, IMAGO_ERR_INVALID, "snapshot path too long");
    return 0;
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

int ix_index_put_settings(imago_index *ix, imago_error *err)
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
    pthread_mutex_init(&ix->reindex_mu, NULL);
    imago_whiten *wh = NULL;
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
            rc = ix_index_put_settings(ix, err);
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
        if ((rc = ix_index_put_settings(ix, err)))
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

    /* the collection's learned whitening, if any: the index holds vectors
     * through it */
    if ((rc = ix_store_whiten_get(w, &wh, err)))
        goto fail;
    if (wh) {
        imago_whiten_info wi;
        imago_whiten_get_info(wh, &wi);
        if (wi.dim_in != ix->dim) {
            rc = imago_error_set(err, IMAGO_ERR_CONFLICT,
                                 "the collection's whitening takes %d dims, the model gives %d",
                                 wi.dim_in, ix->dim);
            goto fail;
        }
        IMAGO_INFO(MOD, "whitening v%lld: %d -> %d dims, power %g, learned on %lld rows (%s)",
                   (long long)wi.version, wi.dim_in, wi.dim, wi.power, (long long)wi.n_trained,
                   wi.fingerprint);
    }

    /* snapshot + replay, or rebuild */
    char fpb[72];
    ix_snap_meta m = ix_index_snap_meta(ix, wh, fpb);
    imago_error serr;
    imago_error_clear(&serr);
    ix_core *c = NULL;
    int src = ix_snapshot_read(ix->snap_path, &m, ix->nprobe, &c, &serr);
    if (src == 0)
        c->wh = ix_whiten_ref(wh);
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
        int rr = ix_index_replay(ix, c, w, 0, &n_replayed, &rerr);
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
        if ((rc = ix_index_build(ix, w, NULL, &wh, &c, err)))
            goto fail;
    }
    ix->cur = c;
    imago_whiten_free(wh);
    if (rebuild_reason && ix_core_live(c) > 0) {
        imago_error werr;
        imago_error_clear(&werr);
        if (ix_index_write_snapshot(ix, &werr))
            IMAGO_WARN(MOD, "cannot write snapshot: %s", werr.msg);
    }
    *out = ix;
    return 0;
fail:
    imago_whiten_free(wh);
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
        if (ix_index_write_snapshot(ix, &e))
            IMAGO_WARN(MOD, "snapshot at close failed: %s", e.msg);
    }
    ix_core_free(ix->cur);
    ix_store_free(ix->st);
    pthread_rwlock_destroy(&ix->rw);
    pthread_mutex_destroy(&ix->wmu);
    pthread_mutex_destroy(&ix->reindex_mu);
    free(ix->data_dir);
    free(ix->fingerprint);
    free(ix->snap_path);
    free(ix);
}
