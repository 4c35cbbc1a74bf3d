/* index/store_whiten.c: the whitening rows: the active one, a new version
 * (the previous one deactivated), or none.
 */
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "index_int.h"
#include "store_int.h"

int ix_store_whiten_get(ix_conn *c, imago_whiten **out, imago_error *err)
{
    sqlite3_stmt *s = ix_stmt(c, S_WH_GET);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) {
        sqlite3_reset(s);
        *out = NULL;
        return 0;
    }
    if (rc != SQLITE_ROW) {
        rc = ix_db_err(c->db, err, "get whitening");
        sqlite3_reset(s);
        return rc;
    }
    imago_whiten_info info;
    memset(&info, 0, sizeof info);
    info.version = sqlite3_column_int64(s, 0);
    info.dim_in = sqlite3_column_int(s, 1);
    info.dim = sqlite3_column_int(s, 2);
    info.rank = sqlite3_column_int(s, 3);
    info.power = sqlite3_column_double(s, 4);
    info.eps = sqlite3_column_double(s, 5);
    info.n_trained = sqlite3_column_int64(s, 6);
    info.n_rows = sqlite3_column_int64(s, 7);
    info.created_at = sqlite3_column_int64(s, 8);
    const char *fp = (const char *)sqlite3_column_text(s, 9);
    snprintf(info.fingerprint, sizeof info.fingerprint, "%s", fp ? fp : "");
    size_t D = info.dim_in > 0 ? (size_t)info.dim_in : 0, d = info.dim > 0 ? (size_t)info.dim : 0;
    if ((size_t)sqlite3_column_bytes(s, 10) != D * sizeof(double) ||
        (size_t)sqlite3_column_bytes(s, 11) != d * D * sizeof(double) ||
        (size_t)sqlite3_column_bytes(s, 12) != d * sizeof(double) || D == 0 || d == 0) {
        sqlite3_reset(s);
        return imago_error_set(err, IMAGO_ERR_FORMAT, "whitening row %lld is malformed (%d x %d)",
                               (long long)info.version, info.dim, info.dim_in);
    }
    /* the blobs are not necessarily aligned for doubles: copy them */
    double *m = imago_xmalloc(D * sizeof *m), *P = imago_xmalloc(d * D * sizeof *P),
           *l = imago_xmalloc(d * sizeof *l);
    memcpy(m, sqlite3_column_blob(s, 10), D * sizeof *m);
    memcpy(P, sqlite3_column_blob(s, 11), d * D * sizeof *P);
    memcpy(l, sqlite3_column_blob(s, 12), d * sizeof *l);
    sqlite3_reset(s);
    rc = ix_whiten_from_parts(&info, m, P, l, out, err);
    free(m);
    free(P);
    free(l);
    return rc;
}

int ix_store_whiten_clear(ix_conn *c, imago_error *err)
{
    return ix_step_done(c, ix_stmt(c, S_WH_OFF), "deactivate whitening", err);
}

int ix_store_whiten_put(ix_conn *c, const imago_whiten *w, int64_t *version, imago_error *err)
{
    int rc = ix_store_whiten_clear(c, err);
    if (rc)
        return rc;
    imago_whiten_info info;
    imago_whiten_get_info(w, &info);
    size_t D = (size_t)info.dim_in, d = (size_t)info.dim;
    sqlite3_stmt *s = ix_stmt(c, S_WH_PUT);
    sqlite3_bind_int(s, 1, info.dim_in);
    sqlite3_bind_int(s, 2, info.dim);
    sqlite3_bind_int(s, 3, info.rank);
    sqlite3_bind_double(s, 4, info.power);
    sqlite3_bind_double(s, 5, info.eps);
    sqlite3_bind_int64(s, 6, info.n_trained);
    sqlite3_bind_int64(s, 7, info.n_rows);
    sqlite3_bind_int64(s, 8, info.created_at);
    sqlite3_bind_text(s, 9, info.fingerprint, -1, SQLITE_STATIC);
    sqlite3_bind_blob64(s, 10, imago_whiten_mean(w), D * sizeof(double), SQLITE_STATIC);
    sqlite3_bind_blob64(s, 11, imago_whiten_projection(w), d * D * sizeof(double), SQLITE_STATIC);
    sqlite3_bind_blob64(s, 12, imago_whiten_eigenvalues(w), d * sizeof(double), SQLITE_STATIC);
    rc = ix_step_done(c, s, "store whitening", err);
    sqlite3_clear_bindings(s);
    if (rc == 0)
        *version = sqlite3_last_insert_rowid(c->db);
    return rc;
}
