/* The routes table of the HTTP API (proto/openapi.yaml): method, path
 * pattern, auth level, body kind and handler. The transport (http.c)
 * matches requests against it; the handlers live in api_*.c, whitening.c
 * and web.c, one file per group of endpoints.
 */
#include "app.h"
#include "web.h"

const imago_route imago_api_routes[] = {
    {"GET", "/healthz", IMAGO_AUTH_OPEN, IMAGO_BODY_NONE, imago_api_healthz},
    {"GET", "/readyz", IMAGO_AUTH_OPEN, IMAGO_BODY_NONE, imago_api_readyz},
    {"GET", "/metrics", IMAGO_AUTH_OPEN, IMAGO_BODY_NONE, imago_api_metrics},
    {"GET", "/v1/info", IMAGO_AUTH_OPEN, IMAGO_BODY_NONE, imago_api_info},
    {"POST", "/v1/search", IMAGO_AUTH_SEARCH, IMAGO_BODY_IMAGE, imago_api_search},
    {"POST", "/v1/extract", IMAGO_AUTH_SEARCH, IMAGO_BODY_IMAGE, imago_api_extract},
    {"POST", "/v1/images", IMAGO_AUTH_ADMIN, IMAGO_BODY_IMAGE, imago_api_image_add},
    {"GET", "/v1/images/{id}", IMAGO_AUTH_SEARCH, IMAGO_BODY_NONE, imago_api_image_get},
    {"GET", "/v1/images/{id}/thumbnail", IMAGO_AUTH_SEARCH, IMAGO_BODY_NONE,
     imago_api_image_thumbnail},
    {"DELETE", "/v1/images/{id}", IMAGO_AUTH_ADMIN, IMAGO_BODY_NONE, imago_api_image_delete},
    {"POST", "/v1/admin/jobs", IMAGO_AUTH_ADMIN, IMAGO_BODY_JSON, imago_api_job_create},
    {"GET", "/v1/admin/jobs", IMAGO_AUTH_ADMIN, IMAGO_BODY_NONE, imago_api_job_list},
    {"GET", "/v1/admin/jobs/{id}", IMAGO_AUTH_ADMIN, IMAGO_BODY_NONE, imago_api_job_get},
    {"DELETE", "/v1/admin/jobs/{id}", IMAGO_AUTH_ADMIN, IMAGO_BODY_NONE, imago_api_job_cancel},
    {"POST", "/v1/admin/reindex", IMAGO_AUTH_ADMIN, IMAGO_BODY_JSON, imago_api_reindex},
    {"POST", "/v1/admin/whitening", IMAGO_AUTH_ADMIN, IMAGO_BODY_JSON, imago_api_whitening_learn},
    {"GET", "/v1/admin/whitening", IMAGO_AUTH_ADMIN, IMAGO_BODY_NONE, imago_api_whitening_get},
    {"DELETE", "/v1/admin/whitening", IMAGO_AUTH_ADMIN, IMAGO_BODY_NONE,
     imago_api_whitening_remove},
    /* the web page (web.c) */
    {"GET", "/", IMAGO_AUTH_OPEN, IMAGO_BODY_NONE, imago_web_handle_index},
    {"GET", "/static/{file}", IMAGO_AUTH_OPEN, IMAGO_BODY_NONE, imago_web_handle_static},
};

const int imago_api_route_count = (int)(sizeof imago_api_routes / sizeof imago_api_routes[0]);

const imago_route *imago_route_find(const char *method, const char *path,
                                    const char *param_start[IMAGO_ROUTE_MAX_PARAMS],
                                    size_t param_len[IMAGO_ROUTE_MAX_PARAMS], int *path_known,
                                    char *allow, size_t allow_cap)
{
    return imago_http_route_match(imago_api_routes, imago_api_route_count, method, path,
                                  param_start, param_len, path_known, allow, allow_cap);
}

int imago_route_count(void)
{
    return imago_api_route_count;
}

const imago_route *imago_route_at(int i)
{
    return (i >= 0 && i < imago_route_count()) ? &imago_api_routes[i] : NULL;
}
