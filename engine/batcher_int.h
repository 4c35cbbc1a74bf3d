/* engine-private: the batcher's state (engine/batcher.c, batcher_threads.c).
 * The DESIGN note (threads, queues, the per image state machine) is at the
 * top of batcher.c.
 *
 * Thread safety: b->mu guards every queue and counter; functions named
 * *_locked are called with it held.
 */
#ifndef IMAGO_ENGINE_BATCHER_INT_H
#define IMAGO_ENGINE_BATCHER_INT_H

#include "engine.h"

#include <pthread.h>
#include <stdint.h>

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

/* After close() started, any decrease of the counters may let a thread
 * exit: wakes them all to re-check (mu held). */
void imago_batcher_wake_if_closing_locked(imago_batcher *b);

/* Appends a decoded job to the queue of its shape and wakes the forward
 * threads (mu held). */
void imago_batcher_shape_push_locked(imago_batcher *b, job *j, int64_t now);

/* The thread bodies (arg is the batcher); they return once the batcher is
 * closing and nothing is left for them. */
void *imago_batcher_decode_main(void *arg);
void *imago_batcher_forward_main(void *arg);

#endif /* IMAGO_ENGINE_BATCHER_INT_H */
