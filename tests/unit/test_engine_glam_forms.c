/* The GLAM head (engine/glam.c) against the PyTorch reference, one attention
 * form at a time: tools/glam_fixture.py writes a small random head, an input
 * map and the reference output of every stage (tools/reference.py's
 * glam_local_channel, glam_local_spatial, glam_global_channel,
 * glam_global_spatial, glam_fuse, GeM, FC + BatchNorm1d); each stage of
 * imago_glam_forward must match with a max abs error printed. Two maps: 3x5
 * (one block of the spatial attention) and 17x19 (323 positions: two
 * blocks of IMAGO_GLAM_BLOCK). The fixture's attention matrices are checked to
 * be far from symmetric-normalised, so a softmax over the wrong axis or a
 * missing transpose cannot pass. Skipped (77) without the reference Python.
 */
#include "engine/glam.h"
#include "engine/model.h"
#include "tap.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const imago_tensor *need(const imago_model *m, const char *name, imago_tensor *t)
{
    imago_error err = {0};
    if (imago_model_tensor(m, name, t, &err) != 0)
        tap_bail(err.msg);
    return t;
}

/* [1, c, h, w] NCHW -> hw x c */
static float *to_nhwc(const float *src, int c, int hw)
{
    float *d = malloc((size_t)c * hw * sizeof(float));
    for (int ch = 0; ch < c; ch++)
        for (int i = 0; i < hw; i++)
            d[(size_t)i * c + ch] = src[(size_t)ch * hw + i];
    return d;
}

static double max_abs(const float *a, const float *b, size_t n, double *scale)
{
    double e = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        e = d > e ? d : e;
        s = fabs(b[i]) > s ? fabs(b[i]) : s;
    }
    if (scale)
        *scale = s;
    return e;
}

/* Compares got with want (n values) to tol relative to max(1, max |want|). */
static void cmp(const char *label, const char *what, const float *got, const float *want,
                size_t n)
{
    double scale, e = max_abs(got, want, n, &scale);
    double tol = 2e-5 * (scale > 1 ? scale : 1);
    ok(e <= tol, "%s: %s matches the reference (max abs error %.3g, max |ref| %.3g, tol %.2g)",
       label, what, e, scale, tol);
}

static void run_case(const char *py, const char *root, const char *tmp, const char *label,
                     int c, int red, int out_dim, int h, int w, int seed)
{
    char path[1024], args[256];
    snprintf(path, sizeof path, "%s/glam_%s.safetensors", tmp, label);
    snprintf(args, sizeof args, "--c %d --reduced %d --out-dim %d --height %d --width %d "
             "--seed %d", c, red, out_dim, h, w, seed);
    if (testutil_run_fixture(py, root, "glam_fixture.py", path, args, label))
        return;
    imago_model *m = NULL;
    imago_error err = {0};
    if (imago_model_load(path, &m, &err) != 0) {
        ok(0, "%s: fixture loads: %s", label, err.msg);
        return;
    }
    imago_tensor t;
    need(m, "input.F", &t);
    is_int(t.dims[1], c, "%s: fixture has %d channels", label, c);
    int hw = h * w;
    float *x = to_nhwc(t.data, c, hw);
    imago_glam *g = NULL;
    int rc = imago_glam_new(m, c, &g, &err);
    is_int(rc, 0, "%s: imago_glam_new accepts the fixture (%s)", label, rc ? err.msg : "");
    if (rc) {
        free(x);
        imago_model_free(m);
        return;
    }
    is_int(imago_glam_out_dim(g), out_dim, "%s: output width %d read from glam.fc", label,
           out_dim);

    size_t map = (size_t)hw * c;
    float *buf = calloc((size_t)c + hw + (size_t)c * c + (size_t)hw * hw + 6 * map + c +
                            out_dim,
                        sizeof(float));
    imago_glam_trace tr;
    float *q = buf;
    tr.a_lc = q, q += c;
    tr.s = q, q += hw;
    tr.Ac = q, q += (size_t)c * c;
    tr.As = q, q += (size_t)hw * hw;
    tr.Fc = q, q += map;
    tr.Fl = q, q += map;
    tr.Gc = q, q += map;
    tr.Gs = q, q += map;
    tr.Fg = q, q += map;
    tr.Fgl = q, q += map;
    tr.pooled = q, q += c;
    float *y = q;
    float p = need(m, "pool.p", &t)->data[0];
    rc = imago_glam_forward(g, x, h, w, p, 2, y, &tr, &err);
    is_int(rc, 0, "%s: forward runs (%s)", label, rc ? err.msg : "");

    /* the fixture discriminates the axes: A's rows (wrong axis) do not sum to 1 */
    const float *Ac = need(m, "expect.Ac", &t)->data;
    const float *As = need(m, "expect.As", &(imago_tensor){0})->data;
    double worst_row = 0;
    for (int i = 0; i < c; i++) {
        double s = 0;
        for (int j = 0; j < c; j++)
            s += Ac[(size_t)i * c + j];
        worst_row = fmax(worst_row, fabs(s - 1));
    }
    double worst_row_s = 0;
    for (int mm = 0; mm < hw; mm++) {
        double s = 0;
        for (int n = 0; n < hw; n++)
            s += As[(size_t)mm * hw + n];
        worst_row_s = fmax(worst_row_s, fabs(s - 1));
    }
    ok(worst_row > 1e-3 && worst_row_s > 1e-3,
       "%s: fixture attention rows are not normalised (max |row sum - 1| %.3g, %.3g, vs "
       "the 2e-5 tolerance): a softmax over the wrong axis would fail",
       label, worst_row, worst_row_s);

    cmp(label, "local channel a", tr.a_lc, need(m, "expect.a_lc", &t)->data, (size_t)c);
    float *e = to_nhwc(need(m, "expect.Fc", &t)->data, c, hw);
    cmp(label, "F_c = F*a + F", tr.Fc, e, map);
    free(e);
    cmp(label, "local spatial map s", tr.s, need(m, "expect.s", &t)->data, (size_t)hw);
    e = to_nhwc(need(m, "expect.Fl", &t)->data, c, hw);
    cmp(label, "F_l = F_c*s + F_c", tr.Fl, e, map);
    free(e);
    cmp(label, "global channel attention A (softmax over i)", tr.Ac, Ac, (size_t)c * c);
    e = to_nhwc(need(m, "expect.Gc", &t)->data, c, hw);
    cmp(label, "global channel G_c", tr.Gc, e, map);
    free(e);
    cmp(label, "global spatial attention A (softmax over m)", tr.As, As, (size_t)hw * hw);
    e = to_nhwc(need(m, "expect.Gs", &t)->data, c, hw);
    cmp(label, "global spatial G_s", tr.Gs, e, map);
    free(e);
    e = to_nhwc(need(m, "expect.Fg", &t)->data, c, hw);
    cmp(label, "F_g", tr.Fg, e, map);
    free(e);
    e = to_nhwc(need(m, "expect.Fgl", &t)->data, c, hw);
    cmp(label, "fused F_gl", tr.Fgl, e, map);
    free(e);
    cmp(label, "GeM(F_gl)", tr.pooled, need(m, "expect.pooled", &t)->data, (size_t)c);
    cmp(label, "BN(FC(GeM)) (folded)", y, need(m, "expect.fc_bn", &t)->data, (size_t)out_dim);
    double nrm = 0;
    for (int i = 0; i < out_dim; i++)
        nrm += (double)y[i] * y[i];
    nrm = sqrt(nrm);
    for (int i = 0; i < out_dim; i++)
        y[i] = (float)(y[i] / (nrm + 1e-6));
    cmp(label, "descriptor L2N", y, need(m, "expect.descriptor", &t)->data, (size_t)out_dim);

    /* batch entry point == per-image forward */
    float *x2 = malloc(2 * map * sizeof(float));
    memcpy(x2, x, map * sizeof(float));
    memcpy(x2 + map, x, map * sizeof(float));
    float *y2 = calloc(2 * (size_t)out_dim, sizeof(float));
    float *y1 = calloc((size_t)out_dim, sizeof(float));
    imago_glam_forward(g, x, h, w, p, 1, y1, NULL, &err);
    rc = imago_glam_run(g, x2, 2, h, w, p, 2, y2, &err);
    ok(rc == 0 && memcmp(y2, y1, (size_t)out_dim * sizeof(float)) == 0 &&
           memcmp(y2 + out_dim, y1, (size_t)out_dim * sizeof(float)) == 0,
       "%s: imago_glam_run over a batch of 2 equals forward, bit for bit (1 vs 2 threads)",
       label);
    free(x2);
    free(y2);
    free(y1);
    free(buf);
    free(x);
    imago_glam_free(g);
    imago_model_free(m);
}

/* Model-file validation with synthetic weights (no Python needed). */
static void validation(void)
{
    imago_tensor_spec specs[IMAGO_GLAM_MAX_SPECS + 1];
    int n = imago_glam_specs(24, 6, 5, 10, specs);
    ok(n > 0 && n <= IMAGO_GLAM_MAX_SPECS, "imago_glam_specs: %d tensors", n);
    specs[n++] = (imago_tensor_spec){.name = "pool.p", .ndim = 1, .dims = {1},
                                     .init = IMAGO_INIT_CONST, .gain = 3.0f};
    imago_model_config cfg;
    imago_model_config_default(&cfg);
    snprintf(cfg.name, sizeof cfg.name, "glam-validation");
    snprintf(cfg.backbone, sizeof cfg.backbone, "resnet50");
    snprintf(cfg.head, sizeof cfg.head, "glam");
    cfg.dim = 10;
    imago_model *m = NULL;
    imago_error err = {0};
    int rc = imago_model_synthetic(&cfg, specs, n, 7, &m, &err);
    is_int(rc, 0, "synthetic GLAM model (%s)", rc ? err.msg : "");
    if (rc)
        return;
    imago_glam *g = NULL;
    rc = imago_glam_new(m, 24, &g, &err);
    is_int(rc, 0, "widths read from the shapes (%s)", rc ? err.msg : "");
    if (g)
        is_int(imago_glam_out_dim(g), 10, "FC width 10");
    float x[4 * 3 * 24], y[10];
    for (size_t i = 0; i < sizeof x / sizeof x[0]; i++)
        x[i] = (float)(i % 7) * 0.25f;
    rc = g ? imago_glam_forward(g, x, 4, 3, 3.0f, 1, y, NULL, &err) : -1;
    int finite = 1;
    for (int i = 0; i < 10; i++)
        finite &= isfinite(y[i]);
    ok(rc == 0 && finite, "forward on demo weights gives finite values");
    imago_glam_free(g);
    g = NULL;
    err = (imago_error){0};
    rc = imago_glam_new(m, 32, &g, &err);
    ok(rc == IMAGO_ERR_FORMAT && strstr(err.msg, "glam.ls_reduce.weight"),
       "a 32-channel map is refused, naming glam.ls_reduce.weight (%s)", err.msg);
    imago_model_free(m);

    /* one tensor missing, one with a wrong shape */
    for (int i = 0; i < n; i++) {
        if (strcmp(specs[i].name, "glam.ls_d2.bias") != 0)
            continue;
        imago_tensor_spec tmp = specs[i];
        specs[i] = specs[n - 1];
        err = (imago_error){0};
        rc = imago_model_synthetic(&cfg, specs, n - 1, 7, &m, &err);
        rc = rc ? rc : imago_glam_new(m, 24, &g, &err);
        ok(rc == IMAGO_ERR_NOT_FOUND && strstr(err.msg, "glam.ls_d2.bias"),
           "missing glam.ls_d2.bias is named (%s)", err.msg);
        imago_model_free(m);
        specs[n - 1] = specs[i];
        specs[i] = tmp;
    }
    for (int i = 0; i < n; i++) {
        if (strcmp(specs[i].name, "glam.gs_k.weight") != 0)
            continue;
        specs[i].dims[0] = 6; /* gs_q says 5 */
        err = (imago_error){0};
        rc = imago_model_synthetic(&cfg, specs, n, 7, &m, &err);
        rc = rc ? rc : imago_glam_new(m, 24, &g, &err);
        ok(rc == IMAGO_ERR_FORMAT && strstr(err.msg, "glam.gs_k.weight"),
           "glam.gs_k.weight wider than glam.gs_q is refused (%s)", err.msg);
        imago_model_free(m);
        specs[i].dims[0] = 5;
    }
}

int main(void)
{
    validation();
    const char *root, *py = testutil_reference_python("torch", &root);
    if (!py)
        return tap_done();
    char tmp[64];
    testutil_mkdtemp("glam", tmp, sizeof tmp);
    run_case(py, root, tmp, "3x5", 16, 4, 8, 3, 5, 0);
    run_case(py, root, tmp, "17x19", 24, 6, 10, 17, 19, 3);
    testutil_rmdir(tmp);
    return tap_done();
}
