/* imago server: the public header of the HTTP server (`imago serve`,
 * server/cmd_serve.c) and of what the unit tests reach.
 *
 * The module's parts (all private to server/):
 *   http.h     the transport: libmicrohttpd daemon, requests and responses,
 *              the route table type (http.c, http_util.c)
 *   auth.h     admin/search bearer tokens (auth.c)
 *   metrics.h  Prometheus counters and latency histograms (metrics.c)
 *   app.h      the application: engine and index slots, the server object
 *              as handlers see it, the handlers (routes.c, api_*.c, ...)
 *   jobs.h     the bulk-ingest jobs runner and the one-image ingest path
 *
 * Threads: see http.h (requests) and app.h (the server object).
 */
#ifndef IMAGO_SERVER_H
#define IMAGO_SERVER_H

#include "auth.h"
#include "http.h"
#include "metrics.h"

#include "common/common.h"
#include "config/config.h"

/* ---- the routes of the API (routes.c) -------------------------------------------- */

/* Finds the route of method + path in the API's table (see
 * imago_http_route_match for the arguments). Thread-safe (the table is
 * immutable). */
const imago_route *imago_route_find(const char *method, const char *path,
                                    const char *param_start[IMAGO_ROUTE_MAX_PARAMS],
                                    size_t param_len[IMAGO_ROUTE_MAX_PARAMS], int *path_known,
                                    char *allow, size_t allow_cap);

/* The table itself, in order (for the OpenAPI consistency test). */
int imago_route_count(void);
const imago_route *imago_route_at(int i);

/* ---- the server (server.c) --------------------------------------------------------- */

typedef struct imago_server imago_server;

/* Opens the HTTP server on cfg->server.listen:port (port 0 = any free port)
 * and starts serving at once (/readyz answers 503 until
 * imago_server_start_engine has loaded the model and opened the index). cfg
 * is borrowed and must outlive the server. Installs SIGTERM/SIGINT handlers
 * that stop run(). Returns 0, or IMAGO_ERR_IO (bind/listen failed, TLS files
 * unreadable), IMAGO_ERR_INVALID (bad listen address) with err set. */
int imago_server_open(const imago_config *cfg, imago_server **out, imago_error *err);

/* The port actually bound (useful with port 0). */
int imago_server_port(const imago_server *s);

/* Starts loading the model in the background, then opening the index (call
 * after open, before run). A failed load or open makes run() return
 * IMAGO_ERR_BACKEND with its message. */
int imago_server_start_engine(imago_server *s, imago_error *err);

/* Blocks until SIGTERM/SIGINT or imago_server_stop(), then shuts down
 * gracefully: stops accepting, waits up to drain_s seconds for requests in
 * flight, stops the jobs runner and the batcher, stops the daemon and
 * snapshots the index. Returns 0, or IMAGO_ERR_BACKEND when the model or the
 * index failed to load. */
int imago_server_run(imago_server *s, int drain_s, imago_error *err);

/* Asks run() to return. Async-signal-safe; callable from any thread. */
void imago_server_stop(imago_server *s);

/* NULL is a no-op. */
void imago_server_free(imago_server *s);

#endif /* IMAGO_SERVER_H */
