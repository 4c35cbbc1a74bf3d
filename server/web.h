/* imago server: the web page (private to server/; README.md, Quick start).
 *
 * The static files of server/web/ are embedded into the binary at build time
 * (server/web/embed.c writes web_assets.c) and served by web.c:
 *   GET /                 index.html
 *   GET /static/{file}    the other files (app.js, style.css, icon.svg)
 * with their Content-Type, a strong ETag (a content hash; If-None-Match
 * answers 304), "Cache-Control: no-cache" (revalidate each time, so a new
 * binary's page is picked up at once) and a Content-Security-Policy that
 * allows only the page's own script, style and images.
 *
 * Everything here is immutable after build: thread-safe.
 */
#ifndef IMAGO_SERVER_WEB_H
#define IMAGO_SERVER_WEB_H

#include <stddef.h>

#include "server.h"

typedef struct imago_web_asset {
    const char *name;          /* "app.js" */
    const char *content_type;  /* "text/javascript; charset=utf-8" */
    const unsigned char *data; /* len bytes, followed by a NUL */
    size_t len;
    const char *etag; /* quoted: "\"0123...\"" */
} imago_web_asset;

/* Generated (web_assets.c). */
extern const imago_web_asset imago_web_assets[];
extern const int imago_web_asset_count;

/* The asset named name (exact match), or NULL. */
const imago_web_asset *imago_web_asset_find(const char *name);

/* Whether an If-None-Match header value (NULL = absent) matches etag: "*",
 * or a comma-separated list of entity tags, weak (W/"...") or strong, any
 * equal to etag (weak comparison, as RFC 9110 prescribes for
 * If-None-Match). Returns 1 or 0. */
int imago_web_etag_match(const char *if_none_match, const char *etag);

/* Route handlers: GET / and GET /static/{file}. */
int imago_web_handle_index(imago_http_request *r, imago_http_response *resp);
int imago_web_handle_static(imago_http_request *r, imago_http_response *resp);

#endif /* IMAGO_SERVER_WEB_H */
