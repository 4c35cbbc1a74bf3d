/* The engine batcher (engine/engine.h, "Batcher"): decode threads, per-shape
 * queues, dynamic batching, bounded queues, one callback per image, metrics.
 *
 * DESIGN (threads). One mutex (mu) guards every queue and counter; nothing
 * slow runs under it (no decode, no engine call, no callback).
 *
 *   submit()  --> decode queue --(decode threads)--> shape queue (w x h)
 *   submit_image() -----------------------------------^
 *   shape queues --(forward threads: batch of one shape)--> engine --> callbacks
 *
 * - Decode threads (decode_threads) pop the decode queue in FIFO order,
 *   decode + orient + crop + resize with the lock released, then append the
 *   image to the queue of its shape (created on demand, removed when empty)
 *   and wake the forward threads. A decode error goes straight to the
 *   callback from the decode thread; the engine never sees it.
 * - Forward threads (forward_threads) scan the shape queues. A queue is
 *   READY when it holds a full batch (max_batch images, or its shape's
 *   lower cap, below) or its oldest image has waited max_delay_us (or the
 *   batcher is draining or cancelling). Among ready queues the one whose
 *   oldest image is oldest wins (most urgent first); up to a full batch is
 *   taken from its head. With no ready queue the thread sleeps
 *   until the earliest deadline (CLOCK_MONOTONIC timed wait) or a wake-up.
 *   The engine call runs unlocked; on IMAGO_ERR_NOMEM a batch of n > 1 is
 *   retried as two halves (recursively), any other error fails the images
 *   of that call. The batcher then remembers, per shape, half the smallest
 *   size that ran out of memory and never takes more images of that shape
 *   again (a GPU that cannot hold 32 images of 1024x768 is asked for 16
 *   from then on, instead of failing and splitting every batch). Counters
 *   are updated under the lock BEFORE the callbacks run, so a callback
 *   observer always sees stats that include its image.
 * - Bounded: `waiting` (decode queue + decoding + shape queues) never
 *   exceeds queue_depth; submit() refuses with IMAGO_ERR_BUSY at the limit
 *   and never blocks. Images in a forward pass are bounded separately by
 *   forward_threads * max_batch.
 *
 * Per image state machine (each arrow under mu; every path ends in exactly
 * one callback, made by a batcher thread without the lock):
 *
 *   DECODE_QUEUED --pop--> DECODING --ok--> SHAPE_QUEUED --take--> FORWARD
 *        |                    |  \--error--> callback(decode error)      |
 *        |                    \--closed, no drain--> callback(CANCELLED)  |
 *        \--closed, no drain--> callback(CANCELLED)                       v
 *   SHAPE_QUEUED --closed, no drain--> callback(CANCELLED)     callback(descriptor
 *                                                              or engine error)
 *
 * Batcher state: RUNNING -> DRAINING (close(drain=1): partial batches go at
 * once) or CANCELLING (close(drain=0): queued images are cancelled by
 * whichever batcher thread sees them first: decode threads cancel shape
 * queues too, so cancellation does not wait for a busy forward thread).
 * Threads exit once nothing is queued or decoding; close() joins them.
 *
 * This file holds the API (lifecycle, submission, stats); the decode and
 * forward threads are in batcher_threads.c, the shared state in batcher_int.h.
 */#include "batcher_int.h"

#include <assert.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

imago_batcher_params imago_batcher_params_default(void)
{
    imago_batcher_params p;
    memset(&p, 0, sizeof p);
    p.decode_threads = 0;
    p.forward_threads = 1;
    p.max_batch = 8;
    p.max_delay_us = 2000;
    p.queue_depth = 256;
    p.max_bytes = (size_t)32 << 20;
    p.max_pixels = 100000000;
    p.max_side = 0;
    return p;
}
/* ---- lifecycle ---------------------------------------------------------- */

static void stop_and_join(imago_batcher *b, int state)
{
    pthread_mutex_lock(&b->mu);
    if (b->state == ST_RUNNING || state == ST_CANCELLING)
        b->state = state;
    pthread_cond_broadcast(&b->decode_cv);
    pthread_cond_broadcast(&b->forward_cv);
    pthread_mutex_unlock(&b->mu);
    for (int i = 0; i < b->n_threads; i++) {
        assert(!pthread_equal(b->threads[i], pthread_self()) &&
               "imago_batcher_close called from a callback");
        pthread_join(b->threads[i], NULL);
    }
    b->n_threads = 0;
}

int imago_batcher_new(imago_engine *engine, const imago_batcher_params *params, imago_batcher **out,
                      imago_error *err)
{
    imago_batcher_params p = params ? *params : imago_batcher_params_default();
    if (!engine && !p.embed_fn)
        return imago_error_set(err, IMAGO_ERR_INVALID, "batcher: no engine");
    if (p.max_batch < 1 || p.max_batch > IMAGO_BATCHER_MAX_BATCH)
        return imago_error_set(err, IMAGO_ERR_INVALID, "batcher: max_batch %d is not in 1..%d",
                               p.max_batch, IMAGO_BATCHER_MAX_BATCH);
    if (p.max_delay_us < 0 || p.max_delay_us > 60000000)
        return imago_error_set(err, IMAGO_ERR_INVALID,
                               "batcher: max_delay_us %lld is not in 0..60000000",
                               (long long)p.max_delay_us);
    if (p.queue_depth < 1)
        return imago_error_set(err, IMAGO_ERR_INVALID, "batcher: queue_depth %d is not >= 1",
                               p.queue_depth);
    if (p.decode_threads < 0 || p.decode_threads > 1024 || p.forward_threads < 1 ||
        p.forward_threads > 1024)
        return imago_error_set(err, IMAGO_ERR_INVALID,
                               "batcher: decode_threads %d / forward_threads %d out of range "
                               "(0..1024 / 1..1024)",
                               p.decode_threads, p.forward_threads);
    int dim, max_side;
    if (p.embed_fn) {
        dim = p.dim;
        max_side = p.max_side;
        if (dim < 1 || max_side < 1)
            return imago_error_set(err, IMAGO_ERR_INVALID,
                                   "batcher: embed_fn needs dim > 0 and max_side > 0");
    } else {
        imago_model_info info;
        imago_engine_describe(engine, &info);
        dim = info.dim;
        max_side = p.max_side > 0 ? p.max_side : info.max_side;
        if (dim < 1 || max_side < 1)
            return imago_error_set(err, IMAGO_ERR_INVALID,
                                   "batcher: engine reports dim %d, max_side %d", dim, max_side);
    }
    if (p.decode_threads == 0) {
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        p.decode_threads = ncpu < 1 ? 1 : ncpu > 64 ? 64 : (int)ncpu;
    }
    p.max_side = max_side;

    imago_batcher *b = imago_xcalloc(1, sizeof *b);
    b->engine = engine;
    b->p = p;
    b->dim = dim;
    b->max_delay_us = p.max_delay_us;
    b->hist = imago_xcalloc((size_t)p.max_batch + 1, sizeof *b->hist);
    b->t_start = imago_now_us();
    for (int i = 0; i < RATE_BUCKETS; i++)
        b->rate_sec[i] = -1;
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->decode_cv, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* imago_now_us is monotonic */
    pthread_cond_init(&b->forward_cv, &ca);
    pthread_condattr_destroy(&ca);

    int total = p.decode_threads + p.forward_threads;
    b->threads = imago_xcalloc((size_t)total, sizeof *b->threads);
    for (int i = 0; i < total; i++) {
        int is_decode = i < p.decode_threads;
        void *(*body)(void *) = is_decode ? imago_batcher_decode_main : imago_batcher_forward_main;
        int rc = pthread_create(&b->threads[i], NULL, body, b);
        if (rc) {
            imago_error_set(err, IMAGO_ERR_BACKEND, "batcher: cannot start a thread: %s",
                            strerror(rc));
            stop_and_join(b, ST_CANCELLING);
            b->closed = 1;
            imago_batcher_free(b);
            return IMAGO_ERR_BACKEND;
        }
        b->n_threads++;
        char name[16];
        snprintf(name, sizeof name, "%s-%d", is_decode ? "imago-dec" : "imago-fwd",
                 is_decode ? i : i - p.decode_threads);
        pthread_setname_np(b->threads[i], name);
    }
    *out = b;
    return 0;
}

void imago_batcher_close(imago_batcher *b, int drain)
{
    if (!b || b->closed)
        return;
    stop_and_join(b, drain ? ST_DRAINING : ST_CANCELLING);
    b->closed = 1;
}

void imago_batcher_free(imago_batcher *b)
{
    if (!b)
        return;
    imago_batcher_close(b, 0);
    /* every thread has exited with the queues empty */
    assert(!b->dq_head && !b->shapes && !b->decoding && !b->in_flight);
    pthread_cond_destroy(&b->decode_cv);
    pthread_cond_destroy(&b->forward_cv);
    pthread_mutex_destroy(&b->mu);
    free(b->hist);
    free(b->threads);
    free(b);
}

/* ---- submission --------------------------------------------------------- */

static int waiting_locked(const imago_batcher *b)
{
    return b->dq_count + b->reserved + b->decoding + b->queued_batch;
}

/* Admission under mu: 0, or BUSY / NOT_READY with the message in err. */
static int admit_locked(imago_batcher *b, imago_error *err)
{
    if (b->state != ST_RUNNING)
        return imago_error_set(err, IMAGO_ERR_NOT_READY, "the batcher is shutting down");
    if (waiting_locked(b) >= b->p.queue_depth) {
        b->rejected_busy++;
        return imago_error_set(err, IMAGO_ERR_BUSY, "the engine queue is full (%d images waiting)",
                               b->p.queue_depth);
    }
    b->submitted++;
    return 0;
}

static uint64_t tighter_u64(uint64_t mine, uint64_t req)
{
    if (!req)
        return mine;
    if (!mine)
        return req;
    return req < mine ? req : mine;
}

int imago_batcher_submit(imago_batcher *b, const void *bytes, size_t len,
                         imago_batcher_ownership ownership, const imago_decode_params *req,
                         imago_batcher_cb cb, void *user_data, imago_error *err)
{
    if (!b || !cb || (!bytes && len))
        return imago_error_set(err, IMAGO_ERR_INVALID, "batcher submit: missing %s",
                               !b    ? "batcher"
                               : !cb ? "callback"
                                     : "bytes");
    imago_decode_params dp;
    imago_batcher_decode_params(b, &dp);
    if (req) {
        dp.max_bytes = (size_t)tighter_u64(dp.max_bytes, req->max_bytes);
        dp.max_pixels = tighter_u64(dp.max_pixels, req->max_pixels);
        dp.has_box = req->has_box;
        memcpy(dp.box, req->box, sizeof dp.box);
        dp.allow_dct_scaling = req->allow_dct_scaling;
    }
    if (dp.max_bytes && len > dp.max_bytes)
        return imago_error_set(err, IMAGO_ERR_TOO_LARGE,
                               "image of %zu bytes is over the limit of %zu bytes", len,
                               dp.max_bytes);

    /* Admission first (cheap), the copy after: a busy server does not copy. */
    pthread_mutex_lock(&b->mu);
    int rc = admit_locked(b, err);
    if (rc == 0)
        b->reserved++; /* hold the slot while copying */
    pthread_mutex_unlock(&b->mu);
    if (rc)
        return rc;

    job *j = imago_xcalloc(1, sizeof *j);
    j->cb = cb;
    j->user_data = user_data;
    j->len = len;
    j->dp = dp;
    j->t_submit = imago_now_us();
    if (ownership == IMAGO_BATCHER_TAKE) {
        j->bytes = (uint8_t *)bytes;
    } else if (len) {
        j->bytes = malloc(len);
        if (!j->bytes) {
            free(j);
            pthread_mutex_lock(&b->mu);
            b->reserved--;
            b->submitted--;
            imago_batcher_wake_if_closing_locked(b); /* threads may wait for reserved == 0 */
            pthread_mutex_unlock(&b->mu);
            return imago_error_set(err, IMAGO_ERR_NOMEM, "cannot copy an image of %zu bytes", len);
        }
        memcpy(j->bytes, bytes, len);
    }

    pthread_mutex_lock(&b->mu);
    /* close() cannot finish while `reserved` counts this job (the decode and
     * forward threads wait for it), so the job is queued even if close()
     * started meanwhile; a decode thread then decodes or cancels it. */
    b->reserved--;
    b->dq_count++;
    if (b->dq_tail)
        b->dq_tail->next = j;
    else
        b->dq_head = j;
    b->dq_tail = j;
    if (b->state == ST_RUNNING)
        pthread_cond_signal(&b->decode_cv);
    else
        imago_batcher_wake_if_closing_locked(b); /* the others may exit now */
    pthread_mutex_unlock(&b->mu);
    return 0;
}

int imago_batcher_submit_image(imago_batcher *b, imago_image *img, imago_batcher_cb cb,
                               void *user_data, imago_error *err)
{
    if (!b || !cb || !img || !img->rgb || img->width < 1 || img->height < 1)
        return imago_error_set(err, IMAGO_ERR_INVALID,
                               "batcher submit_image: missing batcher, callback or image");
    if (img->width > b->p.max_side || img->height > b->p.max_side)
        return imago_error_set(err, IMAGO_ERR_INVALID,
                               "batcher submit_image: %dx%d is over max_side %d (decode with "
                               "imago_batcher_decode_params)",
                               img->width, img->height, b->p.max_side);
    job *j = imago_xcalloc(1, sizeof *j);
    j->cb = cb;
    j->user_data = user_data;
    j->img = img;
    pthread_mutex_lock(&b->mu);
    int rc = admit_locked(b, err);
    if (rc == 0) {
        int64_t now = imago_now_us();
        j->t_submit = now;
        imago_batcher_shape_push_locked(b, j, now);
    }
    pthread_mutex_unlock(&b->mu);
    if (rc) {
        j->img = NULL; /* stays the caller's */
        free(j);
    }
    return rc;
}

/* ---- synchronous convenience -------------------------------------------- */

typedef struct sync_wait {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
    int status;
    float *out;
    imago_batch_timings timings;
    imago_error err;
} sync_wait;

static void sync_cb(void *ud, int status, const char *message, const float *desc, int dim,
                    const imago_batch_timings *t)
{
    sync_wait *w = ud;
    if (status == 0)
        memcpy(w->out, desc, (size_t)dim * sizeof(float));
    else
        imago_error_set(&w->err, status, "%s", message);
    pthread_mutex_lock(&w->mu);
    w->status = status;
    w->timings = *t;
    w->done = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

int imago_batcher_embed_sync(imago_batcher *b, const void *bytes, size_t len,
                             const imago_decode_params *req, float *out,
                             imago_batch_timings *timings, imago_error *err)
{
    if (!out)
        return imago_error_set(err, IMAGO_ERR_INVALID, "batcher embed_sync: no output");
    sync_wait w;
    memset(&w, 0, sizeof w);
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    w.out = out;
    int rc = imago_batcher_submit(b, bytes, len, IMAGO_BATCHER_COPY, req, sync_cb, &w, err);
    if (rc == 0) {
        pthread_mutex_lock(&w.mu);
        while (!w.done)
            pthread_cond_wait(&w.cv, &w.mu);
        pthread_mutex_unlock(&w.mu);
        rc = w.status;
        if (rc)
            imago_error_set(err, rc, "%s", w.err.msg);
        else if (timings)
            *timings = w.timings;
    }
    pthread_cond_destroy(&w.cv);
    pthread_mutex_destroy(&w.mu);
    return rc;
}

/* ---- accessors, stats --------------------------------------------------- */

void imago_batcher_decode_params(const imago_batcher *b, imago_decode_params *out)
{
    *out = imago_decode_params_default();
    out->max_bytes = b->p.max_bytes;
    out->max_pixels = b->p.max_pixels;
    out->max_side = b->p.max_side;
}

int imago_batcher_dim(const imago_batcher *b)
{
    return b->dim;
}

int imago_batcher_set_max_delay(imago_batcher *b, int64_t max_delay_us, imago_error *err)
{
    if (max_delay_us < 0 || max_delay_us > 60000000)
        return imago_error_set(err, IMAGO_ERR_INVALID,
                               "batcher: max_delay_us %lld is not in 0..60000000",
                               (long long)max_delay_us);
    pthread_mutex_lock(&b->mu);
    b->max_delay_us = max_delay_us;
    pthread_cond_broadcast(&b->forward_cv); /* deadlines changed */
    pthread_mutex_unlock(&b->mu);
    return 0;
}

void imago_batcher_stats_get(const imago_batcher *cb, imago_batcher_stats *s)
{
    imago_batcher *b = (imago_batcher *)cb; /* the lock is not part of the value */
    memset(s, 0, sizeof *s);
    pthread_mutex_lock(&b->mu);
    int64_t now = imago_now_us();
    s->max_batch = b->p.max_batch;
    s->queue_depth = b->p.queue_depth;
    s->queued_decode = b->dq_count + b->reserved + b->decoding;
    s->queued_batch = b->queued_batch;
    s->queued = s->queued_decode + s->queued_batch;
    s->in_flight = b->in_flight;
    s->shapes = b->n_shapes;
    s->submitted = b->submitted;
    s->completed = b->completed;
    s->failed_decode = b->failed_decode;
    s->failed_engine = b->failed_engine;
    s->cancelled = b->cancelled;
    s->failed = b->failed_decode + b->failed_engine + b->cancelled;
    s->rejected_busy = b->rejected_busy;
    s->batches = b->batches;
    s->nomem_splits = b->nomem_splits;
    for (int k = 1; k <= b->p.max_batch; k++)
        s->batch_hist[k] = b->hist[k];
    s->decode_s_total = (double)b->decode_us_total * 1e-6;
    s->queue_s_total = (double)b->queue_us_total * 1e-6;
    s->forward_s_total = (double)b->forward_us_total * 1e-6;
    /* the window is the buckets of the last RATE_WINDOW_S - 1 whole seconds
     * plus the current partial one, clipped to the batcher's lifetime */
    int64_t sec = now / 1000000, lo_sec = sec - (RATE_WINDOW_S - 1);
    uint64_t n = 0;
    for (int i = 0; i < RATE_BUCKETS; i++)
        if (b->rate_sec[i] >= lo_sec && b->rate_sec[i] <= sec)
            n += b->rate_count[i];
    pthread_mutex_unlock(&b->mu);
    int64_t lo = lo_sec * 1000000;
    if (lo < b->t_start)
        lo = b->t_start;
    s->window_s = (double)(now - lo) * 1e-6;
    s->images_per_s = s->window_s > 1e-3 ? (double)n / s->window_s : 0.0;
}
