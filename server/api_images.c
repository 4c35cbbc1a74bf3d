/* The images of the collection: POST /v1/images (add one image),
 * GET /v1/images/{id}, GET /v1/images/{id}/thumbnail and
 * DELETE /v1/images/{id}.
 *
 * DESIGN (threads): POST /v1/images needs blocking work (sha256, a
 * thumbnail decode, a SQLite commit): the handler suspends the connection
 * and hands the request to the index slot's upload workers
 * (imago_index_slot_post), which run imago_ingest_image (the same path as
 * the jobs) and resume it. GET and DELETE are a short SQLite call on the
 * MHD thread.
 */
#include "app.h"
#include "jobs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- add ------------------------------------------------------------------------------- */

typedef struct add_task {
    imago_slot_task task; /* first: the worker hands back &task */
    imago_index_slot *slot;
    imago_http_request *r;
    imago_add_image_params ap;
    imago_upload upload; /* holds the image (into the request body or its multipart) */
} add_task;

/* On an upload worker: ingest, answer and resume. */
static void run_add(imago_slot_task *task)
{
    add_task *t = (add_task *)task;
    imago_index_slot *s = t->slot;
    imago_http_response resp;
    memset(&resp, 0, sizeof resp);
    imago_batcher *b = imago_engine_slot_batcher(imago_index_slot_engine(s));
    imago_index *ix = imago_index_slot_index(s);
    const uint8_t *img = t->upload.image;
    size_t len = t->upload.image_len;
    if (!b || !ix) {
        imago_http_error(&resp, IMAGO_API_NOT_READY, "the server is shutting down");
    } else {
        imago_ingest_one in;
        memset(&in, 0, sizeof in);
        in.bytes = img;
        in.len = len;
        in.external_id = t->ap.external_id;
        in.uri = t->ap.uri;
        in.metadata_json = t->ap.metadata_json;
        in.retry_busy = 0;
        imago_ingest_result res;
        imago_error err;
        imago_error_clear(&err);
        int rc = imago_ingest_image(b, ix, &in, &res, &err);
        if (rc == 0) {
            imago_image_info *info = NULL;
            char *json = NULL;
            imago_error e2;
            imago_error_clear(&e2);
            if (imago_index_get(ix, res.id, &info, &e2) == 0 &&
                imago_add_image_response_to_json(res.id, info->external_id, res.replaced, &json,
                                                 &e2) == 0) {
                /* 201 for a new or replaced image; 200 when the same bytes
                 * were already stored under this external id (nothing done) */
                imago_http_json(&resp, res.unchanged ? 200 : 201, json);
                char loc[64];
                snprintf(loc, sizeof loc, "/v1/images/%lld", (long long)res.id);
                resp.location = imago_xstrdup(loc);
            } else {
                imago_http_error(&resp, IMAGO_API_INTERNAL, e2.msg);
            }
            imago_image_info_free(info);
        } else if (rc == IMAGO_ERR_CANCELLED || rc == IMAGO_ERR_NOT_READY) {
            imago_http_error(&resp, IMAGO_API_NOT_READY, "the server is shutting down");
        } else {
            char msg[IMAGO_ERROR_MSG_MAX + 8];
            int is_image =
                rc == IMAGO_ERR_FORMAT || rc == IMAGO_ERR_TOO_LARGE || rc == IMAGO_ERR_UNSUPPORTED;
            snprintf(msg, sizeof msg, "%s%s", is_image ? "image: " : "", err.msg);
            imago_http_error(&resp,
                             imago_api_error_from_code(rc, is_image ? IMAGO_API_CTX_IMAGE
                                                                    : IMAGO_API_CTX_GENERIC),
                             msg);
        }
    }
    imago_add_image_params_clear(&t->ap);
    imago_upload_clear(&t->upload);
    imago_http_request *r = t->r;
    free(t);
    imago_http_complete(r, &resp);
}

int imago_api_image_add(imago_http_request *r, imago_http_response *resp)
{
    add_task *t = imago_xcalloc(1, sizeof *t);
    if (imago_upload_read(r, resp, IMAGO_UPLOAD_ADD, &t->upload) != 0 ||
        imago_app_need_model(r, resp) != 0 || !imago_app_need_index(r, resp)) {
        imago_upload_clear(&t->upload);
        free(t);
        return IMAGO_HTTP_DONE;
    }
    t->task.run = run_add;
    t->slot = imago_server_index(imago_app_server(r));
    t->r = r;
    t->ap = t->upload.add;
    t->upload.add = imago_add_image_params_default();
    int rc = imago_index_slot_post(t->slot, &t->task, r);
    if (rc == 0)
        return IMAGO_HTTP_DEFERRED;
    imago_add_image_params_clear(&t->ap);
    imago_upload_clear(&t->upload);
    free(t);
    return imago_http_fail(resp, rc == IMAGO_ERR_BUSY ? IMAGO_API_BUSY : IMAGO_API_NOT_READY,
                           rc == IMAGO_ERR_BUSY ? "too many uploads in progress"
                                                : "the server is shutting down");
}

/* ---- images by id ------------------------------------------------------------------------ */

/* The index for a route on /v1/images/{id} (no query parameters), with the
 * id parsed into *id; NULL (resp filled: 400 invalid_parameter or 503
 * not_ready) otherwise. */
static imago_index *image_route(imago_http_request *r, imago_http_response *resp, int64_t *id)
{
    if (imago_app_no_query(r, resp) || imago_app_path_id(r, resp, id))
        return NULL;
    return imago_app_need_index(r, resp);
}

int imago_api_image_get(imago_http_request *r, imago_http_response *resp)
{
    int64_t id;
    imago_index *ix = image_route(r, resp, &id);
    if (!ix)
        return IMAGO_HTTP_DONE;
    imago_image_info *info = NULL;
    imago_error err;
    imago_error_clear(&err);
    if (imago_index_get(ix, id, &info, &err) != 0)
        return imago_http_fail_code(resp, &err, IMAGO_API_CTX_GENERIC);
    imago_image_record rec;
    memset(&rec, 0, sizeof rec);
    rec.id = info->id;
    rec.external_id = info->external_id;
    rec.uri = info->uri;
    rec.sha256 = info->sha256;
    rec.width = info->width;
    rec.height = info->height;
    rec.metadata_json = info->metadata_json;
    rec.created_at = info->created_at;
    char *json = NULL;
    int rc = imago_image_record_to_json(&rec, &json, &err);
    imago_image_info_free(info);
    if (rc != 0)
        return imago_http_fail(resp, IMAGO_API_INTERNAL, err.msg);
    imago_http_json(resp, 200, json);
    return IMAGO_HTTP_DONE;
}

int imago_api_image_thumbnail(imago_http_request *r, imago_http_response *resp)
{
    int64_t id;
    imago_index *ix = image_route(r, resp, &id);
    if (!ix)
        return IMAGO_HTTP_DONE;
    void *data = NULL;
    size_t len = 0;
    imago_error err;
    imago_error_clear(&err);
    if (imago_index_thumbnail(ix, id, &data, &len, &err) != 0)
        return imago_http_fail_code(resp, &err, IMAGO_API_CTX_GENERIC);
    resp->status = 200;
    resp->content_type = "image/jpeg";
    resp->body = data;
    resp->body_len = len;
    return IMAGO_HTTP_DONE;
}

int imago_api_image_delete(imago_http_request *r, imago_http_response *resp)
{
    int64_t id;
    imago_index *ix = image_route(r, resp, &id);
    if (!ix)
        return IMAGO_HTTP_DONE;
    imago_error err;
    imago_error_clear(&err);
    if (imago_index_delete(ix, id, &err) != 0)
        return imago_http_fail_code(resp, &err, IMAGO_API_CTX_GENERIC);
    resp->status = 204; /* No Content, as the contract says */
    return IMAGO_HTTP_DONE;
}
