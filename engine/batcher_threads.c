/* The batcher's threads (see the DESIGN note in batcher.c): decode threads
 * turn queued bytes into images on the shape queues; forward threads take
 * batches of one shape through the engine and make the callbacks. Also the
 * queue helpers they share with the API. Callers hold mu where noted.
 */
#include "batcher_int.h"

#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- small helpers (callers hold mu where noted) ------------------------ */

/* After close() started, any decrease of the counters may let a thread
 * exit: wake them all to re-check (mu held). */
void imago_batcher_wake_if_closing_locked(imago_batcher *b)
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
    imago_batcher_wake_if_closing_locked(b);
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
void imago_batcher_shape_push_locked(imago_batcher *b, job *j, int64_t now)
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

void *imago_batcher_decode_main(void *arg)
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
            imago_batcher_shape_push_locked(b, j, now);
            continue;
        }
        imago_batcher_wake_if_closing_locked(b); /* forward threads may wait for decoding == 0 */
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

void *imago_batcher_forward_main(void *arg)
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
        imago_batcher_wake_if_closing_locked(b);
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
