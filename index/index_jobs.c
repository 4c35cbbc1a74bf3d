/* index/index_jobs.c: the jobs API: each call is one store transaction on
 * the writer connection (under the writer mutex) or one read on a pooled
 * reader connection; the SQL is in store_jobs.c.
 */
#include <jansson.h>
#include <pthread.h>

#include "core.h"
#include "index_int.h"

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
    IX_WITH_READER(ix, c, err, ix_job_get(c, job_id, out, err));
}

int imago_job_list(imago_index *ix, int64_t *ids, size_t max, size_t *n, imago_error *err)
{
    IX_WITH_READER(ix, c, err, ix_job_list(c, ids, max, n, err));
}

int imago_job_errors(imago_index *ix, int64_t job_id, size_t max, imago_job_item **items, size_t *n,
                     imago_error *err)
{
    IX_WITH_READER(ix, c, err, ix_job_errors(c, job_id, max, items, n, err));
}

int imago_job_resume(imago_index *ix, int64_t **ids, size_t *n, imago_error *err)
{
    WITH_WRITER_TXN(ix, c, err, ix_job_resume(c, ids, n, err));
}
