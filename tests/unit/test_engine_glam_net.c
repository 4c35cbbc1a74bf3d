/* The GLAM head wired into the engine: imago_net_build / imago_net_bind /
 * imago_net_specs for BACKBONE-glam (the demo model), the engine end to end
 * on a demo GLAM model (512-d unit-norm, deterministic, batch == single,
 * multi-scale combined with p = 1, bf16 close to fp32). Numerics against
 * PyTorch: test_engine_glam_forms (each form) and the parity suite. */
#include "engine/engine.h"
#include "engine/net.h"
#include "tap.h"
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void build_cases(void)
{
    static const char *const bb[] = {"resnet50", "resnet101", "mobilenet_v2"};
    static const int ch[] = {2048, 2048, 1280};
    for (int i = 0; i < 3; i++) {
        imago_model_config cfg;
        imago_model_config_default(&cfg);
        snprintf(cfg.backbone, sizeof cfg.backbone, "%s", bb[i]);
        snprintf(cfg.head, sizeof cfg.head, "glam");
        imago_net *net = NULL;
        imago_error err = {0};
        int rc = imago_net_build(&cfg, &net, &err);
        is_int(rc, 0, "%s-glam builds (%s)", bb[i], err.msg);
        if (rc)
            continue;
        ok(net->head_glam, "%s-glam: GLAM head flagged", bb[i]);
        is_int(net->channels[net->output], ch[i], "%s-glam: the head reads a %d-channel map",
               bb[i], ch[i]);
        is_int(net->feat_dim, 512, "%s-glam: 512-d head output", bb[i]);
        imago_tensor_spec *specs = NULL;
        int n = 0, glam = 0;
        imago_net_specs(net, &specs, &n, &err);
        for (int j = 0; j < n; j++)
            glam += strncmp(specs[j].name, "glam.", 5) == 0;
        is_int(glam, 30, "%s-glam: 30 glam.* tensors in the demo specs", bb[i]);
        free(specs);
        imago_net_free(net);
    }
}

static double norm(const float *v, int d)
{
    double s = 0;
    for (int i = 0; i < d; i++)
        s += (double)v[i] * v[i];
    return sqrt(s);
}

static void engine_case(const char *arch, const char *precision, int h, int w, float *ref)
{
    imago_engine_params p = imago_engine_params_default();
    p.demo_arch = arch;
    p.precision = precision;
    p.threads = 2;
    float scales[3] = {1.0f, 0.70710678f, 0.5f};
    p.scales = scales;
    p.n_scales = 3;
    imago_engine *e = NULL;
    imago_error err = {0};
    int rc = imago_engine_open(&p, &e, &err);
    is_int(rc, 0, "%s %s: demo engine opens (%s)", arch, precision, err.msg);
    if (rc)
        return;
    imago_model_info info;
    imago_engine_describe(e, &info);
    is_int(info.dim, 512, "%s: dim 512", arch);
    is_str(info.head, "glam", "%s: head glam", arch);
    size_t px = (size_t)h * w * 3;
    float *x = malloc(2 * px * sizeof(float));
    for (size_t i = 0; i < px; i++)
        x[i] = x[px + i] = (float)sin(0.013 * (double)i) * 1.5f;
    float *d = calloc(3 * 512, sizeof(float));
    rc = imago_engine_embed_nhwc(e, x, 1, h, w, d, &err);
    is_int(rc, 0, "%s %s: embed %dx%d (%s)", arch, precision, w, h, err.msg);
    int finite = 1;
    for (int i = 0; i < 512; i++)
        finite &= isfinite(d[i]);
    ok(finite && fabs(norm(d, 512) - 1) < 1e-5, "%s %s: finite, unit norm (%.7f)", arch,
       precision, norm(d, 512));
    rc = imago_engine_embed_nhwc(e, x, 2, h, w, d + 512, &err);
    ok(rc == 0 && testutil_cosine(d, d + 512, 512) > 0.999999 && testutil_cosine(d, d + 1024, 512) > 0.999999,
       "%s %s: a batch of 2 gives the single descriptor twice (%.8f)", arch, precision,
       testutil_cosine(d, d + 1024, 512));
    if (strcmp(precision, "fp32") == 0) {
        memcpy(ref, d, 512 * sizeof(float));
    } else {
        double c = testutil_cosine(d, ref, 512);
        ok(c > 0.99, "%s: bf16 backbone + fp32 head vs fp32: cosine %.6f", arch, c);
    }
    free(d);
    free(x);
    imago_engine_free(e);
}

int main(void)
{
    build_cases();
    float ref[512];
    engine_case("mobilenet_v2-glam", "fp32", 96, 128, ref);
    engine_case("mobilenet_v2-glam", "bf16", 96, 128, ref);
    engine_case("resnet50-glam", "fp32", 64, 96, ref);
    return tap_done();
}
