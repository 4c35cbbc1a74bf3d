/* Unit tests for the engine API on the oneDNN backend with demo models:
 * activations of the synthetic init stay O(1), descriptors are unit-norm and
 * deterministic, batching and concurrent calls give the same descriptors as
 * single calls, the u8 and float entry points agree, bf16 stays close to
 * fp32, and bad inputs get clear errors. Numerics against PyTorch are the
 * parity suite's job (tests/parity/test_parity_resnet.py). */
#include "engine/engine.h"
#include "engine/net.h"
#include "tap.h"
#include "testutil.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng_state = 12345;
static double urand(void)
{
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(rng_state >> 11) / 9007199254740992.0;
}

/* A smooth random "photo" (low-frequency blobs + noise), u8 RGB. */
static imago_image *make_image(int w, int h, uint64_t seed)
{
    imago_image *img = NULL;
    if (imago_image_new(w, h, &img, NULL) != 0)
        return NULL;
    rng_state = seed;
    double fx[3], fy[3], ph[3];
    for (int c = 0; c < 3; c++) {
        fx[c] = 1 + 6 * urand();
        fy[c] = 1 + 6 * urand();
        ph[c] = 6.28 * urand();
    }
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++) {
                double v = 128 + 90 * sin(fx[c] * x / w * 6.28 + ph[c]) * cos(fy[c] * y / h * 6.28) +
                           20 * (urand() - 0.5);
                img->rgb[(y * w + x) * 3 + c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
    return img;
}

static double max_abs_diff(const float *a, const float *b, int d)
{
    double m = 0;
    for (int i = 0; i < d; i++)
        if (fabs((double)a[i] - b[i]) > m)
            m = fabs((double)a[i] - b[i]);
    return m;
}

static double norm(const float *a, int d)
{
    double s = 0;
    for (int i = 0; i < d; i++)
        s += (double)a[i] * a[i];
    return sqrt(s);
}

static imago_engine *open_demo(const char *arch, const char *precision, int n_scales,
                               const float *scales)
{
    imago_engine_params p = imago_engine_params_default();
    p.demo_arch = arch;
    p.precision = precision;
    p.threads = 2;
    p.scales = scales;
    p.n_scales = n_scales;
    imago_engine *e = NULL;
    imago_error err;
    imago_error_clear(&err);
    int rc = imago_engine_open(&p, &e, &err);
    is_int(rc, 0, "open demo %s %s (%s)", arch, precision, err.msg);
    return rc ? NULL : e;
}

/* The demo init must keep activations O(1) through the whole depth. */
static void test_activation_scale(const char *arch)
{
    static const float one[1] = {1.0f};
    imago_engine *e = open_demo(arch, "fp32", 1, one);
    if (!e)
        return;
    int C = imago_engine_feat_dim(e), h = 96, w = 128;
    float *x = malloc((size_t)h * w * 3 * sizeof(float));
    rng_state = 99;
    for (int i = 0; i < h * w * 3; i++)
        x[i] = (float)(4 * urand() - 2);
    float *pooled = malloc((size_t)C * sizeof(float));
    imago_error err;
    imago_error_clear(&err);
    is_int(imago_engine_pooled_nhwc(e, x, 1, h, w, pooled, &err), 0, "%s pooled (%s)", arch,
           err.msg);
    double mean = 0, mx = 0;
    int finite = 1;
    for (int c = 0; c < C; c++) {
        finite &= isfinite(pooled[c]);
        mean += pooled[c] / C;
        if (pooled[c] > mx)
            mx = pooled[c];
    }
    ok(finite, "%s: pooled features finite", arch);
    ok(mean > 0.05 && mean < 20, "%s: mean pooled feature %.4g is O(1)", arch, mean);
    ok(mx < 200, "%s: max pooled feature %.4g is bounded", arch, mx);
    free(x);
    free(pooled);
    imago_engine_free(e);
}

typedef struct job {
    imago_engine *e;
    imago_image *img[3];
    float *out[3];
    int rc;
} job;

static void *run_job(void *arg)
{
    job *j = arg;
    for (int r = 0; r < 2; r++)
        for (int i = 0; i < 3; i++) {
            const imago_image *const one[1] = {j->img[i]};
            int rc = imago_engine_embed(j->e, one, 1, j->out[i], NULL);
            if (rc)
                j->rc = rc;
        }
    return NULL;
}

static void test_embed(void)
{
    imago_engine *e = open_demo("resnet50-gem", "fp32", 0, NULL);
    if (!e)
        return;
    imago_model_info info;
    imago_engine_describe(e, &info);
    is_int(info.dim, 2048, "dim 2048");
    is_int(info.trained, 0, "the demo model is not trained");
    is_int(info.n_scales, 3, "three default scales");
    is_str(info.backend, "cpu", "cpu backend");
    is_str(info.precision, "fp32", "fp32");
    ok(strncmp(info.device, "oneDNN", 6) == 0, "device: %s", info.device);
    is_int((int)strlen(info.fingerprint), 64, "fingerprint is hex SHA-256");
    int D = info.dim;

    imago_image *a = make_image(120, 90, 1), *b = make_image(120, 90, 2),
                *c = make_image(77, 131, 3);
    float *da = malloc(sizeof(float) * D * 4), *db = da + D, *dab = da + 2 * D;
    imago_error err;
    imago_error_clear(&err);
    const imago_image *const ia[1] = {a}, *const ib[1] = {b};
    is_int(imago_engine_embed(e, ia, 1, da, &err), 0, "embed a (%s)", err.msg);
    is_int(imago_engine_embed(e, ib, 1, db, &err), 0, "embed b");
    is_close(norm(da, D), 1.0, 1e-5, "unit norm");
    double cab = testutil_cosine(da, db, D);
    ok(cab < 0.9999, "different images, different descriptors (cos %.6f)", cab);

    float *again = malloc(sizeof(float) * D);
    imago_engine_embed(e, ia, 1, again, &err);
    is_close(max_abs_diff(da, again, D), 0.0, 0.0, "deterministic");

    const imago_image *const pair[2] = {a, b};
    is_int(imago_engine_embed(e, pair, 2, dab, &err), 0, "batch of 2 (%s)", err.msg);
    ok(max_abs_diff(dab, da, D) < 1e-5 && max_abs_diff(dab + D, db, D) < 1e-5,
       "batching does not change descriptors (%.3g, %.3g)", max_abs_diff(dab, da, D),
       max_abs_diff(dab + D, db, D));

    /* the float entry point with the same normalisation gives the same result */
    float *x = malloc(sizeof(float) * 120 * 90 * 3);
    for (int i = 0; i < 120 * 90 * 3; i++)
        x[i] = ((float)a->rgb[i] / 255.0f - info.mean[i % 3]) / info.std[i % 3];
    imago_engine_embed_nhwc(e, x, 1, 90, 120, again, &err);
    is_close(max_abs_diff(da, again, D), 0.0, 0.0, "u8 and float entry points agree");
    free(x);

    /* concurrency: two threads, three shapes each, twice */
    job jobs[2];
    imago_image *imgs[3] = {a, b, c};
    float *serial[3];
    for (int i = 0; i < 3; i++) {
        serial[i] = malloc(sizeof(float) * D);
        const imago_image *const one[1] = {imgs[i]};
        imago_engine_embed(e, one, 1, serial[i], NULL);
    }
    pthread_t th[2];
    for (int t = 0; t < 2; t++) {
        jobs[t].e = e;
        jobs[t].rc = 0;
        for (int i = 0; i < 3; i++) {
            jobs[t].img[i] = imgs[(i + t) % 3];
            jobs[t].out[i] = malloc(sizeof(float) * D);
        }
        pthread_create(&th[t], NULL, run_job, &jobs[t]);
    }
    for (int t = 0; t < 2; t++)
        pthread_join(th[t], NULL);
    double worst = 0;
    for (int t = 0; t < 2; t++) {
        is_int(jobs[t].rc, 0, "thread %d embeds", t);
        for (int i = 0; i < 3; i++) {
            double d = max_abs_diff(jobs[t].out[i], serial[(i + t) % 3], D);
            if (d > worst)
                worst = d;
            free(jobs[t].out[i]);
        }
    }
    is_close(worst, 0.0, 1e-6, "concurrent calls match serial calls");

    /* more shapes than the per-context plan cache holds, then the first again */
    for (int s = 0; s < 10; s++) {
        imago_image *t = make_image(40 + 8 * s, 48, 10 + s);
        const imago_image *const one[1] = {t};
        imago_engine_embed(e, one, 1, again, NULL);
        imago_image_free(t);
    }
    imago_engine_embed(e, ia, 1, again, &err);
    is_close(max_abs_diff(da, again, D), 0.0, 0.0, "same result after plan eviction");

    /* errors */
    const imago_image *const mixed[2] = {a, c};
    imago_error_clear(&err);
    is_int(imago_engine_embed(e, mixed, 2, dab, &err), IMAGO_ERR_INVALID,
           "a batch of different sizes is refused");
    ok(strstr(err.msg, "differ") != NULL, "says why: %s", err.msg);
    imago_image *tiny = make_image(1, 1, 5);
    const imago_image *const it[1] = {tiny};
    imago_error_clear(&err);
    is_int(imago_engine_embed(e, it, 1, dab, &err), IMAGO_ERR_INVALID,
           "1x1 image at scale 0.7 is refused");
    ok(strstr(err.msg, "scale") != NULL, "says why: %s", err.msg);
    imago_error_clear(&err);
    is_int(imago_engine_embed(e, it, 0, dab, &err), IMAGO_ERR_INVALID, "n = 0 refused");

    for (int i = 0; i < 3; i++)
        free(serial[i]);
    free(again);
    free(da);
    imago_image_free(a);
    imago_image_free(b);
    imago_image_free(c);
    imago_image_free(tiny);
    imago_engine_free(e);
}

static void test_bf16(void)
{
    static const float one[1] = {1.0f};
    imago_engine *f = open_demo("resnet50-gem", "fp32", 1, one);
    imago_engine *h = open_demo("resnet50-gem", "bf16", 1, one);
    if (!f || !h) {
        imago_engine_free(f);
        imago_engine_free(h);
        return;
    }
    imago_model_info info;
    imago_engine_describe(h, &info);
    is_str(info.precision, "bf16", "bf16 engine");
    imago_image *a = make_image(160, 120, 4);
    const imago_image *const ia[1] = {a};
    float *df = malloc(sizeof(float) * 2048 * 2), *dh = df + 2048;
    imago_error err;
    imago_error_clear(&err);
    is_int(imago_engine_embed(f, ia, 1, df, &err), 0, "fp32 embed");
    is_int(imago_engine_embed(h, ia, 1, dh, &err), 0, "bf16 embed (%s)", err.msg);
    double c = testutil_cosine(df, dh, 2048);
    ok(c > 0.999, "bf16 vs fp32 cosine %.6f > 0.999", c);
    ok(max_abs_diff(df, dh, 2048) > 0, "bf16 really runs in reduced precision");
    free(df);
    imago_image_free(a);
    imago_engine_free(f);
    imago_engine_free(h);
}

static void test_open_errors(void)
{
    imago_engine_params p = imago_engine_params_default();
    imago_engine *e = NULL;
    imago_error err;
    p.precision = "fp8";
    imago_error_clear(&err);
    is_int(imago_engine_open(&p, &e, &err), IMAGO_ERR_INVALID, "precision fp8 refused");
    p = imago_engine_params_default();
    p.backend = "cuda";
    imago_error_clear(&err);
    is_int(imago_engine_open(&p, &e, &err), IMAGO_ERR_UNSUPPORTED, "no cuda backend yet");
    p = imago_engine_params_default();
    p.demo_arch = "resnet50";
    imago_error_clear(&err);
    is_int(imago_engine_open(&p, &e, &err), IMAGO_ERR_INVALID, "demo arch without a head");
    p = imago_engine_params_default();
    p.demo_arch = "vgg16-gem";
    imago_error_clear(&err);
    is_int(imago_engine_open(&p, &e, &err), IMAGO_ERR_UNSUPPORTED, "unknown backbone refused");
    ok(strstr(err.msg, "vgg16") != NULL, "the message names it (%s)", err.msg);
    p = imago_engine_params_default();
    p.model_path = "/nonexistent/model.safetensors";
    imago_error_clear(&err);
    is_int(imago_engine_open(&p, &e, &err), IMAGO_ERR_IO, "missing model file refused");
    ok(strstr(err.msg, "/nonexistent/model.safetensors") != NULL, "the message names it (%s)",
       err.msg);
    ok(e == NULL, "no engine on failure");
}

int main(void)
{
    test_open_errors();
    test_activation_scale("resnet50-gem");
    test_activation_scale("resnet101-agem");
    test_embed();
    test_bf16();
    return tap_done();
}
