/* The HTTP transport on libmicrohttpd: daemon setup (listen address, port 0,
 * TLS, thread pool on epoll, suspend/resume), the request lifecycle, body
 * accumulation under per-route limits, responses and the access log. It
 * serves the route table it is given and hands the handlers an opaque
 * application pointer (http.h); the server's lifetime is server.c.
 *
 * DESIGN: request lifecycle (one imago_http_request per HTTP request, in
 * MHD's *con_cls):
 *   1. first access call (headers only): route lookup (404/405), CORS
 *      preflight, auth (401/403), Content-Type and Content-Length checks
 *      (415/413). An error is answered at once, before the body is read, and
 *      MHD then closes the connection.
 *   2. upload calls: the body is appended up to the route's limit; past it
 *      the rest is discarded and 413 is sent at the end (chunked uploads
 *      have no Content-Length to refuse early).
 *   3. final call: the handler runs. It fills a response (sent now), or
 *      defers: the connection is suspended and imago_http_complete() from
 *      any thread stores the response and resumes it; MHD calls us again
 *      and the stored response is queued.
 *   4. completion callback: metrics, access log, free.
 * in_flight counts requests between 1 and 4; the graceful shutdown
 * (server.c) quiesces the daemon and waits for it to reach zero (bounded).
 */
#include "http.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "imago_build.h"

struct imago_http {
    const imago_config *cfg;
    const imago_route *routes;
    int n_routes;
    const imago_auth *auth;
    imago_metrics *metrics;
    void *app;
    struct MHD_Daemon *daemon;
    MHD_socket quiesced_fd; /* the listen socket after imago_http_quiesce */
    int port;
    atomic_long in_flight;
    char *tls_cert, *tls_key;
};

enum req_state {
    REQ_NEW = 0,
    REQ_BODY,      /* receiving the body */
    REQ_DEFERRED,  /* suspended, waiting for imago_http_complete */
    REQ_COMPLETED, /* complete() stored the response; resume pending */
    REQ_SENT
};

struct imago_http_request {
    imago_http *h;
    struct MHD_Connection *conn;
    int64_t t0_us;
    char method[16];
    char *path;
    const imago_route *route;
    const char *route_name; /* static: pattern or "unmatched" */
    char *params[IMAGO_ROUTE_MAX_PARAMS];
    uint8_t *body;
    size_t body_len, body_cap, body_limit;
    int body_overflow;
    _Atomic int state;
    imago_http_response stored; /* deferred response */
    int status;                 /* sent status, 0 = none */
    size_t bytes_out;
    const char *api_error;
};

/* ---- accessors ------------------------------------------------------------ */

const char *imago_http_method(const imago_http_request *r)
{
    return r->method;
}
const char *imago_http_path(const imago_http_request *r)
{
    return r->path;
}
void *imago_http_app(const imago_http_request *r)
{
    return r->h->app;
}

const char *imago_http_header(const imago_http_request *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

const char *imago_http_path_param(const imago_http_request *r, int i)
{
    return (i >= 0 && i < IMAGO_ROUTE_MAX_PARAMS) ? r->params[i] : NULL;
}

const uint8_t *imago_http_body(const imago_http_request *r, size_t *len)
{
    *len = r->body_len;
    return r->body;
}

typedef struct query_iter {
    imago_query_cb cb;
    void *ctx;
    imago_error *err;
    int rc;
} query_iter;

static enum MHD_Result query_one(void *cls, enum MHD_ValueKind kind, const char *key,
                                 size_t key_size, const char *value, size_t value_size)
{
    (void)kind;
    query_iter *it = cls;
    if (!key || key_size == 0 || strlen(key) != key_size) {
        it->rc = imago_error_set(it->err, IMAGO_ERR_INVALID,
                                 "query string: empty or invalid parameter name");
        return MHD_NO;
    }
    it->rc = it->cb(it->ctx, key, value ? value : "", value ? value_size : 0, it->err);
    return it->rc ? MHD_NO : MHD_YES;
}

int imago_http_query_each(const imago_http_request *r, imago_query_cb cb, void *ctx,
                          imago_error *err)
{
    query_iter it = {cb, ctx, err, 0};
    MHD_get_connection_values_n(r->conn, MHD_GET_ARGUMENT_KIND, query_one, &it);
    return it.rc;
}

/* ---- responses ------------------------------------------------------------ */

/* Queues resp on the connection (takes its owned buffers). */
static enum MHD_Result send_response(imago_http_request *r, imago_http_response *resp)
{
    struct MHD_Response *mr;
    if (resp->body && resp->body_len) {
        mr = MHD_create_response_from_buffer(resp->body_len, resp->body, MHD_RESPMEM_MUST_FREE);
        if (mr)
            resp->body = NULL; /* MHD owns it now */
    } else {
        mr = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    }
    if (!mr) {
        imago_http_response_clear(resp);
        return MHD_NO;
    }
    if (resp->content_type)
        MHD_add_response_header(mr, MHD_HTTP_HEADER_CONTENT_TYPE, resp->content_type);
    if (resp->retry_after_s > 0) {
        char v[16];
        snprintf(v, sizeof v, "%d", resp->retry_after_s);
        MHD_add_response_header(mr, MHD_HTTP_HEADER_RETRY_AFTER, v);
    }
    if (resp->allow[0])
        MHD_add_response_header(mr, MHD_HTTP_HEADER_ALLOW, resp->allow);
    if (resp->www_authenticate)
        MHD_add_response_header(mr, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"imago\"");
    if (resp->location)
        MHD_add_response_header(mr, MHD_HTTP_HEADER_LOCATION, resp->location);
    const char *cors = r->h->cfg->server.cors_origin;
    if (cors && cors[0]) {
        MHD_add_response_header(mr, MHD_HTTP_HEADER_ACCESS_CONTROL_ALLOW_ORIGIN, cors);
        MHD_add_response_header(mr, "Vary", "Origin");
    }
    int cache_set = 0;
    for (int i = 0; resp->extra_headers[i]; i += 2) {
        MHD_add_response_header(mr, resp->extra_headers[i], resp->extra_headers[i + 1]);
        cache_set |= strcasecmp(resp->extra_headers[i], MHD_HTTP_HEADER_CACHE_CONTROL) == 0;
    }
    if (!cache_set)
        MHD_add_response_header(mr, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (resp->close)
        MHD_add_response_header(mr, MHD_HTTP_HEADER_CONNECTION, "close");
    r->status = resp->status;
    r->bytes_out = resp->body_len;
    r->api_error = resp->api_error;
    enum MHD_Result ret = MHD_queue_response(r->conn, (unsigned)resp->status, mr);
    MHD_destroy_response(mr);
    imago_http_response_clear(resp);
    atomic_store(&r->state, REQ_SENT);
    return ret;
}

static int has_body(struct MHD_Connection *c);

/* Answers from the first (headers-only) call. With a body pending the
 * response goes out now and MHD closes the connection instead of reading
 * the body; without one it is sent on the next call, which keeps the
 * connection alive. */
static enum MHD_Result send_early(imago_http_request *r, imago_http_response *resp)
{
    if (has_body(r->conn))
        return send_response(r, resp);
    r->stored = *resp;
    memset(resp, 0, sizeof *resp);
    atomic_store(&r->state, REQ_COMPLETED);
    return MHD_YES;
}

static enum MHD_Result send_error(imago_http_request *r, imago_api_error code, const char *msg)
{
    imago_http_response resp;
    memset(&resp, 0, sizeof resp);
    imago_http_error(&resp, code, msg);
    return send_response(r, &resp);
}

static enum MHD_Result early_error(imago_http_request *r, imago_api_error code, const char *msg)
{
    imago_http_response resp;
    memset(&resp, 0, sizeof resp);
    imago_http_error(&resp, code, msg);
    return send_early(r, &resp);
}

/* ---- deferral --------------------------------------------------------------- */

void imago_http_defer(imago_http_request *r)
{
    atomic_store(&r->state, REQ_DEFERRED);
    MHD_suspend_connection(r->conn);
}

void imago_http_complete(imago_http_request *r, imago_http_response *resp)
{
    r->stored = *resp;
    memset(resp, 0, sizeof *resp);
    atomic_store(&r->state, REQ_COMPLETED);
    MHD_resume_connection(r->conn);
}

void imago_http_complete_error(imago_http_request *r, imago_api_error code, const char *message)
{
    imago_http_response now;
    memset(&now, 0, sizeof now);
    imago_http_error(&now, code, message);
    imago_http_complete(r, &now);
}

/* ---- the access handler ------------------------------------------------------ */

static void request_free(imago_http_request *r)
{
    free(r->path);
    for (int i = 0; i < IMAGO_ROUTE_MAX_PARAMS; i++)
        free(r->params[i]);
    free(r->body);
    imago_http_response_clear(&r->stored);
    free(r);
}

/* Content-Length, or -1 when absent / not a plain number. */
static long long content_length(struct MHD_Connection *c)
{
    const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (!v || !*v)
        return -1;
    long long n = 0;
    for (const char *p = v; *p; p++) {
        if (*p < '0' || *p > '9' || n > (1LL << 50))
            return -1;
        n = n * 10 + (*p - '0');
    }
    return n;
}

static int has_body(struct MHD_Connection *c)
{
    long long cl = content_length(c);
    const char *te =
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
    return cl > 0 || (te && strcasecmp(te, "identity") != 0);
}

/* Per-connection state (MHD's socket context): what the URI log callback
 * saw in the raw request line of the request being read. Requests on one
 * connection are read one after the other, so no lock is needed. */
typedef struct conn_ctx {
    int bad_path; /* the raw path decodes to a NUL or another control character */
} conn_ctx;

static void notify_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                              enum MHD_ConnectionNotificationCode toe)
{
    (void)cls;
    (void)c;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        *socket_context = imago_xcalloc(1, sizeof(conn_ctx));
    } else if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
        free(*socket_context);
        *socket_context = NULL;
    }
}

static conn_ctx *conn_ctx_of(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

/* MHD_OPTION_URI_LOG_CALLBACK: sees the request line's URI before it is
 * decoded. Returns NULL: the request itself is made at the first access. */
static void *uri_seen(void *cls, const char *uri, struct MHD_Connection *c)
{
    (void)cls;
    conn_ctx *cc = conn_ctx_of(c);
    if (cc)
        cc->bad_path = imago_http_raw_path_bad(uri);
    return NULL;
}

/* A framing error (RFC 9112 6.3): answered once, and the connection closed,
 * since where this request ends and the next begins cannot be known. */
static enum MHD_Result framing_error(imago_http_request *r, const char *msg)
{
    imago_http_response resp;
    memset(&resp, 0, sizeof resp);
    imago_http_error(&resp, IMAGO_API_INVALID_REQUEST, msg);
    resp.close = 1;
    return send_response(r, &resp);
}

static enum MHD_Result count_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                    const char *value)
{
    (void)kind;
    (void)value;
    if (key && strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0)
        ++*(int *)cls;
    return MHD_YES;
}

/* The framing of the request: one Content-Length, a plain number, and not
 * together with Transfer-Encoding. NULL when fine, else why not. */
static const char *framing_problem(struct MHD_Connection *c)
{
    int n_cl = 0;
    MHD_get_connection_values(c, MHD_HEADER_KIND, count_header, &n_cl);
    const char *te =
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
    if (n_cl > 1)
        return "more than one Content-Length header";
    if (n_cl == 1 && te)
        return "Content-Length together with Transfer-Encoding";
    if (n_cl == 1 && content_length(c) < 0)
        return "Content-Length is not a decimal number";
    return NULL;
}

/* Checks done on the headers alone. Returns MHD_YES with nothing queued
 * when the request may proceed to its body (r->state = REQ_BODY). */
static enum MHD_Result first_call(imago_http_request *r, const char *url)
{
    const char *framing = framing_problem(r->conn);
    if (framing)
        return framing_error(r, framing);
    conn_ctx *cc = conn_ctx_of(r->conn);
    if (cc && cc->bad_path) {
        cc->bad_path = 0;
        return early_error(r, IMAGO_API_INVALID_REQUEST,
                           "the request path holds a NUL or control character");
    }

    imago_http *s = r->h;
    const char *pstart[IMAGO_ROUTE_MAX_PARAMS] = {0};
    size_t plen[IMAGO_ROUTE_MAX_PARAMS] = {0};
    int known = 0;
    imago_http_response resp;
    memset(&resp, 0, sizeof resp);

    const char *cors = s->cfg->server.cors_origin;
    if (strcmp(r->method, "OPTIONS") == 0 && cors && cors[0]) {
        const imago_route *any =
            imago_http_route_match(s->routes, s->n_routes, "GET", url, pstart, plen, &known,
                                   resp.allow, sizeof resp.allow);
        if (any || known) {
            struct MHD_Response *mr =
                MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
            if (!mr)
                return MHD_NO;
            MHD_add_response_header(mr, MHD_HTTP_HEADER_ACCESS_CONTROL_ALLOW_ORIGIN, cors);
            MHD_add_response_header(mr, "Access-Control-Allow-Methods", "GET, POST, DELETE");
            MHD_add_response_header(mr, "Access-Control-Allow-Headers",
                                    "Authorization, Content-Type");
            MHD_add_response_header(mr, "Access-Control-Max-Age", "600");
            MHD_add_response_header(mr, "Vary", "Origin");
            r->status = 204;
            atomic_store(&r->state, REQ_SENT);
            enum MHD_Result ret = MHD_queue_response(r->conn, 204, mr);
            MHD_destroy_response(mr);
            return ret;
        }
    }

    r->route = imago_http_route_match(s->routes, s->n_routes, r->method, url, pstart, plen, &known,
                                      resp.allow, sizeof resp.allow);
    if (!r->route) {
        if (known) {
            imago_http_error(&resp, IMAGO_API_METHOD_NOT_ALLOWED, NULL);
            char msg[160];
            snprintf(msg, sizeof msg, "method %s not allowed here; allowed: %s", r->method,
                     resp.allow);
            char *b = imago_api_error_body(IMAGO_API_METHOD_NOT_ALLOWED, msg);
            imago_http_json(&resp, 405, b);
            return send_early(r, &resp);
        }
        return early_error(r, IMAGO_API_NOT_FOUND, "no such endpoint");
    }
    r->route_name = r->route->pattern;
    for (int i = 0; i < IMAGO_ROUTE_MAX_PARAMS; i++) {
        if (!pstart[i])
            continue;
        r->params[i] = imago_xmalloc(plen[i] + 1);
        memcpy(r->params[i], pstart[i], plen[i]);
        r->params[i][plen[i]] = '\0';
    }

    imago_api_error a = imago_auth_check(s->auth, r->route->auth,
                                         imago_http_header(r, MHD_HTTP_HEADER_AUTHORIZATION));
    if (a != IMAGO_API_OK)
        return early_error(r, a,
                           a == IMAGO_API_FORBIDDEN
                               ? "this endpoint needs the admin token"
                               : (imago_http_header(r, MHD_HTTP_HEADER_AUTHORIZATION)
                                      ? "invalid bearer token"
                                      : "missing Authorization: Bearer token"));

    long long cl = content_length(r->conn);
    switch (r->route->body) {
    case IMAGO_BODY_NONE:
        if (has_body(r->conn))
            return early_error(r, IMAGO_API_PAYLOAD_TOO_LARGE,
                               "this endpoint takes no request body");
        r->body_limit = 0;
        break;
    case IMAGO_BODY_IMAGE:
    case IMAGO_BODY_JSON: {
        imago_content_type ct;
        imago_error err;
        imago_error_clear(&err);
        if (imago_content_type_parse(imago_http_header(r, MHD_HTTP_HEADER_CONTENT_TYPE), &ct,
                                     &err) != 0)
            return early_error(r, IMAGO_API_INVALID_REQUEST, err.msg);
        int ok;
        if (r->route->body == IMAGO_BODY_IMAGE) {
            ok = ct.media == IMAGO_MEDIA_MULTIPART || ct.media == IMAGO_MEDIA_JPEG ||
                 ct.media == IMAGO_MEDIA_PNG || ct.media == IMAGO_MEDIA_OCTET;
            r->body_limit = (size_t)s->cfg->server.max_body_bytes;
        } else {
            ok = ct.media == IMAGO_MEDIA_JSON ||
                 (ct.media == IMAGO_MEDIA_NONE && !has_body(r->conn));
            r->body_limit = IMAGO_JSON_BODY_MAX;
        }
        if (!ok) {
            char msg[256];
            snprintf(msg, sizeof msg, "Content-Type %s%s%s is not accepted here; use %s",
                     ct.media == IMAGO_MEDIA_NONE ? "(none)" : "'",
                     ct.media == IMAGO_MEDIA_NONE ? "" : ct.type,
                     ct.media == IMAGO_MEDIA_NONE ? "" : "'",
                     r->route->body == IMAGO_BODY_IMAGE
                         ? "multipart/form-data, image/jpeg or image/png"
                         : "application/json");
            return early_error(r, IMAGO_API_UNSUPPORTED_MEDIA_TYPE, msg);
        }
        if (cl >= 0 && (unsigned long long)cl > r->body_limit) {
            char msg[96];
            snprintf(msg, sizeof msg, "request body of %lld bytes is over the limit of %zu bytes",
                     cl, r->body_limit);
            return early_error(r, IMAGO_API_PAYLOAD_TOO_LARGE, msg);
        }
        /* the body buffer grows as bytes arrive (never from the declared
         * length alone: headers without a body must not pin memory) */
        break;
    }
    }
    atomic_store(&r->state, REQ_BODY);
    return MHD_YES;
}

static void append_body(imago_http_request *r, const char *data, size_t n)
{
    if (r->body_overflow)
        return;
    if (n > r->body_limit - r->body_len) {
        r->body_overflow = 1; /* keep reading (and dropping) to answer 413 at the end */
        free(r->body);
        r->body = NULL;
        r->body_len = r->body_cap = 0;
        return;
    }
    if (r->body_len + n > r->body_cap) {
        size_t cap = r->body_cap ? r->body_cap * 2 : 64 * 1024;
        while (cap < r->body_len + n)
            cap *= 2;
        if (cap > r->body_limit)
            cap = r->body_limit;
        uint8_t *nb = realloc(r->body, cap);
        if (!nb) {
            r->body_overflow = 1;
            free(r->body);
            r->body = NULL;
            r->body_len = r->body_cap = 0;
            return;
        }
        r->body = nb;
        r->body_cap = cap;
    }
    memcpy(r->body + r->body_len, data, n);
    r->body_len += n;
}

/* Writes a complete 413 answer straight to the socket of r (best effort,
 * plain HTTP only: under TLS the connection is just closed) and records it
 * for the access log and metrics. */
static void overflow_reply(imago_http_request *r, const char *msg)
{
    r->status = 413;
    r->api_error = imago_api_error_name(IMAGO_API_PAYLOAD_TOO_LARGE);
    atomic_store(&r->state, REQ_SENT);
    if (r->h->cfg->server.tls_cert && r->h->cfg->server.tls_cert[0])
        return;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci)
        return;
    char *body = imago_api_error_body(IMAGO_API_PAYLOAD_TOO_LARGE, msg);
    char head[256];
    int hl = snprintf(head, sizeof head,
                      "HTTP/1.1 413 Payload Too Large\r\nContent-Type: application/json\r\n"
                      "Content-Length: %zu\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n",
                      strlen(body));
    int fd = ci->connect_fd;
    /* the socket is non-blocking; a short answer fits the send buffer */
    if (hl > 0 && send(fd, head, (size_t)hl, MSG_NOSIGNAL) == hl)
        (void)!send(fd, body, strlen(body), MSG_NOSIGNAL);
    r->bytes_out = strlen(body);
    free(body);
    /* FIN before MHD's close: the client can read the answer even though
     * the rest of its body was never read */
    shutdown(fd, SHUT_WR);
}

static enum MHD_Result access_handler(void *cls, struct MHD_Connection *conn, const char *url,
                                      const char *method, const char *version,
                                      const char *upload_data, size_t *upload_data_size,
                                      void **con_cls)
{
    (void)version;
    imago_http *s = cls;
    imago_http_request *r = *con_cls;
    if (!r) {
        r = imago_xcalloc(1, sizeof *r);
        r->h = s;
        r->conn = conn;
        r->t0_us = imago_now_us();
        snprintf(r->method, sizeof r->method, "%s", method);
        r->path = imago_xstrdup(url);
        r->route_name = "unmatched";
        *con_cls = r;
        atomic_fetch_add(&s->in_flight, 1);
        return first_call(r, url);
    }
    int state = atomic_load(&r->state);
    if (state == REQ_COMPLETED) {
        imago_http_response resp = r->stored;
        memset(&r->stored, 0, sizeof r->stored);
        return send_response(r, &resp);
    }
    if (state != REQ_BODY)
        return MHD_YES; /* deferred (spurious call) or already answered */
    if (*upload_data_size) {
        append_body(r, upload_data, *upload_data_size);
        *upload_data_size = 0;
        if (r->body_overflow) {
            /* past the limit (a chunked body: a declared length was refused
             * at the headers): stop reading now. libmicrohttpd queues no
             * response in the middle of a body, so the 413 is written to the
             * socket here (plain HTTP) and the connection is closed. */
            char msg[96];
            snprintf(msg, sizeof msg, "request body is over the limit of %zu bytes",
                     r->body_limit);
            overflow_reply(r, msg);
            return MHD_NO;
        }
        return MHD_YES;
    }
    if (r->body_overflow) {
        char msg[96];
        snprintf(msg, sizeof msg, "request body is over the limit of %zu bytes", r->body_limit);
        return send_error(r, IMAGO_API_PAYLOAD_TOO_LARGE, msg);
    }
    imago_http_response resp;
    memset(&resp, 0, sizeof resp);
    int hr = r->route->handler(r, &resp);
    if (hr == IMAGO_HTTP_DEFERRED)
        return MHD_YES;
    if (resp.status == 0) {
        imago_http_response_clear(&resp);
        return send_error(r, IMAGO_API_INTERNAL, "handler produced no response");
    }
    return send_response(r, &resp);
}

static void client_addr(struct MHD_Connection *c, char *buf, size_t cap)
{
    snprintf(buf, cap, "-");
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (!ci || !ci->client_addr)
        return;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, buf,
                  (socklen_t)cap);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, buf,
                  (socklen_t)cap);
}

static void completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                      enum MHD_RequestTerminationCode toe)
{
    imago_http *s = cls;
    imago_http_request *r = *con_cls;
    if (!r)
        return;
    double secs = (double)(imago_now_us() - r->t0_us) / 1e6;
    char addr[64];
    client_addr(conn, addr, sizeof addr);
    char path[1024], method[sizeof r->method * 4];
    imago_http_log_escape(r->path, path, sizeof path);
    imago_http_log_escape(r->method, method, sizeof method);
    if (r->status)
        imago_metrics_observe(s->metrics, r->route_name, r->method, r->status, secs);
    imago_log(r->status >= 500 ? IMAGO_LOG_WARN : IMAGO_LOG_INFO, "http",
              "%s %s %d %s in=%zu out=%zu %.3fms route=%s client=%s%s", method, path,
              r->status, r->api_error ? r->api_error : "-", r->body_len, r->bytes_out, secs * 1e3,
              r->route_name, addr,
              toe == MHD_REQUEST_TERMINATED_COMPLETED_OK      ? ""
              : toe == MHD_REQUEST_TERMINATED_TIMEOUT_REACHED ? " (timeout)"
              : toe == MHD_REQUEST_TERMINATED_CLIENT_ABORT    ? " (client closed)"
              : toe == MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN ? " (shutdown)"
                                                              : " (error)");
    request_free(r);
    *con_cls = NULL;
    atomic_fetch_sub(&s->in_flight, 1);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    IMAGO_WARN("http", "libmicrohttpd: %s", msg);
}


/* ---- the daemon ------------------------------------------------------------- */

int imago_http_open(const imago_config *cfg, const imago_route *routes, int n_routes,
                    const imago_auth *auth, imago_metrics *metrics, void *app, imago_http **out,
                    imago_error *err)
{
    imago_http *s = imago_xcalloc(1, sizeof *s);
    s->cfg = cfg;
    s->routes = routes;
    s->n_routes = n_routes;
    s->auth = auth;
    s->metrics = metrics;
    s->app = app;
    s->quiesced_fd = MHD_INVALID_SOCKET;
    atomic_init(&s->in_flight, 0);
    struct sockaddr_storage ss;
    int v6 = 0;
    int rc = imago_http_listen_addr(cfg->server.listen, cfg->server.port, &ss, &v6, err);
    if (rc)
        goto fail;

    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (v6) {
        flags |= MHD_USE_IPv6;
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
        if (IN6_IS_ADDR_UNSPECIFIED(&a6->sin6_addr))
            flags |= MHD_USE_DUAL_STACK;
    }
    int tls = cfg->server.tls_cert[0] && cfg->server.tls_key[0];
    if (tls) {
#if IMAGO_HAVE_TLS
        /* PEM files of at most 1 MiB, NUL-terminated as libmicrohttpd wants */
        void *pem = NULL;
        size_t pem_len = 0;
        rc = imago_read_file(cfg->server.tls_cert, (size_t)1 << 20, &pem, &pem_len, err);
        s->tls_cert = pem;
        if (rc == 0) {
            pem = NULL;
            rc = imago_read_file(cfg->server.tls_key, (size_t)1 << 20, &pem, &pem_len, err);
            s->tls_key = pem;
        }
        if (rc)
            goto fail;
        flags |= MHD_USE_TLS;
#else
        rc = imago_error_set(err, IMAGO_ERR_UNSUPPORTED,
                             "server.tls_cert: this libmicrohttpd was built without TLS");
        goto fail;
#endif
    }
    long threads = cfg->server.threads;
    if (threads <= 0)
        threads = sysconf(_SC_NPROCESSORS_ONLN);
    if (threads < 1)
        threads = 1;

    struct MHD_OptionItem opts[14];
    int o = 0;
    opts[o++] = (struct MHD_OptionItem){MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)mhd_log, NULL};
    opts[o++] = (struct MHD_OptionItem){MHD_OPTION_SOCK_ADDR, 0, &ss};
    opts[o++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)completed, s};
    opts[o++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)notify_connection,
                                        NULL};
    opts[o++] = (struct MHD_OptionItem){MHD_OPTION_URI_LOG_CALLBACK, (intptr_t)uri_seen, NULL};
    opts[o++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_TIMEOUT,
                                        cfg->server.connection_timeout_s, NULL};
    opts[o++] =
        (struct MHD_OptionItem){MHD_OPTION_CONNECTION_LIMIT, cfg->server.max_connections, NULL};
    /* per-connection pool: request line + headers; bodies are ours */
    opts[o++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_MEMORY_LIMIT, 64 * 1024, NULL};
    if (threads > 1)
        opts[o++] = (struct MHD_OptionItem){MHD_OPTION_THREAD_POOL_SIZE, threads, NULL};
    if (tls) {
        opts[o++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, s->tls_cert};
        opts[o++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, s->tls_key};
    }
    opts[o++] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};

    s->daemon = MHD_start_daemon(flags, (uint16_t)cfg->server.port, NULL, NULL, access_handler, s,
                                 MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
    if (!s->daemon) {
        rc = imago_error_set(err, IMAGO_ERR_IO,
                             "cannot listen on %s port %d (address in use, or not permitted?)",
                             cfg->server.listen, cfg->server.port);
        goto fail;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : cfg->server.port;
    IMAGO_INFO("http", "listening on %s://%s%s%s:%d (%ld thread%s)", tls ? "https" : "http",
               v6 ? "[" : "", cfg->server.listen, v6 ? "]" : "", s->port, threads,
               threads == 1 ? "" : "s");
    *out = s;
    return 0;
fail:
    imago_http_free(s);
    return rc;
}

int imago_http_port(const imago_http *h)
{
    return h->port;
}

long imago_http_in_flight(const imago_http *h)
{
    return atomic_load(&((imago_http *)h)->in_flight);
}

void imago_http_quiesce(imago_http *h)
{
    h->quiesced_fd = MHD_quiesce_daemon(h->daemon);
}

void imago_http_free(imago_http *h)
{
    if (!h)
        return;
    if (h->daemon)
        MHD_stop_daemon(h->daemon);
    if (h->quiesced_fd != MHD_INVALID_SOCKET)
        close(h->quiesced_fd);
    free(h->tls_cert);
    free(h->tls_key);
    free(h);
}
