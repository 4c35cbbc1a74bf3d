/* The collection-learned whitening in the server: the whitening jobs (a
 * reindex that learns or removes it, run by the jobs runner) and the
 * /v1/admin/whitening routes (POST learns, GET describes, DELETE removes).
 * The learning itself is index/whiten.c.
 */
#include "app.h"
#include "jobs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int imago_whitening_job_kind(const char *kind)
{
    return kind &&
           (strcmp(kind, IMAGO_JOB_KIND_WHITEN) == 0 || strcmp(kind, IMAGO_JOB_KIND_UNWHITEN) == 0);
}

int imago_whitening_job_run(imago_index *ix, const char *kind, const char *params_json,
                            imago_error *err)
{
    imago_index_reindex_params rp = imago_index_reindex_params_default();
    imago_whiten_params wp = imago_whiten_params_default();
    if (strcmp(kind, IMAGO_JOB_KIND_UNWHITEN) == 0) {
        rp.whiten = 0;
        return imago_index_reindex(ix, &rp, err);
    }
    imago_whitening_request wr;
    const char *p = params_json ? params_json : "";
    int rc = imago_whitening_request_parse(p, strlen(p), &wr, err);
    if (rc != 0)
        return rc;
    wp.dim = wr.dim;
    wp.power = wr.power;
    wp.sample = wr.sample;
    wp.force = wr.force;
    rp.whiten = 1;
    rp.whiten_params = &wp;
    return imago_index_reindex(ix, &rp, err);
}

/* ---- routes ------------------------------------------------------------------------ */

int imago_api_whitening_learn(imago_http_request *r, imago_http_response *resp)
{
    const char *body;
    size_t len;
    if (imago_app_json_body(r, resp, &body, &len))
        return IMAGO_HTTP_DONE;
    imago_whitening_request req;
    const imago_whitening_request *wr = &req;
    imago_error err;
    imago_error_clear(&err);
    if (imago_whitening_request_parse(body, len, &req, &err) != 0)
        return imago_http_fail_code(resp, &err, IMAGO_API_CTX_JSON);
    imago_index *ix = imago_app_need_index(r, resp);
    if (!ix)
        return IMAGO_HTTP_DONE;
    imago_jobs *j = imago_app_need_jobs(r, resp);
    if (!j)
        return IMAGO_HTTP_DONE;
    imago_index_stats st;
    if (imago_index_stats_get(ix, &st, &err) != 0)
        return imago_http_fail(resp, IMAGO_API_INTERNAL, err.msg);
    char msg[256];
    if (wr->dim > st.dim) {
        snprintf(msg, sizeof msg, "dim: %d is over the model's descriptor dim %d", wr->dim, st.dim);
        return imago_http_fail(resp, IMAGO_API_INVALID_PARAMETER, msg);
    }
    /* the same row rules as the learner, checked now for a clear 409; the
     * job checks them again on the rows it reads */
    int64_t m = wr->sample > 0 && wr->sample < st.count ? wr->sample : st.count;
    if (m < 2) {
        snprintf(msg, sizeof msg,
                 "whitening needs at least 2 images in the collection, it has %lld",
                 (long long)st.count);
        return imago_http_fail(resp, IMAGO_API_CONFLICT, msg);
    }
    int64_t d = wr->dim > 0 ? wr->dim : (m - 1 < st.dim ? m - 1 : st.dim);
    if (!wr->force && 2 * d > m) {
        snprintf(msg, sizeof msg,
                 "whitening to %lld dimensions needs at least %lld images, %lld would be used: "
                 "give a dim of at most %lld or set \"force\": true",
                 (long long)d, (long long)(2 * d), (long long)m, (long long)(m / 2));
        return imago_http_fail(resp, IMAGO_API_CONFLICT, msg);
    }
    char *params = imago_whitening_request_to_json(wr);
    int64_t id = 0;
    int rc = imago_jobs_submit_pass(j, IMAGO_JOB_KIND_WHITEN, params, &id, &err);
    free(params);
    if (rc != 0)
        return imago_http_fail_code(resp, &err, IMAGO_API_CTX_GENERIC);
    return imago_app_job_accepted(resp, id);
}

const imago_whitening_desc *imago_whitening_desc_of(const imago_index_stats *st,
                                                    imago_whitening_desc *out)
{
    if (!st->has_whitening)
        return NULL;
    memset(out, 0, sizeof *out);
    out->version = st->whitening.version;
    out->dim_in = st->whitening.dim_in;
    out->dim = st->whitening.dim;
    out->rank = st->whitening.rank;
    out->power = st->whitening.power;
    out->eps = st->whitening.eps;
    out->trained_on = st->whitening.n_trained;
    out->rows = st->whitening.n_rows;
    out->created_at = st->whitening.created_at;
    out->fingerprint = st->whitening.fingerprint;
    return out;
}

/* The stats of the ready index with a whitening, else resp filled (503 or
 * 404) and NULL. */
static imago_index *with_whitening(imago_http_request *r, imago_http_response *resp,
                                   imago_index_stats *st)
{
    imago_index *ix = imago_app_need_index(r, resp);
    if (!ix)
        return NULL;
    imago_error err;
    imago_error_clear(&err);
    if (imago_index_stats_get(ix, st, &err) != 0) {
        imago_http_fail(resp, IMAGO_API_INTERNAL, err.msg);
        return NULL;
    }
    if (!st->has_whitening) {
        imago_http_fail(resp, IMAGO_API_NOT_FOUND,
                        "the collection has no learned whitening (POST /v1/admin/whitening "
                        "learns one)");
        return NULL;
    }
    return ix;
}

int imago_api_whitening_get(imago_http_request *r, imago_http_response *resp)
{
    imago_index_stats st;
    if (imago_app_no_query(r, resp) || !with_whitening(r, resp, &st))
        return IMAGO_HTTP_DONE;
    imago_whitening_desc wd;
    char *json = NULL;
    imago_error err;
    imago_error_clear(&err);
    if (imago_whitening_to_json(imago_whitening_desc_of(&st, &wd), &json, &err) != 0)
        return imago_http_fail(resp, IMAGO_API_INTERNAL, err.msg);
    imago_http_json(resp, 200, json);
    return IMAGO_HTTP_DONE;
}

int imago_api_whitening_remove(imago_http_request *r, imago_http_response *resp)
{
    imago_index_stats st;
    if (imago_app_no_query(r, resp) || !with_whitening(r, resp, &st))
        return IMAGO_HTTP_DONE;
    imago_jobs *j = imago_app_need_jobs(r, resp);
    if (!j)
        return IMAGO_HTTP_DONE;
    int64_t id = 0;
    imago_error err;
    imago_error_clear(&err);
    if (imago_jobs_submit_pass(j, IMAGO_JOB_KIND_UNWHITEN, NULL, &id, &err) != 0)
        return imago_http_fail_code(resp, &err, IMAGO_API_CTX_GENERIC);
    return imago_app_job_accepted(resp, id);
}
