/* server-private: the application side of `imago serve` — what the handlers
 * share.
 *
 *   engine_slot.c  the model and its batcher, loaded in the background
 *   index_slot.c   the collection, its jobs runner and the upload workers
 *   server.c       the server object wiring engine + index + jobs + http
 *   routes.c       the route table
 *   handlers.c     helpers every handler uses (not-ready answers, ids)
 *   api_info.c     /healthz, /readyz, /v1/info, /metrics
 *   upload.c       the image and parameters of an upload (search, extract, add)
 *   api_search.c   /v1/search, /v1/extract
 *   api_images.c   /v1/images, /v1/images/{id}[/thumbnail]
 *   api_jobs.c     /v1/admin/jobs[/{id}], /v1/admin/reindex
 *   whitening.c    /v1/admin/whitening and the whitening jobs
 *   web.c          / and /static/{file}
 *
 * Handlers reach the server through imago_app_server(r) (the transport's
 * opaque application pointer). The server object is shared by all threads;
 * everything it holds is read-only after open, except the metrics (locked)
 * and the slots' states (atomic).
 */
#ifndef IMAGO_SERVER_APP_H
#define IMAGO_SERVER_APP_H

#include <stddef.h>
#include <stdint.h>

#include "server.h"

#include "engine/engine.h"
#include "index/index.h"

/* ---- the engine slot (engine_slot.c) ------------------------------------------- */

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

/* ---- the index slot (index_slot.c) -------------------------------------------- */

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
/* The open index and its jobs runner, NULL when not READY (or, for the
 * jobs, stopped). Thread-safe. */
imago_index *imago_index_slot_index(const imago_index_slot *slot);
struct imago_jobs *imago_index_slot_jobs(const imago_index_slot *slot);
/* The engine slot the index slot was started with. */
imago_engine_slot *imago_index_slot_engine(const imago_index_slot *slot);

/* The search stages of one successful search, in ms (decode, queue, forward,
 * search, qe, metadata, total), added to the /metrics sums. Thread-safe. */
#define IMAGO_SEARCH_STAGES 7
void imago_index_slot_count_search(imago_index_slot *slot, const double ms[IMAGO_SEARCH_STAGES]);

/* A task for the upload workers: run(task) on a worker thread, which owns
 * the task from then on. */
typedef struct imago_slot_task {
    void (*run)(struct imago_slot_task *task);
    struct imago_slot_task *next;
} imago_slot_task;

/* Queues t for the upload workers and, under the queue lock (a worker may
 * complete r at once), suspends r (imago_http_defer). Returns 0, or
 * IMAGO_ERR_NOT_READY (stopping) / IMAGO_ERR_BUSY (queue full) with nothing
 * queued and r untouched. Thread-safe. */
int imago_index_slot_post(imago_index_slot *slot, imago_slot_task *t, imago_http_request *r);

/* ---- the server as handlers see it (server.c) ------------------------------------ */

/* The server of a request (the transport's application pointer). */
imago_server *imago_app_server(const imago_http_request *r);

const imago_config *imago_server_config(const imago_server *s);
imago_metrics *imago_server_metrics(const imago_server *s);
long imago_server_in_flight(const imago_server *s);
/* Whether the server is ready: the model is loaded AND the index is open
 * (both slots READY; /readyz, /v1/info "ready"). Thread-safe. */
int imago_server_ready(const imago_server *s);
imago_engine_slot *imago_server_engine(const imago_server *s); /* NULL when not started */
imago_index_slot *imago_server_index(const imago_server *s);   /* NULL when not started */

/* ---- helpers of the handlers (handlers.c) ------------------------------------------ */

/* Each returns 0 (or the object) when the request may go on, else fills resp
 * with the error answer and returns -1 (or NULL). */

/* 400 invalid_parameter when the request has any query parameter. */
int imago_app_no_query(imago_http_request *r, imago_http_response *resp);
/* 503 not_ready unless the model is loaded. */
int imago_app_need_model(imago_http_request *r, imago_http_response *resp);
/* The index when ready, else 503 not_ready. */
imago_index *imago_app_need_index(imago_http_request *r, imago_http_response *resp);
/* The jobs runner when the index is ready and the runner runs, else 503. */
struct imago_jobs *imago_app_need_jobs(imago_http_request *r, imago_http_response *resp);
/* The {id} path parameter (400 invalid_parameter when not an id). */
int imago_app_path_id(imago_http_request *r, imago_http_response *resp, int64_t *id);
/* The JSON body of the request (*body borrowed, NULL when none) after
 * checking there is no query string. */
int imago_app_json_body(imago_http_request *r, imago_http_response *resp, const char **body,
                        size_t *len);
/* resp = json with status, or 500 with err->msg when json is NULL. */
int imago_app_json_ok(imago_http_response *resp, int status, char *json, const imago_error *err);
/* Fills resp with 202 {"job_id": id} and its Location (api_jobs.c). */
int imago_app_job_accepted(imago_http_response *resp, int64_t id);
/* Fills resp with the answer to a batcher callback's failure status: 503 when
 * cancelled or not ready, else the API error of an image error. */
void imago_app_batch_error(imago_http_response *resp, int status, const char *message);

/* ---- the upload of an image (upload.c) ---------------------------------------------- */

typedef enum imago_upload_kind { IMAGO_UPLOAD_SEARCH, IMAGO_UPLOAD_ADD } imago_upload_kind;

typedef struct imago_upload {
    imago_upload_kind kind;
    imago_search_params search; /* UPLOAD_SEARCH */
    imago_add_image_params add; /* UPLOAD_ADD */
    imago_multipart *mp;
    const uint8_t *image; /* into the request body or mp */
    size_t image_len;
} imago_upload;

/* Reads parameters (query string, multipart fields) and the image of a
 * search / extract / add request into *u (initialised here). Returns 0, or
 * -1 with resp filled. Clear *u with imago_upload_clear in both cases. */
int imago_upload_read(imago_http_request *r, imago_http_response *resp, imago_upload_kind kind,
                      imago_upload *u);
void imago_upload_clear(imago_upload *u);

/* ---- the route table (routes.c) and its handlers ------------------------------------ */

extern const imago_route imago_api_routes[];
extern const int imago_api_route_count;

/* api_info.c */
int imago_api_healthz(imago_http_request *r, imago_http_response *resp);
int imago_api_readyz(imago_http_request *r, imago_http_response *resp);
int imago_api_info(imago_http_request *r, imago_http_response *resp);
int imago_api_metrics(imago_http_request *r, imago_http_response *resp);
/* api_search.c */
int imago_api_search(imago_http_request *r, imago_http_response *resp);
int imago_api_extract(imago_http_request *r, imago_http_response *resp);
/* api_images.c */
int imago_api_image_add(imago_http_request *r, imago_http_response *resp);
int imago_api_image_get(imago_http_request *r, imago_http_response *resp);
int imago_api_image_thumbnail(imago_http_request *r, imago_http_response *resp);
int imago_api_image_delete(imago_http_request *r, imago_http_response *resp);
/* api_jobs.c */
int imago_api_job_create(imago_http_request *r, imago_http_response *resp);
int imago_api_job_list(imago_http_request *r, imago_http_response *resp);
int imago_api_job_get(imago_http_request *r, imago_http_response *resp);
int imago_api_job_cancel(imago_http_request *r, imago_http_response *resp);
int imago_api_reindex(imago_http_request *r, imago_http_response *resp);
/* whitening.c: POST learns (202 job), GET describes, DELETE removes (202 job) */
int imago_api_whitening_learn(imago_http_request *r, imago_http_response *resp);
int imago_api_whitening_get(imago_http_request *r, imago_http_response *resp);
int imago_api_whitening_remove(imago_http_request *r, imago_http_response *resp);

/* The /v1/info description of a collection's whitening from its stats
 * (NULL, out untouched, when it has none) (whitening.c). */
const imago_whitening_desc *imago_whitening_desc_of(const imago_index_stats *st,
                                                    imago_whitening_desc *out);

#endif /* IMAGO_SERVER_APP_H */
