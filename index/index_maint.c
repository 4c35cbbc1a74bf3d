/* index/index_maint.c: maintenance: explicit snapshots, reindex (a new
 * core built off to the side, then replay, compaction and an atomic swap
 * under the writer mutex), stats, and the index/store consistency check.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "index_int.h"

#define MOD "index"

int imago_index_snapshot(imago_index *ix, imago_error *err)
{
    pthread_mutex_lock(&ix->wmu);
    int rc = ix_index_write_snapshot(ix, err);
    pthread_mutex_unlock(&ix->wmu);
    return rc;
}

static int reindex_locked(imago_index *ix, const imago_index_reindex_params *rpp, imago_error *err);

int imago_index_reindex(imago_index *ix, const imago_index_reindex_params *rpp, imago_error *err)
{
    imago_index_reindex_params rp = rpp ? *rpp : imago_index_reindex_params_default();
    if (rp.factory && (!*rp.factory || strlen(rp.factory) >= 64))
        return imago_error_set(err, IMAGO_ERR_INVALID, "reindex: bad factory string");
    if (rp.dba_k > IMAGO_DBA_K_MAX)
        return imago_error_set(err, IMAGO_ERR_INVALID, "reindex: dba_k must be <= %d",
                               IMAGO_DBA_K_MAX);
    if (rp.whiten < -1 || rp.whiten > 1)
        return imago_error_set(err, IMAGO_ERR_INVALID, "reindex: whiten must be -1, 0 or 1");
    pthread_mutex_lock(&ix->reindex_mu);
    int rc = reindex_locked(ix, &rp, err);
    pthread_mutex_unlock(&ix->reindex_mu);
    return rc;
}

static int reindex_locked(imago_index *ix, const imago_index_reindex_params *rpp, imago_error *err)
{
    const imago_index_reindex_params rp = *rpp;
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

    /* The whitening of the new index: the current one (only reindexes
     * change it, and they are serialised), none, or learned in the build. */
    imago_whiten *wh = NULL;
    imago_whiten_params wp = imago_whiten_params_default();
    if (rp.whiten_params)
        wp = *rp.whiten_params;
    if (rp.whiten < 0) {
        pthread_rwlock_rdlock(&ix->rw);
        wh = ix_whiten_ref(ix->cur->wh);
        pthread_rwlock_unlock(&ix->rw);
    }

    /* Build from one consistent read, without blocking writers or searches. */
    ix_conn *rconn = NULL;
    int rc = ix_store_acquire(ix->st, &rconn, err);
    if (rc) {
        imago_whiten_free(wh);
        return rc;
    }
    ix_core *nc = NULL;
    rc = ix_index_build(&tmp_settings, rconn, rp.whiten == 1 ? &wp : NULL, &wh, &nc, err);
    ix_store_release(ix->st, rconn);
    imago_whiten_free(wh); /* the core holds its own reference */
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
    rc = ix_index_replay(ix, nc, w, 0, &replayed, err);
    int64_t purged = 0;
    if (rc == 0)
        rc = ix_index_put_settings(ix, err);
    if (rc == 0) {
        /* compaction: tombstoned rows go; older snapshots become invalid */
        rc = ix_conn_begin(w, 1, err);
        if (rc == 0)
            rc = ix_store_purge_deleted(w, &purged, err);
        int64_t version = 0;
        if (rc == 0 && rp.whiten == 1)
            rc = ix_store_whiten_put(w, nc->wh, &version, err);
        else if (rc == 0 && rp.whiten == 0)
            rc = ix_store_whiten_clear(w, err);
        char buf[32];
        snprintf(buf, sizeof buf, "%lld", (long long)ix->store_seq);
        if (rc == 0)
            rc = ix_store_meta_set(ix->st, "purge_seq", buf, err);
        if (rc == 0)
            rc = ix_conn_commit(w, err);
        if (rc) {
            ix_conn_rollback(w);
        } else {
            ix->purge_seq = ix->store_seq;
            if (version > 0) /* nc->wh is not visible to other threads yet */
                ix_whiten_set_version(nc->wh, version);
        }
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
    IMAGO_INFO(MOD,
               "reindex: %zu vectors, type %s, dim %d%s, dba %d, %zu rows replayed, %lld purged",
               ix_core_live(nc), ix->factory, nc->dim, nc->wh ? " (whitened)" : "", ix->dba,
               replayed, (long long)purged);
    rc = ix_index_write_snapshot(ix, err);
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
    out->index_dim = ix->cur->dim;
    if (ix->cur->wh) {
        imago_whiten_info wi;
        imago_whiten_get_info(ix->cur->wh, &wi);
        out->has_whitening = 1;
        out->whitening.dim_in = wi.dim_in;
        out->whitening.dim = wi.dim;
        out->whitening.rank = wi.rank;
        out->whitening.power = wi.power;
        out->whitening.eps = wi.eps;
        out->whitening.n_trained = wi.n_trained;
        out->whitening.n_rows = wi.n_rows;
        out->whitening.created_at = wi.created_at;
        out->whitening.version = wi.version;
        snprintf(out->whitening.fingerprint, sizeof out->whitening.fingerprint, "%s",
                 wi.fingerprint);
    }
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
    /* the index holds the stored vectors through its whitening */
    float *W = X;
    if (rc == 0)
        rc = ix_index_vectors(c->wh, X, n, &W, err);
    const int vd = c->dim;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        int64_t pos = ix_core_pos(c, ids[i]);
        if (pos < 0) {
            rc = imago_error_set(err, IMAGO_ERR_INTERNAL, "image %lld missing from the index",
                                 (long long)ids[i]);
            break;
        }
        if (c->kind == IX_CORE_FLAT && !ix->dba) {
            ix_core_vector(c, pos, v, NULL);
            double tol = ix->prec == IX_FP32   ? (c->wh ? 1e-5 : 0)
                         : ix->prec == IX_FP16 ? 1e-3
                                               : 1e-2;
            for (int d = 0; d < vd; d++) {
                double diff = fabs((double)v[d] - W[i * (size_t)vd + d]);
                if (diff > tol * (fabs(W[i * (size_t)vd + d]) + 1e-3) && diff > tol) {
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
    if (W != X)
        imago_free_aligned(W);
    imago_free_aligned(X);
    pthread_mutex_unlock(&ix->wmu);
    return rc;
}
