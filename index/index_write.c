/* index/index_write.c: adds and deletes. A write is committed to the store
 * first (one transaction, one sequence number per row), then applied to the
 * in-memory index; an automatic snapshot follows every snapshot_interval
 * changes.
 */
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "index_int.h"

#define MOD "index"

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
        if (ix_index_write_snapshot(ix, &e))
            IMAGO_WARN(MOD, "automatic snapshot failed: %s", e.msg);
    }
}

/* Ends the write transaction begun on w: when rc (the writes so far) is 0,
 * records seq and commits; otherwise, or when that fails, rolls back.
 * Returns the first error. */
static int finish_write(ix_conn *w, int rc, int64_t seq, imago_error *err)
{
    if (rc == 0)
        rc = ix_store_set_seq(w, seq, err);
    if (rc == 0)
        rc = ix_conn_commit(w, err);
    if (rc)
        ix_conn_rollback(w);
    return rc;
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
    rc = finish_write(w, rc, seq, err);
    if (rc) {
        pthread_mutex_unlock(&ix->wmu);
        free(ids);
        return rc;
    }
    int64_t first = ix->store_seq + 1;
    ix->store_seq = seq;
    /* committed: now the in-memory index, item by item (same order as replay) */
    if (!ix->dba) {
        /* no augmentation: one append (one FAISS add call for the batch) */
        float *V = NULL, *W = NULL;
        rc = imago_alloc_array(n, (size_t)ix->dim * sizeof(float), 0, (void **)&V, err);
        for (size_t i = 0; rc == 0 && i < n; i++)
            memcpy(V + i * (size_t)ix->dim, items[i].vector, (size_t)ix->dim * sizeof(float));
        if (rc == 0)
            rc = ix_index_vectors(ix->cur->wh, V, n, &W, err);
        if (rc == 0) {
            pthread_rwlock_wrlock(&ix->rw);
            rc = ix_core_append(ix->cur, ids, W, n, err);
            if (rc == 0)
                ix->cur->seq = seq;
            pthread_rwlock_unlock(&ix->rw);
        }
        if (W != V)
            imago_free_aligned(W);
        imago_free_aligned(V);
    } else {
        float *aug = imago_xmalloc((size_t)ix->dim * sizeof *aug);
        float *wb = imago_xmalloc((size_t)ix->dim * sizeof *wb);
        for (size_t i = 0; rc == 0 && i < n; i++)
            rc = ix_index_apply_add(ix, ix->cur, w, 1, ids[i], items[i].vector, wb, aug,
                                    first + (int64_t)i, err);
        free(wb);
        free(aug);
    }
    if (rc) {
        /* The rows are durable; the in-memory index is behind. Rebuild it so
         * that it agrees with the store again. */
        IMAGO_ERROR(MOD, "in-memory add failed after commit (%s): rebuilding", err ? err->msg : "");
        ix_core *c = NULL;
        imago_error e2;
        imago_error_clear(&e2);
        imago_whiten *cw = ix->cur->wh;
        if (ix_index_build(ix, w, NULL, &cw, &c, &e2) == 0) {
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
    rc = finish_write(w, rc, seq, err);
    if (rc) {
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
