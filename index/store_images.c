/* index/store_images.c: the image rows and their descriptors: insert or
 * replace, tombstones and compaction, info / thumbnail / metadata / vector
 * reads, the bulk load of all live descriptors and the change feed the
 * index replays.
 */
#include <limits.h>
#include <math.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "index_int.h"
#include "store_int.h"

int ix_store_put_image(ix_conn *c, const imago_index_item *it, const char *model, int dim,
                       int64_t seq, int64_t *id, int *replaced, imago_error *err)
{
    sqlite3_stmt *s = ix_stmt(c, S_IMG_FIND);
    sqlite3_bind_text(s, 1, it->external_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    int64_t existing = -1;
    if (rc == SQLITE_ROW)
        existing = sqlite3_column_int64(s, 0);
    else if (rc != SQLITE_DONE) {
        rc = ix_db_err(c->db, err, "find image");
        sqlite3_reset(s);
        return rc;
    }
    sqlite3_reset(s);

    s = ix_stmt(c, existing >= 0 ? S_IMG_UPDATE : S_IMG_INSERT);
    int o = existing >= 0 ? 1 : 0; /* UPDATE binds id as ?1 */
    if (existing >= 0)
        sqlite3_bind_int64(s, 1, existing);
    else
        sqlite3_bind_text(s, 1, it->external_id, -1, SQLITE_STATIC);
    ix_bind_opt_text(s, 2, it->sha256);
    ix_bind_opt_text(s, 3, it->uri);
    sqlite3_bind_int(s, 4, it->width);
    sqlite3_bind_int(s, 5, it->height);
    ix_bind_opt_text(s, 6, it->metadata_json);
    if (it->thumbnail && it->thumbnail_len)
        sqlite3_bind_blob64(s, 7, it->thumbnail, it->thumbnail_len, SQLITE_STATIC);
    else
        sqlite3_bind_null(s, 7);
    sqlite3_bind_int64(s, 8, (int64_t)time(NULL));
    sqlite3_bind_int64(s, 9, seq);
    (void)o;
    rc = ix_step_done(c, s, existing >= 0 ? "update image" : "insert image", err);
    if (rc)
        return rc;
    int64_t image_id = existing >= 0 ? existing : sqlite3_last_insert_rowid(c->db);

    s = ix_stmt(c, S_DESC_PUT);
    sqlite3_bind_int64(s, 1, image_id);
    sqlite3_bind_text(s, 2, model, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 3, dim);
    sqlite3_bind_blob64(s, 4, it->vector, (sqlite3_uint64)dim * sizeof(float), SQLITE_STATIC);
    rc = ix_step_done(c, s, "put descriptor", err);
    if (rc)
        return rc;
    *id = image_id;
    *replaced = existing >= 0;
    return 0;
}

int ix_store_delete_image(ix_conn *c, int64_t id, int64_t seq, imago_error *err)
{
    sqlite3_stmt *s = ix_stmt(c, S_IMG_DELETE);
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_int64(s, 2, seq);
    int rc = ix_step_done(c, s, "delete image", err);
    if (rc)
        return rc;
    if (sqlite3_changes(c->db) == 0)
        return imago_error_set(err, IMAGO_ERR_NOT_FOUND, "image %lld not found", (long long)id);
    return 0;
}

int ix_store_purge_deleted(ix_conn *c, int64_t *n_purged, imago_error *err)
{
    int rc = ix_step_done(c, ix_stmt(c, S_PURGE_DESC), "purge descriptors", err);
    if (rc)
        return rc;
    rc = ix_step_done(c, ix_stmt(c, S_PURGE_IMG), "purge images", err);
    if (rc)
        return rc;
    if (n_purged)
        *n_purged = sqlite3_changes(c->db);
    return 0;
}

int ix_store_get_info(ix_conn *c, int64_t id, const char *external_id, imago_image_info **out,
                      imago_error *err)
{
    sqlite3_stmt *s = ix_stmt(c, external_id ? S_IMG_INFO_EXT : S_IMG_INFO);
    if (external_id)
        sqlite3_bind_text(s, 1, external_id, -1, SQLITE_STATIC);
    else
        sqlite3_bind_int64(s, 1, id);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) {
        sqlite3_reset(s);
        if (external_id)
            return imago_error_set(err, IMAGO_ERR_NOT_FOUND, "image '%s' not found", external_id);
        return imago_error_set(err, IMAGO_ERR_NOT_FOUND, "image %lld not found", (long long)id);
    }
    if (rc != SQLITE_ROW) {
        rc = ix_db_err(c->db, err, "get image");
        sqlite3_reset(s);
        return rc;
    }
    imago_image_info *info = imago_xcalloc(1, sizeof *info);
    info->id = sqlite3_column_int64(s, 0);
    info->external_id = ix_col_dup(s, 1);
    info->sha256 = ix_col_dup(s, 2);
    info->uri = ix_col_dup(s, 3);
    info->width = sqlite3_column_int(s, 4);
    info->height = sqlite3_column_int(s, 5);
    info->metadata_json = ix_col_dup(s, 6);
    info->created_at = sqlite3_column_int64(s, 7);
    info->seq = sqlite3_column_int64(s, 8);
    info->has_thumbnail = sqlite3_column_int(s, 9);
    sqlite3_reset(s);
    *out = info;
    return 0;
}

int ix_store_get_thumbnail(ix_conn *c, int64_t id, void **data, size_t *len, imago_error *err)
{
    sqlite3_stmt *s = ix_stmt(c, S_IMG_THUMB);
    sqlite3_bind_int64(s, 1, id);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW && sqlite3_column_type(s, 0) == SQLITE_BLOB) {
        size_t n = (size_t)sqlite3_column_bytes(s, 0);
        void *buf = imago_xmalloc(n);
        memcpy(buf, sqlite3_column_blob(s, 0), n);
        sqlite3_reset(s);
        *data = buf;
        *len = n;
        return 0;
    }
    if (rc == SQLITE_ROW || rc == SQLITE_DONE) {
        sqlite3_reset(s);
        return imago_error_set(err, IMAGO_ERR_NOT_FOUND, "image %lld has no thumbnail",
                               (long long)id);
    }
    rc = ix_db_err(c->db, err, "get thumbnail");
    sqlite3_reset(s);
    return rc;
}

int ix_store_get_metadata(ix_conn *c, int64_t id, char **json, int *found, imago_error *err)
{
    sqlite3_stmt *s = ix_stmt(c, S_IMG_META);
    sqlite3_bind_int64(s, 1, id);
    int rc = sqlite3_step(s);
    *json = NULL;
    *found = 0;
    if (rc == SQLITE_ROW) {
        *found = 1;
        *json = ix_col_dup(s, 0);
    } else if (rc != SQLITE_DONE) {
        rc = ix_db_err(c->db, err, "get metadata");
        sqlite3_reset(s);
        return rc;
    }
    sqlite3_reset(s);
    return 0;
}

int ix_store_get_vector(ix_conn *c, int64_t id, int dim, float *out, imago_error *err)
{
    sqlite3_stmt *s = ix_stmt(c, S_DESC_GET);
    sqlite3_bind_int64(s, 1, id);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) {
        sqlite3_reset(s);
        return imago_error_set(err, IMAGO_ERR_NOT_FOUND, "descriptor of image %lld not found",
                               (long long)id);
    }
    if (rc != SQLITE_ROW) {
        rc = ix_db_err(c->db, err, "get descriptor");
        sqlite3_reset(s);
        return rc;
    }
    int d = sqlite3_column_int(s, 0);
    int bytes = sqlite3_column_bytes(s, 1);
    if (d != dim || bytes != dim * (int)sizeof(float)) {
        sqlite3_reset(s);
        return imago_error_set(err, IMAGO_ERR_FORMAT,
                               "descriptor of image %lld has dim %d (%d bytes), expected %d",
                               (long long)id, d, bytes, dim);
    }
    memcpy(out, sqlite3_column_blob(s, 1), (size_t)bytes);
    sqlite3_reset(s);
    return 0;
}

int ix_store_counts(ix_conn *c, int64_t *live, int64_t *deleted, imago_error *err)
{
    sqlite3_stmt *s = ix_stmt(c, S_COUNTS);
    int rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) {
        rc = ix_db_err(c->db, err, "counts");
        sqlite3_reset(s);
        return rc;
    }
    *live = sqlite3_column_int64(s, 0);
    *deleted = sqlite3_column_int64(s, 1);
    sqlite3_reset(s);
    return 0;
}

int ix_store_load_all(ix_conn *c, int dim, int64_t **ids_out, float **vecs_out, size_t *n_out,
                      int64_t *seq_out, imago_error *err)
{
    int own_txn = sqlite3_get_autocommit(c->db);
    int rc = 0;
    if (own_txn && (rc = ix_conn_begin(c, 0, err)))
        return rc;
    int64_t live = 0, del = 0, seq = 0;
    rc = ix_store_counts(c, &live, &del, err);
    if (rc == 0)
        rc = ix_store_seq(c, &seq, err);
    int64_t *ids = NULL;
    float *vecs = NULL;
    size_t n = 0;
    if (rc == 0) {
        ids = imago_xmalloc((size_t)(live ? live : 1) * sizeof *ids);
        rc = imago_alloc_array((size_t)(live ? live : 1), (size_t)dim * sizeof(float), 0,
                               (void **)&vecs, err);
    }
    if (rc == 0) {
        sqlite3_stmt *s = ix_stmt(c, S_LOAD_ALL);
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
            if (n >= (size_t)live) {
                rc = imago_error_set(err, IMAGO_ERR_INTERNAL, "store changed during load");
                break;
            }
            int d = sqlite3_column_int(s, 1);
            if (d != dim || sqlite3_column_bytes(s, 2) != dim * (int)sizeof(float)) {
                rc = imago_error_set(err, IMAGO_ERR_FORMAT,
                                     "descriptor of image %lld has dim %d, expected %d",
                                     (long long)sqlite3_column_int64(s, 0), d, dim);
                break;
            }
            ids[n] = sqlite3_column_int64(s, 0);
            memcpy(vecs + n * (size_t)dim, sqlite3_column_blob(s, 2), (size_t)dim * sizeof(float));
            n++;
        }
        if (rc == SQLITE_DONE)
            rc = 0;
        else if (rc > 0)
            rc = ix_db_err(c->db, err, "load descriptors");
        sqlite3_reset(s);
    }
    if (own_txn) {
        if (rc)
            ix_conn_rollback(c);
        else
            rc = ix_conn_commit(c, err);
    }
    if (rc) {
        free(ids);
        imago_free_aligned(vecs);
        return rc;
    }
    *ids_out = ids;
    *vecs_out = vecs;
    *n_out = n;
    *seq_out = seq;
    return 0;
}

int ix_store_changes(ix_conn *c, int64_t after_seq, ix_change_fn fn, void *user, imago_error *err)
{
    /* Collect first: the callback may use the same connection. */
    sqlite3_stmt *s = ix_stmt(c, S_CHANGES);
    sqlite3_bind_int64(s, 1, after_seq);
    size_t n = 0, cap = 64;
    int64_t(*rows)[3] = imago_xmalloc(cap * sizeof *rows);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (n == cap) {
            cap *= 2;
            rows = imago_xrealloc(rows, cap * sizeof *rows);
        }
        rows[n][0] = sqlite3_column_int64(s, 0);
        rows[n][1] = sqlite3_column_int64(s, 1);
        rows[n][2] = sqlite3_column_int64(s, 2);
        n++;
    }
    if (rc != SQLITE_DONE) {
        rc = ix_db_err(c->db, err, "changes");
        sqlite3_reset(s);
        free(rows);
        return rc;
    }
    sqlite3_reset(s);
    rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = fn(user, rows[i][0], (int)rows[i][1], rows[i][2], err);
    free(rows);
    return rc;
}
