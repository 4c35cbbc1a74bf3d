/* The web page (server/web.c): the embedded asset table matches the files of
 * server/web/, If-None-Match parsing, and the real HTTP server (port 0, no
 * engine) serving GET / and /static/{file} with Content-Type, ETag, 304,
 * Cache-Control and the security headers; API routes keep no-store. */
#include "server/server.h"
#include "tap.h"
#include "testutil.h"
#include "server/web.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

/* ---- a tiny HTTP/1.1 client (Connection: close, reads to EOF) ------------- */

typedef struct reply {
    int status;
    char head[8192]; /* status line + headers */
    char *body;
    size_t body_len;
} reply;

static int request(int port, const char *method, const char *path, const char *extra, reply *out)
{
    memset(out, 0, sizeof *out);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    char req[1024];
    int n = snprintf(req, sizeof req,
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%sConnection: close\r\n\r\n", method,
                     path, extra ? extra : "");
    if (write(fd, req, (size_t)n) != n) {
        close(fd);
        return -1;
    }
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (len + 1 >= cap)
            buf = realloc(buf, cap *= 2);
        ssize_t got = read(fd, buf + len, cap - len - 1);
        if (got <= 0)
            break;
        len += (size_t)got;
    }
    close(fd);
    buf[len] = '\0';
    char *sep = strstr(buf, "\r\n\r\n");
    if (!sep || sscanf(buf, "HTTP/1.1 %d", &out->status) != 1) {
        free(buf);
        return -1;
    }
    size_t hl = (size_t)(sep - buf);
    if (hl >= sizeof out->head)
        hl = sizeof out->head - 1;
    memcpy(out->head, buf, hl);
    out->head[hl] = '\0';
    out->body_len = len - (size_t)(sep + 4 - buf);
    out->body = malloc(out->body_len + 1);
    memcpy(out->body, sep + 4, out->body_len);
    out->body[out->body_len] = '\0';
    free(buf);
    return 0;
}

/* The value of a header (case-insensitive name), copied into v; "" when
 * absent. */
static const char *header(const reply *r, const char *name, char *v, size_t cap)
{
    v[0] = '\0';
    size_t nl = strlen(name);
    for (const char *p = strstr(r->head, "\r\n"); p; p = strstr(p + 2, "\r\n")) {
        const char *line = p + 2;
        if (strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *s = line + nl + 1;
            while (*s == ' ')
                s++;
            const char *e = strstr(s, "\r\n");
            size_t l = e ? (size_t)(e - s) : strlen(s);
            if (l >= cap)
                l = cap - 1;
            memcpy(v, s, l);
            v[l] = '\0';
            break;
        }
    }
    return v;
}

static void test_assets(void)
{
    static const struct {
        const char *name, *type;
    } want[] = {
        {"index.html", "text/html; charset=utf-8"},
        {"app.js", "text/javascript; charset=utf-8"},
        {"style.css", "text/css; charset=utf-8"},
        {"icon.svg", "image/svg+xml"},
    };
    is_int(imago_web_asset_count, 4, "four embedded files");
    const char *root = getenv("IMAGO_SOURCE_ROOT");
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const imago_web_asset *a = imago_web_asset_find(want[i].name);
        ok(a != NULL, "%s embedded", want[i].name);
        if (!a)
            continue;
        is_str(a->content_type, want[i].type, "%s Content-Type", want[i].name);
        ok(strlen(a->etag) == 34 && a->etag[0] == '"' && a->etag[33] == '"', "%s ETag %s",
           want[i].name, a->etag);
        ok(a->data[a->len] == '\0', "%s NUL-terminated", want[i].name);
        if (!root) {
            tap_skip(1, "IMAGO_SOURCE_ROOT is not set");
            continue;
        }
        char path[1024];
        snprintf(path, sizeof path, "%s/server/web/%s", root, want[i].name);
        size_t len = 0;
        char *disk = testutil_read_file(path, &len);
        ok(disk && len == a->len && memcmp(disk, a->data, len) == 0,
           "%s: embedded bytes == server/web/%s (%zu bytes)", want[i].name, want[i].name, a->len);
        free(disk);
    }
    int distinct = 1;
    for (int i = 0; i < imago_web_asset_count; i++)
        for (int j = i + 1; j < imago_web_asset_count; j++)
            distinct &= strcmp(imago_web_assets[i].etag, imago_web_assets[j].etag) != 0;
    ok(distinct, "ETags differ between files");
    ok(imago_web_asset_find("nope.js") == NULL, "unknown name -> NULL");
    ok(imago_web_asset_find("") == NULL && imago_web_asset_find(NULL) == NULL, "empty/NULL name");
    ok(imago_web_asset_find("APP.JS") == NULL, "names are case-sensitive");
}

static void test_etag_match(void)
{
    const char *e = "\"abc123\"";
    ok(!imago_web_etag_match(NULL, e), "absent header: no match");
    ok(!imago_web_etag_match("", e), "empty header: no match");
    ok(imago_web_etag_match("\"abc123\"", e), "exact");
    ok(imago_web_etag_match("W/\"abc123\"", e), "weak tag matches (weak comparison)");
    ok(imago_web_etag_match("\"x\", \"abc123\"", e), "second of a list");
    ok(imago_web_etag_match("\"x\",W/\"abc123\" ,\"y\"", e), "middle of a list, odd spacing");
    ok(imago_web_etag_match("*", e), "*");
    ok(imago_web_etag_match("  * ", e), "* with spaces");
    ok(!imago_web_etag_match("\"abc12\"", e), "prefix does not match");
    ok(!imago_web_etag_match("\"abc1234\"", e), "longer tag does not match");
    ok(!imago_web_etag_match("abc123", e), "unquoted does not match");
    ok(!imago_web_etag_match("\"abc123", e), "unterminated quote");
    ok(!imago_web_etag_match("\"*\"", e), "quoted star is a tag, not *");
    ok(!imago_web_etag_match("**", e), "** is not *");
    ok(!imago_web_etag_match(",,", e), "only commas");
}

static void test_server(void)
{
    imago_config *cfg = imago_config_new();
    imago_error err;
    imago_error_clear(&err);
    int set = imago_config_set(cfg, "server.port", "0", &err) == 0 &&
              imago_config_set(cfg, "server.listen", "127.0.0.1", &err) == 0 &&
              imago_config_set(cfg, "server.threads", "1", &err) == 0 &&
              imago_config_set(cfg, "auth.admin_token", "web-test-token", &err) == 0;
    ok(set, "config set (%s)", err.msg);
    imago_server *s = NULL;
    int rc = imago_server_open(cfg, &s, &err);
    is_int(rc, 0, "server opens on port 0 (%s)", err.msg);
    if (rc != 0) {
        imago_config_free(cfg);
        return;
    }
    int port = imago_server_port(s);
    ok(port > 0, "bound port %d", port);

    const imago_web_asset *index = imago_web_asset_find("index.html");
    const imago_web_asset *js = imago_web_asset_find("app.js");
    reply r;
    char v[1024];

    ok(request(port, "GET", "/", NULL, &r) == 0, "GET /");
    is_int(r.status, 200, "GET / -> 200");
    is_str(header(&r, "Content-Type", v, sizeof v), "text/html; charset=utf-8", "html type");
    is_str(header(&r, "ETag", v, sizeof v), index->etag, "ETag of index.html");
    is_str(header(&r, "Cache-Control", v, sizeof v), "no-cache", "Cache-Control: no-cache");
    ok(strstr(header(&r, "Content-Security-Policy", v, sizeof v), "script-src 'self'") != NULL,
       "CSP: script-src 'self' (%s)", v);
    is_str(header(&r, "X-Content-Type-Options", v, sizeof v), "nosniff", "nosniff");
    ok(r.body_len == index->len && memcmp(r.body, index->data, index->len) == 0,
       "body is index.html (%zu bytes)", r.body_len);
    ok(strstr(r.body, "/static/app.js") && strstr(r.body, "/static/style.css"),
       "the page references its script and style");
    int no_store_count = 0;
    for (const char *p = r.head; (p = strstr(p, "no-store")); p++)
        no_store_count++;
    is_int(no_store_count, 0, "no default no-store on the page");
    free(r.body);

    char inm[128];
    snprintf(inm, sizeof inm, "If-None-Match: %s\r\n", index->etag);
    ok(request(port, "GET", "/", inm, &r) == 0, "GET / with If-None-Match");
    is_int(r.status, 304, "matching ETag -> 304");
    is_int((long long)r.body_len, 0, "304 has no body");
    is_str(header(&r, "ETag", v, sizeof v), index->etag, "304 repeats the ETag");
    free(r.body);
    ok(request(port, "GET", "/", "If-None-Match: \"stale\"\r\n", &r) == 0, "stale ETag");
    is_int(r.status, 200, "stale ETag -> 200");
    free(r.body);

    ok(request(port, "HEAD", "/", NULL, &r) == 0, "HEAD /");
    is_int(r.status, 200, "HEAD / -> 200");
    is_int((long long)r.body_len, 0, "HEAD has no body");
    snprintf(inm, sizeof inm, "%zu", index->len);
    is_str(header(&r, "Content-Length", v, sizeof v), inm, "HEAD Content-Length");
    free(r.body);

    ok(request(port, "GET", "/static/app.js", NULL, &r) == 0, "GET /static/app.js");
    is_int(r.status, 200, "app.js -> 200");
    is_str(header(&r, "Content-Type", v, sizeof v), "text/javascript; charset=utf-8", "js type");
    is_str(header(&r, "ETag", v, sizeof v), js->etag, "ETag of app.js");
    ok(r.body_len == js->len && memcmp(r.body, js->data, js->len) == 0, "body is app.js");
    free(r.body);

    ok(request(port, "GET", "/static/style.css", NULL, &r) == 0, "GET /static/style.css");
    is_str(header(&r, "Content-Type", v, sizeof v), "text/css; charset=utf-8", "css type");
    free(r.body);

    ok(request(port, "GET", "/static/nope.js", NULL, &r) == 0, "GET /static/nope.js");
    is_int(r.status, 404, "unknown file -> 404");
    ok(strstr(r.body, "\"not_found\"") != NULL, "404 body has the not_found code");
    free(r.body);
    ok(request(port, "GET", "/static/..%2Fweb.c", NULL, &r) == 0, "traversal attempt");
    is_int(r.status, 404, "/static/..%%2Fweb.c -> 404");
    free(r.body);
    ok(request(port, "GET", "/static/", NULL, &r) == 0, "GET /static/");
    is_int(r.status, 404, "empty file name -> 404");
    free(r.body);

    ok(request(port, "POST", "/", NULL, &r) == 0, "POST /");
    is_int(r.status, 405, "POST / -> 405");
    is_str(header(&r, "Allow", v, sizeof v), "GET, HEAD", "Allow: GET, HEAD");
    free(r.body);

    ok(request(port, "GET", "/v1/info", NULL, &r) == 0, "GET /v1/info");
    is_int(r.status, 200, "info -> 200 without an engine");
    is_str(header(&r, "Cache-Control", v, sizeof v), "no-store", "API answers keep no-store");
    is_str(header(&r, "ETag", v, sizeof v), "", "API answers have no ETag");
    free(r.body);

    imago_server_free(s);
    imago_config_free(cfg);
}

int main(void)
{
    test_assets();
    test_etag_match();
    test_server();
    return tap_done();
}
