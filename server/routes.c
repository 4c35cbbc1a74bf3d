/* The routes table (method, path pattern, auth level, body kind, handler),
 * path matching, and the handlers of the HTTP API (proto/openapi.yaml).
 *
 * Handlers validate everything they can (parameters, bodies, ids) with
 * proto/, so clients get exact 4xx answers. /v1/extract runs on the engine
 * through the batcher (the connection is suspended meanwhile); what needs
 * the index (search, images, jobs, reindex) continues in http_index.c.
 */
#include "server.h"

#include <stdlib.h>
#include <string.h>

#include "imago_build.h"
#include "web.h"

/* ---- small helpers --------------------------------------------------------- */

static int json_ok(imago_http_response *resp, int status, char *json, imago_error *err)
{
    if (!json)
        return imago_http_fail(resp, IMAGO_API_INTERNAL, err->msg);
    imago_http_json(resp, status, json);
    return IMAGO_HTTP_DONE;
}

static int no_query_cb(void *ctx, const char *name, const char *value, size_t value_len,
                       imago_error *err)
{
    (void)ctx;
    (void)value;
    (void)value_len;
    return imago_error_set(err, IMAGO_ERR_INVALID, "%.64s: unknown parameter", name);
}

/* Routes without query parameters refuse any. */
static int no_query(imago_http_request *r, imago_http_response *resp)
{
    imago_error err;
    imago_error_clear(&err);
    if (imago_http_query_each(r, no_query_cb, NULL, &err) != 0) {
        imago_http_fail(resp, IMAGO_API_INVALID_PARAMETER, err.msg);
        return -1;
    }
    return 0;
}

/* ---- probes, info, metrics -------------------------------------------------- */

static int h_healthz(imago_http_request *r, imago_http_response *resp)
{
    (void)r;
    imago_http_json(resp, 200, imago_xstrdup("{\"status\":\"ok\"}"));
    return IMAGO_HTTP_DONE;
}

/* 503 not_ready unless the model is loaded; fills resp and returns -1. */
static int need_model(imago_http_request *r, imago_http_response *resp)
{
    const char *msg = NULL;
    if (imago_engine_slot_state(imago_server_engine(imago_http_server(r)), &msg) ==
        IMAGO_SLOT_READY)
        return 0;
    imago_http_fail(resp, IMAGO_API_NOT_READY, msg);
    return -1;
}

static int h_readyz(imago_http_request *r, imago_http_response *resp)
{
    /* ready = the model is loaded and the index is open */
    if (need_model(r, resp))
        return IMAGO_HTTP_DONE;
    const char *msg = NULL;
    if (imago_index_slot_state(imago_server_index(imago_http_server(r)), &msg) != IMAGO_SLOT_READY)
        return imago_http_fail(resp, IMAGO_API_NOT_READY, msg);
    imago_http_json(resp, 200,
                    imago_xstrdup("{\"status\":\"ready\",\"model\":\"loaded\","
                                  "\"index\":\"ready\"}"));
    return IMAGO_HTTP_DONE;
}

static int h_info(imago_http_request *r, imago_http_response *resp)
{
    if (no_query(r, resp))
        return IMAGO_HTTP_DONE;
    imago_info info;
    memset(&info, 0, sizeof info);
    info.version = IMAGO_VERSION;
    info.ready = imago_server_ready(imago_http_server(r));
    char index_type[80];
    imago_index_slot_info(imago_server_index(imago_http_server(r)), index_type, sizeof index_type,
                          &info.index_size, &info.index_seq);
    info.index_type = index_type[0] ? index_type : NULL;
    imago_whitening_desc wd;
    char wfp[40];
    info.whitening = imago_index_slot_whitening(imago_server_index(imago_http_server(r)), &wd, wfp,
                                                &info.index_dim);
    const imago_model_info *m = imago_engine_slot_model(imago_server_engine(imago_http_server(r)));
    if (m) {
        info.model_name = m->name;
        info.backbone = m->backbone;
        info.head = m->head;
        info.dim = m->dim;
        info.fingerprint = m->fingerprint;
        info.trained = m->trained;
        info.backend = m->backend;
        info.precision = m->precision;
        info.device = m->device;
        info.backend_note = m->backend_note;
    }
    char *out = NULL;
    imago_error err;
    imago_error_clear(&err);
    imago_info_to_json(&info, &out, &err);
    return json_ok(resp, 200, out, &err);
}

static int h_metrics(imago_http_request *r, imago_http_response *resp)
{
    imago_server *s = imago_http_server(r);
    /* this scrape is in flight itself; report the others */
    char *text = imago_metrics_render(imago_server_metrics(s), imago_server_in_flight(s) - 1);
    imago_batcher *b = imago_engine_slot_batcher(imago_server_engine(s));
    if (b) {
        imago_batcher_stats st;
        imago_batcher_stats_get(b, &st);
        char extra[2048];
        snprintf(
            extra, sizeof extra,
            "# HELP imago_engine_queued Images waiting for decode or a batch.\n"
            "# TYPE imago_engine_queued gauge\nimago_engine_queued %lld\n"
            "# HELP imago_engine_in_forward Images in running forward passes.\n"
            "# TYPE imago_engine_in_forward gauge\nimago_engine_in_forward %lld\n"
            "# HELP imago_engine_images_total Images by outcome.\n"
            "# TYPE imago_engine_images_total counter\n"
            "imago_engine_images_total{outcome=\"completed\"} %llu\n"
            "imago_engine_images_total{outcome=\"failed_decode\"} %llu\n"
            "imago_engine_images_total{outcome=\"failed_engine\"} %llu\n"
            "imago_engine_images_total{outcome=\"cancelled\"} %llu\n"
            "imago_engine_images_total{outcome=\"rejected_busy\"} %llu\n"
            "# HELP imago_engine_batches_total Successful forward passes.\n"
            "# TYPE imago_engine_batches_total counter\nimago_engine_batches_total %llu\n"
            "# HELP imago_engine_seconds_total Time spent per stage, summed over images "
            "(decode, queue) or calls (forward).\n"
            "# TYPE imago_engine_seconds_total counter\n"
            "imago_engine_seconds_total{stage=\"decode\"} %.6f\n"
            "imago_engine_seconds_total{stage=\"queue\"} %.6f\n"
            "imago_engine_seconds_total{stage=\"forward\"} %.6f\n"
            "# HELP imago_engine_images_per_second Completed images per second (recent window).\n"
            "# TYPE imago_engine_images_per_second gauge\nimago_engine_images_per_second %.3f\n",
            (long long)st.queued, (long long)st.in_flight, (unsigned long long)st.completed,
            (unsigned long long)st.failed_decode, (unsigned long long)st.failed_engine,
            (unsigned long long)st.cancelled, (unsigned long long)st.rejected_busy,
            (unsigned long long)st.batches, st.decode_s_total, st.queue_s_total, st.forward_s_total,
            st.images_per_s);
        size_t a = strlen(text), e = strlen(extra);
        text = imago_xrealloc(text, a + e + 1);
        memcpy(text + a, extra, e + 1);
    }
    char *ix = imago_index_slot_metrics(imago_server_index(s));
    size_t a = strlen(text), e = strlen(ix);
    text = imago_xrealloc(text, a + e + 1);
    memcpy(text + a, ix, e + 1);
    free(ix);
    resp->status = 200;
    resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
    resp->body = text;
    resp->body_len = strlen(text);
    return IMAGO_HTTP_DONE;
}

/* ---- image uploads ------------------------------------------------------------ */

typedef enum upload_kind { UPLOAD_SEARCH, UPLOAD_ADD } upload_kind;

typedef struct upload {
    upload_kind kind;
    imago_search_params search;
    imago_add_image_params add;
    imago_multipart *mp;
    const uint8_t *image;
    size_t image_len;
} upload;

static int set_param(upload *u, const char *name, const char *value, size_t len, imago_error *err)
{
    if (u->kind == UPLOAD_SEARCH)
        return imago_search_params_set(&u->search, name, value, len, err);
    return imago_add_image_params_set(&u->add, name, value, len, err);
}

static int query_param_cb(void *ctx, const char *name, const char *value, size_t len,
                          imago_error *err)
{
    return set_param(ctx, name, value, len, err);
}

static void upload_clear(upload *u)
{
    imago_search_params_clear(&u->search);
    imago_add_image_params_clear(&u->add);
    imago_multipart_free(u->mp);
    u->mp = NULL;
}

/* Reads parameters (query string, multipart fields) and the image of a
 * search / extract / add request. Returns 0, or -1 with resp filled. */
static int read_upload(imago_http_request *r, imago_http_response *resp, upload *u)
{
    const imago_config *cfg = imago_server_config(imago_http_server(r));
    imago_error err;
    imago_error_clear(&err);
    if (imago_http_query_each(r, query_param_cb, u, &err) != 0) {
        imago_http_fail_code(resp, &err, IMAGO_API_CTX_JSON);
        return -1;
    }
    imago_content_type ct;
    if (imago_content_type_parse(imago_http_header(r, "Content-Type"), &ct, &err) != 0) {
        imago_http_fail(resp, IMAGO_API_INVALID_REQUEST, err.msg);
        return -1;
    }
    size_t len = 0;
    const uint8_t *body = imago_http_body(r, &len);
    imago_media declared = ct.media;
    if (ct.media == IMAGO_MEDIA_MULTIPART) {
        if (imago_multipart_parse(body, len, ct.boundary, NULL, &u->mp, &err) != 0) {
            imago_http_fail_code(resp, &err, IMAGO_API_CTX_REQUEST);
            return -1;
        }
        const imago_multipart_part *img = NULL;
        for (int i = 0; i < u->mp->n_parts; i++) {
            const imago_multipart_part *p = &u->mp->parts[i];
            if (strcmp(p->name, IMAGO_PROTO_IMAGE_FIELD) == 0) {
                if (img) {
                    imago_http_fail(resp, IMAGO_API_INVALID_PARAMETER,
                                    "image: given more than once");
                    return -1;
                }
                img = p;
                continue;
            }
            if (set_param(u, p->name, (const char *)p->data, p->len, &err) != 0) {
                imago_http_fail_code(resp, &err, IMAGO_API_CTX_JSON);
                return -1;
            }
        }
        if (!img) {
            imago_http_fail(resp, IMAGO_API_INVALID_PARAMETER,
                            "image: required (a multipart field named image)");
            return -1;
        }
        declared = IMAGO_MEDIA_OCTET;
        if (img->content_type) {
            imago_content_type pct;
            imago_error_clear(&err);
            if (imago_content_type_parse(img->content_type, &pct, &err) != 0) {
                imago_http_fail(resp, IMAGO_API_INVALID_REQUEST, err.msg);
                return -1;
            }
            if (pct.media != IMAGO_MEDIA_JPEG && pct.media != IMAGO_MEDIA_PNG &&
                pct.media != IMAGO_MEDIA_OCTET && pct.media != IMAGO_MEDIA_NONE) {
                char msg[192];
                snprintf(msg, sizeof msg,
                         "image: Content-Type '%s' is not supported; send "
                         "image/jpeg or image/png",
                         pct.type);
                imago_http_fail(resp, IMAGO_API_UNSUPPORTED_MEDIA_TYPE, msg);
                return -1;
            }
            if (pct.media != IMAGO_MEDIA_NONE)
                declared = pct.media;
        }
        u->image = img->data;
        u->image_len = img->len;
    } else {
        u->image = body;
        u->image_len = len;
    }
    if (u->image_len == 0) {
        imago_http_fail(resp, IMAGO_API_INVALID_IMAGE, "image: empty");
        return -1;
    }
    if ((uint64_t)u->image_len > (uint64_t)cfg->engine.max_image_bytes) {
        char msg[96];
        snprintf(msg, sizeof msg, "image: %zu bytes is over engine.max_image_bytes (%lld)",
                 u->image_len, (long long)cfg->engine.max_image_bytes);
        imago_http_fail(resp, IMAGO_API_PAYLOAD_TOO_LARGE, msg);
        return -1;
    }
    if (imago_media_sniff(u->image, u->image_len) == IMAGO_MEDIA_OTHER) {
        /* declared JPEG/PNG that is not one is corrupt; anything else is a
         * format imago does not read */
        if (declared == IMAGO_MEDIA_JPEG || declared == IMAGO_MEDIA_PNG)
            imago_http_fail(resp, IMAGO_API_INVALID_IMAGE, "image: not a valid JPEG or PNG file");
        else
            imago_http_fail(resp, IMAGO_API_UNSUPPORTED_MEDIA_TYPE,
                            "image: only JPEG and PNG images are supported");
        return -1;
    }
    return 0;
}

static int h_search(imago_http_request *r, imago_http_response *resp)
{
    upload u;
    memset(&u, 0, sizeof u);
    u.kind = UPLOAD_SEARCH;
    u.search = imago_search_params_default();
    u.add = imago_add_image_params_default();
    int rc = IMAGO_HTTP_DONE;
    if (read_upload(r, resp, &u) == 0 && need_model(r, resp) == 0)
        rc = imago_route_search(r, resp, &u.search, u.image, u.image_len);
    upload_clear(&u);
    return rc;
}

/* Batcher callback of /v1/extract (a batcher thread): answer and resume. */
static void extract_done(void *user_data, int status, const char *message, const float *descriptor,
                         int dim, const imago_batch_timings *timings)
{
    (void)timings;
    imago_http_request *r = user_data;
    imago_http_response resp;
    memset(&resp, 0, sizeof resp);
    if (status == 0) {
        char *out = NULL;
        imago_error err;
        imago_error_clear(&err);
        if (imago_extract_response_to_json(descriptor, dim, &out, &err) == 0)
            imago_http_json(&resp, 200, out);
        else
            imago_http_error(&resp, IMAGO_API_INTERNAL, err.msg);
    } else if (status == IMAGO_ERR_CANCELLED || status == IMAGO_ERR_NOT_READY) {
        imago_http_error(&resp, IMAGO_API_NOT_READY, "the server is shutting down");
    } else {
        char msg[IMAGO_ERROR_MSG_MAX + 8];
        snprintf(msg, sizeof msg, "image: %s", message && *message ? message : "failed");
        imago_http_error(&resp, imago_api_error_from_code(status, IMAGO_API_CTX_IMAGE), msg);
    }
    imago_http_complete(r, &resp);
}

static int h_extract(imago_http_request *r, imago_http_response *resp)
{
    upload u;
    memset(&u, 0, sizeof u);
    u.kind = UPLOAD_SEARCH;
    u.search = imago_search_params_default();
    u.add = imago_add_image_params_default();
    if (read_upload(r, resp, &u) != 0 || need_model(r, resp) != 0) {
        upload_clear(&u);
        return IMAGO_HTTP_DONE;
    }
    imago_batcher *b = imago_engine_slot_batcher(imago_server_engine(imago_http_server(r)));
    imago_decode_params dp = imago_decode_params_default();
    if (u.search.has_bbox) {
        dp.has_box = 1;
        memcpy(dp.box, u.search.bbox, sizeof dp.box);
    }
    /* suspend first: the callback may run before submit returns */
    imago_http_defer(r);
    imago_error err;
    imago_error_clear(&err);
    int rc = b ? imago_batcher_submit(b, u.image, u.image_len, IMAGO_BATCHER_COPY, &dp,
                                      extract_done, r, &err)
               : imago_error_set(&err, IMAGO_ERR_NOT_READY, "the model is not loaded");
    upload_clear(&u);
    if (rc != 0) {
        imago_http_complete_error(r, imago_api_error_from_code(rc, IMAGO_API_CTX_IMAGE), err.msg);
    }
    return IMAGO_HTTP_DEFERRED;
}

static int h_add_image(imago_http_request *r, imago_http_response *resp)
{
    upload u;
    memset(&u, 0, sizeof u);
    u.kind = UPLOAD_ADD;
    u.search = imago_search_params_default();
    u.add = imago_add_image_params_default();
    int rc = IMAGO_HTTP_DONE;
    if (read_upload(r, resp, &u) == 0 && need_model(r, resp) == 0)
        rc = imago_route_add_image(r, resp, &u.add, u.image, u.image_len);
    upload_clear(&u);
    return rc;
}

/* ---- images, jobs, reindex ------------------------------------------------------ */

/* A handler for a route of http_index.c that takes no query parameters. */
#define NO_QUERY_HANDLER(name, route)                                                              \
    static int name(imago_http_request *r, imago_http_response *resp)                              \
    {                                                                                              \
        return no_query(r, resp) ? IMAGO_HTTP_DONE : route(r, resp);                               \
    }

NO_QUERY_HANDLER(h_image_get, imago_route_image_get)
NO_QUERY_HANDLER(h_image_thumbnail, imago_route_image_thumbnail)
NO_QUERY_HANDLER(h_image_delete, imago_route_image_delete)
NO_QUERY_HANDLER(h_job_get, imago_route_job_get)
NO_QUERY_HANDLER(h_job_cancel, imago_route_job_cancel)
NO_QUERY_HANDLER(h_job_list, imago_route_job_list)

static int h_create_job(imago_http_request *r, imago_http_response *resp)
{
    if (no_query(r, resp))
        return IMAGO_HTTP_DONE;
    size_t len;
    const uint8_t *body = imago_http_body(r, &len);
    imago_job_request job;
    imago_error err;
    imago_error_clear(&err);
    if (imago_job_request_parse((const char *)body, len, &job, &err) != 0)
        return imago_http_fail_code(resp, &err, IMAGO_API_CTX_JSON);
    int rc = imago_route_job_create(r, resp, &job);
    imago_job_request_clear(&job);
    return rc;
}

static int h_reindex(imago_http_request *r, imago_http_response *resp)
{
    if (no_query(r, resp))
        return IMAGO_HTTP_DONE;
    size_t len;
    const uint8_t *body = imago_http_body(r, &len);
    imago_reindex_request rr;
    imago_error err;
    imago_error_clear(&err);
    if (imago_reindex_request_parse((const char *)body, len, &rr, &err) != 0)
        return imago_http_fail_code(resp, &err, IMAGO_API_CTX_JSON);
    int rc = imago_route_reindex(r, resp, &rr);
    imago_reindex_request_clear(&rr);
    return rc;
}

static int h_whitening_learn(imago_http_request *r, imago_http_response *resp)
{
    if (no_query(r, resp))
        return IMAGO_HTTP_DONE;
    size_t len;
    const uint8_t *body = imago_http_body(r, &len);
    imago_whitening_request wr;
    imago_error err;
    imago_error_clear(&err);
    if (imago_whitening_request_parse((const char *)body, len, &wr, &err) != 0)
        return imago_http_fail_code(resp, &err, IMAGO_API_CTX_JSON);
    return imago_route_whitening_learn(r, resp, &wr);
}

NO_QUERY_HANDLER(h_whitening_get, imago_route_whitening_get)
NO_QUERY_HANDLER(h_whitening_remove, imago_route_whitening_remove)

/* ---- the table ----------------------------------------------------------------- */

static const imago_route routes[] = {
    {"GET", "/healthz", IMAGO_AUTH_OPEN, IMAGO_BODY_NONE, h_healthz},
    {"GET", "/readyz", IMAGO_AUTH_OPEN, IMAGO_BODY_NONE, h_readyz},
    {"GET", "/metrics", IMAGO_AUTH_OPEN, IMAGO_BODY_NONE, h_metrics},
    {"GET", "/v1/info", IMAGO_AUTH_OPEN, IMAGO_BODY_NONE, h_info},
    {"POST", "/v1/search", IMAGO_AUTH_SEARCH, IMAGO_BODY_IMAGE, h_search},
    {"POST", "/v1/extract", IMAGO_AUTH_SEARCH, IMAGO_BODY_IMAGE, h_extract},
    {"POST", "/v1/images", IMAGO_AUTH_ADMIN, IMAGO_BODY_IMAGE, h_add_image},
    {"GET", "/v1/images/{id}", IMAGO_AUTH_SEARCH, IMAGO_BODY_NONE, h_image_get},
    {"GET", "/v1/images/{id}/thumbnail", IMAGO_AUTH_SEARCH, IMAGO_BODY_NONE, h_image_thumbnail},
    {"DELETE", "/v1/images/{id}", IMAGO_AUTH_ADMIN, IMAGO_BODY_NONE, h_image_delete},
    {"POST", "/v1/admin/jobs", IMAGO_AUTH_ADMIN, IMAGO_BODY_JSON, h_create_job},
    {"GET", "/v1/admin/jobs", IMAGO_AUTH_ADMIN, IMAGO_BODY_NONE, h_job_list},
    {"GET", "/v1/admin/jobs/{id}", IMAGO_AUTH_ADMIN, IMAGO_BODY_NONE, h_job_get},
    {"DELETE", "/v1/admin/jobs/{id}", IMAGO_AUTH_ADMIN, IMAGO_BODY_NONE, h_job_cancel},
    {"POST", "/v1/admin/reindex", IMAGO_AUTH_ADMIN, IMAGO_BODY_JSON, h_reindex},
    {"POST", "/v1/admin/whitening", IMAGO_AUTH_ADMIN, IMAGO_BODY_JSON, h_whitening_learn},
    {"GET", "/v1/admin/whitening", IMAGO_AUTH_ADMIN, IMAGO_BODY_NONE, h_whitening_get},
    {"DELETE", "/v1/admin/whitening", IMAGO_AUTH_ADMIN, IMAGO_BODY_NONE, h_whitening_remove},
    /* the web page (web.c) */
    {"GET", "/", IMAGO_AUTH_OPEN, IMAGO_BODY_NONE, imago_web_handle_index},
    {"GET", "/static/{file}", IMAGO_AUTH_OPEN, IMAGO_BODY_NONE, imago_web_handle_static},
};

/* Matches path against pattern segment by segment; {x} takes one non-empty
 * segment. */
static int match(const char *pattern, const char *path, const char *ps[IMAGO_ROUTE_MAX_PARAMS],
                 size_t pl[IMAGO_ROUTE_MAX_PARAMS])
{
    int np = 0;
    const char *a = pattern, *b = path;
    while (*a && *b) {
        if (*a != '/' || *b != '/')
            return 0;
        a++;
        b++;
        const char *ae = strchr(a, '/'), *be = strchr(b, '/');
        size_t al = ae ? (size_t)(ae - a) : strlen(a);
        size_t bl = be ? (size_t)(be - b) : strlen(b);
        if (al > 1 && a[0] == '{' && a[al - 1] == '}') {
            if (bl == 0 || np >= IMAGO_ROUTE_MAX_PARAMS)
                return 0;
            ps[np] = b;
            pl[np] = bl;
            np++;
        } else if (al != bl || memcmp(a, b, al) != 0) {
            return 0;
        }
        a += al;
        b += bl;
    }
    return *a == '\0' && *b == '\0';
}

const imago_route *imago_route_find(const char *method, const char *path,
                                    const char *param_start[IMAGO_ROUTE_MAX_PARAMS],
                                    size_t param_len[IMAGO_ROUTE_MAX_PARAMS], int *path_known,
                                    char *allow, size_t allow_cap)
{
    const char *m = strcmp(method, "HEAD") == 0 ? "GET" : method;
    *path_known = 0;
    if (allow_cap)
        allow[0] = '\0';
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        const char *ps[IMAGO_ROUTE_MAX_PARAMS] = {0};
        size_t pl[IMAGO_ROUTE_MAX_PARAMS] = {0};
        if (!match(routes[i].pattern, path, ps, pl))
            continue;
        if (strcmp(routes[i].method, m) == 0) {
            for (int k = 0; k < IMAGO_ROUTE_MAX_PARAMS; k++) {
                param_start[k] = ps[k];
                param_len[k] = pl[k];
            }
            return &routes[i];
        }
        *path_known = 1;
        size_t n = strlen(allow);
        snprintf(allow + n, allow_cap - n, "%s%s", n ? ", " : "", routes[i].method);
        if (strcmp(routes[i].method, "GET") == 0) {
            n = strlen(allow);
            snprintf(allow + n, allow_cap - n, ", HEAD");
        }
    }
    return NULL;
}

int imago_route_count(void)
{
    return (int)(sizeof routes / sizeof routes[0]);
}

const imago_route *imago_route_at(int i)
{
    return (i >= 0 && i < imago_route_count()) ? &routes[i] : NULL;
}
