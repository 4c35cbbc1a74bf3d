/* The real CUDA backend (engine/backend_cuda.c) run on the CPU: built into
 * imago_cuda_fake.so with a host-side fake of the CUDA runtime, cuDNN and
 * the kernel launchers (tests/gpu/fake/, tests/gpu/meson.build) and loaded by
 * the engine as its cuda_plugin. This tests the backend's host orchestration
 * without a GPU: memory plans and arena offsets, descriptors, KRSC weights,
 * the fused (ConvolutionBiasActivation) and unfused (convolution + epilogue)
 * paths, TensorFlow-SAME explicit padding, pooling, the host GLAM path,
 * pinned staging, the algorithm choice (no TF32 at fp32) and out-of-memory
 * handling. The fake computes in fp32 (rounding to fp16/bf16 storage like
 * the device would), so the numbers say whether the backend wired the ops
 * right, not how a GPU rounds.
 *
 * Against the CPU fp32 engine on identical NHWC inputs: the backend's pooled
 * features (imago_engine_pooled_nhwc) at 96x64 batch 3 and 75x53 batch 1,
 * and the descriptors of one 96x64 input with the model's three scales
 * (imago_engine_embed_nhwc):
 *   fp32: cosine >= 0.99999 on every vector, and max |difference| <= 1e-4
 *         (relative to the largest CPU value for pooled features) for the
 *         demos resnet50-gem, resnet101-agem (sigmoid / multiply / binary
 *         ops), resnet101-glam (host GLAM path), mobilenet_v2-gem (depthwise
 *         groups, relu6), and two model files written here: a MobileNetV2
 *         with tf_same padding (asymmetric at even sizes: the explicit-pad
 *         path) and a ResNet-50; both with BatchNorm statistics of their
 *         own, since the demos' identity BN folds to zero biases and a
 *         dropped bias would go unseen;
 *   fp32 also for the AP-GeM and GLAP heads (resnet50-apgem, resnet50-glap at
 *         last_stride 1, mobilenet_v2-apgem, mobilenet_v2-glap: attention
 *         convolutions, the attention-weight and power-mean kernels, GLAP's
 *         host finish), the fake's counters showing those kernels ran;
 *   fp16, bf16: cosine >= 0.999 for resnet50-gem and mobilenet_v2-gem (and
 *         one of the model files each), resnet50-apgem (bf16),
 *         mobilenet_v2-apgem (fp16), mobilenet_v2-glap (bf16), and
 *         resnet101-glam at fp16 (its map
 *         converted to fp32 on the device for the host head). The fake
 *         accumulates in fp32 and only stores in fp16/bf16, so these bars
 *         check the wiring of the low-precision paths, not GPU rounding.
 * And: the device is the fake one; the fake's counters (dlsym'd from the
 * plugin) show fused calls, fused calls with the residual as z, explicit
 * padding copies only for tf_same, no fp32 convolution on a TF32 algorithm,
 * workspaces used, no refused cuDNN call or kernel launch; with fused
 * convolutions refused (IMAGO_FAKE_CUDNN_NO_FUSED=1) the results are the
 * same; two threads embedding at once on one engine get the serial results;
 * with a small device (IMAGO_FAKE_CUDA_MEM) opening and embedding fail with
 * IMAGO_ERR_NOMEM and a message, and the engine works again when the limit is
 * raised; every device byte is freed with the engines.
 *
 * Usage: test_cuda_emulated PLUGIN (meson passes imago_cuda_fake.so).
 * IMAGO_EMU_QUICK=1 runs the fp32 ResNet-101 cases at 96x64 batch 1 only.
 */
#include "engine/engine.h"
#include "tests/gpu/fake/fake.h"
#include "imago_build.h"
#include "engine/model.h"
#include "engine/net.h"
#include "tap.h"
#include "testutil.h"

#include <dlfcn.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *g_plugin;
static imago_fake_cuda_stats *g_stats;
static int g_quick;

typedef struct shape {
    int w, h, n;
} shape;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* n normalised images (n x h x w x 3): smooth patterns plus noise, seeded */
static float *make_input(int n, int h, int w, unsigned seed)
{
    float *x = malloc((size_t)n * h * w * 3 * sizeof *x);
    unsigned s = seed * 2654435761u + 12345u;
    for (int b = 0; b < n; b++)
        for (int y = 0; y < h; y++)
            for (int xx = 0; xx < w; xx++)
                for (int c = 0; c < 3; c++) {
                    s = s * 1103515245u + 12345u;
                    double noise = ((s >> 8) & 0xffff) / 65536.0 - 0.5;
                    double v = sin(0.11 * (xx + 7 * b) * (c + 1)) + cos(0.07 * y * (b + 2)) +
                               0.8 * noise;
                    x[(((size_t)b * h + y) * w + xx) * 3 + c] = (float)v;
                }
    return x;
}

static int open_engine(const char *backend, const char *precision, const char *demo,
                       const char *model, int model_scales, imago_engine **e, imago_error *err)
{
    static const float one = 1.0f;
    imago_engine_params p = imago_engine_params_default();
    p.demo_arch = demo;
    p.model_path = model;
    p.backend = backend;
    p.precision = precision;
    p.cuda_plugin = strcmp(backend, "cuda") == 0 ? g_plugin : NULL;
    if (!model_scales) {
        p.scales = &one;
        p.n_scales = 1;
    }
    imago_error_clear(err);
    return imago_engine_open(&p, e, err);
}

/* worst cosine and largest |difference| over n descriptors of d */
static void compare(const float *a, const float *b, int n, int d, double *min_cos,
                    double *max_abs)
{
    *min_cos = 1.0;
    *max_abs = 0.0;
    for (int i = 0; i < n; i++) {
        double c = testutil_cosine(a + (size_t)i * d, b + (size_t)i * d, d);
        if (c < *min_cos || isnan(c))
            *min_cos = c;
        for (int j = 0; j < d; j++) {
            double e = fabs((double)a[(size_t)i * d + j] - b[(size_t)i * d + j]);
            if (e > *max_abs || isnan(e))
                *max_abs = e;
        }
    }
}

/* worst cosine and largest |difference| relative to the largest |a| */
static void compare_rel(const float *a, const float *b, int n, int d, double *min_cos,
                        double *max_rel)
{
    double ma, scale = 0;
    compare(a, b, n, d, min_cos, &ma);
    for (size_t i = 0; i < (size_t)n * d; i++)
        scale = fabs(a[i]) > scale ? fabs(a[i]) : scale;
    *max_rel = scale > 0 ? ma / scale : ma;
}

/* Runs each shape through both engines and checks the bars. pooled: the
 * backend's output (imago_engine_pooled_nhwc: one scale, before L2N; the
 * difference is relative to the largest CPU value); else the descriptors
 * (imago_engine_embed_nhwc: the engine's scales, L2N, ...). diff_bar 0: only
 * the cosine is checked. */
static void check_pair(const char *label, const char *prec, imago_engine *cpu, imago_engine *dev,
                       const shape *shapes, int n_shapes, int pooled, double cos_bar,
                       double diff_bar, unsigned seed)
{
    imago_model_info info;
    imago_engine_describe(dev, &info);
    int d = pooled ? imago_engine_feat_dim(dev) : info.dim;
    for (int s = 0; s < n_shapes; s++) {
        const shape *sh = &shapes[s];
        char what[160];
        if (pooled)
            snprintf(what, sizeof what, "%s %s %dx%d batch %d, pooled features", label, prec,
                     sh->w, sh->h, sh->n);
        else
            snprintf(what, sizeof what, "%s %s %dx%d batch %d, descriptors with %d scales",
                     label, prec, sh->w, sh->h, sh->n, info.n_scales);
        float *x = make_input(sh->n, sh->h, sh->w, seed + (unsigned)s);
        float *a = calloc((size_t)sh->n * d, sizeof *a), *b = calloc((size_t)sh->n * d, sizeof *b);
        imago_error err;
        imago_error_clear(&err);
        int rc = pooled ? imago_engine_pooled_nhwc(cpu, x, sh->n, sh->h, sh->w, a, &err)
                        : imago_engine_embed_nhwc(cpu, x, sh->n, sh->h, sh->w, a, &err);
        if (rc) {
            ok(0, "%s: the CPU fp32 engine runs (%s)", what, err.msg);
            goto next;
        }
        double t0 = now_s();
        rc = pooled ? imago_engine_pooled_nhwc(dev, x, sh->n, sh->h, sh->w, b, &err)
                    : imago_engine_embed_nhwc(dev, x, sh->n, sh->h, sh->w, b, &err);
        double t = now_s() - t0;
        if (rc) {
            ok(0, "%s: the emulated cuda engine runs: %s (code %d)", what, err.msg, rc);
            goto next;
        }
        double mc, md;
        if (pooled)
            compare_rel(a, b, sh->n, d, &mc, &md);
        else
            compare(a, b, sh->n, d, &mc, &md);
        if (diff_bar > 0)
            ok(mc >= cos_bar && md <= diff_bar,
               "%s: cosine %.8f (>= %g), max %s|diff| %.2g (<= %g) vs CPU fp32 [%.2f s]", what,
               mc, cos_bar, pooled ? "relative " : "", md, diff_bar, t);
        else
            ok(mc >= cos_bar, "%s: cosine %.6f (>= %g) vs CPU fp32, max %s|diff| %.2g [%.2f s]",
               what, mc, cos_bar, pooled ? "relative " : "", md, t);
    next:
        free(x);
        free(a);
        free(b);
    }
}

/* One model: one CPU fp32 and one emulated engine with the model's scales;
 * the backends' pooled features at every shape, then the descriptors (the
 * model's scales: resize + combination around three plans) of one image. */
static void run_model(const char *label, const char *demo, const char *model, const char *prec,
                      const shape *shapes, int n_shapes, double cos_bar, double diff_bar)
{
    imago_engine *cpu = NULL, *dev = NULL;
    imago_error err;
    double t0 = now_s();
    if (open_engine("cpu", "fp32", demo, model, 1, &cpu, &err)) {
        ok(0, "%s: CPU fp32 opens (%s)", label, err.msg);
        return;
    }
    double t1 = now_s();
    if (open_engine("cuda", prec, demo, model, 1, &dev, &err)) {
        ok(0, "%s: emulated cuda %s opens (%s)", label, prec, err.msg);
        imago_engine_free(cpu);
        return;
    }
    double t2 = now_s();
    check_pair(label, prec, cpu, dev, shapes, n_shapes, 1, cos_bar, diff_bar, 1);
    if (!(g_quick && strcmp(prec, "fp32") == 0 && demo && strstr(demo, "resnet101"))) {
        shape ms = {shapes[0].w, shapes[0].h, 1};
        check_pair(label, prec, cpu, dev, &ms, 1, 0, cos_bar, diff_bar, 7);
    }
    imago_engine_free(cpu);
    imago_engine_free(dev);
    tap_diag("%s %s: %.1f s (opening: CPU %.1f s, cuda %.1f s)", label, prec, now_s() - t0,
             t1 - t0, t2 - t1);
}

/* ---- model files: TensorFlow-SAME padding, non-trivial BatchNorm --------
 * The demo models' BatchNorm statistics are the identity (mean 0, var 1,
 * beta 0), so every folded bias is 0 and a backend that dropped the bias
 * would pass. These files take the synthetic weights of cfg_json and, with
 * perturb_bn, give every BatchNorm a running mean, a running variance and a
 * beta of its own (deterministic), so that the folded biases are not 0. */

static uint32_t g_rng = 20261123u;
static float rnd_uniform(float lo, float hi)
{
    g_rng = g_rng * 1664525u + 1013904223u;
    return lo + (hi - lo) * (float)((g_rng >> 8) / 16777216.0);
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* 1 when name is "<bn>.bias" of a BatchNorm (a "<bn>.running_mean" exists) */
static int is_bn_beta(const imago_tensor_spec *specs, int n, const char *name)
{
    if (!ends_with(name, ".bias"))
        return 0;
    size_t stem = strlen(name) - strlen(".bias");
    for (int i = 0; i < n; i++)
        if (strncmp(specs[i].name, name, stem) == 0 &&
            strcmp(specs[i].name + stem, ".running_mean") == 0)
            return 1;
    return 0;
}

static int write_model(const char *path, const char *cfg_json, int perturb_bn, imago_error *err)
{
    imago_model_config cfg;
    imago_net *net = NULL;
    imago_tensor_spec *specs = NULL;
    imago_model *m = NULL;
    int n = 0, rc;
    FILE *f = NULL;
    if ((rc = imago_model_config_parse(cfg_json, &cfg, err)) ||
        (rc = imago_net_build(&cfg, &net, err)) || (rc = imago_net_specs(net, &specs, &n, err)) ||
        (rc = imago_model_synthetic(&cfg, specs, n, 20261123, &m, err)))
        goto done;
    json_t *hdr = json_object(), *meta = json_object();
    json_object_set_new(meta, "imago.config", json_string(cfg_json));
    json_object_set_new(hdr, "__metadata__", meta);
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        imago_tensor t;
        if ((rc = imago_model_tensor(m, specs[i].name, &t, err)))
            break;
        json_t *shp = json_array();
        for (int k = 0; k < t.ndim; k++)
            json_array_append_new(shp, json_integer(t.dims[k]));
        json_t *e = json_object();
        json_object_set_new(e, "dtype", json_string("F32"));
        json_object_set_new(e, "shape", shp);
        json_object_set_new(e, "data_offsets",
                            json_pack("[II]", (json_int_t)off,
                                      (json_int_t)(off + (size_t)t.numel * 4)));
        json_object_set_new(hdr, specs[i].name, e);
        off += (size_t)t.numel * 4;
    }
    char *text = rc ? NULL : json_dumps(hdr, JSON_COMPACT);
    json_decref(hdr);
    if (!text)
        goto done;
    size_t len = strlen(text), padded = (len + 7) / 8 * 8;
    if (!(f = fopen(path, "wb"))) {
        free(text);
        rc = imago_error_set(err, IMAGO_ERR_IO, "cannot write %s", path);
        goto done;
    }
    unsigned char le[8];
    for (int k = 0; k < 8; k++)
        le[k] = (unsigned char)((uint64_t)padded >> (8 * k));
    fwrite(le, 1, 8, f);
    fwrite(text, 1, len, f);
    for (size_t k = len; k < padded; k++)
        fputc(' ', f);
    free(text);
    for (int i = 0; i < n; i++) {
        imago_tensor t;
        imago_model_tensor(m, specs[i].name, &t, err);
        float *v = malloc((size_t)t.numel * sizeof *v);
        memcpy(v, t.data, (size_t)t.numel * sizeof *v);
        const char *name = specs[i].name;
        for (int64_t k = 0; perturb_bn && k < t.numel; k++) {
            if (ends_with(name, ".running_mean"))
                v[k] += rnd_uniform(-0.2f, 0.2f);
            else if (ends_with(name, ".running_var"))
                v[k] *= rnd_uniform(0.5f, 1.5f);
            else if (is_bn_beta(specs, n, name))
                v[k] += rnd_uniform(-0.2f, 0.2f);
        }
        fwrite(v, sizeof(float), (size_t)t.numel, f);
        free(v);
    }
    if (fclose(f) != 0)
        rc = imago_error_set(err, IMAGO_ERR_IO, "cannot write %s", path);
done:
    imago_model_free(m);
    free(specs);
    imago_net_free(net);
    return rc;
}

static const char *k_mnv2_tf_same =
    "{\"format\": 1, \"name\": \"emulated-mnv2-tf_same\", \"backbone\": \"mobilenet_v2\", "
    "\"head\": \"gem\", \"dim\": 1280, \"pooling\": \"gem\", \"whitening\": \"none\", "
    "\"padding\": \"tf_same\", \"input\": {\"max_side\": 512, \"mean\": [0.5, 0.5, 0.5], "
    "\"std\": [0.5, 0.5, 0.5]}, \"scales\": [1, 0.7071, 0.5], \"trained\": false}";
static const char *k_r50_bn =
    "{\"format\": 1, \"name\": \"emulated-r50-bn\", \"backbone\": \"resnet50\", "
    "\"head\": \"gem\", \"dim\": 2048, \"pooling\": \"gem\", \"whitening\": \"none\", "
    "\"scales\": [1, 0.7071, 0.5], \"trained\": false}";

/* ---- the checks around the numbers --------------------------------------- */

static void check_info(void)
{
    imago_engine *e = NULL;
    imago_error err;
    int rc = open_engine("cuda", "fp32", "mobilenet_v2-gem", NULL, 0, &e, &err);
    is_int(rc, 0, "the engine opens backend cuda on the fake plugin (%s)", err.msg);
    if (rc)
        tap_bail("the emulated backend does not open");
    imago_model_info info;
    imago_engine_describe(e, &info);
    is_str(info.backend, "cuda", "info: backend cuda");
    is_str(info.precision, "fp32", "info: precision fp32");
    ok(strstr(info.device, "imago fake CUDA device (CPU)") != NULL,
       "info: the fake device is described (%s)", info.device);
    imago_engine_free(e);
}

static void check_counters(const char *when, uint64_t fused_before, uint64_t sum_before)
{
    ok(g_stats->fused_calls > fused_before,
       "%s: cudnnConvolutionBiasActivationForward ran (%llu calls)", when,
       (unsigned long long)(g_stats->fused_calls - fused_before));
    ok(g_stats->fused_sum_calls > sum_before,
       "%s: ... with the residual as z (%llu calls)", when,
       (unsigned long long)(g_stats->fused_sum_calls - sum_before));
}

static void check_no_fused(const char *bn_model)
{
    static const shape shapes[] = {{96, 64, 3}, {75, 53, 1}};
    uint64_t fused0 = g_stats->fused_calls, conv0 = g_stats->conv_calls;
    setenv("IMAGO_FAKE_CUDNN_NO_FUSED", "1", 1);
    run_model("resnet50-gem unfused", "resnet50-gem", NULL, "fp32", shapes, 2, 0.99999, 1e-4);
    if (bn_model)
        run_model("resnet50-gem+BN unfused", NULL, bn_model, "fp32", shapes, 1, 0.99999, 1e-4);
    ok(g_stats->fused_refused > 0, "no fused: BiasActivation refused (%llu calls)",
       (unsigned long long)g_stats->fused_refused);
    is_int(g_stats->fused_calls, fused0, "no fused: no BiasActivation ran");
    ok(g_stats->conv_calls > conv0, "no fused: convolution + epilogue ran (%llu convolutions)",
       (unsigned long long)(g_stats->conv_calls - conv0));
    unsetenv("IMAGO_FAKE_CUDNN_NO_FUSED");
}

static void check_oom(void)
{
    imago_engine *cpu = NULL, *dev = NULL;
    imago_error err;
    char limit[32];

    /* the weights do not fit */
    snprintf(limit, sizeof limit, "%d", 1 << 20);
    setenv("IMAGO_FAKE_CUDA_MEM", limit, 1);
    int rc = open_engine("cuda", "fp32", "mobilenet_v2-gem", NULL, 0, &dev, &err);
    is_int(rc, IMAGO_ERR_NOMEM, "a 1 MiB device: opening fails with IMAGO_ERR_NOMEM (%s)",
           err.msg);
    if (rc == 0)
        imago_engine_free(dev);
    dev = NULL;
    unsetenv("IMAGO_FAKE_CUDA_MEM");
    is_int(g_stats->bytes_in_use, 0, "the failed open freed every device byte");

    if (open_engine("cpu", "fp32", "mobilenet_v2-gem", NULL, 0, &cpu, &err) ||
        open_engine("cuda", "fp32", "mobilenet_v2-gem", NULL, 0, &dev, &err)) {
        ok(0, "OOM: engines open (%s)", err.msg);
        imago_engine_free(cpu);
        return;
    }
    const int n = 3, h = 96, w = 64;
    imago_model_info info;
    imago_engine_describe(dev, &info);
    float *x = make_input(n, h, w, 99);
    float *a = calloc((size_t)n * info.dim, sizeof *a), *b = calloc((size_t)n * info.dim, sizeof *b);
    /* the weights fit, the activations of the batch do not */
    snprintf(limit, sizeof limit, "%llu", (unsigned long long)g_stats->bytes_in_use + (64u << 10));
    setenv("IMAGO_FAKE_CUDA_MEM", limit, 1);
    imago_error_clear(&err);
    rc = imago_engine_embed_nhwc(dev, x, n, h, w, b, &err);
    is_int(rc, IMAGO_ERR_NOMEM, "a full device: embedding fails with IMAGO_ERR_NOMEM");
    ok(rc != 0 && strstr(err.msg, "out of memory") != NULL,
       "... with a message naming the cause (%s)", err.msg);
    unsetenv("IMAGO_FAKE_CUDA_MEM");
    imago_error_clear(&err);
    rc = imago_engine_embed_nhwc(dev, x, n, h, w, b, &err);
    is_int(rc, 0, "the limit raised: the same engine embeds again (%s)", err.msg);
    if (rc == 0 && imago_engine_embed_nhwc(cpu, x, n, h, w, a, &err) == 0) {
        double mc, ma;
        compare(a, b, n, info.dim, &mc, &ma);
        ok(mc >= 0.99999, "... and matches the CPU (cosine %.8f)", mc);
    }
    free(x);
    free(a);
    free(b);
    imago_engine_free(cpu);
    imago_engine_free(dev);
}

/* ---- concurrent callers: one execution context each ---------------------- */

typedef struct conc_job {
    imago_engine *dev;
    const float *x;
    int n, h, w, dim, rounds;
    float *out;
    int rc;
    imago_error err;
} conc_job;

static void *conc_main(void *arg)
{
    conc_job *j = arg;
    imago_error_clear(&j->err);
    for (int r = 0; r < j->rounds && j->rc == 0; r++)
        j->rc = imago_engine_embed_nhwc(j->dev, j->x, j->n, j->h, j->w, j->out, &j->err);
    return NULL;
}

static void check_concurrent(void)
{
    imago_engine *dev = NULL;
    imago_error err;
    if (open_engine("cuda", "fp32", "mobilenet_v2-gem", NULL, 0, &dev, &err)) {
        ok(0, "concurrent: the engine opens (%s)", err.msg);
        return;
    }
    imago_model_info info;
    imago_engine_describe(dev, &info);
    static const shape sh[2] = {{96, 64, 2}, {75, 53, 1}};
    conc_job jobs[2];
    float *x[2], *want[2];
    for (int t = 0; t < 2; t++) {
        x[t] = make_input(sh[t].n, sh[t].h, sh[t].w, 40 + (unsigned)t);
        want[t] = calloc((size_t)sh[t].n * info.dim, sizeof(float));
        int rc = imago_engine_embed_nhwc(dev, x[t], sh[t].n, sh[t].h, sh[t].w, want[t], &err);
        is_int(rc, 0, "concurrent: serial reference %d runs (%s)", t, err.msg);
        jobs[t] = (conc_job){.dev = dev, .x = x[t], .n = sh[t].n, .h = sh[t].h, .w = sh[t].w,
                             .dim = info.dim, .rounds = 3,
                             .out = calloc((size_t)sh[t].n * info.dim, sizeof(float))};
    }
    pthread_t th[2];
    for (int t = 0; t < 2; t++)
        pthread_create(&th[t], NULL, conc_main, &jobs[t]);
    for (int t = 0; t < 2; t++)
        pthread_join(th[t], NULL);
    for (int t = 0; t < 2; t++) {
        double mc, ma;
        compare(want[t], jobs[t].out, jobs[t].n, info.dim, &mc, &ma);
        ok(jobs[t].rc == 0 && ma == 0.0,
           "concurrent: thread %d (%dx%d batch %d, 3 rounds) gives the serial result "
           "(rc %d %s, max |diff| %.2g)",
           t, sh[t].w, sh[t].h, sh[t].n, jobs[t].rc, jobs[t].err.msg, ma);
        free(x[t]);
        free(want[t]);
        free(jobs[t].out);
    }
    imago_engine_free(dev);
}

int main(int argc, char **argv)
{
    g_plugin = argc > 1 ? argv[1] : getenv("IMAGO_FAKE_CUDA_PLUGIN");
    if (!g_plugin || !*g_plugin)
        tap_skip_all("no fake plugin given (argv[1] or IMAGO_FAKE_CUDA_PLUGIN)");
    if (!IMAGO_HAVE_CUDNN)
        tap_skip_all("this build has no cuDNN, so the engine does not offer backend cuda");
    g_quick = getenv("IMAGO_EMU_QUICK") && atoi(getenv("IMAGO_EMU_QUICK"));
    unsetenv("IMAGO_FAKE_CUDA_MEM");
    unsetenv("IMAGO_FAKE_CUDNN_NO_FUSED");
    void *h = dlopen(g_plugin, RTLD_NOW | RTLD_LOCAL);
    if (!h)
        tap_bail(dlerror());
    imago_fake_stats_fn get;
    void *sym = dlsym(h, IMAGO_FAKE_STATS_SYMBOL);
    if (!sym)
        tap_bail("the plugin is not the fake (no " IMAGO_FAKE_STATS_SYMBOL ")");
    memcpy(&get, &sym, sizeof get);
    g_stats = get();
    double t0 = now_s();

    check_info();

    static const shape shapes[] = {{96, 64, 3}, {75, 53, 1}};
    static const shape quick[] = {{96, 64, 1}};
    const shape *r101 = g_quick ? quick : shapes;
    int n101 = g_quick ? 1 : 2;

    /* fp32 parity */
    uint64_t fused0 = g_stats->fused_calls, sum0 = g_stats->fused_sum_calls;
    run_model("resnet50-gem", "resnet50-gem", NULL, "fp32", shapes, 2, 0.99999, 1e-4);
    check_counters("resnet50-gem fp32", fused0, sum0);
    run_model("resnet101-agem", "resnet101-agem", NULL, "fp32", r101, n101, 0.99999, 1e-4);
    run_model("resnet101-glam", "resnet101-glam", NULL, "fp32", r101, n101, 0.99999, 1e-4);
    /* AP-GeM and GLAP: attention convolutions in the plan, the weighting and
     * power-mean kernels, GLAP's host finish; GLAP on ResNet-50 at last_stride 1 */
    uint64_t aw0 = g_stats->att_weights_calls, wp0 = g_stats->wpool_calls;
    run_model("resnet50-apgem", "resnet50-apgem", NULL, "fp32", shapes, 2, 0.99999, 1e-4);
    run_model("resnet50-glap", "resnet50-glap", NULL, "fp32", shapes, 2, 0.99999, 1e-4);
    run_model("mobilenet_v2-apgem", "mobilenet_v2-apgem", NULL, "fp32", shapes, 2, 0.99999, 1e-4);
    run_model("mobilenet_v2-glap", "mobilenet_v2-glap", NULL, "fp32", shapes, 2, 0.99999, 1e-4);
    ok(g_stats->att_weights_calls > aw0 && g_stats->wpool_calls > wp0,
       "AP-GeM / GLAP pooled on the device (%llu attention-weight, %llu power-mean kernels)",
       (unsigned long long)(g_stats->att_weights_calls - aw0),
       (unsigned long long)(g_stats->wpool_calls - wp0));
    uint64_t pad0 = g_stats->pad_calls;
    run_model("mobilenet_v2-gem", "mobilenet_v2-gem", NULL, "fp32", shapes, 2, 0.99999, 1e-4);
    is_int(g_stats->pad_calls, pad0, "torch padding: no explicit padding copy");

    char path[4096], path2[4096];
    const char *tmp = getenv("TMPDIR");
    snprintf(path, sizeof path, "%s/imago_emu_mnv2_tf_same_%d.safetensors",
             tmp && *tmp ? tmp : "/tmp", (int)getpid());
    snprintf(path2, sizeof path2, "%s/imago_emu_r50_bn_%d.safetensors",
             tmp && *tmp ? tmp : "/tmp", (int)getpid());
    imago_error err;
    imago_error_clear(&err);
    int rc = write_model(path, k_mnv2_tf_same, 1, &err);
    is_int(rc, 0, "a MobileNetV2 tf_same model file with BN statistics is written (%s)", err.msg);
    if (rc == 0) {
        pad0 = g_stats->pad_calls;
        run_model("mobilenet_v2-gem tf_same+BN", NULL, path, "fp32", shapes, 2, 0.99999, 1e-4);
        ok(g_stats->pad_calls > pad0,
           "tf_same: the asymmetric padding ran as explicit padding copies (%llu)",
           (unsigned long long)(g_stats->pad_calls - pad0));
    }
    imago_error_clear(&err);
    int rc2 = write_model(path2, k_r50_bn, 1, &err);
    is_int(rc2, 0, "a ResNet-50 model file with BN statistics is written (%s)", err.msg);
    if (rc2 == 0)
        run_model("resnet50-gem+BN", NULL, path2, "fp32", shapes, 1, 0.99999, 1e-4);

    is_int(g_stats->f32_tensor_op, 0, "fp32: no convolution ran on a TF32 (tensor-op) algorithm");
    ok(g_stats->conv_ws_used > 0, "fp32: algorithms with a workspace were chosen and ran (%llu)",
       (unsigned long long)g_stats->conv_ws_used);

    /* fp16 / bf16 */
    const char *low[] = {"fp16", "bf16"};
    for (int i = 0; i < 2; i++) {
        run_model("resnet50-gem", "resnet50-gem", NULL, low[i], shapes, 2, 0.999, 0);
        run_model("mobilenet_v2-gem", "mobilenet_v2-gem", NULL, low[i], shapes, 2, 0.999, 0);
    }
    if (rc == 0)
        run_model("mobilenet_v2-gem tf_same+BN", NULL, path, "fp16", shapes, 1, 0.999, 0);
    if (rc2 == 0)
        run_model("resnet50-gem+BN", NULL, path2, "bf16", shapes, 1, 0.999, 0);
    run_model("resnet50-apgem", "resnet50-apgem", NULL, "bf16", shapes, 1, 0.999, 0);
    run_model("mobilenet_v2-apgem", "mobilenet_v2-apgem", NULL, "fp16", shapes, 1, 0.999, 0);
    run_model("mobilenet_v2-glap", "mobilenet_v2-glap", NULL, "bf16", shapes, 1, 0.999, 0);
    /* the GLAM map converted to fp32 on the device before the host head */
    static const shape glam_low[] = {{75, 53, 2}};
    run_model("resnet101-glam", "resnet101-glam", NULL, "fp16", glam_low, 1, 0.999, 0);

    check_no_fused(rc2 == 0 ? path2 : NULL);
    remove(path);
    remove(path2);
    check_concurrent();
    check_oom();

    is_int(g_stats->bad_param, 0, "no cuDNN call was refused as a bad parameter");
    is_int(g_stats->kernel_bad, 0, "no kernel launch was refused (bad pointer, size, overlap)");
    is_int(g_stats->bytes_in_use, 0, "every device byte is freed with the engines");
    tap_diag("fake: %llu convolutions, %llu fused (%llu with z), %llu algorithm searches, "
             "%llu kernels, peak %.1f MiB, %.1f s",
             (unsigned long long)g_stats->conv_calls, (unsigned long long)g_stats->fused_calls,
             (unsigned long long)g_stats->fused_sum_calls,
             (unsigned long long)g_stats->find_calls, (unsigned long long)g_stats->kernel_calls,
             g_stats->peak_bytes / 1048576.0, now_s() - t0);
    return tap_done();
}
