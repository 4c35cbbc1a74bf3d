/* index/store_int.h: the SQL layer shared by store.c, store_images.c,
 * store_jobs.c and store_whiten.c: statement ids (texts in store.c), the
 * connection, and the step/bind/error helpers. Only the store files
 * include it; the rest of the module sees ix_store / ix_conn through
 * index_int.h.
 */
#ifndef IMAGO_INDEX_STORE_INT_H
#define IMAGO_INDEX_STORE_INT_H

#include <sqlite3.h>

#include "index_int.h"

enum {
    S_BEGIN_R,
    S_BEGIN_W,
    S_COMMIT,
    S_ROLLBACK,
    S_META_GET,
    S_META_SET,
    S_IMG_FIND,
    S_IMG_INSERT,
    S_IMG_UPDATE,
    S_DESC_PUT,
    S_IMG_DELETE,
    S_IMG_INFO,
    S_IMG_INFO_EXT,
    S_IMG_THUMB,
    S_IMG_META,
    S_DESC_GET,
    S_LOAD_ALL,
    S_COUNTS,
    S_CHANGES,
    S_PURGE_DESC,
    S_PURGE_IMG,
    S_JOB_INSERT,
    S_ITEM_INSERT,
    S_JOB_STATE_GET,
    S_JOB_STATE_SET,
    S_CLAIM_SELECT,
    S_CLAIM_MARK,
    S_ITEM_FINISH,
    S_JOB_GET,
    S_JOB_COUNTS,
    S_JOB_LIST,
    S_JOB_ERRORS,
    S_RESUME_ITEMS,
    S_RESUME_JOBS,
    S_JOB_TOUCH,
    S_WH_GET,
    S_WH_OFF,
    S_WH_PUT,
    S_COUNT_
};

struct ix_conn {
    sqlite3 *db;
    sqlite3_stmt *st[S_COUNT_];
    ix_conn *next_free;
};

/* Translates the last error of db into err (IMAGO_ERR_CONFLICT for a
 * constraint, _BUSY, _NOMEM, _IO, _FORMAT, else _BACKEND); what names the
 * operation. Returns the code. */
int ix_db_err(sqlite3 *db, imago_error *err, const char *what);
/* Steps s once (DONE or ROW is success) and resets it. */
int ix_step_done(ix_conn *c, sqlite3_stmt *s, const char *what, imago_error *err);
/* Binds v, or NULL when v is NULL (SQLITE_STATIC: v must outlive the step). */
void ix_bind_opt_text(sqlite3_stmt *s, int i, const char *v);
/* Column i as a malloc'ed string, NULL for SQL NULL. */
char *ix_col_dup(sqlite3_stmt *s, int i);

/* The prepared statement which of c, reset and unbound. */
static inline sqlite3_stmt *ix_stmt(ix_conn *c, int which)
{
    sqlite3_stmt *s = c->st[which];
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return s;
}

#endif
