/* Engine batcher on the real engine (demo resnet50-gem, max_side 64, oneDNN
 * fp32): descriptors computed in batches equal the batch-1 descriptors of
 * imago_engine_embed (cosine >= 0.99999), for encoded submissions and
 * decoded ones, and imago_batcher_embed_sync agrees. Real photos from
 * $IMAGO_SHARED/data/photos; each photo also goes in mirrored (same shape,
 * other content) so that every shape queue forms batches. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/engine.h"
#include "tap.h"
#include "testutil.h"

static const char *photos[] = {
    "apple.jpg", "baboon.jpg",           "aero1.jpg",           "aero3.jpg", "aloeL.jpg",
    "aloeR.jpg", "Blender_Suzanne1.jpg", "Blender_Suzanne2.jpg"};
#define NP ((int)(sizeof photos / sizeof photos[0]))
#define N (2 * NP)

typedef struct result {
    int calls, status, batch_size;
    float *desc;
} result;

static result res[N];
static int total;
static int dim;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;

static void on_done(void *ud, int status, const char *message, const float *desc, int d,
                    const imago_batch_timings *t)
{
    result *r = ud;
    pthread_mutex_lock(&mu);
    r->calls++;
    r->status = status;
    r->batch_size = t->batch_size;
    if (status == 0 && d == dim)
        memcpy(r->desc, desc, (size_t)d * sizeof(float));
    else if (status)
        tap_diag("callback error %d: %s", status, message);
    total++;
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&mu);
}

static imago_image *mirror(const imago_image *src)
{
    imago_image *m = NULL;
    if (imago_image_new(src->width, src->height, &m, NULL))
        tap_bail("imago_image_new");
    for (int y = 0; y < src->height; y++)
        for (int x = 0; x < src->width; x++)
            memcpy(m->rgb + ((size_t)y * src->width + x) * 3,
                   src->rgb + ((size_t)y * src->width + (src->width - 1 - x)) * 3, 3);
    return m;
}

int main(void)
{
    const char *shared = getenv("IMAGO_SHARED");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/data/photos", shared ? shared : "../shared");
    unsigned char *bytes[NP];
    size_t lens[NP];
    for (int i = 0; i < NP; i++) {
        char path[4400];
        snprintf(path, sizeof path, "%s/%s", dir, photos[i]);
        bytes[i] = (unsigned char *)testutil_read_file(path, &lens[i]);
        if (!bytes[i])
            tap_skip_all("the real photos are not available ($IMAGO_SHARED/data/photos)");
    }

    imago_engine_params ep = imago_engine_params_default();
    ep.demo_arch = "resnet50-gem";
    ep.max_side = 64;
    ep.threads = 2;
    imago_engine *e = NULL;
    imago_error err;
    imago_error_clear(&err);
    int rc = imago_engine_open(&ep, &e, &err);
    if (rc) {
        tap_diag("imago_engine_open: %s", err.msg);
        tap_bail("cannot open the demo engine");
    }
    imago_model_info info;
    imago_engine_describe(e, &info);
    dim = info.dim;
    ok(dim > 0 && info.max_side == 64, "engine: dim %d, max_side %d", dim, info.max_side);

    imago_batcher_params bp = imago_batcher_params_default();
    bp.max_batch = 4;
    bp.max_delay_us = 60000000; /* only full batches, the rest at close(drain) */
    bp.decode_threads = 2;
    imago_batcher *b = NULL;
    imago_error_clear(&err);
    is_int(imago_batcher_new(e, &bp, &b, &err), 0, "batcher on the real engine (%s)", err.msg);
    if (!b)
        return tap_done();
    is_int(imago_batcher_dim(b), dim, "batcher dim = engine dim");
    imago_decode_params dp;
    imago_batcher_decode_params(b, &dp);
    is_int(dp.max_side, 64, "batcher max_side from the engine");

    /* reference: batch-1 engine calls on the same decoded images */
    imago_image *img[N];
    float *ref = malloc((size_t)N * dim * sizeof(float));
    for (int i = 0; i < NP; i++) {
        imago_error_clear(&err);
        if (imago_image_decode(bytes[i], lens[i], &dp, &img[i], &err)) {
            tap_diag("%s: %s", photos[i], err.msg);
            tap_bail("decode");
        }
        img[NP + i] = mirror(img[i]);
    }
    int ref_ok = 1;
    for (int i = 0; i < N; i++) {
        const imago_image *one[1] = {img[i]};
        imago_error_clear(&err);
        ref_ok &= imago_engine_embed(e, one, 1, ref + (size_t)i * dim, &err) == 0;
        res[i].desc = calloc((size_t)dim, sizeof(float));
    }
    ok(ref_ok, "batch-1 reference descriptors (%s)", err.msg);

    /* batched: originals as encoded bytes, mirrors as decoded images */
    int sub_ok = 1;
    for (int i = 0; i < NP; i++) {
        sub_ok &= imago_batcher_submit(b, bytes[i], lens[i], IMAGO_BATCHER_COPY, NULL, on_done,
                                       &res[i], &err) == 0;
        imago_image *copy = mirror(img[i]);
        sub_ok &= imago_batcher_submit_image(b, copy, on_done, &res[NP + i], &err) == 0;
    }
    ok(sub_ok, "%d submissions accepted", N);
    imago_batcher_close(b, 1);
    is_int(total, N, "close(drain) delivered all %d", N);
    double worst = 1.0;
    int all_ok = 1, batched = 0;
    for (int i = 0; i < N; i++) {
        all_ok &= res[i].calls == 1 && res[i].status == 0;
        double c = testutil_cosine(res[i].desc, ref + (size_t)i * dim, dim);
        if (c < worst)
            worst = c;
        if (res[i].batch_size > 1)
            batched++;
    }
    ok(all_ok, "every image: one callback, status ok");
    ok(batched >= N / 2, "%d of %d images went in batches of 2+", batched, N);
    ok(worst >= 0.99999, "batched vs batch-1 descriptors: worst cosine %.8f >= 0.99999", worst);
    imago_batcher_stats st;
    imago_batcher_stats_get(b, &st);
    is_int(st.completed, N, "stats: completed %d", N);
    tap_diag("batch histogram: 1:%llu 2:%llu 3:%llu 4:%llu, forward %.3f s",
             (unsigned long long)st.batch_hist[1], (unsigned long long)st.batch_hist[2],
             (unsigned long long)st.batch_hist[3], (unsigned long long)st.batch_hist[4],
             st.forward_s_total);
    imago_batcher_free(b);

    /* the synchronous path on a fresh batcher agrees too */
    bp.max_delay_us = 0;
    b = NULL;
    is_int(imago_batcher_new(e, &bp, &b, &err), 0, "second batcher");
    float *d = malloc((size_t)dim * sizeof(float));
    imago_error_clear(&err);
    is_int(imago_batcher_embed_sync(b, bytes[0], lens[0], NULL, d, NULL, &err), 0,
           "embed_sync (%s)", err.msg);
    ok(testutil_cosine(d, ref, dim) >= 0.99999, "embed_sync equals batch-1: cosine %.8f",
       testutil_cosine(d, ref, dim));
    imago_batcher_free(b);

    free(d);
    for (int i = 0; i < N; i++) {
        imago_image_free(img[i]);
        free(res[i].desc);
    }
    for (int i = 0; i < NP; i++)
        free(bytes[i]);
    free(ref);
    imago_engine_free(e);
    return tap_done();
}
