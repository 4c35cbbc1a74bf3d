/* server-private: the HTTP transport (http.c, http_util.c).
 *
 * The transport is a libmicrohttpd daemon that is given a route table, the
 * tokens, the metrics and an opaque application pointer; it knows nothing of
 * the engine, the index or the jobs. Handlers see only imago_http_request /
 * imago_http_response (libmicrohttpd types stay in http.c), so they can be
 * tested and reasoned about without MHD. The transport calls the application
 * only through the handlers of its route table.
 *
 * Threads: MHD runs an internal polling thread (epoll), or a pool of them
 * (server.threads); handlers run on those threads and must not block for
 * long: work that waits (the engine batcher) suspends the connection with
 * imago_http_defer() and completes it from any thread with
 * imago_http_complete().
 */
#ifndef IMAGO_SERVER_HTTP_H
#define IMAGO_SERVER_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "auth.h"
#include "metrics.h"

#include "common/common.h"
#include "config/config.h"
#include "proto/proto.h"

/* ---- requests and responses as handlers see them (http.c) ------------------- */

#define IMAGO_ROUTE_MAX_PARAMS 2

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

/* Accessors for handlers (all strings borrowed for the request's lifetime). */
const char *imago_http_method(const imago_http_request *r);
const char *imago_http_path(const imago_http_request *r);
const char *imago_http_header(const imago_http_request *r, const char *name); /* or NULL */
const char *imago_http_path_param(const imago_http_request *r, int i);        /* {id} values */
const uint8_t *imago_http_body(const imago_http_request *r, size_t *len);
/* The application pointer given to imago_http_open (borrowed). */
void *imago_http_app(const imago_http_request *r);

/* Calls cb for every query-string argument in order (value "" when the
 * argument has no '='). Stops at and returns the first non-zero result. */
int imago_http_query_each(const imago_http_request *r, imago_query_cb cb, void *ctx,
                          imago_error *err);

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

/* ---- filling responses (http_util.c) ------------------------------------------ */

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

/* Frees the owned buffers of resp and zeroes it. */
void imago_http_response_clear(imago_http_response *resp);

/* ---- the route table (http_util.c matches it) ---------------------------------- */

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

/* Finds the route of method + path in table[0, n) (HEAD matches GET
 * routes). Returns the route and fills params (up to IMAGO_ROUTE_MAX_PARAMS
 * borrowed [start, len) slices of path), or NULL: then *path_known is 1 when
 * the path exists under other methods (listed in allow, e.g. "GET, DELETE")
 * and 0 when it does not exist. Thread-safe (reads the table only). */
const imago_route *imago_http_route_match(const imago_route *table, int n, const char *method,
                                          const char *path,
                                          const char *param_start[IMAGO_ROUTE_MAX_PARAMS],
                                          size_t param_len[IMAGO_ROUTE_MAX_PARAMS], int *path_known,
                                          char *allow, size_t allow_cap);

/* ---- small pure helpers (http_util.c) -------------------------------------------- */

/* Whether a raw (still %-encoded) request URI's path holds a NUL or another
 * control character, raw or encoded (such a path is refused with 400). */
int imago_http_raw_path_bad(const char *uri);

/* Copies s into out (cap bytes, NUL-terminated, cut short if needed) with
 * control characters, DEL, '"' and '\\' written as \xHH: a request line
 * cannot forge a log line. Returns out. */
char *imago_http_log_escape(const char *s, char *out, size_t cap);

/* Parses server.listen ("127.0.0.1", "::", "[::1]", "localhost") and port
 * into *ss; *v6 = 1 for IPv6. Returns 0 or IMAGO_ERR_INVALID. */
int imago_http_listen_addr(const char *listen, int port, struct sockaddr_storage *ss, int *v6,
                           imago_error *err);


/* ---- the daemon (http.c) ---------------------------------------------------------- */

typedef struct imago_http imago_http;

/* Starts the daemon on cfg->server.listen:port (port 0 = any free port)
 * serving routes[0, n_routes). cfg, routes, auth and metrics are borrowed
 * and must outlive it; app is handed to the handlers (imago_http_app).
 * Returns 0, or IMAGO_ERR_IO (bind/listen failed, TLS files unreadable),
 * IMAGO_ERR_INVALID (bad listen address), IMAGO_ERR_UNSUPPORTED (TLS asked
 * of a libmicrohttpd without it) with err set. */
int imago_http_open(const imago_config *cfg, const imago_route *routes, int n_routes,
                    const imago_auth *auth, imago_metrics *metrics, void *app, imago_http **out,
                    imago_error *err);

/* The port actually bound (useful with port 0). */
int imago_http_port(const imago_http *h);

/* Requests between their first access call and their completion. Thread-safe. */
long imago_http_in_flight(const imago_http *h);

/* Stops accepting new connections (requests in flight go on). Owner only. */
void imago_http_quiesce(imago_http *h);

/* Stops the daemon (connections still open are closed) and frees h. NULL is
 * a no-op. Owner only. */
void imago_http_free(imago_http *h);

#endif /* IMAGO_SERVER_HTTP_H */
