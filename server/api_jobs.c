/* The jobs endpoints: POST /v1/admin/jobs (a bulk ingest), GET
 * /v1/admin/jobs[/{id}], DELETE /v1/admin/jobs/{id} (cancel) and POST
 * /v1/admin/reindex. The runner itself is jobs.c; these are short calls on
 * the MHD thread.
 */
#include "app.h"
#include "jobs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JOB_ERRORS_SHOWN 10

static imago_api_job_state api_state(int st)
{
    switch (st) {
    case IMAGO_JOB_PENDING: return IMAGO_API_JOB_QUEUED;
    case IMAGO_JOB_RUNNING: return IMAGO_API_JOB_RUNNING;
    case IMAGO_JOB_DONE: return IMAGO_API_JOB_DONE;
    case IMAGO_JOB_FAILED: return IMAGO_API_JOB_FAILED;
    default: return IMAGO_API_JOB_CANCELLED;
    }
}

/* Fills a status (and its errors, owned by *items and *req; errs holds
 * JOB_ERRORS_SHOWN + 1) for job id. The caller clears *req, *items and
 * pr->info. */
static int job_status(imago_jobs *j, imago_index *ix, int64_t id, imago_job_status *st,
                      imago_jobs_progress *pr, imago_job_item **items, size_t *n_items,
                      imago_job_item_error *errs, imago_job_request *req, imago_error *err)
{
    int rc = imago_jobs_progress_get(j, id, pr, err);
    if (rc != 0)
        return rc;
    memset(st, 0, sizeof *st);
    st->id = id;
    st->kind = pr->info.kind;
    st->state = api_state(pr->info.state);
    st->total = pr->info.total;
    st->done = pr->info.done;
    st->failed = pr->info.failed;
    st->rate = pr->rate;
    st->eta_s = pr->eta_s;
    st->created_at = pr->info.created_at;
    st->updated_at = pr->info.updated_at;
    st->error = pr->info.error;
    *items = NULL;
    *n_items = 0;
    int first = 0;
    if (errs && pr->info.state == IMAGO_JOB_FAILED && pr->info.error) {
        /* the job itself failed (its source could not be listed, ...): the
         * reason is the first of its errors, under the source path */
        memset(req, 0, sizeof *req);
        const char *pj = pr->info.params_json ? pr->info.params_json : "";
        imago_error e2;
        imago_error_clear(&e2);
        int parsed = strcmp(pr->info.kind, "ingest") == 0 &&
                     imago_job_request_parse(pj, strlen(pj), req, &e2) == 0;
        errs[0].path = parsed && req->path ? req->path : "";
        errs[0].code = IMAGO_API_UNPROCESSABLE;
        errs[0].message = pr->info.error;
        first = 1;
    }
    if (errs && imago_job_errors(ix, id, JOB_ERRORS_SHOWN, items, n_items, err) == 0) {
        for (size_t i = 0; i < *n_items; i++) {
            char *nl = strchr((*items)[i].source, '\n');
            if (nl)
                *nl = '\0'; /* manifest metadata is not part of the path */
            errs[first + i].path = (*items)[i].source;
            errs[first + i].code =
                imago_api_error_from_code((*items)[i].error_code, IMAGO_API_CTX_IMAGE);
            errs[first + i].message = (*items)[i].error;
        }
    }
    if (errs) {
        st->n_errors = first + (int)*n_items;
        st->errors = errs;
    }
    return 0;
}

static int job_reply(imago_http_request *r, imago_http_response *resp, int64_t id, int status)
{
    imago_index_slot *slot = imago_server_index(imago_app_server(r));
    imago_jobs *j = imago_index_slot_jobs(slot);
    imago_index *ix = imago_index_slot_index(slot);
    imago_job_status st;
    imago_jobs_progress pr;
    imago_job_item *items = NULL;
    size_t n = 0;
    imago_job_item_error errs[JOB_ERRORS_SHOWN + 1];
    imago_job_request req;
    memset(&req, 0, sizeof req);
    imago_error err;
    imago_error_clear(&err);
    if (job_status(j, ix, id, &st, &pr, &items, &n, errs, &req, &err) != 0)
        return imago_http_fail_code(resp, &err, IMAGO_API_CTX_GENERIC);
    char *json = NULL;
    int rc = imago_job_status_to_json(&st, &json, &err);
    imago_job_request_clear(&req);
    imago_job_items_free(items, n);
    imago_job_info_clear(&pr.info);
    if (rc != 0)
        return imago_http_fail(resp, IMAGO_API_INTERNAL, err.msg);
    imago_http_json(resp, status, json);
    return IMAGO_HTTP_DONE;
}

static int job_fail(imago_http_response *resp, const imago_error *err)
{
    imago_api_error code;
    switch (err->code) {
    case IMAGO_ERR_AUTH: code = IMAGO_API_FORBIDDEN; break;
    case IMAGO_ERR_UNSUPPORTED: code = IMAGO_API_UNPROCESSABLE; break;
    default: code = imago_api_error_from_code(err->code, IMAGO_API_CTX_JSON);
    }
    return imago_http_fail(resp, code, err->msg);
}

/* 202 {"job_id": id}, with its Location when location is set. */
static int job_created(imago_http_response *resp, int64_t id, int location)
{
    char *json = NULL;
    imago_error err;
    imago_error_clear(&err);
    if (imago_job_created_to_json(id, &json, &err) != 0)
        return imago_http_fail(resp, IMAGO_API_INTERNAL, err.msg);
    imago_http_json(resp, 202, json);
    if (location) {
        char loc[64];
        snprintf(loc, sizeof loc, "/v1/admin/jobs/%lld", (long long)id);
        resp->location = imago_xstrdup(loc);
    }
    return IMAGO_HTTP_DONE;
}

int imago_app_job_accepted(imago_http_response *resp, int64_t id)
{
    return job_created(resp, id, 1);
}

int imago_api_job_create(imago_http_request *r, imago_http_response *resp)
{
    const char *body;
    size_t len;
    if (imago_app_json_body(r, resp, &body, &len))
        return IMAGO_HTTP_DONE;
    imago_job_request req;
    imago_error err;
    imago_error_clear(&err);
    if (imago_job_request_parse(body, len, &req, &err) != 0)
        return imago_http_fail_code(resp, &err, IMAGO_API_CTX_JSON);
    int rc = IMAGO_HTTP_DONE;
    imago_jobs *j = imago_app_need_jobs(r, resp);
    int64_t id = 0;
    if (j && imago_jobs_submit_ingest(j, req.path, req.kind == IMAGO_JOB_SOURCE_MANIFEST,
                                      req.recursive, (const char *const *)req.extensions,
                                      req.n_extensions, &id, &err) != 0)
        rc = job_fail(resp, &err);
    else if (j)
        rc = imago_app_job_accepted(resp, id);
    imago_job_request_clear(&req);
    return rc;
}

int imago_api_reindex(imago_http_request *r, imago_http_response *resp)
{
    const char *body;
    size_t len;
    if (imago_app_json_body(r, resp, &body, &len))
        return IMAGO_HTTP_DONE;
    imago_reindex_request rr;
    imago_error err;
    imago_error_clear(&err);
    if (imago_reindex_request_parse(body, len, &rr, &err) != 0)
        return imago_http_fail_code(resp, &err, IMAGO_API_CTX_JSON);
    int rc = IMAGO_HTTP_DONE;
    imago_jobs *j = imago_app_need_jobs(r, resp);
    int64_t id = 0;
    if (j && imago_jobs_submit_reindex(j, rr.factory, rr.dba, &id, &err) != 0)
        rc = job_fail(resp, &err);
    else if (j)
        rc = job_created(resp, id, 0); /* no Location, as before */
    imago_reindex_request_clear(&rr);
    return rc;
}

int imago_api_job_get(imago_http_request *r, imago_http_response *resp)
{
    int64_t id;
    if (imago_app_no_query(r, resp) || imago_app_path_id(r, resp, &id) ||
        !imago_app_need_jobs(r, resp))
        return IMAGO_HTTP_DONE;
    return job_reply(r, resp, id, 200);
}

int imago_api_job_cancel(imago_http_request *r, imago_http_response *resp)
{
    int64_t id;
    if (imago_app_no_query(r, resp) || imago_app_path_id(r, resp, &id))
        return IMAGO_HTTP_DONE;
    imago_jobs *j = imago_app_need_jobs(r, resp);
    if (!j)
        return IMAGO_HTTP_DONE;
    imago_error err;
    imago_error_clear(&err);
    if (imago_jobs_cancel(j, id, &err) != 0)
        return imago_http_fail_code(resp, &err, IMAGO_API_CTX_GENERIC);
    return job_reply(r, resp, id, 200);
}

int imago_api_job_list(imago_http_request *r, imago_http_response *resp)
{
    if (imago_app_no_query(r, resp))
        return IMAGO_HTTP_DONE;
    imago_jobs *j = imago_app_need_jobs(r, resp);
    if (!j)
        return IMAGO_HTTP_DONE;
    imago_index *ix = imago_index_slot_index(imago_server_index(imago_app_server(r)));
    int64_t ids[50];
    size_t n = 0;
    imago_error err;
    imago_error_clear(&err);
    if (imago_job_list(ix, ids, 50, &n, &err) != 0)
        return imago_http_fail(resp, IMAGO_API_INTERNAL, err.msg);
    imago_job_status st[50];
    imago_jobs_progress pr[50];
    size_t got = 0;
    for (size_t i = 0; i < n; i++) {
        imago_job_item *items = NULL;
        size_t ni = 0;
        if (job_status(j, ix, ids[i], &st[got], &pr[got], &items, &ni, NULL, NULL, &err) == 0)
            got++;
    }
    char *json = NULL;
    int rc = imago_job_list_to_json(st, (int)got, &json, &err);
    for (size_t i = 0; i < got; i++)
        imago_job_info_clear(&pr[i].info);
    if (rc != 0)
        return imago_http_fail(resp, IMAGO_API_INTERNAL, err.msg);
    imago_http_json(resp, 200, json);
    return IMAGO_HTTP_DONE;
}
