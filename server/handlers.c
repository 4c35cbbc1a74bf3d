/* The helpers every handler uses: the not-ready answers (model, index,
 * jobs), routes without query parameters, path ids, JSON bodies and the
 * answer to a failed batcher callback.
 */
#include "app.h"

#include <stdio.h>
#include <string.h>

static int no_query_cb(void *ctx, const char *name, const char *value, size_t value_len,
                       imago_error *err)
{
    (void)ctx;
    (void)value;
    (void)value_len;
    return imago_error_set(err, IMAGO_ERR_INVALID, "%.64s: unknown parameter", name);
}

int imago_app_no_query(imago_http_request *r, imago_http_response *resp)
{
    imago_error err;
    imago_error_clear(&err);
    if (imago_http_query_each(r, no_query_cb, NULL, &err) != 0) {
        imago_http_fail(resp, IMAGO_API_INVALID_PARAMETER, err.msg);
        return -1;
    }
    return 0;
}

int imago_app_need_model(imago_http_request *r, imago_http_response *resp)
{
    const char *msg = NULL;
    if (imago_engine_slot_state(imago_server_engine(imago_app_server(r)), &msg) == IMAGO_SLOT_READY)
        return 0;
    imago_http_fail(resp, IMAGO_API_NOT_READY, msg);
    return -1;
}

imago_index *imago_app_need_index(imago_http_request *r, imago_http_response *resp)
{
    imago_index_slot *s = imago_server_index(imago_app_server(r));
    const char *msg = NULL;
    if (imago_index_slot_state(s, &msg) == IMAGO_SLOT_READY)
        return imago_index_slot_index(s);
    imago_http_fail(resp, IMAGO_API_NOT_READY, msg);
    return NULL;
}

struct imago_jobs *imago_app_need_jobs(imago_http_request *r, imago_http_response *resp)
{
    if (!imago_app_need_index(r, resp))
        return NULL;
    struct imago_jobs *j = imago_index_slot_jobs(imago_server_index(imago_app_server(r)));
    if (!j)
        imago_http_fail(resp, IMAGO_API_NOT_READY, "the jobs runner is stopped");
    return j;
}

int imago_app_path_id(imago_http_request *r, imago_http_response *resp, int64_t *id)
{
    imago_error err;
    imago_error_clear(&err);
    if (imago_proto_parse_id(imago_http_path_param(r, 0), id, &err) != 0) {
        imago_http_fail(resp, IMAGO_API_INVALID_PARAMETER, err.msg);
        return -1;
    }
    return 0;
}

int imago_app_json_body(imago_http_request *r, imago_http_response *resp, const char **body,
                        size_t *len)
{
    if (imago_app_no_query(r, resp))
        return -1;
    *body = (const char *)imago_http_body(r, len);
    return 0;
}

int imago_app_json_ok(imago_http_response *resp, int status, char *json, const imago_error *err)
{
    if (!json)
        return imago_http_fail(resp, IMAGO_API_INTERNAL, err->msg);
    imago_http_json(resp, status, json);
    return IMAGO_HTTP_DONE;
}

void imago_app_batch_error(imago_http_response *resp, int status, const char *message)
{
    if (status == IMAGO_ERR_CANCELLED || status == IMAGO_ERR_NOT_READY) {
        imago_http_error(resp, IMAGO_API_NOT_READY, "the server is shutting down");
        return;
    }
    char msg[IMAGO_ERROR_MSG_MAX + 8];
    snprintf(msg, sizeof msg, "image: %s", message && *message ? message : "failed");
    imago_http_error(resp, imago_api_error_from_code(status, IMAGO_API_CTX_IMAGE), msg);
}
