/* Batcher throughput on the real engine: the same N images (real photos,
 * centre-cropped to 4:3 and decoded to SIDE x 3/4 SIDE so that they share one
 * shape) go through a batcher with max_batch = 1 and with max_batch = B,
 * all submitted at once (or, with --clients C, by C closed-loop clients that
 * each submit their next image from the callback of the previous one, like
 * C concurrent HTTP clients); prints images/s of each and the ratio, run side
 * by side in one process.
 *
 *   ninja -C build bench_batcher
 *   build/engine/bench_batcher [--n 32] [--side 512] [--batch 8]
 *       [--arch resnet50-gem] [--precision fp32] [--threads 0] [--forward 1]
 *       [--photos DIR] [--rounds 1] [--clients 0]
 */
#include <dirent.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int done, failed, next_idx, total_n;
static imago_batcher *cur_b;
static imago_image **cur_imgs;

static int submit_copy(imago_batcher *b, const imago_image *src, void *ud, imago_error *err);

static void on_done(void *ud, int status, const char *message, const float *desc, int dim,
                    const imago_batch_timings *t)
{
    (void)desc, (void)dim, (void)t;
    pthread_mutex_lock(&mu);
    if (status) {
        failed++;
        fprintf(stderr, "error: %s\n", message);
    }
    done++;
    int idx = ud ? next_idx++ : total_n; /* closed loop: this client's next image */
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&mu);
    if (idx < total_n) {
        imago_error err;
        imago_error_clear(&err);
        if (submit_copy(cur_b, cur_imgs[idx], ud, &err)) {
            fprintf(stderr, "submit: %s\n", err.msg);
            exit(1);
        }
    }
}

static int submit_copy(imago_batcher *b, const imago_image *src, void *ud, imago_error *err)
{
    imago_image *copy = NULL;
    int rc = imago_image_new(src->width, src->height, &copy, err);
    if (rc)
        return rc;
    memcpy(copy->rgb, src->rgb, (size_t)copy->width * copy->height * 3);
    rc = imago_batcher_submit_image(b, copy, on_done, ud, err);
    if (rc)
        imago_image_free(copy);
    return rc;
}

static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)n + 1);
    if (n <= 0 || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        fclose(f);
        return NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static double run(imago_engine *e, imago_image **imgs, int n, int max_batch, int forward,
                  int clients, imago_batcher_stats *st)
{
    imago_batcher_params bp = imago_batcher_params_default();
    bp.max_batch = max_batch;
    bp.forward_threads = forward;
    bp.queue_depth = n;
    imago_batcher *b = NULL;
    imago_error err;
    imago_error_clear(&err);
    if (imago_batcher_new(e, &bp, &b, &err)) {
        fprintf(stderr, "batcher: %s\n", err.msg);
        exit(1);
    }
    int first = clients > 0 && clients < n ? clients : n;
    pthread_mutex_lock(&mu);
    done = failed = 0;
    next_idx = first;
    total_n = n;
    cur_b = b;
    cur_imgs = imgs;
    pthread_mutex_unlock(&mu);
    double t0 = imago_now_s();
    for (int i = 0; i < first; i++) {
        if (submit_copy(b, imgs[i], clients > 0 ? (void *)imgs : NULL, &err)) {
            fprintf(stderr, "submit: %s\n", err.msg);
            exit(1);
        }
    }
    pthread_mutex_lock(&mu);
    while (done < n)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    double dt = imago_now_s() - t0;
    imago_batcher_stats_get(b, st);
    imago_batcher_free(b);
    if (failed) {
        fprintf(stderr, "%d images failed\n", failed);
        exit(1);
    }
    return n / dt;
}

int main(int argc, char **argv)
{
    int n = 32, side = 512, batch = 8, threads = 0, forward = 1, rounds = 1, clients = 0;
    const char *arch = "resnet50-gem", *precision = "fp32";
    const char *shared = getenv("IMAGO_SHARED");
    char dirbuf[4096];
    snprintf(dirbuf, sizeof dirbuf, "%s/data/photos", shared ? shared : "../shared");
    const char *dir = dirbuf;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--n"))
            n = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--side"))
            side = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--batch"))
            batch = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads"))
            threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--forward"))
            forward = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--clients"))
            clients = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--rounds"))
            rounds = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--arch"))
            arch = argv[i + 1];
        else if (!strcmp(argv[i], "--precision"))
            precision = argv[i + 1];
        else if (!strcmp(argv[i], "--photos"))
            dir = argv[i + 1];
        else {
            fprintf(stderr, "unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (n < 1 || side < 32 || batch < 1 || rounds < 1) {
        fprintf(stderr, "bad options\n");
        return 2;
    }

    /* photos -> centre 4:3 crops decoded to side x side*3/4 */
    imago_image **imgs = calloc((size_t)n, sizeof *imgs);
    int have = 0;
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "no photos in %s\n", dir);
        return 1;
    }
    struct dirent *de;
    imago_image *pool[256];
    int npool = 0;
    while ((de = readdir(d)) && npool < 256) {
        const char *dot = strrchr(de->d_name, '.');
        if (!dot || (strcmp(dot, ".jpg") && strcmp(dot, ".png")))
            continue;
        char path[8192];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        size_t len;
        unsigned char *bytes = slurp(path, &len);
        if (!bytes)
            continue;
        imago_image_format fmt;
        int w, h;
        if (imago_image_probe(bytes, len, &fmt, &w, &h, NULL) == 0 && w >= side &&
            h >= side * 3 / 4) {
            imago_decode_params dp = imago_decode_params_default();
            dp.max_side = side;
            dp.has_box = 1;
            double bw = w, bh = w * 0.75;
            if (bh > h) {
                bh = h;
                bw = h * 4.0 / 3.0;
            }
            dp.box[0] = (w - bw) / 2;
            dp.box[1] = (h - bh) / 2;
            dp.box[2] = dp.box[0] + bw;
            dp.box[3] = dp.box[1] + bh;
            imago_image *img = NULL;
            if (imago_image_decode(bytes, len, &dp, &img, NULL) == 0) {
                if (img->width == side && img->height == side * 3 / 4)
                    pool[npool++] = img;
                else
                    imago_image_free(img);
            }
        }
        free(bytes);
    }
    closedir(d);
    if (!npool) {
        fprintf(stderr, "no photo of at least %dx%d in %s\n", side, side * 3 / 4, dir);
        return 1;
    }
    for (int i = 0; i < n; i++)
        imgs[have++] = pool[i % npool];

    imago_engine_params ep = imago_engine_params_default();
    ep.demo_arch = arch;
    ep.precision = precision;
    ep.threads = threads;
    ep.max_side = side;
    imago_engine *e = NULL;
    imago_error err;
    imago_error_clear(&err);
    if (imago_engine_open(&ep, &e, &err)) {
        fprintf(stderr, "engine: %s\n", err.msg);
        return 1;
    }
    imago_model_info info;
    imago_engine_describe(e, &info);
    printf("engine: %s %s %s, %d scales, %s; %d images %dx%d (%d distinct photos), "
           "forward threads %d\n",
           info.name, info.backend, info.precision, info.n_scales, info.device, n, side,
           side * 3 / 4, npool, forward);

    imago_batcher_stats st;
    printf("submission: %s\n", clients > 0 ? "closed loop" : "all at once");
    if (clients > 0)
        printf("clients: %d\n", clients);
    run(e, imgs, batch < n ? batch : n, 1, forward, 0, &st); /* warm-up: plans, pools */
    run(e, imgs, batch < n ? batch : n, batch, forward, 0, &st);
    for (int r = 0; r < rounds; r++) {
        double r1 = run(e, imgs, n, 1, forward, clients, &st);
        double fwd1 = st.forward_s_total;
        double rb = run(e, imgs, n, batch, forward, clients, &st);
        printf("round %d: max_batch=1: %.2f images/s (forward %.2f s) | max_batch=%d: %.2f "
               "images/s (forward %.2f s, %llu batches) | ratio %.2fx\n",
               r + 1, r1, fwd1, batch, rb, st.forward_s_total, (unsigned long long)st.batches,
               rb / r1);
    }
    imago_engine_free(e);
    for (int i = 0; i < npool; i++)
        imago_image_free(pool[i]);
    free(imgs);
    return 0;
}
