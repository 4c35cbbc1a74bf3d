/* Engine batcher logic against a fake engine (the embed_fn hook): batches by
 * size and by delay, per-shape separation, oldest first, busy rejection at
 * queue_depth with exact counts, exactly one callback per submission
 * (including on shutdown), decode errors with their codes, NOMEM split
 * retries, engine errors, results identical to unbatched, a concurrent
 * stress run (for TSan/helgrind), the stats.
 *
 * The fake engine's descriptor is a pure function of one image (size and a
 * checksum of its pixels), so any mix-up between images, batches and
 * callbacks shows up as a wrong descriptor. TAP calls stay on the main
 * thread; callbacks only record into a table under a mutex. */
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <turbojpeg.h>
#include <unistd.h>

#include "engine/engine.h"
#include "tap.h"
#include "testutil.h"

#define DIM 4
#define WAIT_S 20.0 /* generous: only reached when something is broken */

/* ---- fake engine -------------------------------------------------------- */

typedef struct fake {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int calls, images;
    int log_n;
    int log_size[4096], log_w[4096];
    int mixed;             /* calls that mixed shapes */
    int gate_w, gate_open; /* calls with images of width gate_w block until opened */
    int in_gate;           /* calls blocked in the gate now */
    int nomem_above;       /* NOMEM when n > nomem_above (0: never) */
    int nomem_always;
    int fail_w; /* IMAGO_ERR_BACKEND for calls of this width */
    int concurrent, max_concurrent;
} fake;

static fake F = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static void fake_reset(void)
{
    pthread_mutex_lock(&F.mu);
    F.calls = F.images = F.log_n = F.mixed = 0;
    F.gate_w = 0;
    F.gate_open = 1;
    F.in_gate = 0;
    F.nomem_above = F.nomem_always = F.fail_w = 0;
    F.concurrent = F.max_concurrent = 0;
    pthread_mutex_unlock(&F.mu);
}

static void describe_image(const imago_image *img, float *d)
{
    size_t n = (size_t)img->width * img->height * 3;
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++)
        sum = (sum * 31 + img->rgb[i]) % 1000003;
    d[0] = (float)img->width;
    d[1] = (float)img->height;
    d[2] = (float)sum;
    d[3] = (float)img->rgb[0];
}

static int fake_embed(void *ctx, const imago_image *const *images, int n, float *out,
                      imago_error *err)
{
    (void)ctx;
    int w = images[0]->width, h = images[0]->height;
    pthread_mutex_lock(&F.mu);
    F.concurrent++;
    if (F.concurrent > F.max_concurrent)
        F.max_concurrent = F.concurrent;
    int rc = 0;
    if (F.nomem_always || (F.nomem_above && n > F.nomem_above))
        rc = imago_error_set(err, IMAGO_ERR_NOMEM, "fake: no memory for %d images", n);
    else if (F.fail_w && w == F.fail_w)
        rc = imago_error_set(err, IMAGO_ERR_BACKEND, "fake: backend failure at width %d", w);
    if (rc == 0) {
        F.calls++;
        F.images += n;
        if (F.log_n < 4096) {
            F.log_size[F.log_n] = n;
            F.log_w[F.log_n] = w;
            F.log_n++;
        }
        for (int i = 0; i < n; i++)
            if (images[i]->width != w || images[i]->height != h)
                F.mixed++;
        if (F.gate_w && w == F.gate_w) {
            F.in_gate++;
            pthread_cond_broadcast(&F.cv);
            while (!F.gate_open)
                pthread_cond_wait(&F.cv, &F.mu);
            F.in_gate--;
        }
    }
    F.concurrent--;
    pthread_mutex_unlock(&F.mu);
    if (rc)
        return rc;
    for (int i = 0; i < n; i++)
        describe_image(images[i], out + (size_t)i * DIM);
    return 0;
}

static void gate_close(int w)
{
    pthread_mutex_lock(&F.mu);
    F.gate_w = w;
    F.gate_open = 0;
    pthread_mutex_unlock(&F.mu);
}

static void gate_open(void)
{
    pthread_mutex_lock(&F.mu);
    F.gate_open = 1;
    pthread_cond_broadcast(&F.cv);
    pthread_mutex_unlock(&F.mu);
}

static int64_t deadline_us(void)
{
    return imago_now_us() + (int64_t)(WAIT_S * 1e6);
}

/* Waits until a call is blocked in the gate; returns 0 on timeout. */
static int gate_wait_entered(void)
{
    int64_t end = deadline_us();
    int ok_ = 0;
    while (imago_now_us() < end) {
        pthread_mutex_lock(&F.mu);
        ok_ = F.in_gate > 0;
        pthread_mutex_unlock(&F.mu);
        if (ok_)
            break;
        usleep(1000);
    }
    return ok_;
}

/* ---- callback records --------------------------------------------------- */

#define MAXREC 4096

typedef struct rec {
    int calls;
    int status;
    float desc[DIM];
    float want[DIM];
    imago_batch_timings t;
    char msg[160];
} rec;

static rec R[MAXREC];
static int R_total;
static pthread_mutex_t R_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t R_cv = PTHREAD_COND_INITIALIZER;

static void recs_reset(void)
{
    pthread_mutex_lock(&R_mu);
    memset(R, 0, sizeof R);
    R_total = 0;
    pthread_mutex_unlock(&R_mu);
}

static void on_done(void *ud, int status, const char *message, const float *desc, int dim,
                    const imago_batch_timings *t)
{
    rec *r = ud;
    pthread_mutex_lock(&R_mu);
    r->calls++;
    r->status = status;
    r->t = *t;
    snprintf(r->msg, sizeof r->msg, "%s", message ? message : "(null)");
    if (desc && dim == DIM)
        memcpy(r->desc, desc, sizeof r->desc);
    else if (desc)
        r->status = 12345; /* wrong dim: make the check fail */
    R_total++;
    pthread_cond_broadcast(&R_cv);
    pthread_mutex_unlock(&R_mu);
}

/* Waits until at least n callbacks arrived (or the timeout); returns the count. */
static int wait_total(int n)
{
    int64_t end = deadline_us();
    pthread_mutex_lock(&R_mu);
    while (R_total < n && imago_now_us() < end) {
        pthread_mutex_unlock(&R_mu);
        usleep(500);
        pthread_mutex_lock(&R_mu);
    }
    int t = R_total;
    pthread_mutex_unlock(&R_mu);
    return t;
}

static int total_now(void)
{
    pthread_mutex_lock(&R_mu);
    int t = R_total;
    pthread_mutex_unlock(&R_mu);
    return t;
}

/* Checks recs [from, to): one call each, status want, and for status 0 the
 * descriptor of its own image. */
static void check_recs(int from, int to, int want_status, const char *what)
{
    int calls_ok = 1, status_ok = 1, desc_ok = 1;
    pthread_mutex_lock(&R_mu);
    for (int i = from; i < to; i++) {
        if (R[i].calls != 1) {
            calls_ok = 0;
            tap_diag("  rec %d: %d callbacks", i, R[i].calls);
        }
        if (R[i].status != want_status) {
            status_ok = 0;
            tap_diag("  rec %d: status %d (%s)", i, R[i].status, R[i].msg);
        }
        if (want_status == 0 && memcmp(R[i].desc, R[i].want, sizeof R[i].desc) != 0) {
            desc_ok = 0;
            tap_diag("  rec %d: descriptor %g %g %g %g, want %g %g %g %g", i, R[i].desc[0],
                     R[i].desc[1], R[i].desc[2], R[i].desc[3], R[i].want[0], R[i].want[1],
                     R[i].want[2], R[i].want[3]);
        }
    }
    pthread_mutex_unlock(&R_mu);
    ok(calls_ok, "%s: exactly one callback each", what);
    ok(status_ok, "%s: status %s", what, want_status ? imago_error_name(want_status) : "ok");
    if (want_status == 0)
        ok(desc_ok, "%s: each descriptor is its own image's (= unbatched result)", what);
}

/* ---- images ------------------------------------------------------------- */

static uint32_t rng = 12345;
static uint32_t rnd(void)
{
    rng = rng * 1664525u + 1013904223u;
    return rng >> 8;
}

static imago_image *make_image(int w, int h, uint32_t seed)
{
    imago_image *img = NULL;
    if (imago_image_new(w, h, &img, NULL))
        tap_bail("imago_image_new");
    uint32_t s = seed * 2654435761u + 1;
    for (size_t i = 0; i < (size_t)w * h * 3; i++) {
        s = s * 1664525u + 1013904223u;
        img->rgb[i] = (uint8_t)(s >> 24);
    }
    return img;
}

/* Submits a fresh image of w x h as record idx (want = its descriptor). */
static int submit_img(imago_batcher *b, int idx, int w, int h, imago_error *err)
{
    imago_image *img = make_image(w, h, (uint32_t)idx + 1000u * (uint32_t)w);
    describe_image(img, R[idx].want);
    int rc = imago_batcher_submit_image(b, img, on_done, &R[idx], err);
    if (rc)
        imago_image_free(img);
    return rc;
}

/* A baseline JPEG of w x h (smooth content so it survives compression). */
static unsigned char *make_jpeg(int w, int h, uint32_t seed, unsigned long *len)
{
    unsigned char *rgb = malloc((size_t)w * h * 3);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++)
                rgb[((size_t)y * w + x) * 3 + c] =
                    (unsigned char)((x * (c + 1) * 3 + y * 5 + (int)(seed * 37u) % 251) & 255);
    tjhandle tj = tjInitCompress();
    unsigned char *jpeg = NULL;
    if (!tj || tjCompress2(tj, rgb, w, 0, h, TJPF_RGB, &jpeg, len, TJSAMP_444, 90, 0))
        tap_bail("tjCompress2");
    tjDestroy(tj);
    free(rgb);
    return jpeg;
}

static imago_batcher *new_batcher(int max_batch, int64_t delay_us, int depth, int dec, int fwd)
{
    imago_batcher_params p = imago_batcher_params_default();
    p.max_batch = max_batch;
    p.max_delay_us = delay_us;
    p.queue_depth = depth;
    p.decode_threads = dec;
    p.forward_threads = fwd;
    p.embed_fn = fake_embed;
    p.dim = DIM;
    p.max_side = 64;
    imago_batcher *b = NULL;
    imago_error err;
    imago_error_clear(&err);
    if (imago_batcher_new(NULL, &p, &b, &err)) {
        tap_diag("imago_batcher_new: %s", err.msg);
        tap_bail("cannot create a batcher");
    }
    return b;
}

static void begin(void)
{
    fake_reset();
    recs_reset();
}

/* ---- tests -------------------------------------------------------------- */

static void test_params(void)
{
    imago_batcher_params p = imago_batcher_params_default();
    is_int(p.forward_threads, 1, "default forward_threads 1");
    is_int(p.max_batch, 8, "default max_batch 8");
    imago_batcher *b = NULL;
    imago_error err;
    imago_error_clear(&err);
    is_int(imago_batcher_new(NULL, &p, &b, &err), IMAGO_ERR_INVALID, "no engine, no embed_fn");
    p.embed_fn = fake_embed;
    imago_error_clear(&err);
    is_int(imago_batcher_new(NULL, &p, &b, &err), IMAGO_ERR_INVALID, "embed_fn without dim");
    p.dim = DIM;
    p.max_side = 64;
    p.max_batch = 0;
    imago_error_clear(&err);
    is_int(imago_batcher_new(NULL, &p, &b, &err), IMAGO_ERR_INVALID, "max_batch 0");
    p.max_batch = IMAGO_BATCHER_MAX_BATCH + 1;
    imago_error_clear(&err);
    is_int(imago_batcher_new(NULL, &p, &b, &err), IMAGO_ERR_INVALID, "max_batch over the cap");
    p.max_batch = 4;
    p.queue_depth = 0;
    imago_error_clear(&err);
    is_int(imago_batcher_new(NULL, &p, &b, &err), IMAGO_ERR_INVALID, "queue_depth 0");
    p.queue_depth = 8;
    p.max_delay_us = -1;
    imago_error_clear(&err);
    is_int(imago_batcher_new(NULL, &p, &b, &err), IMAGO_ERR_INVALID, "negative max_delay_us");
    ok(b == NULL, "no batcher on error");
    p.max_delay_us = 100;
    imago_error_clear(&err);
    is_int(imago_batcher_new(NULL, &p, &b, &err), 0, "valid params");
    is_int(imago_batcher_dim(b), DIM, "dim from params");
    imago_decode_params dp;
    imago_batcher_decode_params(b, &dp);
    is_int(dp.max_side, 64, "decode max_side from params");
    imago_error_clear(&err);
    is_int(imago_batcher_set_max_delay(b, -5, &err), IMAGO_ERR_INVALID, "set_max_delay -5");
    is_int(imago_batcher_set_max_delay(b, 50, NULL), 0, "set_max_delay 50");
    is_int(imago_batcher_submit_image(b, NULL, on_done, NULL, NULL), IMAGO_ERR_INVALID,
           "submit_image NULL");
    imago_image *big = make_image(65, 10, 1);
    imago_error_clear(&err);
    is_int(imago_batcher_submit_image(b, big, on_done, NULL, &err), IMAGO_ERR_INVALID,
           "submit_image over max_side 64 refused");
    ok(strstr(err.msg, "max_side") != NULL, "message \"%s\"", err.msg);
    imago_image_free(big);
    is_int(imago_batcher_submit(b, NULL, 5, IMAGO_BATCHER_COPY, NULL, on_done, NULL, NULL),
           IMAGO_ERR_INVALID, "submit NULL bytes");
    is_int(imago_batcher_submit(b, "x", 1, IMAGO_BATCHER_COPY, NULL, NULL, NULL, NULL),
           IMAGO_ERR_INVALID, "submit without callback");
    imago_batcher_free(b);
    imago_batcher_free(NULL);
}

/* Full batches form without waiting: max_delay is 60 s. */
static void test_batch_by_size(void)
{
    begin();
    imago_batcher *b = new_batcher(4, 60000000, 64, 1, 1);
    int rc = 0;
    for (int i = 0; i < 8; i++)
        rc |= submit_img(b, i, 32, 24, NULL);
    is_int(rc, 0, "size: 8 submissions accepted");
    is_int(wait_total(8), 8, "size: 8 callbacks without waiting for max_delay");
    check_recs(0, 8, 0, "size");
    imago_batcher_stats st;
    imago_batcher_stats_get(b, &st);
    is_int(st.batches, 2, "size: 2 engine calls");
    is_int(st.batch_hist[4], 2, "size: histogram[4] = 2");
    is_int(st.completed, 8, "size: completed 8");
    is_int(st.submitted, 8, "size: submitted 8");
    int bs_ok = 1;
    for (int i = 0; i < 8; i++)
        bs_ok &= R[i].t.batch_size == 4 && R[i].t.decode_us == 0;
    ok(bs_ok, "size: timings say batch_size 4, no decode");
    imago_batcher_free(b);
    is_int(total_now(), 8, "size: no extra callbacks at free");
}

/* A partial batch goes when its oldest image waited max_delay_us. */
static void test_batch_by_delay(void)
{
    begin();
    imago_batcher *b = new_batcher(8, 50000, 64, 1, 1);
    submit_img(b, 0, 20, 10, NULL);
    is_int(wait_total(1), 1, "delay: a lone image is delivered");
    check_recs(0, 1, 0, "delay lone");
    is_int(R[0].t.batch_size, 1, "delay: batch of 1");
    ok(R[0].t.queue_us >= 50000, "delay: it waited at least max_delay_us (%lld us)",
       (long long)R[0].t.queue_us);

    /* Hold the forward thread in a gated call, queue 3 of one shape: when the
     * gate opens they leave together as one batch of 3 (< max_batch). */
    gate_close(7);
    submit_img(b, 1, 7, 7, NULL);
    ok(gate_wait_entered(), "delay: forward thread held by the gate");
    for (int i = 2; i < 5; i++)
        submit_img(b, i, 20, 10, NULL);
    usleep(60000); /* past the deadline; the result does not depend on it */
    gate_open();
    is_int(wait_total(5), 5, "delay: all 5 delivered");
    check_recs(0, 5, 0, "delay");
    is_int(R[2].t.batch_size, 3, "delay: the three left as one batch");
    imago_batcher_stats st;
    imago_batcher_stats_get(b, &st);
    is_int(st.batch_hist[1], 2, "delay: histogram[1] = 2");
    is_int(st.batch_hist[3], 1, "delay: histogram[3] = 1");
    imago_batcher_free(b);
}

/* Shapes never mix; the oldest ready queue goes first; drain sends partials. */
static void test_shapes_oldest_first(void)
{
    begin();
    imago_batcher *b = new_batcher(2, 60000000, 64, 1, 1);
    gate_close(9);
    submit_img(b, 0, 9, 9, NULL);
    submit_img(b, 1, 9, 9, NULL);
    ok(gate_wait_entered(), "shapes: forward thread held by the gate");
    /* B is older than A; both become full */
    submit_img(b, 2, 11, 5, NULL); /* B */
    submit_img(b, 3, 5, 11, NULL); /* A: same pixel count, other shape */
    submit_img(b, 4, 11, 5, NULL); /* B full */
    submit_img(b, 5, 5, 11, NULL); /* A full */
    submit_img(b, 6, 5, 11, NULL); /* A partial: only drain sends it */
    imago_batcher_stats st;
    imago_batcher_stats_get(b, &st);
    is_int(st.shapes, 2, "shapes: two shape queues (5x11 and 11x5)");
    is_int(st.queued_batch, 5, "shapes: 5 waiting in shape queues");
    is_int(st.in_flight, 2, "shapes: 2 in the forward pass");
    gate_open();
    is_int(wait_total(6), 6, "shapes: the two full batches delivered");
    usleep(20000);
    is_int(total_now(), 6, "shapes: the partial batch still waits (max_delay 60 s)");
    imago_batcher_close(b, 1);
    is_int(total_now(), 7, "shapes: close(drain) delivered the partial batch");
    check_recs(0, 7, 0, "shapes");
    pthread_mutex_lock(&F.mu);
    int mixed = F.mixed, n = F.log_n;
    int order_ok = n == 4 && F.log_w[0] == 9 && F.log_w[1] == 11 && F.log_w[2] == 5 &&
                   F.log_w[3] == 5 && F.log_size[3] == 1;
    pthread_mutex_unlock(&F.mu);
    is_int(mixed, 0, "shapes: no engine call mixed shapes");
    ok(order_ok, "shapes: order gate, B (older), A, then A's partial at drain");
    is_int(imago_batcher_submit_image(b, NULL, on_done, NULL, NULL), IMAGO_ERR_INVALID,
           "closed: bad args still INVALID");
    imago_image *img = make_image(4, 4, 1);
    imago_error err;
    imago_error_clear(&err);
    is_int(imago_batcher_submit_image(b, img, on_done, &R[100], &err), IMAGO_ERR_NOT_READY,
           "closed: submit refused with NOT_READY");
    imago_image_free(img); /* still ours */
    imago_batcher_free(b);
    is_int(total_now(), 7, "shapes: no callback for refused work");
}

/* queue_depth bounds the waiting images; BUSY is immediate and counted. */
static void test_busy(void)
{
    begin();
    imago_batcher *b = new_batcher(2, 60000000, 4, 1, 1);
    gate_close(3);
    submit_img(b, 0, 3, 3, NULL);
    submit_img(b, 1, 3, 3, NULL);
    ok(gate_wait_entered(), "busy: forward thread held");
    int rc = 0;
    for (int i = 2; i < 6; i++)
        rc |= submit_img(b, i, 8, 8, NULL);
    is_int(rc, 0, "busy: 4 waiting images accepted (queue_depth 4)");
    imago_error err;
    imago_error_clear(&err);
    is_int(submit_img(b, 6, 8, 8, &err), IMAGO_ERR_BUSY, "busy: the 5th waiting image refused");
    ok(strstr(err.msg, "full") != NULL, "busy: message \"%s\"", err.msg);
    unsigned long jl;
    unsigned char *jpeg = make_jpeg(16, 16, 1, &jl);
    is_int(imago_batcher_submit(b, jpeg, jl, IMAGO_BATCHER_COPY, NULL, on_done, &R[7], NULL),
           IMAGO_ERR_BUSY, "busy: encoded submission refused too");
    unsigned char *owned = malloc(jl);
    memcpy(owned, jpeg, jl);
    tjFree(jpeg);
    is_int(imago_batcher_submit(b, owned, jl, IMAGO_BATCHER_TAKE, NULL, on_done, &R[7], NULL),
           IMAGO_ERR_BUSY, "busy: TAKE refused, bytes stay the caller's");
    imago_batcher_stats st;
    imago_batcher_stats_get(b, &st);
    is_int(st.queued, 4, "busy: queued 4");
    is_int(st.in_flight, 2, "busy: in flight 2");
    is_int(st.rejected_busy, 3, "busy: rejected_busy 3");
    is_int(st.submitted, 6, "busy: submitted 6");
    gate_open();
    is_int(wait_total(6), 6, "busy: the 6 accepted are delivered");
    check_recs(0, 6, 0, "busy");
    is_int(R[6].calls + R[7].calls, 0, "busy: no callback for refused ones");
    /* room again; a lone image now goes at once */
    is_int(imago_batcher_set_max_delay(b, 0, NULL), 0, "busy: max_delay set to 0");
    is_int(imago_batcher_submit(b, owned, jl, IMAGO_BATCHER_TAKE, NULL, on_done, &R[7], NULL), 0,
           "busy: accepted again once the queue drained (TAKE: batcher frees it)");
    is_int(wait_total(7), 7, "busy: delivered");
    is_int(R[7].status, 0, "busy: decoded and embedded");
    is_int((int)R[7].desc[0], 16, "busy: descriptor of the 16x16 JPEG");
    imago_batcher_free(b);
}

typedef struct closer {
    imago_batcher *b;
    int drain;
} closer;

static void *close_thread(void *arg)
{
    closer *c = arg;
    imago_batcher_close(c->b, c->drain);
    return NULL;
}

/* close(drain = 0): waiting images are cancelled at once even while the
 * forward thread is busy; the running batch still completes. */
static void test_cancel(void)
{
    begin();
    imago_batcher *b = new_batcher(2, 60000000, 64, 2, 1);
    gate_close(3);
    submit_img(b, 0, 3, 3, NULL);
    submit_img(b, 1, 3, 3, NULL);
    ok(gate_wait_entered(), "cancel: forward thread held");
    for (int i = 2; i < 5; i++)
        submit_img(b, i, 8, 8, NULL);
    unsigned long jl;
    unsigned char *jpeg = make_jpeg(24, 16, 2, &jl);
    imago_batcher_submit(b, jpeg, jl, IMAGO_BATCHER_COPY, NULL, on_done, &R[5], NULL);
    tjFree(jpeg);
    closer c = {b, 0};
    pthread_t th;
    pthread_create(&th, NULL, close_thread, &c);
    is_int(wait_total(4), 4, "cancel: 4 waiting images called back during close");
    check_recs(2, 6, IMAGO_ERR_CANCELLED, "cancel");
    is_int(R[0].calls + R[1].calls, 0, "cancel: the running batch is not cancelled");
    gate_open();
    pthread_join(th, NULL);
    is_int(total_now(), 6, "cancel: 6 callbacks in all after close");
    check_recs(0, 2, 0, "cancel: running batch");
    imago_batcher_stats st;
    imago_batcher_stats_get(b, &st);
    is_int(st.cancelled, 4, "cancel: stats cancelled 4");
    is_int(st.completed, 2, "cancel: stats completed 2");
    is_int(st.failed, 4, "cancel: stats failed 4");
    is_int(st.queued + st.in_flight, 0, "cancel: nothing left");
    imago_batcher_free(b);
    is_int(total_now(), 6, "cancel: free adds nothing");

    /* free() with work queued: cancelled, exactly once */
    begin();
    b = new_batcher(4, 60000000, 64, 1, 1);
    for (int i = 0; i < 3; i++)
        submit_img(b, i, 8, 8, NULL);
    imago_batcher_free(b);
    is_int(total_now(), 3, "free: 3 callbacks");
    check_recs(0, 3, IMAGO_ERR_CANCELLED, "free");
}

/* Decode errors reach the callback with their codes; the engine never sees
 * them. Encoded submissions: COPY and TAKE, box, limits. */
static void test_decode(void)
{
    begin();
    imago_batcher *b = new_batcher(4, 1000, 64, 2, 1);
    size_t n_corrupt, n_huge, n_text;
    unsigned char *corrupt = testutil_read_fixture("img_corrupt.jpg", &n_corrupt);
    unsigned char *huge = testutil_read_fixture("img_huge.jpg", &n_huge);
    unsigned char *text = testutil_read_fixture("img_text.txt", &n_text);
    unsigned long jl;
    unsigned char *jpeg = make_jpeg(48, 32, 3, &jl);
    imago_decode_params dp;
    imago_batcher_decode_params(b, &dp);

    /* expected descriptors: decode in the test with the batcher's params */
    imago_image *img = NULL;
    if (imago_image_decode(jpeg, jl, &dp, &img, NULL))
        tap_bail("decode");
    describe_image(img, R[0].want);
    imago_image_free(img);
    imago_decode_params box = dp;
    box.has_box = 1;
    box.box[0] = 4;
    box.box[1] = 2;
    box.box[2] = 28;
    box.box[3] = 20;
    if (imago_image_decode(jpeg, jl, &box, &img, NULL))
        tap_bail("decode box");
    describe_image(img, R[1].want);
    imago_image_free(img);

    int rc = 0;
    rc |= imago_batcher_submit(b, jpeg, jl, IMAGO_BATCHER_COPY, NULL, on_done, &R[0], NULL);
    rc |= imago_batcher_submit(b, jpeg, jl, IMAGO_BATCHER_COPY, &box, on_done, &R[1], NULL);
    rc |=
        imago_batcher_submit(b, corrupt, n_corrupt, IMAGO_BATCHER_COPY, NULL, on_done, &R[2], NULL);
    imago_decode_params small = imago_decode_params_default();
    small.max_pixels = 10000; /* tighter than the batcher's */
    rc |= imago_batcher_submit(b, huge, n_huge, IMAGO_BATCHER_COPY, &small, on_done, &R[3], NULL);
    imago_decode_params bad = dp;
    bad.has_box = 1;
    bad.box[0] = 30;
    bad.box[1] = 2;
    bad.box[2] = 10; /* x2 < x1 */
    bad.box[3] = 20;
    rc |= imago_batcher_submit(b, jpeg, jl, IMAGO_BATCHER_COPY, &bad, on_done, &R[4], NULL);
    rc |= imago_batcher_submit(b, text, n_text, IMAGO_BATCHER_TAKE, NULL, on_done, &R[5], NULL);
    rc |= imago_batcher_submit(b, "", 0, IMAGO_BATCHER_COPY, NULL, on_done, &R[6], NULL);
    is_int(rc, 0, "decode: 7 submissions accepted");
    imago_error err;
    imago_error_clear(&err);
    imago_decode_params tiny = imago_decode_params_default();
    tiny.max_bytes = 100;
    is_int(imago_batcher_submit(b, jpeg, jl, IMAGO_BATCHER_COPY, &tiny, on_done, &R[7], &err),
           IMAGO_ERR_TOO_LARGE, "decode: over max_bytes refused at submit");
    is_int(wait_total(7), 7, "decode: 7 callbacks");
    check_recs(0, 2, 0, "decode ok (plain, box)");
    ok(R[1].desc[0] == 24 && R[1].desc[1] == 18, "decode: box crop gives 24x18 (%gx%g)",
       R[1].desc[0], R[1].desc[1]);
    check_recs(2, 3, IMAGO_ERR_FORMAT, "corrupt JPEG");
    check_recs(3, 4, IMAGO_ERR_TOO_LARGE, "declared pixels over the request's max_pixels");
    check_recs(4, 5, IMAGO_ERR_INVALID, "bad box");
    check_recs(5, 6, IMAGO_ERR_FORMAT, "text file");
    check_recs(6, 7, IMAGO_ERR_FORMAT, "zero bytes");
    ok(R[2].msg[0] && R[3].msg[0] && R[4].msg[0], "decode: messages \"%s\" / \"%s\"", R[2].msg,
       R[3].msg);
    ok(R[2].t.batch_size == 0 && R[2].t.decode_us >= 0, "decode: no batch for a failed decode");
    ok(R[0].t.decode_us > 0, "decode: decode time measured (%lld us)", (long long)R[0].t.decode_us);
    pthread_mutex_lock(&F.mu);
    int images = F.images;
    pthread_mutex_unlock(&F.mu);
    is_int(images, 2, "decode: the engine saw only the 2 good images");
    imago_batcher_stats st;
    imago_batcher_stats_get(b, &st);
    is_int(st.failed_decode, 5, "decode: stats failed_decode 5");
    is_int(st.completed, 2, "decode: stats completed 2");

    /* synchronous convenience */
    float d[DIM];
    imago_batch_timings t;
    imago_error_clear(&err);
    is_int(imago_batcher_embed_sync(b, jpeg, jl, NULL, d, &t, &err), 0, "sync: ok (%s)", err.msg);
    ok(memcmp(d, R[0].want, sizeof d) == 0, "sync: same descriptor as the async path");
    imago_error_clear(&err);
    is_int(imago_batcher_embed_sync(b, corrupt, n_corrupt, NULL, d, NULL, &err), IMAGO_ERR_FORMAT,
           "sync: corrupt -> FORMAT");
    ok(err.code == IMAGO_ERR_FORMAT && err.msg[0], "sync: message \"%s\"", err.msg);
    imago_batcher_free(b);
    free(corrupt);
    free(huge);
    tjFree(jpeg);
}

/* NOMEM: halves are retried down to the size that fits, and the shape keeps
 * that size from then on; at 1 it fails. */
static void test_nomem(void)
{
    begin();
    imago_batcher *b = new_batcher(8, 60000000, 64, 1, 1);
    F.nomem_above = 2;
    for (int i = 0; i < 8; i++)
        submit_img(b, i, 16, 12, NULL);
    is_int(wait_total(8), 8, "nomem: 8 delivered");
    check_recs(0, 8, 0, "nomem split");
    imago_batcher_stats st;
    imago_batcher_stats_get(b, &st);
    is_int(st.nomem_splits, 3, "nomem: 3 splits (8 -> 4+4 -> 2+2+2+2)");
    is_int(st.batch_hist[2], 4, "nomem: 4 calls of 2");
    is_int(st.batch_hist[8], 0, "nomem: no call of 8 succeeded");
    is_int(R[5].t.batch_size, 2, "nomem: timings batch_size 2");

    /* the same shape again: batches of 2 straight away, no more splits */
    for (int i = 8; i < 16; i++)
        submit_img(b, i, 16, 12, NULL);
    is_int(wait_total(16), 16, "nomem remembered: 8 more delivered");
    check_recs(8, 16, 0, "nomem remembered");
    imago_batcher_stats_get(b, &st);
    is_int(st.nomem_splits, 3, "nomem remembered: no new splits");
    is_int(st.batch_hist[2], 8, "nomem remembered: 4 more calls of 2");
    /* another shape is not limited */
    pthread_mutex_lock(&F.mu);
    F.nomem_above = 0;
    pthread_mutex_unlock(&F.mu);
    for (int i = 16; i < 24; i++)
        submit_img(b, i, 20, 12, NULL);
    is_int(wait_total(24), 24, "other shape: 8 delivered");
    imago_batcher_stats_get(b, &st);
    is_int(st.batch_hist[8], 1, "other shape: one call of 8");

    pthread_mutex_lock(&F.mu);
    F.nomem_above = 0;
    F.nomem_always = 1;
    pthread_mutex_unlock(&F.mu);
    for (int i = 24; i < 32; i++)
        submit_img(b, i, 16, 12, NULL);
    is_int(wait_total(32), 32, "nomem always: delivered");
    check_recs(24, 32, IMAGO_ERR_NOMEM, "nomem always");
    imago_batcher_stats_get(b, &st);
    is_int(st.nomem_splits, 3 + 1,
           "nomem always: the first batch of 2 splits, then the shape runs one at a time");
    is_int(st.batch_hist[1], 0, "nomem always: no call of 1 succeeded");
    is_int(st.failed_engine, 8, "nomem always: failed_engine 8");
    imago_batcher_free(b);
}

/* An engine error fails that batch only. */
static void test_engine_error(void)
{
    begin();
    imago_batcher *b = new_batcher(2, 60000000, 64, 1, 1);
    F.fail_w = 13;
    submit_img(b, 0, 13, 8, NULL);
    submit_img(b, 1, 13, 8, NULL);
    submit_img(b, 2, 14, 8, NULL);
    submit_img(b, 3, 14, 8, NULL);
    is_int(wait_total(4), 4, "engine error: 4 delivered");
    check_recs(0, 2, IMAGO_ERR_BACKEND, "engine error batch");
    check_recs(2, 4, 0, "the other batch");
    ok(strstr(R[0].msg, "width 13") != NULL, "engine error: the engine's message \"%s\"", R[0].msg);
    imago_batcher_stats st;
    imago_batcher_stats_get(b, &st);
    is_int(st.failed_engine, 2, "engine error: failed_engine 2");
    is_int(st.completed, 2, "engine error: completed 2");
    imago_batcher_free(b);
}

/* Many submitting threads, both submission kinds, BUSY retries, 2 forward
 * and 2 decode threads: every accepted image exactly once, right result. */
#define STRESS_THREADS 4
#define STRESS_PER 150

static unsigned char *stress_jpeg[3];
static unsigned long stress_jpeg_len[3];
static float stress_jpeg_want[3][DIM];
static const int stress_w[3] = {40, 32, 40}, stress_h[3] = {30, 32, 30};

typedef struct stress_arg {
    imago_batcher *b;
    int first;
    int busy;
} stress_arg;

static void *stress_thread(void *arg)
{
    stress_arg *a = arg;
    uint32_t s = (uint32_t)a->first * 7919u + 1;
    for (int k = 0; k < STRESS_PER; k++) {
        int idx = a->first + k;
        s = s * 1664525u + 1013904223u;
        int kind = (int)((s >> 16) % 4);
        for (;;) {
            int rc;
            if (kind < 3) { /* encoded */
                memcpy(R[idx].want, stress_jpeg_want[kind], sizeof R[idx].want);
                rc = imago_batcher_submit(a->b, stress_jpeg[kind], stress_jpeg_len[kind],
                                          IMAGO_BATCHER_COPY, NULL, on_done, &R[idx], NULL);
            } else {
                imago_image *img = make_image(12 + (int)(s >> 28) % 2, 10, (uint32_t)idx);
                describe_image(img, R[idx].want);
                rc = imago_batcher_submit_image(a->b, img, on_done, &R[idx], NULL);
                if (rc)
                    imago_image_free(img);
            }
            if (rc == 0)
                break;
            if (rc != IMAGO_ERR_BUSY)
                return NULL;
            a->busy++;
            usleep(200);
        }
    }
    return NULL;
}

static void test_stress(void)
{
    begin();
    imago_batcher *b = new_batcher(4, 1000, 16, 2, 2);
    imago_decode_params dp;
    imago_batcher_decode_params(b, &dp);
    for (int i = 0; i < 3; i++) {
        stress_jpeg[i] =
            make_jpeg(stress_w[i], stress_h[i], 10u + (uint32_t)i, &stress_jpeg_len[i]);
        imago_image *img = NULL;
        if (imago_image_decode(stress_jpeg[i], stress_jpeg_len[i], &dp, &img, NULL))
            tap_bail("decode");
        describe_image(img, stress_jpeg_want[i]);
        imago_image_free(img);
    }
    pthread_t th[STRESS_THREADS];
    stress_arg args[STRESS_THREADS];
    for (int t = 0; t < STRESS_THREADS; t++) {
        args[t] = (stress_arg){b, t * STRESS_PER, 0};
        pthread_create(&th[t], NULL, stress_thread, &args[t]);
    }
    /* stats snapshots while it runs must stay consistent */
    int snap_ok = 1;
    for (int i = 0; i < 50; i++) {
        imago_batcher_stats st;
        imago_batcher_stats_get(b, &st);
        if (st.queued > st.queue_depth || st.in_flight > 2 * 4 ||
            st.completed + st.failed > st.submitted)
            snap_ok = 0;
        usleep(1000);
    }
    int busy = 0;
    for (int t = 0; t < STRESS_THREADS; t++) {
        pthread_join(th[t], NULL);
        busy += args[t].busy;
    }
    const int N = STRESS_THREADS * STRESS_PER;
    is_int(wait_total(N), N, "stress: %d callbacks", N);
    check_recs(0, N, 0, "stress");
    ok(snap_ok, "stress: snapshots within bounds while running");
    imago_batcher_stats st;
    imago_batcher_stats_get(b, &st);
    is_int(st.submitted, N, "stress: submitted");
    is_int(st.completed, N, "stress: completed");
    is_int(st.rejected_busy, busy, "stress: rejected_busy = the BUSY returns seen (%d)", busy);
    uint64_t hist_images = 0, hist_calls = 0;
    for (int k = 1; k <= st.max_batch; k++) {
        hist_images += (uint64_t)k * st.batch_hist[k];
        hist_calls += st.batch_hist[k];
    }
    is_int(hist_images, N, "stress: histogram accounts for every image");
    is_int(hist_calls, st.batches, "stress: histogram sums to the batch count");
    ok(st.images_per_s > 0 && st.window_s > 0 && st.window_s <= 10.0,
       "stress: rate %.1f images/s over %.2f s", st.images_per_s, st.window_s);
    ok(st.forward_s_total >= 0 && st.queue_s_total > 0 && st.decode_s_total > 0,
       "stress: cumulative times (queue %.3f s, forward %.3f s, decode %.3f s)", st.queue_s_total,
       st.forward_s_total, st.decode_s_total);
    pthread_mutex_lock(&F.mu);
    int mixed = F.mixed, maxc = F.max_concurrent;
    pthread_mutex_unlock(&F.mu);
    is_int(mixed, 0, "stress: no engine call mixed shapes");
    ok(maxc >= 1 && maxc <= 2, "stress: at most 2 concurrent engine calls (%d)", maxc);
    imago_batcher_free(b);
    for (int i = 0; i < 3; i++)
        tjFree(stress_jpeg[i]);
}

/* A callback may submit more work (the job runner streams that way). */
static imago_batcher *chain_b;
static int chain_left;
static void on_chain(void *ud, int status, const char *message, const float *desc, int dim,
                     const imago_batch_timings *t)
{
    on_done(ud, status, message, desc, dim, t);
    rec *r = ud;
    int idx = (int)(r - R);
    if (idx + 1 < chain_left) {
        imago_image *img = make_image(6, 6, (uint32_t)idx + 1);
        describe_image(img, R[idx + 1].want);
        if (imago_batcher_submit_image(chain_b, img, on_chain, &R[idx + 1], NULL))
            imago_image_free(img);
    }
}

static void test_chain(void)
{
    begin();
    chain_b = new_batcher(4, 0, 8, 1, 1);
    chain_left = 20;
    imago_image *img = make_image(6, 6, 0);
    describe_image(img, R[0].want);
    imago_batcher_submit_image(chain_b, img, on_chain, &R[0], NULL);
    is_int(wait_total(20), 20, "chain: 20 images submitted from callbacks");
    check_recs(0, 20, 0, "chain");
    imago_batcher_free(chain_b);
}

int main(void)
{
    (void)rnd;
    test_params();
    test_batch_by_size();
    test_batch_by_delay();
    test_shapes_oldest_first();
    test_busy();
    test_cancel();
    test_decode();
    test_nomem();
    test_engine_error();
    test_stress();
    test_chain();
    return tap_done();
}
