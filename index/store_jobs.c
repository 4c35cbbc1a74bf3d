/* index/store_jobs.c: the job and job item rows: creation, checked state
 * transitions, claiming pending items, finishing them, listing, errors, and
 * the resume after a restart.
 */
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "index_int.h"
#include "store_int.h"

const char *imago_job_state_name(imago_job_state s)
{
    switch (s) {
    case IMAGO_JOB_PENDING: return "pending";
    case IMAGO_JOB_RUNNING: return "running";
    case IMAGO_JOB_DONE: return "done";
    case IMAGO_JOB_FAILED: return "failed";
    case IMAGO_JOB_CANCELLED: return "cancelled";
    }
    return "unknown";
}

int ix_job_create(ix_conn *c, const char *kind, const char *params, int64_t *id, imago_error *err)
{
    if (!kind || !*kind || strlen(kind) >= 32)
        return imago_error_set(err, IMAGO_ERR_INVALID, "job kind must be 1..31 characters");
    sqlite3_stmt *s = ix_stmt(c, S_JOB_INSERT);
    sqlite3_bind_text(s, 1, kind, -1, SQLITE_STATIC);
    ix_bind_opt_text(s, 2, params);
    sqlite3_bind_int64(s, 3, (int64_t)time(NULL));
    int rc = ix_step_done(c, s, "create job", err);
    if (rc == 0)
        *id = sqlite3_last_insert_rowid(c->db);
    return rc;
}

static int job_state(ix_conn *c, int64_t job_id, int *state, imago_error *err)
{
    sqlite3_stmt *s = ix_stmt(c, S_JOB_STATE_GET);
    sqlite3_bind_int64(s, 1, job_id);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *state = sqlite3_column_int(s, 0);
        sqlite3_reset(s);
        return 0;
    }
    sqlite3_reset(s);
    if (rc == SQLITE_DONE)
        return imago_error_set(err, IMAGO_ERR_NOT_FOUND, "job %lld not found", (long long)job_id);
    return ix_db_err(c->db, err, "job state");
}

int ix_job_add_items(ix_conn *c, int64_t job_id, const char *const *sources,
                     const char *const *external_ids, size_t n, imago_error *err)
{
    int state;
    int rc = job_state(c, job_id, &state, err);
    if (rc)
        return rc;
    if (state != IMAGO_JOB_PENDING && state != IMAGO_JOB_RUNNING)
        return imago_error_set(err, IMAGO_ERR_CONFLICT, "job %lld is %s: cannot add items",
                               (long long)job_id, imago_job_state_name(state));
    for (size_t i = 0; i < n; i++) {
        if (!sources[i] || !*sources[i])
            return imago_error_set(err, IMAGO_ERR_INVALID, "job item %zu has no source", i);
        sqlite3_stmt *s = ix_stmt(c, S_ITEM_INSERT);
        sqlite3_bind_int64(s, 1, job_id);
        sqlite3_bind_text(s, 2, sources[i], -1, SQLITE_STATIC);
        ix_bind_opt_text(s, 3, external_ids ? external_ids[i] : NULL);
        if ((rc = ix_step_done(c, s, "add job item", err)))
            return rc;
    }
    sqlite3_stmt *s = ix_stmt(c, S_JOB_TOUCH);
    sqlite3_bind_int64(s, 1, job_id);
    sqlite3_bind_int64(s, 2, (int64_t)time(NULL));
    return ix_step_done(c, s, "touch job", err);
}

static int transition_ok(int from, int to)
{
    switch (from) {
    /* pending -> failed: the listing of the source failed (never left queued) */
    case IMAGO_JOB_PENDING:
        return to == IMAGO_JOB_RUNNING || to == IMAGO_JOB_CANCELLED || to == IMAGO_JOB_FAILED;
    case IMAGO_JOB_RUNNING:
        return to == IMAGO_JOB_DONE || to == IMAGO_JOB_FAILED || to == IMAGO_JOB_CANCELLED ||
               to == IMAGO_JOB_PENDING;
    default: return 0;
    }
}

int ix_job_set_state(ix_conn *c, int64_t job_id, imago_job_state to, const char *error,
                     imago_error *err)
{
    int from;
    int rc = job_state(c, job_id, &from, err);
    if (rc)
        return rc;
    if (!transition_ok(from, (int)to))
        return imago_error_set(err, IMAGO_ERR_CONFLICT, "job %lld: cannot go from %s to %s",
                               (long long)job_id, imago_job_state_name(from),
                               imago_job_state_name(to));
    sqlite3_stmt *s = ix_stmt(c, S_JOB_STATE_SET);
    sqlite3_bind_int64(s, 1, job_id);
    sqlite3_bind_int(s, 2, (int)to);
    ix_bind_opt_text(s, 3, error);
    sqlite3_bind_int64(s, 4, (int64_t)time(NULL));
    return ix_step_done(c, s, "set job state", err);
}

void imago_job_items_free(imago_job_item *items, size_t n)
{
    if (!items)
        return;
    for (size_t i = 0; i < n; i++) {
        free(items[i].source);
        free(items[i].external_id);
        free(items[i].error);
    }
    free(items);
}

/* Reads up to max (at most 100000) items of a job with statement which:
 * S_CLAIM_SELECT (pending items, returned as running with the attempt they
 * are about to make) or S_JOB_ERRORS (failed items with their error). */
static int select_items(ix_conn *c, int which, int64_t job_id, size_t max, const char *what,
                        imago_job_item **items_out, size_t *n_out, imago_error *err)
{
    const int failed = which == S_JOB_ERRORS;
    if (max > 100000)
        max = 100000;
    imago_job_item *items = imago_xcalloc(max ? max : 1, sizeof *items);
    size_t n = 0;
    sqlite3_stmt *s = ix_stmt(c, which);
    sqlite3_bind_int64(s, 1, job_id);
    sqlite3_bind_int64(s, 2, (int64_t)max);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW && n < max) {
        imago_job_item *it = &items[n++];
        it->id = sqlite3_column_int64(s, 0);
        it->job_id = job_id;
        it->source = ix_col_dup(s, 1);
        it->external_id = ix_col_dup(s, 2);
        it->attempts = sqlite3_column_int(s, 3) + (failed ? 0 : 1);
        it->state = failed ? IMAGO_ITEM_FAILED : IMAGO_ITEM_RUNNING;
        if (failed) {
            it->error_code = sqlite3_column_int(s, 4);
            it->error = ix_col_dup(s, 5);
        }
        it->image_id = -1;
    }
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        rc = ix_db_err(c->db, err, what);
        sqlite3_reset(s);
        imago_job_items_free(items, n);
        return rc;
    }
    sqlite3_reset(s);
    *items_out = items;
    *n_out = n;
    return 0;
}

int ix_job_claim(ix_conn *c, int64_t job_id, size_t max, imago_job_item **items_out, size_t *n_out,
                 imago_error *err)
{
    int state;
    int rc = job_state(c, job_id, &state, err);
    if (rc)
        return rc;
    if (state != IMAGO_JOB_RUNNING)
        return imago_error_set(err, IMAGO_ERR_CONFLICT, "job %lld is %s, not running",
                               (long long)job_id, imago_job_state_name(state));
    imago_job_item *items = NULL;
    size_t n = 0;
    if ((rc = select_items(c, S_CLAIM_SELECT, job_id, max, "claim items", &items, &n, err)))
        return rc;
    for (size_t i = 0; i < n; i++) {
        sqlite3_stmt *s = ix_stmt(c, S_CLAIM_MARK);
        sqlite3_bind_int64(s, 1, items[i].id);
        if ((rc = ix_step_done(c, s, "mark item", err))) {
            imago_job_items_free(items, n);
            return rc;
        }
    }
    *items_out = items;
    *n_out = n;
    return 0;
}

int ix_job_item_finish(ix_conn *c, int64_t item_id, int ok_, int64_t image_id, int code,
                       const char *msg, imago_error *err)
{
    sqlite3_stmt *s = ix_stmt(c, S_ITEM_FINISH);
    sqlite3_bind_int64(s, 1, item_id);
    sqlite3_bind_int(s, 2, ok_ ? IMAGO_ITEM_DONE : IMAGO_ITEM_FAILED);
    if (ok_)
        sqlite3_bind_int64(s, 3, image_id);
    else
        sqlite3_bind_null(s, 3);
    sqlite3_bind_int(s, 4, ok_ ? 0 : code);
    ix_bind_opt_text(s, 5, ok_ ? NULL : msg);
    int rc = ix_step_done(c, s, "finish item", err);
    if (rc)
        return rc;
    if (sqlite3_changes(c->db) == 0)
        return imago_error_set(err, IMAGO_ERR_CONFLICT, "job item %lld is not running",
                               (long long)item_id);
    return 0;
}

int ix_job_get(ix_conn *c, int64_t job_id, imago_job_info *out, imago_error *err)
{
    sqlite3_stmt *s = ix_stmt(c, S_JOB_GET);
    sqlite3_bind_int64(s, 1, job_id);
    int rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) {
        sqlite3_reset(s);
        if (rc == SQLITE_DONE)
            return imago_error_set(err, IMAGO_ERR_NOT_FOUND, "job %lld not found",
                                   (long long)job_id);
        return ix_db_err(c->db, err, "get job");
    }
    imago_job_info info;
    memset(&info, 0, sizeof info);
    info.id = sqlite3_column_int64(s, 0);
    snprintf(info.kind, sizeof info.kind, "%s", (const char *)sqlite3_column_text(s, 1));
    info.state = (imago_job_state)sqlite3_column_int(s, 2);
    info.params_json = ix_col_dup(s, 3);
    info.error = ix_col_dup(s, 4);
    info.created_at = sqlite3_column_int64(s, 5);
    info.updated_at = sqlite3_column_int64(s, 6);
    sqlite3_reset(s);
    s = ix_stmt(c, S_JOB_COUNTS);
    sqlite3_bind_int64(s, 1, job_id);
    if (sqlite3_step(s) != SQLITE_ROW) {
        rc = ix_db_err(c->db, err, "job counts");
        sqlite3_reset(s);
        imago_job_info_clear(&info);
        return rc;
    }
    info.total = sqlite3_column_int64(s, 0);
    info.done = sqlite3_column_int64(s, 1);
    info.failed = sqlite3_column_int64(s, 2);
    info.pending = sqlite3_column_int64(s, 3);
    info.running = sqlite3_column_int64(s, 4);
    sqlite3_reset(s);
    *out = info;
    return 0;
}

void imago_job_info_clear(imago_job_info *info)
{
    if (!info)
        return;
    free(info->params_json);
    free(info->error);
    info->params_json = info->error = NULL;
}

int ix_job_list(ix_conn *c, int64_t *ids, size_t max, size_t *n_out, imago_error *err)
{
    sqlite3_stmt *s = ix_stmt(c, S_JOB_LIST);
    sqlite3_bind_int64(s, 1, (int64_t)(max > INT64_MAX ? INT64_MAX : max));
    size_t n = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW && n < max)
        ids[n++] = sqlite3_column_int64(s, 0);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        rc = ix_db_err(c->db, err, "list jobs");
        sqlite3_reset(s);
        return rc;
    }
    sqlite3_reset(s);
    *n_out = n;
    return 0;
}

int ix_job_errors(ix_conn *c, int64_t job_id, size_t max, imago_job_item **items_out, size_t *n_out,
                  imago_error *err)
{
    return select_items(c, S_JOB_ERRORS, job_id, max, "job errors", items_out, n_out, err);
}

int ix_job_resume(ix_conn *c, int64_t **ids_out, size_t *n_out, imago_error *err)
{
    int rc = ix_step_done(c, ix_stmt(c, S_RESUME_ITEMS), "resume items", err);
    if (rc)
        return rc;
    sqlite3_stmt *s = ix_stmt(c, S_RESUME_JOBS);
    size_t n = 0, cap = 8;
    int64_t *ids = imago_xmalloc(cap * sizeof *ids);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (n == cap)
            ids = imago_xrealloc(ids, (cap *= 2) * sizeof *ids);
        ids[n++] = sqlite3_column_int64(s, 0);
    }
    if (rc != SQLITE_DONE) {
        rc = ix_db_err(c->db, err, "resume jobs");
        sqlite3_reset(s);
        free(ids);
        return rc;
    }
    sqlite3_reset(s);
    *ids_out = ids;
    *n_out = n;
    return 0;
}
