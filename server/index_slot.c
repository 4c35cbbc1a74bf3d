/* The server's index slot: the collection, opened once the model is loaded,
 * its jobs runner, and the upload workers of POST /v1/images; its info and
 * metrics for /v1/info and /metrics.
 *
 * DESIGN (threads):
 *  - The slot's loader thread waits for the engine slot to be READY (the
 *    index needs the model's fingerprint and dim), opens the index, starts
 *    the jobs runner (which resumes unfinished jobs) and publishes READY with
 *    a release store; request threads read the pointers after an acquire
 *    load. A failed open (e.g. another model's store) calls on_fail, which
 *    stops the server with the message (run() returns it).
 *  - ADD_WORKERS upload workers run the tasks queued by
 *    imago_index_slot_post (api_images.c: the blocking work of an upload)
 *    off the MHD threads; at most ADD_QUEUE_MAX wait.
 */
#include "app.h"
#include "cfg_params.h"
#include "jobs.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ADD_WORKERS 2
#define ADD_QUEUE_MAX 64

/* ---- the slot ---------------------------------------------------------------------- */

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
    imago_slot_task *head, *tail;
    int queued;
    int add_stop;
    pthread_t workers[ADD_WORKERS];
    int n_workers;
    /* search latency sums for /metrics (under mu) */
    uint64_t searches;
    double stage_s[IMAGO_SEARCH_STAGES]; /* decode, queue, forward, search, qe, metadata, total */
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

imago_index *imago_index_slot_index(const imago_index_slot *s)
{
    return slot_index(s);
}

imago_jobs *imago_index_slot_jobs(const imago_index_slot *s)
{
    return slot_index(s) ? s->jobs : NULL;
}

imago_engine_slot *imago_index_slot_engine(const imago_index_slot *s)
{
    return s->engine;
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
/* ---- the upload workers ---------------------------------------------------------------- */

static void *add_worker(void *arg)
{
    imago_index_slot *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->head && !s->add_stop)
            pthread_cond_wait(&s->cv, &s->mu);
        imago_slot_task *t = s->head;
        if (!t)
            break; /* stopping with nothing queued */
        s->head = t->next;
        if (!s->head)
            s->tail = NULL;
        s->queued--;
        pthread_mutex_unlock(&s->mu);
        t->run(t);
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

int imago_index_slot_post(imago_index_slot *s, imago_slot_task *t, imago_http_request *r)
{
    pthread_mutex_lock(&s->mu);
    if (s->add_stop || s->queued >= ADD_QUEUE_MAX) {
        int stopping = s->add_stop;
        pthread_mutex_unlock(&s->mu);
        return stopping ? IMAGO_ERR_NOT_READY : IMAGO_ERR_BUSY;
    }
    t->next = NULL;
    imago_http_defer(r);
    if (s->tail)
        s->tail->next = t;
    else
        s->head = t;
    s->tail = t;
    s->queued++;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

/* ---- info, metrics ---------------------------------------------------------------- */

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

const imago_whitening_desc *imago_index_slot_whitening(imago_index_slot *s,
                                                       imago_whitening_desc *out,
                                                       char fingerprint[40], int *index_dim)
{
    imago_index *ix = slot_index(s);
    imago_index_stats st;
    imago_error err;
    *index_dim = 0;
    if (!ix || imago_index_stats_get(ix, &st, &err) != 0)
        return NULL;
    *index_dim = st.index_dim;
    const imago_whitening_desc *d = imago_whitening_desc_of(&st, out);
    if (d) {
        snprintf(fingerprint, 40, "%s", st.whitening.fingerprint);
        out->fingerprint = fingerprint;
    }
    return d;
}

void imago_index_slot_count_search(imago_index_slot *s, const double ms[IMAGO_SEARCH_STAGES])
{
    pthread_mutex_lock(&s->mu);
    s->searches++;
    for (int i = 0; i < IMAGO_SEARCH_STAGES; i++)
        s->stage_s[i] += ms[i] / 1e3;
    pthread_mutex_unlock(&s->mu);
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
    double v[IMAGO_SEARCH_STAGES];
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
