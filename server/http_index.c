/* The server's index slot (the collection opened once the model is loaded,
 * and its jobs runner) and the index routes: search, images, jobs, reindex.
 *
 * DESIGN (threads):
 *  - The slot's loader thread waits for the engine slot to be READY (the
 *    index needs the model's fingerprint and dim), opens the index, starts
 *    the jobs runner (which resumes unfinished jobs) and publishes READY with
 *    a release store; request threads read the pointers after an acquire
 *    load. A failed open (e.g. another model's store) calls on_fail, which
 *    stops the server with the message (run() returns it).
 *  - POST /v1/search never blocks an MHD thread: the connection is
 *    suspended, the image goes to the batcher, and the batcher callback (a
 *    forward thread) runs the index search and the metadata join, which take
 *    well under a millisecond per hit on the exact index, then resumes the
 *    connection. Slow index types would be better served by a hand-off; the
 *    callback is where the descriptor is, so it is also the simplest place.
 *  - POST /v1/images needs blocking work (sha256, a thumbnail decode, a
 *    SQLite commit): the handler suspends the connection and hands the
 *    request to a small worker pool (ADD_WORKERS threads) that runs
 *    imago_ingest_image (the same path as the jobs) and resumes it.
 *  - Everything else (GET/DELETE images, jobs) is a short SQLite call on
 *    the MHD thread.
 */
#include "cfg_params.h"
#include "jobs.h"
#include "server.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define ADD_WORKERS 2
#define ADD_QUEUE_MAX 64
#define JOB_ERRORS_SHOWN 10

/* ---- the slot ---------------------------------------------------------------------- */

typedef struct add_task {
    imago_http_request *r;
    imago_add_image_params ap;
    const uint8_t *image; /* borrowed from the request body (valid until complete) */
    size_t image_len;
    struct add_task *next;
} add_task;

struct imago_index_slot {
    const imago_config *cfg;
    imago_engine_slot *engine;
    pthread_t loader;
    int loader_started;
    _Atomic int state;
    _Atomic int stopping;
    char message[IMAGO_ERROR_MSG_MAX + 64];
    imago_index *ix;
    imago_jobs *jobs;
    void (*on_fail)(void *ctx);
    void *on_fail_ctx;
    /* the add workers */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    add_task *head, *tail;
    int queued;
    int add_stop;
    pthread_t workers[ADD_WORKERS];
    int n_workers;
    /* search latency sums for /metrics (under mu) */
    uint64_t searches;
    double stage_s[7]; /* decode, queue, forward, search, qe, metadata, total */
};

static void *add_worker(void *arg);

static void *index_loader(void *arg)
{
    imago_index_slot *s = arg;
    const imago_model_info *m = NULL;
    for (;;) {
        if (atomic_load(&s->stopping))
            return NULL;
        imago_slot_state st = imago_engine_slot_state(s->engine, NULL);
        if (st == IMAGO_SLOT_FAILED) {
            snprintf(s->message, sizeof s->message, "the model failed to load");
            atomic_store_explicit(&s->state, IMAGO_SLOT_FAILED, memory_order_release);
            return NULL;
        }
        if (st == IMAGO_SLOT_READY) {
            m = imago_engine_slot_model(s->engine);
            break;
        }
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    const imago_config *cfg = s->cfg;
    imago_index_params p;
    imago_cfg_index_params(cfg, m, &p);
    imago_error err;
    imago_error_clear(&err);
    int64_t t0 = imago_now_us();
    int rc = imago_index_open(&p, &s->ix, &err);
    if (rc == 0)
        rc = imago_jobs_new(cfg, NULL, s->ix, imago_engine_slot_batcher(s->engine), &s->jobs, &err);
    if (rc != 0) {
        snprintf(s->message, sizeof s->message, "the index failed to open: %s", err.msg);
        IMAGO_ERROR("index", "%s", s->message);
        atomic_store_explicit(&s->state, IMAGO_SLOT_FAILED, memory_order_release);
        if (s->on_fail)
            s->on_fail(s->on_fail_ctx);
        return NULL;
    }
    imago_index_stats st;
    if (imago_index_stats_get(s->ix, &st, &err) == 0)
        IMAGO_INFO("index", "%s: %lld images, %s, seq %lld, opened in %.1f s", cfg->index.data_dir,
                   (long long)st.count, st.type, (long long)st.seq,
                   (double)(imago_now_us() - t0) / 1e6);
    atomic_store_explicit(&s->state, IMAGO_SLOT_READY, memory_order_release);
    return NULL;
}

int imago_index_slot_start(const imago_config *cfg, imago_engine_slot *engine,
                           void (*on_fail)(void *ctx), void *ctx, imago_index_slot **out,
                           imago_error *err)
{
    imago_index_slot *s = imago_xcalloc(1, sizeof *s);
    s->cfg = cfg;
    s->engine = engine;
    s->on_fail = on_fail;
    s->on_fail_ctx = ctx;
    snprintf(s->message, sizeof s->message, "the index opens once the model is loaded");
    atomic_init(&s->state, IMAGO_SLOT_LOADING);
    atomic_init(&s->stopping, 0);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    for (int i = 0; i < ADD_WORKERS; i++) {
        if (pthread_create(&s->workers[i], NULL, add_worker, s) != 0)
            break;
        s->n_workers++;
    }
    int prc = pthread_create(&s->loader, NULL, index_loader, s);
    if (prc != 0 || s->n_workers == 0) {
        imago_index_slot_free(s);
        return imago_error_set(err, IMAGO_ERR_BACKEND, "cannot start the index loader");
    }
    s->loader_started = 1;
    *out = s;
    return 0;
}

imago_slot_state imago_index_slot_state(const imago_index_slot *s, const char **message)
{
    if (!s) {
        if (message)
            *message = "the index is not started";
        return IMAGO_SLOT_FAILED;
    }
    if (message)
        *message = s->message;
    return (imago_slot_state)atomic_load_explicit(&((imago_index_slot *)s)->state,
                                                  memory_order_acquire);
}

static imago_index *slot_index(const imago_index_slot *s)
{
    return imago_index_slot_state(s, NULL) == IMAGO_SLOT_READY ? s->ix : NULL;
}

void imago_index_slot_stop_jobs(imago_index_slot *s)
{
    if (!s)
        return;
    atomic_store(&s->stopping, 1);
    if (s->loader_started) {
        pthread_join(s->loader, NULL);
        s->loader_started = 0;
    }
    pthread_mutex_lock(&s->mu);
    s->add_stop = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < s->n_workers; i++)
        pthread_join(s->workers[i], NULL);
    s->n_workers = 0;
    imago_jobs_free(s->jobs);
    s->jobs = NULL;
}

void imago_index_slot_free(imago_index_slot *s)
{
    if (!s)
        return;
    imago_index_slot_stop_jobs(s);
    if (s->ix) {
        imago_error err;
        imago_error_clear(&err);
        if (imago_index_snapshot(s->ix, &err) != 0)
            IMAGO_WARN("index", "snapshot at shutdown failed: %s", err.msg);
        imago_index_free(s->ix);
        s->ix = NULL;
    }
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}

/* ---- helpers -------------------------------------------------------------------------- */

static imago_index_slot *req_slot(imago_http_request *r)
{
    return imago_server_index(imago_http_server(r));
}

/* The index when ready, else fills resp with 503 not_ready. */
static imago_index *need_index(imago_http_request *r, imago_http_response *resp)
{
    imago_index_slot *s = req_slot(r);
    const char *msg = NULL;
    if (imago_index_slot_state(s, &msg) == IMAGO_SLOT_READY)
        return s->ix;
    imago_http_fail(resp, IMAGO_API_NOT_READY, msg);
    return NULL;
}

static int path_id(imago_http_request *r, imago_http_response *resp, int64_t *id)
{
    imago_error err;
    imago_error_clear(&err);
    if (imago_proto_parse_id(imago_http_path_param(r, 0), id, &err) != 0) {
        imago_http_fail(resp, IMAGO_API_INVALID_PARAMETER, err.msg);
        return -1;
    }
    return 0;
}

/* The index for a route on /v1/images/{id}, with the id parsed into *id;
 * NULL (resp filled: 400 invalid_parameter or 503 not_ready) otherwise. */
static imago_index *image_route(imago_http_request *r, imago_http_response *resp, int64_t *id)
{
    return path_id(r, resp, id) ? NULL : need_index(r, resp);
}

/* ---- search ---------------------------------------------------------------------------- */

typedef struct search_ctx {
    imago_http_request *r;
    imago_index_slot *slot;
    imago_search_params sp;
    int64_t t0;
} search_ctx;

static int meta_filter(int64_t id, const char *metadata_json, void *user)
{
    (void)id;
    const imago_search_params *sp = user;
    return imago_filter_match(sp->filter, sp->n_filter, metadata_json);
}

static void search_done(void *user_data, int status, const char *message, const float *descriptor,
                        int dim, const imago_batch_timings *t)
{
    (void)dim;
    search_ctx *c = user_data;
    imago_http_response resp;
    memset(&resp, 0, sizeof resp);
    imago_index *ix = slot_index(c->slot);
    if (status == IMAGO_ERR_CANCELLED || status == IMAGO_ERR_NOT_READY) {
        imago_http_error(&resp, IMAGO_API_NOT_READY, "the server is shutting down");
    } else if (status != 0) {
        char msg[IMAGO_ERROR_MSG_MAX + 8];
        snprintf(msg, sizeof msg, "image: %s", message && *message ? message : "failed");
        imago_http_error(&resp, imago_api_error_from_code(status, IMAGO_API_CTX_IMAGE), msg);
    } else if (!ix) {
        imago_http_error(&resp, IMAGO_API_NOT_READY, "the index is not ready");
    } else {
        imago_index_search_params p = imago_index_search_params_default();
        p.k = c->sp.k;
        p.qe = c->sp.qe;
        p.qe_n = c->sp.qe_k;
        p.qe_alpha = c->sp.has_qe_alpha ? c->sp.qe_alpha : -1;
        if (c->sp.n_filter > 0) {
            p.meta_filter = meta_filter;
            p.filter_user = &c->sp;
        }
        imago_index_hit *hits = imago_xcalloc((size_t)p.k, sizeof *hits);
        int nh = 0;
        int64_t seq = 0;
        imago_error err;
        imago_error_clear(&err);
        int64_t ts0 = imago_now_us();
        int rc = imago_index_search(ix, descriptor, 1, &p, hits, &nh, &seq, &err);
        int64_t ts1 = imago_now_us();
        imago_search_hit *out = imago_xcalloc((size_t)(nh > 0 ? nh : 1), sizeof *out);
        imago_image_info **infos = imago_xcalloc((size_t)(nh > 0 ? nh : 1), sizeof *infos);
        int n = 0;
        for (int i = 0; rc == 0 && i < nh; i++) {
            imago_image_info *info = NULL;
            imago_error e2;
            imago_error_clear(&e2);
            /* an image deleted since the search is left out */
            if (imago_index_get(ix, hits[i].id, &info, &e2) != 0)
                continue;
            infos[n] = info;
            out[n].id = hits[i].id;
            out[n].external_id = info->external_id;
            out[n].score = hits[i].score;
            out[n].uri = info->uri;
            out[n].metadata_json = info->metadata_json;
            n++;
        }
        int64_t ts2 = imago_now_us();
        if (rc != 0) {
            imago_http_error(&resp, imago_api_error_from_code(rc, IMAGO_API_CTX_GENERIC), err.msg);
        } else {
            imago_search_response sr;
            memset(&sr, 0, sizeof sr);
            sr.n_results = n;
            sr.results = out;
            sr.index_seq = (uint64_t)(seq > 0 ? seq : 0);
            sr.with_metadata = c->sp.with_metadata;
            sr.timings.decode_ms = (double)t->decode_us / 1e3;
            sr.timings.queue_ms = (double)t->queue_us / 1e3;
            sr.timings.forward_ms = (double)t->forward_us / 1e3;
            /* the index runs QE inside the same call: search_ms includes it */
            sr.timings.search_ms = (double)(ts1 - ts0) / 1e3;
            sr.timings.qe_ms = 0;
            sr.timings.metadata_ms = (double)(ts2 - ts1) / 1e3;
            sr.timings.total_ms = (double)(ts2 - c->t0) / 1e3;
            char *json = NULL;
            if (imago_search_response_to_json(&sr, &json, &err) == 0)
                imago_http_json(&resp, 200, json);
            else
                imago_http_error(&resp, IMAGO_API_INTERNAL, err.msg);
            pthread_mutex_lock(&c->slot->mu);
            c->slot->searches++;
            double v[7] = {sr.timings.decode_ms, sr.timings.queue_ms, sr.timings.forward_ms,
                           sr.timings.search_ms, sr.timings.qe_ms,    sr.timings.metadata_ms,
                           sr.timings.total_ms};
            for (int i = 0; i < 7; i++)
                c->slot->stage_s[i] += v[i] / 1e3;
            pthread_mutex_unlock(&c->slot->mu);
        }
        for (int i = 0; i < n; i++)
            imago_image_info_free(infos[i]);
        free(infos);
        free(out);
        free(hits);
    }
    imago_http_request *r = c->r;
    imago_search_params_clear(&c->sp);
    free(c);
    imago_http_complete(r, &resp);
}

int imago_route_search(imago_http_request *r, imago_http_response *resp, imago_search_params *sp,
                       const uint8_t *image, size_t len)
{
    imago_index_slot *slot = req_slot(r);
    if (!need_index(r, resp))
        return IMAGO_HTTP_DONE;
    imago_batcher *b = imago_engine_slot_batcher(imago_server_engine(imago_http_server(r)));
    if (!b)
        return imago_http_fail(resp, IMAGO_API_NOT_READY, "the model is not loaded");
    search_ctx *c = imago_xcalloc(1, sizeof *c);
    c->r = r;
    c->slot = slot;
    c->t0 = imago_now_us();
    c->sp = *sp; /* takes the filter terms */
    *sp = imago_search_params_default();
    imago_decode_params dp = imago_decode_params_default();
    if (c->sp.has_bbox) {
        dp.has_box = 1;
        memcpy(dp.box, c->sp.bbox, sizeof dp.box);
    }
    imago_http_defer(r);
    imago_error err;
    imago_error_clear(&err);
    int rc = imago_batcher_submit(b, image, len, IMAGO_BATCHER_COPY, &dp, search_done, c, &err);
    if (rc != 0) {
        imago_search_params_clear(&c->sp);
        free(c);
        imago_http_complete_error(r, imago_api_error_from_code(rc, IMAGO_API_CTX_IMAGE), err.msg);
    }
    return IMAGO_HTTP_DEFERRED;
}

/* ---- add ------------------------------------------------------------------------------- */

static void run_add(imago_index_slot *s, add_task *t)
{
    imago_http_response resp;
    memset(&resp, 0, sizeof resp);
    imago_batcher *b = imago_engine_slot_batcher(s->engine);
    imago_index *ix = slot_index(s);
    const uint8_t *img = t->image;
    size_t len = t->image_len;
    if (!b || !ix) {
        imago_http_error(&resp, IMAGO_API_NOT_READY, "the server is shutting down");
    } else {
        imago_ingest_one in;
        memset(&in, 0, sizeof in);
        in.bytes = img;
        in.len = len;
        in.external_id = t->ap.external_id;
        in.uri = t->ap.uri;
        in.metadata_json = t->ap.metadata_json;
        in.retry_busy = 0;
        imago_ingest_result res;
        imago_error err;
        imago_error_clear(&err);
        int rc = imago_ingest_image(b, ix, &in, &res, &err);
        if (rc == 0) {
            imago_image_info *info = NULL;
            char *json = NULL;
            imago_error e2;
            imago_error_clear(&e2);
            if (imago_index_get(ix, res.id, &info, &e2) == 0 &&
                imago_add_image_response_to_json(res.id, info->external_id, res.replaced, &json,
                                                 &e2) == 0) {
                /* 201 for a new or replaced image; 200 when the same bytes
                 * were already stored under this external id (nothing done) */
                imago_http_json(&resp, res.unchanged ? 200 : 201, json);
                char loc[64];
                snprintf(loc, sizeof loc, "/v1/images/%lld", (long long)res.id);
                resp.location = imago_xstrdup(loc);
            } else {
                imago_http_error(&resp, IMAGO_API_INTERNAL, e2.msg);
            }
            imago_image_info_free(info);
        } else if (rc == IMAGO_ERR_CANCELLED || rc == IMAGO_ERR_NOT_READY) {
            imago_http_error(&resp, IMAGO_API_NOT_READY, "the server is shutting down");
        } else {
            char msg[IMAGO_ERROR_MSG_MAX + 8];
            int is_image =
                rc == IMAGO_ERR_FORMAT || rc == IMAGO_ERR_TOO_LARGE || rc == IMAGO_ERR_UNSUPPORTED;
            snprintf(msg, sizeof msg, "%s%s", is_image ? "image: " : "", err.msg);
            imago_http_error(&resp,
                             imago_api_error_from_code(rc, is_image ? IMAGO_API_CTX_IMAGE
                                                                    : IMAGO_API_CTX_GENERIC),
                             msg);
        }
    }
    imago_add_image_params_clear(&t->ap);
    imago_http_request *r = t->r;
    free(t);
    imago_http_complete(r, &resp);
}

static void *add_worker(void *arg)
{
    imago_index_slot *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->head && !s->add_stop)
            pthread_cond_wait(&s->cv, &s->mu);
        add_task *t = s->head;
        if (!t)
            break; /* stopping with nothing queued */
        s->head = t->next;
        if (!s->head)
            s->tail = NULL;
        s->queued--;
        pthread_mutex_unlock(&s->mu);
        run_add(s, t);
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

int imago_route_add_image(imago_http_request *r, imago_http_response *resp,
                          imago_add_image_params *ap, const uint8_t *image, size_t len)
{
    imago_index_slot *s = req_slot(r);
    if (!need_index(r, resp))
        return IMAGO_HTTP_DONE;
    pthread_mutex_lock(&s->mu);
    if (s->add_stop || s->queued >= ADD_QUEUE_MAX) {
        int stopping = s->add_stop;
        pthread_mutex_unlock(&s->mu);
        return imago_http_fail(resp, stopping ? IMAGO_API_NOT_READY : IMAGO_API_BUSY,
                               stopping ? "the server is shutting down"
                                        : "too many uploads in progress");
    }
    add_task *t = imago_xcalloc(1, sizeof *t);
    t->r = r;
    t->ap = *ap;
    *ap = imago_add_image_params_default();
    t->image = image;
    t->image_len = len;
    imago_http_defer(r);
    if (s->tail)
        s->tail->next = t;
    else
        s->head = t;
    s->tail = t;
    s->queued++;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return IMAGO_HTTP_DEFERRED;
}

/* ---- images by id ------------------------------------------------------------------------ */

int imago_route_image_get(imago_http_request *r, imago_http_response *resp)
{
    int64_t id;
    imago_index *ix = image_route(r, resp, &id);
    if (!ix)
        return IMAGO_HTTP_DONE;
    imago_image_info *info = NULL;
    imago_error err;
    imago_error_clear(&err);
    if (imago_index_get(ix, id, &info, &err) != 0)
        return imago_http_fail_code(resp, &err, IMAGO_API_CTX_GENERIC);
    imago_image_record rec;
    memset(&rec, 0, sizeof rec);
    rec.id = info->id;
    rec.external_id = info->external_id;
    rec.uri = info->uri;
    rec.sha256 = info->sha256;
    rec.width = info->width;
    rec.height = info->height;
    rec.metadata_json = info->metadata_json;
    rec.created_at = info->created_at;
    char *json = NULL;
    int rc = imago_image_record_to_json(&rec, &json, &err);
    imago_image_info_free(info);
    if (rc != 0)
        return imago_http_fail(resp, IMAGO_API_INTERNAL, err.msg);
    imago_http_json(resp, 200, json);
    return IMAGO_HTTP_DONE;
}

int imago_route_image_thumbnail(imago_http_request *r, imago_http_response *resp)
{
    int64_t id;
    imago_index *ix = image_route(r, resp, &id);
    if (!ix)
        return IMAGO_HTTP_DONE;
    void *data = NULL;
    size_t len = 0;
    imago_error err;
    imago_error_clear(&err);
    if (imago_index_thumbnail(ix, id, &data, &len, &err) != 0)
        return imago_http_fail_code(resp, &err, IMAGO_API_CTX_GENERIC);
    resp->status = 200;
    resp->content_type = "image/jpeg";
    resp->body = data;
    resp->body_len = len;
    return IMAGO_HTTP_DONE;
}

int imago_route_image_delete(imago_http_request *r, imago_http_response *resp)
{
    int64_t id;
    imago_index *ix = image_route(r, resp, &id);
    if (!ix)
        return IMAGO_HTTP_DONE;
    imago_error err;
    imago_error_clear(&err);
    if (imago_index_delete(ix, id, &err) != 0)
        return imago_http_fail_code(resp, &err, IMAGO_API_CTX_GENERIC);
    resp->status = 204; /* No Content, as the contract says */
    return IMAGO_HTTP_DONE;
}

/* ---- jobs --------------------------------------------------------------------------------- */

static imago_jobs *need_jobs(imago_http_request *r, imago_http_response *resp)
{
    if (!need_index(r, resp))
        return NULL;
    imago_jobs *j = req_slot(r)->jobs;
    if (!j)
        imago_http_fail(resp, IMAGO_API_NOT_READY, "the jobs runner is stopped");
    return j;
}

static imago_api_job_state api_state(int st)
{
    switch (st) {
    case IMAGO_JOB_PENDING: return IMAGO_API_JOB_QUEUED;
    case IMAGO_JOB_RUNNING: return IMAGO_API_JOB_RUNNING;
    case IMAGO_JOB_DONE: return IMAGO_API_JOB_DONE;
    case IMAGO_JOB_FAILED: return IMAGO_API_JOB_FAILED;
    default: return IMAGO_API_JOB_CANCELLED;
    }
}

/* Fills a status (and its errors, owned by *items and *req; errs holds
 * JOB_ERRORS_SHOWN + 1) for job id. The caller clears *req, *items and
 * pr->info. */
static int job_status(imago_jobs *j, imago_index *ix, int64_t id, imago_job_status *st,
                      imago_jobs_progress *pr, imago_job_item **items, size_t *n_items,
                      imago_job_item_error *errs, imago_job_request *req, imago_error *err)
{
    int rc = imago_jobs_progress_get(j, id, pr, err);
    if (rc != 0)
        return rc;
    memset(st, 0, sizeof *st);
    st->id = id;
    st->kind = pr->info.kind;
    st->state = api_state(pr->info.state);
    st->total = pr->info.total;
    st->done = pr->info.done;
    st->failed = pr->info.failed;
    st->rate = pr->rate;
    st->eta_s = pr->eta_s;
    st->created_at = pr->info.created_at;
    st->updated_at = pr->info.updated_at;
    st->error = pr->info.error;
    *items = NULL;
    *n_items = 0;
    int first = 0;
    if (errs && pr->info.state == IMAGO_JOB_FAILED && pr->info.error) {
        /* the job itself failed (its source could not be listed, ...): the
         * reason is the first of its errors, under the source path */
        memset(req, 0, sizeof *req);
        const char *pj = pr->info.params_json ? pr->info.params_json : "";
        imago_error e2;
        imago_error_clear(&e2);
        int parsed = strcmp(pr->info.kind, "ingest") == 0 &&
                     imago_job_request_parse(pj, strlen(pj), req, &e2) == 0;
        errs[0].path = parsed && req->path ? req->path : "";
        errs[0].code = IMAGO_API_UNPROCESSABLE;
        errs[0].message = pr->info.error;
        first = 1;
    }
    if (errs && imago_job_errors(ix, id, JOB_ERRORS_SHOWN, items, n_items, err) == 0) {
        for (size_t i = 0; i < *n_items; i++) {
            char *nl = strchr((*items)[i].source, '\n');
            if (nl)
                *nl = '\0'; /* manifest metadata is not part of the path */
            errs[first + i].path = (*items)[i].source;
            errs[first + i].code =
                imago_api_error_from_code((*items)[i].error_code, IMAGO_API_CTX_IMAGE);
            errs[first + i].message = (*items)[i].error;
        }
    }
    if (errs) {
        st->n_errors = first + (int)*n_items;
        st->errors = errs;
    }
    return 0;
}

static int job_reply(imago_http_request *r, imago_http_response *resp, int64_t id, int status)
{
    imago_jobs *j = req_slot(r)->jobs;
    imago_index *ix = req_slot(r)->ix;
    imago_job_status st;
    imago_jobs_progress pr;
    imago_job_item *items = NULL;
    size_t n = 0;
    imago_job_item_error errs[JOB_ERRORS_SHOWN + 1];
    imago_job_request req;
    memset(&req, 0, sizeof req);
    imago_error err;
    imago_error_clear(&err);
    if (job_status(j, ix, id, &st, &pr, &items, &n, errs, &req, &err) != 0)
        return imago_http_fail_code(resp, &err, IMAGO_API_CTX_GENERIC);
    char *json = NULL;
    int rc = imago_job_status_to_json(&st, &json, &err);
    imago_job_request_clear(&req);
    imago_job_items_free(items, n);
    imago_job_info_clear(&pr.info);
    if (rc != 0)
        return imago_http_fail(resp, IMAGO_API_INTERNAL, err.msg);
    imago_http_json(resp, status, json);
    return IMAGO_HTTP_DONE;
}

static int job_fail(imago_http_response *resp, const imago_error *err)
{
    imago_api_error code;
    switch (err->code) {
    case IMAGO_ERR_AUTH: code = IMAGO_API_FORBIDDEN; break;
    case IMAGO_ERR_UNSUPPORTED: code = IMAGO_API_UNPROCESSABLE; break;
    default: code = imago_api_error_from_code(err->code, IMAGO_API_CTX_JSON);
    }
    return imago_http_fail(resp, code, err->msg);
}

int imago_route_job_create(imago_http_request *r, imago_http_response *resp,
                           const imago_job_request *req)
{
    imago_jobs *j = need_jobs(r, resp);
    if (!j)
        return IMAGO_HTTP_DONE;
    int64_t id = 0;
    imago_error err;
    imago_error_clear(&err);
    int recursive = req->recursive;
    if (imago_jobs_submit_ingest(j, req->path, req->kind == IMAGO_JOB_SOURCE_MANIFEST, recursive,
                                 (const char *const *)req->extensions, req->n_extensions, &id,
                                 &err) != 0)
        return job_fail(resp, &err);
    char *json = NULL;
    if (imago_job_created_to_json(id, &json, &err) != 0)
        return imago_http_fail(resp, IMAGO_API_INTERNAL, err.msg);
    imago_http_json(resp, 202, json);
    char loc[64];
    snprintf(loc, sizeof loc, "/v1/admin/jobs/%lld", (long long)id);
    resp->location = imago_xstrdup(loc);
    return IMAGO_HTTP_DONE;
}

int imago_route_reindex(imago_http_request *r, imago_http_response *resp,
                        const imago_reindex_request *rr)
{
    imago_jobs *j = need_jobs(r, resp);
    if (!j)
        return IMAGO_HTTP_DONE;
    int64_t id = 0;
    imago_error err;
    imago_error_clear(&err);
    if (imago_jobs_submit_reindex(j, rr->factory, rr->dba, &id, &err) != 0)
        return job_fail(resp, &err);
    char *json = NULL;
    if (imago_job_created_to_json(id, &json, &err) != 0)
        return imago_http_fail(resp, IMAGO_API_INTERNAL, err.msg);
    imago_http_json(resp, 202, json);
    return IMAGO_HTTP_DONE;
}

int imago_route_job_get(imago_http_request *r, imago_http_response *resp)
{
    int64_t id;
    if (path_id(r, resp, &id) || !need_jobs(r, resp))
        return IMAGO_HTTP_DONE;
    return job_reply(r, resp, id, 200);
}

int imago_route_job_cancel(imago_http_request *r, imago_http_response *resp)
{
    int64_t id;
    if (path_id(r, resp, &id))
        return IMAGO_HTTP_DONE;
    imago_jobs *j = need_jobs(r, resp);
    if (!j)
        return IMAGO_HTTP_DONE;
    imago_error err;
    imago_error_clear(&err);
    if (imago_jobs_cancel(j, id, &err) != 0)
        return imago_http_fail_code(resp, &err, IMAGO_API_CTX_GENERIC);
    return job_reply(r, resp, id, 200);
}

int imago_route_job_list(imago_http_request *r, imago_http_response *resp)
{
    imago_jobs *j = need_jobs(r, resp);
    if (!j)
        return IMAGO_HTTP_DONE;
    imago_index *ix = req_slot(r)->ix;
    int64_t ids[50];
    size_t n = 0;
    imago_error err;
    imago_error_clear(&err);
    if (imago_job_list(ix, ids, 50, &n, &err) != 0)
        return imago_http_fail(resp, IMAGO_API_INTERNAL, err.msg);
    imago_job_status st[50];
    imago_jobs_progress pr[50];
    size_t got = 0;
    for (size_t i = 0; i < n; i++) {
        imago_job_item *items = NULL;
        size_t ni = 0;
        if (job_status(j, ix, ids[i], &st[got], &pr[got], &items, &ni, NULL, NULL, &err) == 0)
            got++;
    }
    char *json = NULL;
    int rc = imago_job_list_to_json(st, (int)got, &json, &err);
    for (size_t i = 0; i < got; i++)
        imago_job_info_clear(&pr[i].info);
    if (rc != 0)
        return imago_http_fail(resp, IMAGO_API_INTERNAL, err.msg);
    imago_http_json(resp, 200, json);
    return IMAGO_HTTP_DONE;
}

/* ---- info, readiness, metrics ---------------------------------------------------------------- */

void imago_index_slot_info(imago_index_slot *s, char *type, size_t type_cap, int64_t *size,
                           uint64_t *seq)
{
    imago_index *ix = slot_index(s);
    imago_index_stats st;
    imago_error err;
    if (ix && imago_index_stats_get(ix, &st, &err) == 0) {
        snprintf(type, type_cap, "%s", st.type);
        *size = st.count;
        *seq = (uint64_t)(st.seq > 0 ? st.seq : 0);
    } else {
        if (type_cap)
            type[0] = '\0';
        *size = -1;
        *seq = 0;
    }
}

char *imago_index_slot_metrics(imago_index_slot *s)
{
    imago_index *ix = slot_index(s);
    if (!ix)
        return imago_xstrdup("");
    imago_index_stats st;
    imago_error err;
    if (imago_index_stats_get(ix, &st, &err) != 0)
        memset(&st, 0, sizeof st);
    imago_jobs_stats js;
    memset(&js, 0, sizeof js);
    if (s->jobs)
        imago_jobs_stats_get(s->jobs, &js);
    pthread_mutex_lock(&s->mu);
    uint64_t searches = s->searches;
    double v[7];
    memcpy(v, s->stage_s, sizeof v);
    pthread_mutex_unlock(&s->mu);
    size_t cap = 4096;
    char *out = imago_xcalloc(1, cap);
    snprintf(out, cap,
             "# HELP imago_index_images Live images in the index.\n"
             "# TYPE imago_index_images gauge\nimago_index_images %lld\n"
             "# HELP imago_index_deleted Dead index positions until compaction.\n"
             "# TYPE imago_index_deleted gauge\nimago_index_deleted %lld\n"
             "# HELP imago_index_seq Store sequence covered by the index.\n"
             "# TYPE imago_index_seq gauge\nimago_index_seq %lld\n"
             "# HELP imago_images_indexed_total Images stored by jobs in this process.\n"
             "# TYPE imago_images_indexed_total counter\nimago_images_indexed_total %llu\n"
             "# HELP imago_job_items_total Job items finished, by outcome.\n"
             "# TYPE imago_job_items_total counter\n"
             "imago_job_items_total{outcome=\"done\"} %llu\n"
             "imago_job_items_total{outcome=\"failed\"} %llu\n"
             "# HELP imago_jobs_total Jobs by outcome.\n"
             "# TYPE imago_jobs_total counter\n"
             "imago_jobs_total{outcome=\"started\"} %llu\n"
             "imago_jobs_total{outcome=\"done\"} %llu\n"
             "imago_jobs_total{outcome=\"failed\"} %llu\n"
             "imago_jobs_total{outcome=\"cancelled\"} %llu\n"
             "# HELP imago_jobs_active Jobs the runner is working on.\n"
             "# TYPE imago_jobs_active gauge\nimago_jobs_active %d\n"
             "# HELP imago_search_requests_total Successful searches.\n"
             "# TYPE imago_search_requests_total counter\nimago_search_requests_total %llu\n"
             "# HELP imago_search_stage_seconds_total Search time per stage, summed.\n"
             "# TYPE imago_search_stage_seconds_total counter\n"
             "imago_search_stage_seconds_total{stage=\"decode\"} %.6f\n"
             "imago_search_stage_seconds_total{stage=\"queue\"} %.6f\n"
             "imago_search_stage_seconds_total{stage=\"forward\"} %.6f\n"
             "imago_search_stage_seconds_total{stage=\"search\"} %.6f\n"
             "imago_search_stage_seconds_total{stage=\"qe\"} %.6f\n"
             "imago_search_stage_seconds_total{stage=\"metadata\"} %.6f\n"
             "imago_search_stage_seconds_total{stage=\"total\"} %.6f\n",
             (long long)st.count, (long long)st.deleted, (long long)st.seq,
             (unsigned long long)js.images_indexed, (unsigned long long)js.items_done,
             (unsigned long long)js.items_failed, (unsigned long long)js.jobs_started,
             (unsigned long long)js.jobs_done, (unsigned long long)js.jobs_failed,
             (unsigned long long)js.jobs_cancelled, js.jobs_active, (unsigned long long)searches,
             v[0], v[1], v[2], v[3], v[4], v[5], v[6]);
    return out;
}
