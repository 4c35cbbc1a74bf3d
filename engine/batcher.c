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
 *   READY when it holds max_batch images or its oldest image has waited
 *   max_delay_us (or the batcher is draining). Among ready queues the one
 *   whose oldest image is oldest wins (most urgent first); up to max_batch
 *   images are taken from its head. With no ready queue the thread sleeps
 *   until the earliest deadline (CLOCK_MONOTONIC timed wait) or a wake-up.
 *   The engine call runs unlocked; on IMAGO_ERR_NOMEM a batch of n > 1 is
 *   retried as two halves (recursively), any other error fails the images
 *   of that call. The batcher then remembers, per shape, half the smallest
 *   size that ran out of memory and never takes more images of that shape
 *   again (a GPU that cannot hold 32 images of 1024x768 is asked for 16
 *   from then on, instead of failing and splitting every batch). Counters are updated under the lock BEFORE the callbacks
 *   run, so a callback observer always sees stats that include its image.
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
 */
#include "engine.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { ST_RUNNING = 0, ST_DRAINING = 1, ST_CANCELLING = 2 };

#define RATE_WINDOW_S 10
#define RATE_BUCKETS (RATE_WINDOW_S + 1)

typedef struct job {
    struct job *next;
    imago_batcher_cb cb;
    void *user_data;
    uint8_t *bytes; /* encoded input (owned), NULL once decoded or for images */
    size_t len;
    imago_decode_params dp;
    imago_image *img;                            /* decoded image (owned) */
    int64_t t_submit, t_decode_start, t_enqueue; /* monotonic us */
    int64_t decode_us, wait_us;
    /* result of the forward pass */
    int status;
    int batch_size;
    int64_t forward_us;
    imago_error err;
} job;

typedef struct shapeq {
    struct shapeq *next;
    int w, h;
    job *head, *tail;
    int count;
} shapeq;

/* the largest batch a shape may use after it ran out of memory */
#define BATCH_CAPS 32
typedef struct batch_cap {
    int w, h, cap;
} batch_cap;

struct imago_batcher {
    imago_engine *engine; /* borrowed */
    imago_batcher_params p;
    int dim;

    pthread_mutex_t mu;
    pthread_cond_t decode_cv;  /* decode queue non-empty, or state change */
    pthread_cond_t forward_cv; /* shape queues changed, or state change (monotonic) */

    int state;
    int closed; /* close() ran (owner thread only) */
    int64_t max_delay_us;

    job *dq_head, *dq_tail;
    int dq_count;
    int reserved; /* admitted submissions still copying their bytes */
    int decoding;
    shapeq *shapes;
    int n_shapes;
    int queued_batch;
    int in_flight;

    /* counters (under mu) */
    uint64_t submitted, completed, failed_decode, failed_engine, cancelled, rejected_busy;
    uint64_t batches, nomem_splits;
    uint64_t *hist; /* max_batch + 1 */
    batch_cap caps[BATCH_CAPS]; /* under mu; the oldest entry is replaced when full */
    int n_caps, next_cap;
    int64_t decode_us_total, queue_us_total, forward_us_total;
    int64_t t_start;
    int64_t rate_sec[RATE_BUCKETS];
    uint64_t rate_count[RATE_BUCKETS];

    pthread_t *threads;
    int n_threads;
};

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

/* ---- small helpers (callers hold mu where noted) ------------------------ */

static int waiting_locked(const imago_batcher *b)
{
    return b->dq_count + b->reserved + b->decoding + b->queued_batch;
}

/* After close() started, any decrease of the counters may let a thread
 * exit: wake them all to re-check (mu held). */
static void wake_if_closing_locked(imago_batcher *b)
{
    if (b->state != ST_RUNNING) {
        pthread_cond_broadcast(&b->decode_cv);
        pthread_cond_broadcast(&b->forward_cv);
    }
}

static void job_free(job *j)
{
    if (!j)
        return;
    free(j->bytes);
    imago_image_free(j->img);
    free(j);
}

/* Records n completed images in the rate window (mu held). */
static void rate_add_locked(imago_batcher *b, int64_t now_us, uint64_t n)
{
    int64_t sec = now_us / 1000000;
    int i = (int)(sec % RATE_BUCKETS);
    if (b->rate_sec[i] != sec) {
        b->rate_sec[i] = sec;
        b->rate_count[i] = 0;
    }
    b->rate_count[i] += n;
}

static void deliver(job *j, int dim, const float *desc)
{
    imago_batch_timings t = {.decode_us = j->decode_us,
                             .queue_us = j->wait_us,
                             .forward_us = j->forward_us,
                             .batch_size = j->batch_size};
    j->cb(j->user_data, j->status, j->status ? j->err.msg : "", j->status ? NULL : desc, dim, &t);
}

/* Fails a list of jobs with IMAGO_ERR_CANCELLED: counts under mu, then
 * calls back unlocked, then relocks. */
static void cancel_list_locked(imago_batcher *b, job *list, int n)
{
    if (!list)
        return;
    b->cancelled += (uint64_t)n;
    pthread_mutex_unlock(&b->mu);
    int64_t now = imago_now_us();
    while (list) {
        job *j = list;
        list = j->next;
        j->status = IMAGO_ERR_CANCELLED;
        imago_error_clear(&j->err);
        imago_error_set(&j->err, IMAGO_ERR_CANCELLED, "the batcher was shut down");
        j->wait_us = now - j->t_submit - j->decode_us;
        deliver(j, b->dim, NULL);
        job_free(j);
    }
    pthread_mutex_lock(&b->mu);
    wake_if_closing_locked(b);
}

/* Detaches everything in the decode queue and the shape queues (mu held);
 * returns the list and its length through *n. */
static job *take_all_queued_locked(imago_batcher *b, int *n)
{
    job *list = b->dq_head, *tail = b->dq_tail;
    int count = b->dq_count;
    b->dq_head = b->dq_tail = NULL;
    b->dq_count = 0;
    while (b->shapes) {
        shapeq *q = b->shapes;
        b->shapes = q->next;
        if (q->head) {
            if (tail)
                tail->next = q->head;
            else
                list = q->head;
            tail = q->tail;
            count += q->count;
        }
        free(q);
    }
    b->n_shapes = 0;
    b->queued_batch = 0;
    *n = count;
    return list;
}

/* While cancelling, fails everything queued (mu held, released around the
 * callbacks); returns whether there was anything. */
static int cancel_queued_locked(imago_batcher *b)
{
    if (b->state != ST_CANCELLING)
        return 0;
    int n;
    job *list = take_all_queued_locked(b, &n);
    if (!list)
        return 0;
    cancel_list_locked(b, list, n);
    return 1;
}

/* Appends a decoded job to the queue of its shape (mu held). */
static void shape_push_locked(imago_batcher *b, job *j, int64_t now)
{
    int w = j->img->width, h = j->img->height;
    shapeq *q = b->shapes;
    while (q && !(q->w == w && q->h == h))
        q = q->next;
    if (!q) {
        q = imago_xcalloc(1, sizeof *q);
        q->w = w;
        q->h = h;
        q->next = b->shapes;
        b->shapes = q;
        b->n_shapes++;
    }
    j->next = NULL;
    j->t_enqueue = now;
    if (q->tail)
        q->tail->next = j;
    else
        q->head = j;
    q->tail = j;
    q->count++;
    b->queued_batch++;
    /* every forward thread recomputes its deadline (few threads) */
    pthread_cond_broadcast(&b->forward_cv);
}

/* ---- decode threads ----------------------------------------------------- */

static void *decode_main(void *arg)
{
    imago_batcher *b = arg;
    pthread_mutex_lock(&b->mu);
    for (;;) {
        if (cancel_queued_locked(b))
            continue;
        if (!b->dq_head) {
            if (b->state != ST_RUNNING && !b->reserved)
                break;
            pthread_cond_wait(&b->decode_cv, &b->mu);
            continue;
        }
        job *j = b->dq_head;
        b->dq_head = j->next;
        if (!b->dq_head)
            b->dq_tail = NULL;
        b->dq_count--;
        b->decoding++;
        j->next = NULL;
        pthread_mutex_unlock(&b->mu);

        j->t_decode_start = imago_now_us();
        imago_error_clear(&j->err);
        int rc = imago_image_decode(j->bytes, j->len, &j->dp, &j->img, &j->err);
        int64_t now = imago_now_us();
        j->decode_us = now - j->t_decode_start;
        free(j->bytes);
        j->bytes = NULL;

        pthread_mutex_lock(&b->mu);
        b->decoding--;
        b->decode_us_total += j->decode_us;
        if (rc == 0 && b->state != ST_CANCELLING) {
            shape_push_locked(b, j, now);
            continue;
        }
        wake_if_closing_locked(b); /* forward threads may wait for decoding == 0 */
        if (rc == 0) {
            cancel_list_locked(b, j, 1);
            continue;
        }
        b->failed_decode++;
        pthread_mutex_unlock(&b->mu);
        if (!j->err.code)
            imago_error_set(&j->err, rc, "image decode failed (%s)", imago_error_name(rc));
        j->status = rc;
        j->wait_us = j->t_decode_start - j->t_submit;
        deliver(j, b->dim, NULL);
        job_free(j);
        pthread_mutex_lock(&b->mu);
    }
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

/* ---- forward threads ---------------------------------------------------- */

static int embed_call(imago_batcher *b, const imago_image *const *imgs, int n, float *out,
                      imago_error *err)
{
    if (b->p.embed_fn)
        return b->p.embed_fn(b->p.embed_ctx, imgs, n, out, err);
    return imago_engine_embed(b->engine, imgs, n, out, err);
}

typedef struct fwd_acc {
    int64_t t0;       /* start of the batch's first call */
    int64_t call_us;  /* summed durations of the calls */
    uint64_t batches; /* successful calls */
    uint64_t splits;  /* NOMEM splits */
    int nomem_min;    /* the smallest n > 1 that ran out of memory (INT_MAX: none) */
} fwd_acc;

/* Runs jobs[0..n) through the engine, writing each job's status and result
 * (out has n * dim floats). On NOMEM with n > 1, the two halves are tried
 * separately. Unlocked. */
static void forward_range(imago_batcher *b, job **jobs, const imago_image **imgs, int n, float *out,
                          fwd_acc *acc, uint64_t *hist_local)
{
    imago_error err;
    imago_error_clear(&err);
    int64_t t = imago_now_us();
    int rc = embed_call(b, imgs, n, out, &err);
    int64_t end = imago_now_us();
    acc->call_us += end - t;
    if (rc == IMAGO_ERR_NOMEM && n > 1) {
        acc->splits++;
        if (n < acc->nomem_min)
            acc->nomem_min = n;
        int h = n / 2;
        forward_range(b, jobs, imgs, h, out, acc, hist_local);
        forward_range(b, jobs + h, imgs + h, n - h, out + (size_t)h * b->dim, acc, hist_local);
        return;
    }
    if (rc == 0) {
        acc->batches++;
        hist_local[n]++;
    } else if (!err.code) {
        imago_error_set(&err, rc, "the engine failed (%s)", imago_error_name(rc));
    }
    for (int i = 0; i < n; i++) {
        job *j = jobs[i];
        j->status = rc;
        j->batch_size = rc ? 0 : n;
        j->forward_us = end - acc->t0;
        imago_error_clear(&j->err);
        if (rc)
            imago_error_set(&j->err, rc, "%s", err.msg);
    }
}

/* the batch limit of a w x h shape (mu held) */
static int shape_cap_locked(const imago_batcher *b, int w, int h)
{
    for (int i = 0; i < b->n_caps; i++)
        if (b->caps[i].w == w && b->caps[i].h == h)
            return b->caps[i].cap < b->p.max_batch ? b->caps[i].cap : b->p.max_batch;
    return b->p.max_batch;
}

static void shape_cap_lower_locked(imago_batcher *b, int w, int h, int cap)
{
    for (int i = 0; i < b->n_caps; i++)
        if (b->caps[i].w == w && b->caps[i].h == h) {
            if (cap < b->caps[i].cap)
                b->caps[i].cap = cap;
            return;
        }
    int i = b->n_caps < BATCH_CAPS ? b->n_caps++ : b->next_cap;
    b->next_cap = (i + 1) % BATCH_CAPS;
    b->caps[i] = (batch_cap){.w = w, .h = h, .cap = cap};
}

/* Picks the most urgent ready shape queue (mu held). Returns NULL and the
 * earliest future deadline (INT64_MAX: none) when none is ready. */
static shapeq *pick_ready_locked(imago_batcher *b, int64_t now, int64_t *next_deadline)
{
    shapeq *best = NULL;
    *next_deadline = INT64_MAX;
    for (shapeq *q = b->shapes; q; q = q->next) {
        if (!q->count)
            continue;
        int64_t deadline = q->head->t_enqueue + b->max_delay_us;
        int ready = q->count >= shape_cap_locked(b, q->w, q->h) || now >= deadline ||
                    b->state != ST_RUNNING;
        if (ready) {
            if (!best || q->head->t_enqueue < best->head->t_enqueue)
                best = q;
        } else if (deadline < *next_deadline) {
            *next_deadline = deadline;
        }
    }
    return best;
}

static void remove_shape_locked(imago_batcher *b, shapeq *q)
{
    shapeq **pp = &b->shapes;
    while (*pp != q)
        pp = &(*pp)->next;
    *pp = q->next;
    b->n_shapes--;
    free(q);
}

static void timed_wait_until(imago_batcher *b, int64_t deadline_us)
{
    struct timespec ts;
    ts.tv_sec = (time_t)(deadline_us / 1000000);
    ts.tv_nsec = (long)(deadline_us % 1000000) * 1000;
    pthread_cond_timedwait(&b->forward_cv, &b->mu, &ts);
}

static void *forward_main(void *arg)
{
    imago_batcher *b = arg;
    int mb = b->p.max_batch;
    job **jobs = imago_xcalloc((size_t)mb, sizeof *jobs);
    const imago_image **imgs = imago_xcalloc((size_t)mb, sizeof *imgs);
    uint64_t *hist_local = imago_xcalloc((size_t)mb + 1, sizeof *hist_local);

    pthread_mutex_lock(&b->mu);
    for (;;) {
        if (cancel_queued_locked(b))
            continue;
        int64_t now = imago_now_us(), next_deadline;
        shapeq *q = pick_ready_locked(b, now, &next_deadline);
        if (!q) {
            if (b->state != ST_RUNNING && !b->dq_count && !b->reserved && !b->decoding &&
                !b->queued_batch)
                break;
            if (next_deadline != INT64_MAX)
                timed_wait_until(b, next_deadline);
            else
                pthread_cond_wait(&b->forward_cv, &b->mu);
            continue;
        }
        int lim = shape_cap_locked(b, q->w, q->h);
        int n = q->count < lim ? q->count : lim;
        int qw = q->w, qh = q->h;
        for (int i = 0; i < n; i++) {
            job *j = q->head;
            q->head = j->next;
            j->next = NULL;
            jobs[i] = j;
            imgs[i] = j->img;
            j->wait_us =
                (j->t_decode_start ? j->t_decode_start - j->t_submit : 0) + (now - j->t_enqueue);
        }
        q->count -= n;
        if (!q->head)
            q->tail = NULL;
        if (!q->count)
            remove_shape_locked(b, q);
        b->queued_batch -= n;
        b->in_flight += n;
        if (b->queued_batch)
            pthread_cond_signal(&b->forward_cv); /* another thread may take the rest */
        pthread_mutex_unlock(&b->mu);

        fwd_acc acc;
        memset(&acc, 0, sizeof acc);
        acc.nomem_min = INT_MAX;
        acc.t0 = imago_now_us();
        float *out = NULL;
        imago_error aerr;
        imago_error_clear(&aerr);
        size_t count = (size_t)n * (size_t)b->dim;
        if (imago_alloc_array(count, sizeof(float), 0, (void **)&out, &aerr) == 0) {
            forward_range(b, jobs, imgs, n, out, &acc, hist_local);
        } else {
            for (int i = 0; i < n; i++) {
                jobs[i]->status = aerr.code;
                jobs[i]->batch_size = 0;
                jobs[i]->forward_us = 0;
                imago_error_clear(&jobs[i]->err);
                imago_error_set(&jobs[i]->err, aerr.code, "%s", aerr.msg);
            }
        }

        int64_t end = imago_now_us();
        pthread_mutex_lock(&b->mu);
        b->in_flight -= n;
        b->batches += acc.batches;
        b->nomem_splits += acc.splits;
        if (acc.nomem_min != INT_MAX)
            shape_cap_lower_locked(b, qw, qh, acc.nomem_min / 2);
        b->forward_us_total += acc.call_us;
        for (int k = 1; k <= mb; k++) {
            b->hist[k] += hist_local[k];
            hist_local[k] = 0;
        }
        uint64_t ok_n = 0;
        for (int i = 0; i < n; i++) {
            b->queue_us_total += jobs[i]->wait_us;
            if (jobs[i]->status == 0)
                ok_n++;
        }
        b->completed += ok_n;
        b->failed_engine += (uint64_t)n - ok_n;
        if (ok_n)
            rate_add_locked(b, end, ok_n);
        wake_if_closing_locked(b);
        pthread_mutex_unlock(&b->mu);

        for (int i = 0; i < n; i++) {
            deliver(jobs[i], b->dim, out ? out + (size_t)i * b->dim : NULL);
            job_free(jobs[i]);
            jobs[i] = NULL;
            imgs[i] = NULL;
        }
        imago_free_aligned(out);
        pthread_mutex_lock(&b->mu);
    }
    pthread_mutex_unlock(&b->mu);
    free(jobs);
    free(imgs);
    free(hist_local);
    return NULL;
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
        int rc = pthread_create(&b->threads[i], NULL, is_decode ? decode_main : forward_main, b);
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
            wake_if_closing_locked(b); /* threads may wait for reserved == 0 */
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
        wake_if_closing_locked(b); /* the others may exit now */
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
        shape_push_locked(b, j, now);
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
