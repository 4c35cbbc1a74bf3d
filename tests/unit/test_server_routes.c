/* Unit tests for the routes table in server/routes.c: matching, path
 * parameters, 404 vs 405 with the Allow list. */
#include "server/server.h"
#include "tap.h"

#include <string.h>

static const imago_route *find(const char *m, const char *p, int *known, char *allow, char *param)
{
    const char *ps[IMAGO_ROUTE_MAX_PARAMS] = {0};
    size_t pl[IMAGO_ROUTE_MAX_PARAMS] = {0};
    const imago_route *r = imago_route_find(m, p, ps, pl, known, allow, 48);
    param[0] = '\0';
    if (r && ps[0]) {
        memcpy(param, ps[0], pl[0]);
        param[pl[0]] = '\0';
    }
    return r;
}

int main(void)
{
    int known;
    char allow[48], param[64];
    const imago_route *r;
    r = find("GET", "/healthz", &known, allow, param);
    ok(r && strcmp(r->pattern, "/healthz") == 0, "GET /healthz");
    ok(r && r->auth == IMAGO_AUTH_OPEN, "healthz is open");
    r = find("HEAD", "/healthz", &known, allow, param);
    ok(r && strcmp(r->method, "GET") == 0, "HEAD matches GET");
    r = find("POST", "/v1/search", &known, allow, param);
    ok(r && r->auth == IMAGO_AUTH_SEARCH && r->body == IMAGO_BODY_IMAGE, "search route");
    r = find("POST", "/v1/images", &known, allow, param);
    ok(r && r->auth == IMAGO_AUTH_ADMIN, "add image needs admin");
    r = find("GET", "/v1/images/42", &known, allow, param);
    ok(r && strcmp(r->pattern, "/v1/images/{id}") == 0, "image by id");
    is_str(param, "42", "id captured");
    r = find("GET", "/v1/images/42/thumbnail", &known, allow, param);
    ok(r && strcmp(r->pattern, "/v1/images/{id}/thumbnail") == 0, "thumbnail");
    is_str(param, "42", "thumbnail id captured");
    r = find("DELETE", "/v1/images/7", &known, allow, param);
    ok(r && r->auth == IMAGO_AUTH_ADMIN, "delete needs admin");
    r = find("GET", "/v1/admin/jobs/3", &known, allow, param);
    ok(r && r->auth == IMAGO_AUTH_ADMIN, "job status needs admin");

    r = find("PUT", "/v1/images/7", &known, allow, param);
    ok(r == NULL && known == 1, "PUT on a known path -> 405");
    is_str(allow, "GET, HEAD, DELETE", "Allow for /v1/images/{id}");
    r = find("GET", "/v1/search", &known, allow, param);
    ok(r == NULL && known == 1, "GET /v1/search -> 405");
    is_str(allow, "POST", "Allow for /v1/search");
    r = find("GET", "/v1/nope", &known, allow, param);
    ok(r == NULL && known == 0, "unknown path -> 404");
    r = find("GET", "/v1/images/", &known, allow, param);
    ok(r == NULL && known == 0, "empty id segment -> 404");
    r = find("GET", "/healthz/", &known, allow, param);
    ok(r == NULL && known == 0, "trailing slash -> 404");
    r = find("GET", "/v1/images/1/thumbnail/x", &known, allow, param);
    ok(r == NULL && known == 0, "extra segment -> 404");
    r = find("GET", "", &known, allow, param);
    ok(r == NULL && known == 0, "empty path -> 404");
    r = find("GET", "//healthz", &known, allow, param);
    ok(r == NULL && known == 0, "double slash -> 404");
    return tap_done();
}
