/* The transport's helpers that need neither libmicrohttpd nor a request:
 * filling responses, matching the route table, checking a raw path,
 * escaping log fields, the listen address and the TLS files.
 */
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- responses ------------------------------------------------------------ */

void imago_http_json(imago_http_response *resp, int status, char *json)
{
    resp->status = status;
    resp->content_type = "application/json";
    free(resp->body);
    resp->body = json;
    resp->body_len = json ? strlen(json) : 0;
}

void imago_http_error(imago_http_response *resp, imago_api_error code, const char *message)
{
    imago_http_json(resp, imago_api_error_status(code), imago_api_error_body(code, message));
    resp->api_error = imago_api_error_name(code);
    if (imago_api_error_retry_after(code))
        resp->retry_after_s = 1;
    if (code == IMAGO_API_UNAUTHORIZED)
        resp->www_authenticate = 1;
}

int imago_http_fail(imago_http_response *resp, imago_api_error code, const char *message)
{
    imago_http_error(resp, code, message);
    return IMAGO_HTTP_DONE;
}

int imago_http_fail_code(imago_http_response *resp, const imago_error *err, imago_api_context ctx)
{
    return imago_http_fail(resp, imago_api_error_from_code(err->code, ctx), err->msg);
}

void imago_http_response_clear(imago_http_response *resp)
{
    free(resp->body);
    free(resp->location);
    memset(resp, 0, sizeof *resp);
}

/* ---- the route table -------------------------------------------------------- */

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

const imago_route *imago_http_route_match(const imago_route *routes, int n_routes,
                                          const char *method, const char *path,
                                          const char *param_start[IMAGO_ROUTE_MAX_PARAMS],
                                          size_t param_len[IMAGO_ROUTE_MAX_PARAMS], int *path_known,
                                          char *allow, size_t allow_cap)
{
    const char *m = strcmp(method, "HEAD") == 0 ? "GET" : method;
    *path_known = 0;
    if (allow_cap)
        allow[0] = '\0';
    for (int i = 0; i < n_routes; i++) {
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

/* ---- paths and log lines ------------------------------------------------------ */

static int hexval(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* Whether the raw path (up to '?' or the end) holds, raw or %-encoded, a
 * byte below 0x20 or 0x7f. libmicrohttpd hands the handler the decoded path
 * as a C string, where a %00 would silently cut it short. */
int imago_http_raw_path_bad(const char *uri)
{
    for (const char *p = uri; *p && *p != '?'; p++) {
        unsigned v = (unsigned char)*p;
        if (*p == '%' && hexval(p[1]) >= 0 && hexval(p[2]) >= 0) {
            v = (unsigned)(hexval(p[1]) * 16 + hexval(p[2]));
            p += 2;
        }
        if (v < 0x20 || v == 0x7f)
            return 1;
    }
    return 0;
}

char *imago_http_log_escape(const char *s, char *out, size_t cap)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    if (cap == 0)
        return out;
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        int esc = *p < 0x20 || *p == 0x7f || *p == '"' || *p == '\\';
        size_t need = esc ? 4 : 1;
        if (o + need >= cap)
            break;
        if (esc) {
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[*p >> 4];
            out[o++] = hex[*p & 15];
        } else {
            out[o++] = (char)*p;
        }
    }
    out[o] = '\0';
    return out;
}

/* ---- the listen address and the TLS files ---------------------------------------- */

int imago_http_listen_addr(const char *listen, int port, struct sockaddr_storage *ss, int *v6,
                           imago_error *err)
{
    memset(ss, 0, sizeof *ss);
    const char *host = listen;
    char buf[64];
    size_t n = strlen(listen);
    if (n >= 2 && listen[0] == '[' && listen[n - 1] == ']' && n - 2 < sizeof buf) {
        memcpy(buf, listen + 1, n - 2);
        buf[n - 2] = '\0';
        host = buf;
    }
    if (strcmp(host, "localhost") == 0)
        host = "127.0.0.1";
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        *v6 = 0;
        return 0;
    }
    if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        *v6 = 1;
        return 0;
    }
    return imago_error_set(err, IMAGO_ERR_INVALID,
                           "server.listen: \"%s\" is not an IPv4/IPv6 address or localhost",
                           listen);
}
