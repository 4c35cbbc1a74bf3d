/* Consistency of the contract (proto/openapi.yaml) with the code: every route
 * of the routes table is documented under its path with its method, every
 * documented path has a route, and every API error code is listed in the
 * ErrorCode schema with its HTTP status. */
#include "server/server.h"
#include "tap.h"
#include "testutil.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

/* The block of a path item: from "\n  PATH:\n" to the next "\n  /" or the
 * end of the paths section. */
static int documented(const char *yaml, const char *path, const char *method)
{
    char key[160];
    snprintf(key, sizeof key, "\n  %s:\n", path);
    const char *start = strstr(yaml, key);
    if (!start)
        return 0;
    start += strlen(key);
    const char *end = strstr(start, "\n  /");
    const char *comp = strstr(start, "\ncomponents:");
    if (!end || (comp && comp < end))
        end = comp;
    char m[32];
    snprintf(m, sizeof m, "\n    %s:", method);
    for (char *p = m; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    const char *hit = strstr(start - 1, m);
    return hit && (!end || hit < end);
}

/* The "maximum:" of query parameter NAME in components/parameters, or -1. */
static long param_maximum(const char *yaml, const char *name)
{
    const char *params = strstr(yaml, "\ncomponents:\n");
    params = params ? strstr(params, "\n  parameters:\n") : NULL;
    if (!params)
        return -1;
    char key[64];
    snprintf(key, sizeof key, "\n    %s:\n", name);
    const char *p = strstr(params, key);
    if (!p)
        return -1;
    p += strlen(key);
    const char *next = strstr(p, "\n    "), *end = p;
    /* the block ends at the next parameter key (4-space indent, no space after) */
    while (next && next[5] == ' ')
        next = strstr(next + 1, "\n    ");
    end = next ? next : p + strlen(p);
    const char *m = strstr(p, "maximum: ");
    if (!m || m > end)
        return -1;
    return strtol(m + 9, NULL, 10);
}

int main(void)
{
    const char *root = getenv("IMAGO_SOURCE_ROOT");
    if (!root)
        tap_skip_all("IMAGO_SOURCE_ROOT is not set (run through meson test)");
    char path[1024];
    snprintf(path, sizeof path, "%s/proto/openapi.yaml", root);
    char *yaml = testutil_read_file(path, NULL);
    if (!yaml)
        tap_bail("cannot read proto/openapi.yaml");
    int n = imago_route_count();
    ok(n >= 14, "routes table has %d routes", n);
    for (int i = 0; i < n; i++) {
        const imago_route *r = imago_route_at(i);
        ok(documented(yaml, r->pattern, r->method), "%s %s documented", r->method, r->pattern);
    }
    /* every documented path exists in the table */
    const char *paths = strstr(yaml, "\npaths:\n");
    const char *comp = strstr(yaml, "\ncomponents:\n");
    int undocumented = 0, seen = 0;
    for (const char *p = paths; p && p < comp; p = strchr(p + 1, '\n')) {
        if (strncmp(p, "\n  /", 4) != 0)
            continue;
        const char *s = p + 3, *e = strchr(s, ':');
        char pat[160];
        size_t l = (size_t)(e - s);
        if (l >= sizeof pat)
            continue;
        memcpy(pat, s, l);
        pat[l] = '\0';
        seen++;
        int found = 0;
        for (int i = 0; i < n; i++)
            found |= strcmp(imago_route_at(i)->pattern, pat) == 0;
        if (!found) {
            undocumented++;
            tap_diag("documented path without a route: %s", pat);
        }
    }
    ok(seen >= 12 && undocumented == 0, "all %d documented paths have routes", seen);
    const char *enum_line = strstr(yaml, "      enum: [invalid_request");
    ok(enum_line != NULL, "ErrorCode enum found");
    for (int c = 1; c < IMAGO_API_ERROR_COUNT_; c++) {
        const char *name = imago_api_error_name((imago_api_error)c);
        char pair[64], item[64];
        snprintf(pair, sizeof pair, "%s %d", name, imago_api_error_status((imago_api_error)c));
        snprintf(item, sizeof item, "%s,", name);
        const char *enum_end = enum_line ? strchr(enum_line, ']') : NULL;
        const char *hit = enum_line ? strstr(enum_line, name) : NULL;
        ok(strstr(yaml, pair) != NULL && hit && hit < enum_end,
           "error %s (%d) in the ErrorCode schema", name,
           imago_api_error_status((imago_api_error)c));
    }
    /* the limits of the API are defined once (common.h) and written in the contract */
    is_int((int)param_maximum(yaml, "k"), IMAGO_SEARCH_K_MAX, "k maximum in the contract");
    is_int((int)param_maximum(yaml, "qe_k"), IMAGO_QE_K_MAX, "qe_k maximum in the contract");
    free(yaml);
    return tap_done();
}
