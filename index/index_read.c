/* index/index_read.c: the read side of the public API: image info,
 * thumbnails and vectors from a pooled reader connection, and the search
 * (filters, metadata predicate by over-fetching, alpha-QE) under the
 * read lock.
 */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "index_int.h"

#define MOD "index"

int imago_index_get(imago_index *ix, int64_t id, imago_image_info **out, imago_error *err)
{
    IX_WITH_READER(ix, c, err, ix_store_get_info(c, id, NULL, out, err));
}

int imago_index_get_by_external(imago_index *ix, const char *external_id, imago_image_info **out,
                                imago_error *err)
{
    if (!external_id)
        return imago_error_set(err, IMAGO_ERR_INVALID, "external_id is NULL");
    IX_WITH_READER(ix, c, err, ix_store_get_info(c, 0, external_id, out, err));
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
    IX_WITH_READER(ix, c, err, ix_store_get_thumbnail(c, id, data, len, err));
}

int imago_index_get_vector(imago_index *ix, int64_t id, float *out, imago_error *err)
{
    IX_WITH_READER(ix, c, err, ix_store_get_vector(c, id, ix->dim, out, err));
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
            rc = ix_core_search(c, q + j * (size_t)c->dim, 1, (int)kk, f, nprobe, ef, tmp, &cnt,
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
    /* queries are raw model descriptors: whiten them as the index's vectors were */
    const float *raw_queries = queries;
    float *wq = NULL;
    int rc = ix_index_vectors(c->wh, raw_queries, nq, &wq, err);
    const int dim = c->dim;
    queries = wq;
    if (rc) {
        wq = NULL;
    } else if (!qe) {
        rc = search_filtered(ix, c, &conn, queries, nq, sp.k, &f, &sp, nprobe, ef, hits, n_hits,
                             err);
    } else {
        /* alpha-QE: top qe_n of a first pass, expand, search again */
        imago_index_hit *h1 = imago_xmalloc(nq * (size_t)qe_n * sizeof *h1);
        int *c1 = imago_xmalloc(nq * sizeof *c1);
        rc = search_filtered(ix, c, &conn, queries, nq, qe_n, &f, &sp, nprobe, ef, h1, c1, err);
        float *q2 = imago_xmalloc(nq * (size_t)dim * sizeof *q2);
        float *nbr = imago_xmalloc((size_t)qe_n * dim * sizeof *nbr);
        float *sims = imago_xmalloc((size_t)qe_n * sizeof *sims);
        for (size_t j = 0; rc == 0 && j < nq; j++) {
            const float *q = queries + j * (size_t)dim;
            int m = 0;
            for (int i = 0; rc == 0 && i < c1[j]; i++) {
                int64_t pos = ix_core_pos(c, h1[j * (size_t)qe_n + i].id);
                if (pos < 0)
                    continue;
                float *x = nbr + (size_t)m * dim;
                rc = ix_core_vector(c, pos, x, err);
                double s = 0;
                for (int t = 0; t < dim; t++)
                    s += (double)q[t] * x[t];
                sims[m++] = (float)s;
            }
            if (rc == 0)
                ix_qe_apply(q, dim, nbr, sims, m, qe_alpha, q2 + j * (size_t)dim);
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
    if (wq && wq != raw_queries)
        imago_free_aligned(wq);
    if (conn)
        ix_store_release(ix->st, conn);
    free(allow);
    return rc;
}
