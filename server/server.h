/* imago server: the HTTP core (private to server/).
 *
 *   http.c     libmicrohttpd daemon, request lifecycle, body accumulation and
 *              limits, responses, suspend/resume, access log, shutdown
 *   routes.c   the routes table, path matching, and the handlers
 *   auth.c     admin/search bearer tokens (auth.h)
 *   metrics.c  Prometheus counters and latency histograms (metrics.h)
 *
 * libmicrohttpd types stay in http.c: handlers see only imago_http_request /
 * imago_http_response, so they can be tested and reasoned about without MHD.
 *
 * Threads: MHD runs an internal polling thread (epoll), or a pool of them
 * (server.threads); handlers run on those threads and must not block for
 * long: work that waits (the engine batcher) suspends the connection with
 * imago_http_defer() and completes it from any thread with
 * imago_http_complete(). The server object is shared by all threads;
 * everything it holds is read-only after open, except the metrics (locked)
 * and the in-flight counter (atomic).
 */
#ifndef IMAGO_SERVER_H
#define IMAGO_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "common/common.h"
#include "config/config.h"
#include "engine/engine.h"
#include "proto/proto.h"

#include "auth.h"
#include "metrics.h"

/* ---- requests and responses as handlers see them (http.c) ------------------- */

#define IMAGO_ROUTE_MAX_PARAMS 2

typedef struct imago_server imago_server;
typedef struct imago_http_request imago_http_request;

#define IMAGO_HTTP_EXTRA_HEADERS_MAX 6

typedef struct imago_http_response {
    int status;
    const char *content_type; /* static string */
    char *body;               /* owned (free()); may be NULL */
    size_t body_len;
    int retry_after_s;     /* > 0 adds Retry-After */
    char allow[48];        /* "" or the Allow header value (405) */
    int www_authenticate;  /* adds WWW-Authenticate: Bearer (401) */
    char *location;        /* owned; adds Location (201) */
    const char *api_error; /* static name of the API error, for the access log */
    int close;             /* adds Connection: close (a framing error: the rest of the
                              stream cannot be trusted) */
    /* more headers: static name/value pairs (name at 2i, value at 2i + 1,
     * NULL after the last); a Cache-Control here replaces the default
     * no-store (web.c: ETag, Cache-Control, Content-Security-Policy) */
    const char *extra_headers[IMAGO_HTTP_EXTRA_HEADERS_MAX * 2 + 1];
} imago_http_response;

/* Whether a raw (still %-encoded) request URI's path holds a NUL or another
 * control character, raw or encoded (such a path is refused with 400). */
int imago_http_raw_path_bad(const char *uri);

/* Copies s into out (cap bytes, NUL-terminated, cut short if needed) with
 * control characters, DEL, '"' and '\\' written as \xHH: a request line
 * cannot forge a log line. Returns out. */
char *imago_http_log_escape(const char *s, char *out, size_t cap);

/* Accessors for handlers (all strings borrowed for the request's lifetime). */
const char *imago_http_method(const imago_http_request *r);
const char *imago_http_path(const imago_http_request *r);
const char *imago_http_header(const imago_http_request *r, const char *name); /* or NULL */
const char *imago_http_path_param(const imago_http_request *r, int i);        /* {id} values */
const uint8_t *imago_http_body(const imago_http_request *r, size_t *len);
imago_server *imago_http_server(const imago_http_request *r);

/* Calls cb for every query-string argument in order (value "" when the
 * argument has no '='). Stops at and returns the first non-zero result. */
int imago_http_query_each(const imago_http_request *r, imago_query_cb cb, void *ctx,
                          imago_error *err);

/* Fills resp with a JSON body (takes ownership of json, a NUL-terminated
 * string from proto) and status. */
void imago_http_json(imago_http_response *resp, int status, char *json);

/* Fills resp with an API error body; status and Retry-After (busy,
 * not_ready) follow the proto table. message may be NULL. */
void imago_http_error(imago_http_response *resp, imago_api_error code, const char *message);

/* imago_http_error(), then returns IMAGO_HTTP_DONE (`return imago_http_fail(...)`
 * from a handler). */
int imago_http_fail(imago_http_response *resp, imago_api_error code, const char *message);

/* imago_http_fail() with the API error for the internal code err->code in ctx
 * and err->msg. */
int imago_http_fail_code(imago_http_response *resp, const imago_error *err, imago_api_context ctx);

/* Handler results. */
#define IMAGO_HTTP_DONE 0     /* resp is filled: send it */
#define IMAGO_HTTP_DEFERRED 1 /* imago_http_defer() was called: send later */

/* Suspends the connection: the handler returns IMAGO_HTTP_DEFERRED, and some
 * thread later calls imago_http_complete(r, resp) exactly once (the request
 * and its body stay valid until then). */
void imago_http_defer(imago_http_request *r);
void imago_http_complete(imago_http_request *r, imago_http_response *resp);

/* imago_http_complete() with an API error response (imago_http_error()). */
void imago_http_complete_error(imago_http_request *r, imago_api_error code, const char *message);

/* ---- routes (routes.c) --------------------------------------------------------- */

typedef int (*imago_route_handler)(imago_http_request *r, imago_http_response *resp);

/* What a route accepts as a body. */
typedef enum imago_body_kind {
    IMAGO_BODY_NONE = 0, /* no body (GET, DELETE) */
    IMAGO_BODY_IMAGE, /* multipart/form-data or image/jpeg|png|octet-stream; server.max_body_bytes
                       */
    IMAGO_BODY_JSON   /* application/json (or none when optional); 1 MiB */
} imago_body_kind;

typedef struct imago_route {
    const char *method;  /* "GET", "POST", "DELETE" */
    const char *pattern; /* "/v1/images/{id}": {name} matches one non-empty segment */
    imago_auth_level auth;
    imago_body_kind body;
    imago_route_handler handler;
} imago_route;

#define IMAGO_JSON_BODY_MAX (1 << 20)

/* Finds the route of method + path (HEAD matches GET routes). Returns the
 * route and fills params (up to IMAGO_ROUTE_MAX_PARAMS borrowed
 * [start, len) slices of path), or NULL: then *path_known is 1 when the path
 * exists under other methods (listed in allow, e.g. "GET, DELETE") and 0 when
 * it does not exist. Thread-safe (the table is immutable). */
const imago_route *imago_route_find(const char *method, const char *path,
                                    const char *param_start[IMAGO_ROUTE_MAX_PARAMS],
                                    size_t param_len[IMAGO_ROUTE_MAX_PARAMS], int *path_known,
                                    char *allow, size_t allow_cap);

/* The table itself, in order (for the OpenAPI consistency test). */
int imago_route_count(void);
const imago_route *imago_route_at(int i);

/* ---- the engine slot (http_engine.c) ------------------------------------------- */

typedef enum imago_slot_state {
    IMAGO_SLOT_LOADING = 0,
    IMAGO_SLOT_READY = 1,
    IMAGO_SLOT_FAILED = 2
} imago_slot_state;

typedef struct imago_engine_slot imago_engine_slot;

/* Starts a thread that opens the engine (cfg->engine: model or demo model,
 * backend, precision, scales) and its batcher. on_fail(ctx) is called from
 * that thread if the load fails. Returns 0 or IMAGO_ERR_BACKEND. */
int imago_engine_slot_start(const imago_config *cfg, void (*on_fail)(void *ctx), void *ctx,
                            imago_engine_slot **out, imago_error *err);

/* State and a human message ("the model is loading", "model failed to load:
 * ..."); slot may be NULL (no engine: FAILED). Thread-safe. */
imago_slot_state imago_engine_slot_state(const imago_engine_slot *slot, const char **message);

/* The batcher / model info once READY (and not closed), else NULL. Thread-safe. */
imago_batcher *imago_engine_slot_batcher(const imago_engine_slot *slot);
const imago_model_info *imago_engine_slot_model(const imago_engine_slot *slot);

/* Waits for the loader, then closes the batcher (drain or cancel: every
 * accepted submission gets its callback before this returns). Owner only. */
void imago_engine_slot_close(imago_engine_slot *slot, int drain);
void imago_engine_slot_free(imago_engine_slot *slot);

/* ---- the index slot and the index routes (http_index.c) ------------------------ */

typedef struct imago_index_slot imago_index_slot;

/* Starts a thread that waits for the engine slot, then opens the collection
 * (cfg->index, the model's fingerprint and dim) and the jobs runner (which
 * resumes unfinished jobs). on_fail(ctx) is called from that thread when the
 * open fails (e.g. a store built with another model). Returns 0 or
 * IMAGO_ERR_BACKEND. */
int imago_index_slot_start(const imago_config *cfg, imago_engine_slot *engine,
                           void (*on_fail)(void *ctx), void *ctx, imago_index_slot **out,
                           imago_error *err);
/* LOADING (waiting for the model, opening), READY or FAILED, with a message.
 * slot may be NULL (FAILED). Thread-safe. */
imago_slot_state imago_index_slot_state(const imago_index_slot *slot, const char **message);
/* Stops the jobs runner and the upload workers (items in flight finish; call
 * before the batcher closes). Owner only. */
void imago_index_slot_stop_jobs(imago_index_slot *slot);
/* Stops the jobs, snapshots and closes the index. NULL is a no-op. */
void imago_index_slot_free(imago_index_slot *slot);
/* Index type ("" when not ready), live images (-1) and sequence. */
void imago_index_slot_info(imago_index_slot *slot, char *type, size_t type_cap, int64_t *size,
                           uint64_t *seq);
/* The collection's learned whitening into *out (its fingerprint copied into
 * fingerprint) and the index dim (0 when not ready); NULL when it has none. */
const imago_whitening_desc *imago_index_slot_whitening(imago_index_slot *slot,
                                                       imago_whitening_desc *out,
                                                       char fingerprint[40], int *index_dim);
/* Prometheus text of the index, jobs and search stages (new string; "" when
 * the index is not ready). */
char *imago_index_slot_metrics(imago_index_slot *slot);

/* Handlers (routes.c has parsed and validated the request). search takes
 * the filter terms of *sp and add the strings of *ap (both reset); image
 * points into the request body. */
int imago_route_search(imago_http_request *r, imago_http_response *resp, imago_search_params *sp,
                       const uint8_t *image, size_t len);
int imago_route_add_image(imago_http_request *r, imago_http_response *resp,
                          imago_add_image_params *ap, const uint8_t *image, size_t len);
int imago_route_image_get(imago_http_request *r, imago_http_response *resp);
int imago_route_image_thumbnail(imago_http_request *r, imago_http_response *resp);
int imago_route_image_delete(imago_http_request *r, imago_http_response *resp);
int imago_route_job_create(imago_http_request *r, imago_http_response *resp,
                           const imago_job_request *req);
int imago_route_job_get(imago_http_request *r, imago_http_response *resp);
int imago_route_job_cancel(imago_http_request *r, imago_http_response *resp);
int imago_route_job_list(imago_http_request *r, imago_http_response *resp);
int imago_route_reindex(imago_http_request *r, imago_http_response *resp,
                        const imago_reindex_request *rr);

/* /v1/admin/whitening (whitening.c): POST learns (202 job), GET describes,
 * DELETE removes (202 job). */
int imago_route_whitening_learn(imago_http_request *r, imago_http_response *resp,
                                const imago_whitening_request *wr);
int imago_route_whitening_get(imago_http_request *r, imago_http_response *resp);
int imago_route_whitening_remove(imago_http_request *r, imago_http_response *resp);

/* ---- the server (http.c) ------------------------------------------------------- */

/* Opens the HTTP server on cfg->server.listen:port (port 0 = any free port)
 * and starts serving at once. cfg is borrowed and must outlive the server.
 * Returns 0, or IMAGO_ERR_IO (bind/listen failed, TLS files unreadable),
 * IMAGO_ERR_INVALID (bad listen address) with err set. */
int imago_server_open(const imago_config *cfg, imago_server **out, imago_error *err);

/* The port actually bound (useful with port 0). */
int imago_server_port(const imago_server *s);

/* Blocks until SIGTERM/SIGINT (installed here) or imago_server_stop(), then
 * shuts down gracefully: stops accepting, waits up to drain_s seconds for
 * requests in flight, stops the daemon. Returns 0. */
int imago_server_run(imago_server *s, int drain_s, imago_error *err);

/* Asks run() to return. Async-signal-safe; callable from any thread. */
void imago_server_stop(imago_server *s);

void imago_server_free(imago_server *s);

/* Shared state the handlers read. */
const imago_config *imago_server_config(const imago_server *s);
const imago_auth *imago_server_auth(const imago_server *s);
imago_metrics *imago_server_metrics(const imago_server *s);
long imago_server_in_flight(const imago_server *s);
int imago_server_ready(const imago_server *s); /* the model is loaded (see /readyz) */
imago_engine_slot *imago_server_engine(const imago_server *s); /* NULL when not started */
imago_index_slot *imago_server_index(const imago_server *s);   /* NULL when not started */

/* Starts loading the model in the background, then opening the index (call
 * after open, before run). A failed load or open makes run() return
 * IMAGO_ERR_BACKEND with its message. */
int imago_server_start_engine(imago_server *s, imago_error *err);

#endif /* IMAGO_SERVER_H */
