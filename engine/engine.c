/* The engine API (engine/engine.h, second half): opens a model file or the
 * built-in demo model, builds its network description, hands it to a
 * backend, and turns decoded images into global descriptors (normalisation,
 * multi-scale bilinear resizing, L2N, the generalised-mean combination of the
 * scales, whitening).
 *
 * DESIGN (threads): an opened engine is immutable; imago_engine_embed may be
 * called from any number of threads at once. The backend gives each
 * concurrent call its own execution context (activations, scratchpad) and
 * shares the weights; everything engine.c does per call uses the caller's
 * stack or buffers it allocates for that call.
 */
#include "engine.h"

#include <dlfcn.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "imago_build.h"
#include "model.h"
#include "net.h"

#define DEMO_SEED 0x696d61676f2d3031ULL /* "imago-01" */

struct imago_engine {
    imago_model_config cfg;
    imago_net *net;
    const imago_backend_vtable *vt;
    imago_backend *backend;
    imago_precision precision;
    int max_side;
    int n_scales;
    float scales[IMAGO_MODEL_MAX_SCALES];
    /* whitening stage i: P (out x in) and m (in), or W (out x in) and b (out) */
    float *wP[IMAGO_MODEL_MAX_WHITEN], *wm[IMAGO_MODEL_MAX_WHITEN];
    imago_model_info info;
};

imago_engine_params imago_engine_params_default(void)
{
    imago_engine_params p;
    memset(&p, 0, sizeof p);
    p.model_path = NULL;
    p.demo_arch = "resnet50-gem";
    p.backend = "auto";
    p.cuda_plugin = NULL;
    p.precision = "fp32";
    p.threads = 0;
    p.max_side = 0;
    p.scales = NULL;
    p.n_scales = 0;
    return p;
}

/* "resnet101-agem" -> backbone + head of a demo config. */
static int demo_config(const char *arch, imago_model_config *cfg, imago_error *err)
{
    imago_model_config_default(cfg);
    const char *dash = strchr(arch, '-');
    if (!dash || dash == arch || (size_t)(dash - arch) >= sizeof cfg->backbone ||
        strlen(dash + 1) >= sizeof cfg->head || !dash[1])
        return imago_error_set(err, IMAGO_ERR_INVALID,
                               "demo architecture '%s' is not BACKBONE-HEAD "
                               "(e.g. resnet101-agem, resnet50-gem)",
                               arch);
    memcpy(cfg->backbone, arch, (size_t)(dash - arch));
    cfg->backbone[dash - arch] = 0;
    snprintf(cfg->head, sizeof cfg->head, "%s", dash + 1);
    snprintf(cfg->name, sizeof cfg->name, "demo-%s", arch);
    snprintf(cfg->pooling, sizeof cfg->pooling, "gem");
    snprintf(cfg->whitening, sizeof cfg->whitening, "none");
    snprintf(cfg->source, sizeof cfg->source, "built-in demo model (seeded random weights)");
    cfg->dim = 0;
    cfg->trained = 0;
    /* GLAP on a ResNet: output stride 16, the resolution the head is meant for */
    if (strcmp(cfg->head, "glap") == 0 && strncmp(cfg->backbone, "resnet", 6) == 0)
        cfg->last_stride = 1;
    return 0;
}

static int parse_precision(const char *s, imago_precision *out, imago_error *err)
{
    if (!s || !*s || strcmp(s, "fp32") == 0)
        *out = IMAGO_PREC_FP32;
    else if (strcmp(s, "bf16") == 0)
        *out = IMAGO_PREC_BF16;
    else if (strcmp(s, "fp16") == 0)
        *out = IMAGO_PREC_FP16;
    else
        return imago_error_set(err, IMAGO_ERR_INVALID,
                               "precision '%s' is not fp32, bf16 or fp16", s);
    return 0;
}

static void l2n(float *x, int d)
{
    double s = 0;
    for (int i = 0; i < d; i++)
        s += (double)x[i] * x[i];
    float inv = (float)(1.0 / (sqrt(s) + 1e-6));
    for (int i = 0; i < d; i++)
        x[i] *= inv;
}

static int copy_whitening(imago_engine *e, const imago_model *m, imago_error *err)
{
    const imago_net *net = e->net;
    for (int i = 0; i < net->n_whiten; i++) {
        int lw = net->whiten[i] == IMAGO_WHITEN_LW;
        imago_tensor P, mv;
        int rc;
        if ((rc = imago_model_tensor(m, lw ? "whiten.P" : "whiten.weight", &P, err)) ||
            (rc = imago_model_tensor(m, lw ? "whiten.m" : "whiten.bias", &mv, err)))
            return rc;
        e->wP[i] = imago_xmalloc((size_t)P.numel * sizeof(float));
        e->wm[i] = imago_xmalloc((size_t)mv.numel * sizeof(float));
        memcpy(e->wP[i], P.data, (size_t)P.numel * sizeof(float));
        memcpy(e->wm[i], mv.data, (size_t)mv.numel * sizeof(float));
    }
    return 0;
}

/* The whitening stages on v (feat_dim values; overwritten), each followed by
 * L2N; the result (dim values) goes to out. */
static void apply_whitening(const imago_engine *e, float *v, float *tmp, float *out)
{
    const imago_net *net = e->net;
    int C = net->feat_dim;
    if (net->n_whiten == 0) {
        memcpy(out, v, (size_t)C * sizeof(float));
        return;
    }
    float *src = v;
    for (int i = 0; i < net->n_whiten; i++) {
        int D = net->whiten_dim[i], lw = net->whiten[i] == IMAGO_WHITEN_LW;
        float *dst = i == net->n_whiten - 1 ? out : (src == v ? tmp : v);
        if (lw)
            for (int c = 0; c < C; c++)
                src[c] -= e->wm[i][c];
        for (int r = 0; r < D; r++) {
            const float *row = e->wP[i] + (size_t)r * C;
            double s = lw ? 0.0 : e->wm[i][r];
            for (int c = 0; c < C; c++)
                s += (double)row[c] * src[c];
            dst[r] = (float)s;
        }
        l2n(dst, D);
        src = dst;
        C = D;
    }
}

/* ---- the CUDA backend plugin (engine/meson.build) ------------------------ */

static int try_plugin(const char *path, const imago_backend_vtable **out, char *why,
                      size_t why_len)
{
    if (access(path, R_OK) != 0) {
        snprintf(why, why_len, "%s: not found", path);
        return -1;
    }
    /* never dlclose'd: the CUDA libraries it pulls in do not support unloading */
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *e = dlerror();
        snprintf(why, why_len, "%s", e ? e : path);
        return -1;
    }
    imago_backend_entry_fn entry;
    void *sym = dlsym(h, IMAGO_CUDA_PLUGIN_ENTRY);
    memcpy(&entry, &sym, sizeof entry);
    const imago_backend_vtable *vt =
        entry ? entry(IMAGO_BACKEND_ABI, sizeof(imago_net), sizeof(imago_net_op),
                      sizeof(imago_backend_params))
              : NULL;
    if (!vt) {
        snprintf(why, why_len, "%s: not an imago GPU plugin of this version (rebuild it)", path);
        return -1;
    }
    *out = vt;
    return 0;
}

/* The plugin named by `path`, or the first of: next to the executable
 * (../lib/imago/, as installed or bundled), the install directory, the build
 * tree. On failure why says what was tried. */
static int load_cuda_plugin(const char *path, const imago_backend_vtable **out, char *why,
                            size_t why_len)
{
    if (path && *path)
        return try_plugin(path, out, why, why_len);
    char cand[3][PATH_MAX + 32];
    int n = 0;
    char exe[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len > 0) {
        exe[len] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = 0;
            snprintf(cand[n++], sizeof cand[0], "%s/../lib/imago/imago_cuda.so", exe);
        }
    }
    snprintf(cand[n++], sizeof cand[0], "%s", IMAGO_CUDA_PLUGIN_INSTALL);
    snprintf(cand[n++], sizeof cand[0], "%s", IMAGO_CUDA_PLUGIN_BUILD);
    size_t used = 0;
    why[0] = 0;
    for (int i = 0; i < n; i++) {
        char one[PATH_MAX + 128];
        if (try_plugin(cand[i], out, one, sizeof one) == 0)
            return 0;
        /* a plugin that exists but does not load says more than "not found" */
        if (!strstr(one, ": not found") || used == 0) {
            int w = snprintf(why + used, why_len - used, "%s%s", used ? "; " : "", one);
            if (w > 0 && (size_t)w < why_len - used)
                used += (size_t)w;
        }
    }
    return -1;
}

/* Picks the backend for params->backend (auto | cpu | cuda): sets e->vt and
 * writes the probed device into device; under auto, a GPU that cannot be
 * used is noted in e->info.backend_note and the CPU backend is used. */
static int select_backend(imago_engine *e, const imago_engine_params *params,
                          const imago_backend_params *bp, char *device, size_t device_len,
                          imago_error *err)
{
    const char *backend = params->backend && *params->backend ? params->backend : "auto";
    int want_cuda = strcmp(backend, "cuda") == 0;
    if (!want_cuda && strcmp(backend, "auto") != 0 && strcmp(backend, "cpu") != 0)
        return imago_error_set(err, IMAGO_ERR_INVALID,
                               "engine backend '%s' is not auto, cpu or cuda", backend);
    char why[sizeof e->info.backend_note] = "";
    if (strcmp(backend, "cpu") != 0) {
        const imago_backend_vtable *cuda = NULL;
        if (!IMAGO_HAVE_CUDNN) {
            snprintf(why, sizeof why, "this build has no CUDA backend (built without cuDNN)");
        } else if (load_cuda_plugin(params->cuda_plugin, &cuda, why, sizeof why) == 0) {
            imago_error perr;
            imago_error_clear(&perr);
            if (imago_backend_probe(cuda, bp, device, device_len, &perr) == 0) {
                e->vt = cuda;
                return 0;
            }
            if (want_cuda)
                return imago_error_set(err, perr.code, "engine backend 'cuda': %s", perr.msg);
            snprintf(why, sizeof why, "%.*s", (int)sizeof why - 1, perr.msg);
        }
        if (want_cuda)
            return imago_error_set(err, IMAGO_ERR_UNSUPPORTED,
                                   "engine backend 'cuda' is not available: %s", why);
        snprintf(e->info.backend_note, sizeof e->info.backend_note, "no GPU backend: %s", why);
    }
    if (bp->precision == IMAGO_PREC_FP16)
        return imago_error_set(err, IMAGO_ERR_UNSUPPORTED,
                               "precision fp16 needs the CUDA backend%s%s; the CPU backend runs "
                               "fp32 and bf16",
                               why[0] ? ", and " : "", why);
    e->vt = &imago_backend_dnnl;
    return imago_backend_probe(e->vt, bp, device, device_len, err);
}

int imago_engine_open(const imago_engine_params *params, imago_engine **out, imago_error *err)
{
    imago_engine_params def = imago_engine_params_default();
    if (!params)
        params = &def;
    int rc = 0;
    imago_model *m = NULL;
    imago_tensor_spec *specs = NULL;
    imago_engine *e = imago_xcalloc(1, sizeof *e);

    if ((rc = parse_precision(params->precision, &e->precision, err)))
        goto fail;
    imago_backend_params bp = {.precision = e->precision,
                               .threads = params->threads > 0 ? params->threads : 0};
    char device[128] = "";
    if ((rc = select_backend(e, params, &bp, device, sizeof device, err)))
        goto fail;

    if (params->model_path && *params->model_path) {
        if ((rc = imago_model_load(params->model_path, &m, err)))
            goto fail;
        e->cfg = *imago_model_get_config(m);
        if ((rc = imago_net_build(&e->cfg, &e->net, err)))
            goto fail;
    } else {
        imago_model_config cfg;
        if ((rc = demo_config(params->demo_arch ? params->demo_arch : "resnet50-gem", &cfg,
                              err)))
            goto fail;
        if ((rc = imago_net_build(&cfg, &e->net, err)))
            goto fail;
        int n_specs;
        if ((rc = imago_net_specs(e->net, &specs, &n_specs, err)))
            goto fail;
        cfg.dim = e->net->dim;
        if ((rc = imago_model_synthetic(&cfg, specs, n_specs, DEMO_SEED, &m, err)))
            goto fail;
        e->cfg = *imago_model_get_config(m);
    }
    if ((rc = imago_net_bind(e->net, m, err)))
        goto fail;
    if ((rc = copy_whitening(e, m, err)))
        goto fail;

    if ((rc = imago_backend_create(e->vt, &bp, &e->backend, err)) ||
        (rc = imago_backend_load(e->vt, e->backend, e->net, m, err)))
        goto fail;

    e->max_side = params->max_side > 0 ? params->max_side : e->cfg.max_side;
    if (params->scales && params->n_scales > 0) {
        if (params->n_scales > IMAGO_MODEL_MAX_SCALES) {
            rc = imago_error_set(err, IMAGO_ERR_INVALID, "at most %d scales",
                                 IMAGO_MODEL_MAX_SCALES);
            goto fail;
        }
        e->n_scales = params->n_scales;
        memcpy(e->scales, params->scales, (size_t)params->n_scales * sizeof(float));
    } else {
        e->n_scales = e->cfg.n_scales;
        memcpy(e->scales, e->cfg.scales, sizeof e->scales);
    }
    if (e->n_scales < 1) {
        e->n_scales = 1;
        e->scales[0] = 1.0f;
    }
    for (int i = 0; i < e->n_scales; i++) {
        if (!(e->scales[i] > 0.0f && e->scales[i] <= 4.0f)) {
            rc = imago_error_set(err, IMAGO_ERR_INVALID, "scale %g is not in (0, 4]",
                                 e->scales[i]);
            goto fail;
        }
    }

    imago_model_info *in = &e->info;
    snprintf(in->name, sizeof in->name, "%s", e->cfg.name);
    snprintf(in->backbone, sizeof in->backbone, "%s", e->cfg.backbone);
    snprintf(in->head, sizeof in->head, "%s", e->cfg.head);
    snprintf(in->whitening, sizeof in->whitening, "%s",
             e->cfg.whitening[0] ? e->cfg.whitening : "none");
    in->dim = e->net->dim;
    in->trained = e->cfg.trained;
    snprintf(in->fingerprint, sizeof in->fingerprint, "%s", e->cfg.fingerprint);
    in->max_side = e->max_side;
    memcpy(in->mean, e->cfg.mean, sizeof in->mean);
    memcpy(in->std, e->cfg.std, sizeof in->std);
    in->n_scales = e->n_scales;
    memcpy(in->scales, e->scales, sizeof in->scales);
    snprintf(in->backend, sizeof in->backend, "%s", e->vt->name);
    snprintf(in->precision, sizeof in->precision, "%s",
             e->precision == IMAGO_PREC_BF16   ? "bf16"
             : e->precision == IMAGO_PREC_FP16 ? "fp16"
                                               : "fp32");
    snprintf(in->device, sizeof in->device, "%s", device);

    imago_model_free(m); /* the backend keeps its own copies */
    free(specs);
    *out = e;
    return 0;
fail:
    imago_model_free(m);
    free(specs);
    imago_engine_free(e);
    return rc;
}

void imago_engine_free(imago_engine *e)
{
    if (!e)
        return;
    if (e->backend)
        imago_backend_destroy(e->vt, e->backend);
    imago_net_free(e->net);
    for (int i = 0; i < IMAGO_MODEL_MAX_WHITEN; i++) {
        free(e->wP[i]);
        free(e->wm[i]);
    }
    free(e);
}

void imago_engine_describe(const imago_engine *e, imago_model_info *out)
{
    *out = e->info;
}

int imago_engine_feat_dim(const imago_engine *e)
{
    return e->net->feat_dim;
}

/* Bilinear resize of an NHWC image batch, PyTorch interpolate(bilinear,
 * align_corners=False, scale_factor=s): source = (dst + 0.5) / s - 0.5,
 * clamped at 0. Like ATen's CPU kernel (measured against torch 1.13), the
 * ratio 1/s is rounded to fp32 and the source coordinate is then computed
 * without further rounding (double here), which matters at 1e-4. */
static void resize_bilinear(const float *src, int n, int h, int w, float *dst, int oh, int ow,
                            float s)
{
    float ratio = (float)(1.0 / (double)s);
    int *x0 = imago_xmalloc((size_t)ow * 2 * sizeof(int));
    int *x1 = x0 + ow;
    float *lx = imago_xmalloc((size_t)ow * sizeof(float));
    for (int x = 0; x < ow; x++) {
        double sx = (double)ratio * (x + 0.5) - 0.5;
        if (sx < 0)
            sx = 0;
        int i0 = (int)sx;
        if (i0 > w - 1)
            i0 = w - 1;
        float l = (float)(sx - i0);
        if (l > 1)
            l = 1;
        x0[x] = i0;
        x1[x] = i0 < w - 1 ? i0 + 1 : i0;
        lx[x] = l;
    }
    for (int b = 0; b < n; b++) {
        const float *im = src + (size_t)b * h * w * 3;
        float *om = dst + (size_t)b * oh * ow * 3;
        for (int y = 0; y < oh; y++) {
            double sy = (double)ratio * (y + 0.5) - 0.5;
            if (sy < 0)
                sy = 0;
            int y0 = (int)sy;
            if (y0 > h - 1)
                y0 = h - 1;
            int y1 = y0 < h - 1 ? y0 + 1 : y0;
            float ly = (float)(sy - y0);
            if (ly > 1)
                ly = 1;
            float hy = 1.0f - ly;
            const float *r0 = im + (size_t)y0 * w * 3, *r1 = im + (size_t)y1 * w * 3;
            float *o = om + (size_t)y * ow * 3;
            for (int x = 0; x < ow; x++) {
                float l = lx[x], hx = 1.0f - l;
                const float *a = r0 + x0[x] * 3, *bb = r0 + x1[x] * 3;
                const float *c = r1 + x0[x] * 3, *d = r1 + x1[x] * 3;
                for (int ch = 0; ch < 3; ch++)
                    o[x * 3 + ch] = hy * (hx * a[ch] + l * bb[ch]) + ly * (hx * c[ch] + l * d[ch]);
            }
        }
    }
    free(x0);
    free(lx);
}

static int scale_size(int h, int w, float s, int *oh, int *ow, imago_error *err)
{
    *oh = (int)floor((double)h * (double)s);
    *ow = (int)floor((double)w * (double)s);
    if (*oh < 1 || *ow < 1)
        return imago_error_set(err, IMAGO_ERR_INVALID,
                               "image %dx%d is too small for scale %g", w, h, s);
    return 0;
}

int imago_engine_pooled_nhwc(imago_engine *e, const float *nhwc, int n, int h, int w,
                             float *pooled, imago_error *err)
{
    return imago_backend_run(e->vt, e->backend, nhwc, n, h, w, pooled, err);
}

int imago_engine_embed_nhwc(imago_engine *e, const float *nhwc, int n, int h, int w,
                            float *out, imago_error *err)
{
    const imago_net *net = e->net;
    int C = net->feat_dim, D = net->dim, rc = 0;
    if (n < 1 || h < 1 || w < 1)
        return imago_error_set(err, IMAGO_ERR_INVALID, "empty batch (%d images of %dx%d)", n,
                               w, h);
    size_t count;
    if (imago_size_mul3((size_t)n, (size_t)h * (size_t)w, 3, &count))
        return imago_error_set(err, IMAGO_ERR_TOO_LARGE, "batch of %d %dx%d images is too large",
                               n, w, h);
    int wmax = C; /* the widest whitening stage */
    for (int i = 0; i < net->n_whiten; i++)
        wmax = net->whiten_dim[i] > wmax ? net->whiten_dim[i] : wmax;
    float *scaled = NULL, *pooled = imago_xmalloc((size_t)n * C * sizeof(float));
    float *wbuf = imago_xmalloc((size_t)2 * wmax * sizeof(float));
    double *acc = imago_xcalloc((size_t)n * C, sizeof(double));
    double p = net->ms_p;
    for (int si = 0; si < e->n_scales; si++) {
        float s = e->scales[si];
        const float *in = nhwc;
        int oh = h, ow = w;
        if (s != 1.0f) {
            if ((rc = scale_size(h, w, s, &oh, &ow, err)))
                goto done;
            size_t sc;
            if ((rc = imago_size_mul3((size_t)n, (size_t)oh * ow, 3 * sizeof(float), &sc))) {
                rc = imago_error_set(err, IMAGO_ERR_TOO_LARGE, "scaled batch too large");
                goto done;
            }
            free(scaled);
            scaled = NULL;
            if ((rc = imago_alloc_array(sc, 1, 0, (void **)&scaled, err)))
                goto done;
            resize_bilinear(nhwc, n, h, w, scaled, oh, ow, s);
            in = scaled;
        }
        if ((rc = imago_backend_run(e->vt, e->backend, in, n, oh, ow, pooled, err)))
            goto done;
        for (int b = 0; b < n; b++) {
            float *d = pooled + (size_t)b * C;
            if (net->normalize_pooled)
                l2n(d, C);
            for (int c = 0; c < C; c++)
                acc[(size_t)b * C + c] += p == 1.0 ? (double)d[c] : pow((double)d[c], p);
        }
    }
    for (int b = 0; b < n; b++) {
        float *v = wbuf; /* one scale: still d_s (L2N'd unless !normalize_pooled) */
        memcpy(v, pooled + (size_t)b * C, (size_t)C * sizeof(float));
        if (e->n_scales > 1) {
            for (int c = 0; c < C; c++) {
                double a = acc[(size_t)b * C + c] / e->n_scales;
                v[c] = (float)(p == 1.0 ? a : pow(a, 1.0 / p));
            }
            if (net->normalize_pooled)
                l2n(v, C);
        }
        apply_whitening(e, v, wbuf + wmax, out + (size_t)b * D);
    }
done:
    free(wbuf);
    imago_free_aligned(scaled);
    free(pooled);
    free(acc);
    return rc;
}

int imago_engine_embed(imago_engine *e, const imago_image *const *images, int n, float *out,
                       imago_error *err)
{
    if (!images || n < 1)
        return imago_error_set(err, IMAGO_ERR_INVALID, "no images to embed");
    int h = images[0]->height, w = images[0]->width;
    for (int i = 0; i < n; i++) {
        if (!images[i] || !images[i]->rgb || images[i]->width < 1 || images[i]->height < 1)
            return imago_error_set(err, IMAGO_ERR_INVALID, "image %d is empty", i);
        if (images[i]->width != w || images[i]->height != h)
            return imago_error_set(err, IMAGO_ERR_INVALID,
                                   "batched images differ in size (%dx%d vs %dx%d)",
                                   images[i]->width, images[i]->height, w, h);
    }
    size_t count;
    if (imago_size_mul3((size_t)n, (size_t)h * (size_t)w, 3, &count))
        return imago_error_set(err, IMAGO_ERR_TOO_LARGE, "batch too large");
    float *x;
    int rc = imago_alloc_array(count, sizeof(float), 0, (void **)&x, err);
    if (rc)
        return rc;
    /* (v/255 - mean) / std as one multiply-add per channel, from a table. */
    float lut[3][256];
    for (int c = 0; c < 3; c++)
        for (int v = 0; v < 256; v++)
            lut[c][v] = ((float)v / 255.0f - e->cfg.mean[c]) / e->cfg.std[c];
    size_t px = (size_t)h * w;
    for (int i = 0; i < n; i++) {
        const uint8_t *src = images[i]->rgb;
        float *dst = x + (size_t)i * px * 3;
        for (size_t k = 0; k < px; k++) {
            dst[3 * k] = lut[0][src[3 * k]];
            dst[3 * k + 1] = lut[1][src[3 * k + 1]];
            dst[3 * k + 2] = lut[2][src[3 * k + 2]];
        }
    }
    rc = imago_engine_embed_nhwc(e, x, n, h, w, out, err);
    imago_free_aligned(x);
    return rc;
}
