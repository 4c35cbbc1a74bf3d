/* The AP-GeM and GLAP poolings (engine/attpool.c) against numpy: the fixture
 * of tools/attpool_fixture.py holds a small map, an attention map, GLAP logits
 * and an embedding with the expected outputs computed in float64 with explicit
 * sums. Also, without the fixture: a = 1 everywhere reduces AP-GeM to plain
 * GeM (and a constant a to the same), a one-hot softmax map reduces a GLAP
 * per-map mean to that location's (clamped) values, and two images in one
 * call are pooled independently. The fixture part is skipped (77 for that
 * part) without the reference Python.
 */
#include "engine/attpool.h"
#include "engine/model.h"
#include "tap.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double max_rel(const float *got, const float *want, size_t n)
{
    double e = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        e = d > e ? d : e;
        s = fabs(want[i]) > s ? fabs(want[i]) : s;
    }
    return e / (s > 1e-30 ? s : 1.0);
}

static float *rnd(size_t n, unsigned *seed, float lo, float hi)
{
    float *x = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        *seed = *seed * 1103515245u + 12345u;
        x[i] = lo + (hi - lo) * (float)((*seed >> 8) & 0xffff) / 65535.0f;
    }
    return x;
}

/* plain GeM in double, the a = 1 reference */
static void gem_ref(const float *x, int hw, int c, double p, float *out)
{
    for (int ch = 0; ch < c; ch++) {
        double s = 0;
        for (int i = 0; i < hw; i++) {
            double t = x[(size_t)i * c + ch] > 1e-6f ? x[(size_t)i * c + ch] : 1e-6;
            s += pow(t, p);
        }
        out[ch] = (float)pow(s / hw, 1.0 / p);
    }
}

static void self_contained(void)
{
    const int hw = 35, c = 70, k = 4; /* c > 64: two channel blocks */
    unsigned seed = 7;
    float *x = rnd((size_t)2 * hw * c, &seed, -0.5f, 2.0f);
    float *ones = malloc((size_t)2 * hw * sizeof(float));
    float *half = malloc((size_t)2 * hw * sizeof(float));
    for (int i = 0; i < 2 * hw; i++) {
        ones[i] = 1.0f;
        half[i] = 0.25f;
    }
    float want[2 * 70], got[2 * 70], got2[2 * 70];
    gem_ref(x, hw, c, 3.0, want);
    gem_ref(x + (size_t)hw * c, hw, c, 3.0, want + c);
    imago_apgem_pool(x, ones, 2, hw, c, 3.0f, 2, got);
    double e = max_rel(got, want, (size_t)2 * c);
    ok(e < 1e-6, "AP-GeM with a = 1 is GeM (p = 3, 2 images, max rel err %.3g)", e);
    imago_apgem_pool(x, half, 2, hw, c, 3.0f, 1, got2);
    e = max_rel(got2, want, (size_t)2 * c);
    ok(e < 1e-6, "AP-GeM with a constant a = 0.25 is GeM too (max rel err %.3g)", e);
    gem_ref(x, hw, c, 2.3, want);
    imago_apgem_pool(x, ones, 1, hw, c, 2.3f, 2, got);
    e = max_rel(got, want, (size_t)c);
    ok(e < 1e-6, "AP-GeM with a = 1 is GeM (p = 2.3, max rel err %.3g)", e);

    /* a map of zeros except one location: the mean is that location */
    float *a1 = calloc((size_t)hw, sizeof(float));
    a1[17] = 0.8f;
    imago_apgem_pool(x, a1, 1, hw, c, 3.0f, 2, got);
    double em = 0;
    for (int ch = 0; ch < c; ch++) {
        float v = x[(size_t)17 * c + ch] > 1e-6f ? x[(size_t)17 * c + ch] : 1e-6f;
        em = fmax(em, fabs(got[ch] - v) / fmax(v, 1e-3));
    }
    ok(em < 1e-5, "AP-GeM with attention on one location gives its values (max rel err %.3g)", em);

    /* GLAP: one-hot softmax maps (logit +100 at one location per map) */
    float *s = calloc((size_t)2 * hw * k, sizeof(float));
    const int loc[2][4] = {{0, 9, 34, 17}, {5, 5, 20, 33}};
    for (int img = 0; img < 2; img++)
        for (int j = 0; j < k; j++)
            s[((size_t)img * hw + loc[img][j]) * k + j] = 100.0f;
    float *vk = malloc((size_t)2 * k * c * sizeof(float));
    float v[2 * 70];
    int rc = imago_glap_pool(x, s, 2, hw, c, k, 3.0f, NULL, NULL, 0, 2, v, vk, NULL);
    is_int(rc, 0, "GLAP pooling runs");
    double eo = 0, ev = 0;
    for (int img = 0; img < 2; img++) {
        const float *xi = x + (size_t)img * hw * c;
        double sum[70] = {0};
        for (int j = 0; j < k; j++) {
            const float *row = xi + (size_t)loc[img][j] * c;
            double n2 = 0;
            for (int ch = 0; ch < c; ch++) {
                double t = row[ch] > 1e-6f ? row[ch] : 1e-6;
                double g = vk[((size_t)img * k + j) * c + ch];
                eo = fmax(eo, fabs(g - t) / fmax(t, 1e-3));
                n2 += t * t;
            }
            for (int ch = 0; ch < c; ch++)
                sum[ch] += (row[ch] > 1e-6f ? row[ch] : 1e-6) / (sqrt(n2) + 1e-6);
        }
        for (int ch = 0; ch < c; ch++)
            ev = fmax(ev, fabs(v[(size_t)img * c + ch] - sum[ch]));
    }
    ok(eo < 1e-5,
       "GLAP: a one-hot softmax map gives that location's values per map (max rel "
       "err %.3g)",
       eo);
    ok(ev < 1e-5, "GLAP: v = sum_k L2N(v_k) of those (max abs err %.3g)", ev);
    is_int(imago_glap_pool(x, s, 1, 0, c, k, 3.0f, NULL, NULL, 0, 1, v, NULL, NULL),
           IMAGO_ERR_INVALID, "GLAP refuses an empty map");
    free(x);
    free(ones);
    free(half);
    free(a1);
    free(s);
    free(vk);
}

static const float *need(const imago_model *m, const char *name, int64_t *numel)
{
    imago_tensor t;
    imago_error err = {0};
    if (imago_model_tensor(m, name, &t, &err) != 0)
        tap_bail(err.msg);
    if (numel)
        *numel = t.numel;
    return t.data;
}

static void fixture(const char *py, const char *root, const char *tmp, const char *label, int c,
                    int k, int dim, int h, int w, int seed)
{
    char path[1024], args[256];
    snprintf(path, sizeof path, "%s/attpool_%s.safetensors", tmp, label);
    snprintf(args, sizeof args, "--c %d --k %d --dim %d --height %d --width %d --seed %d", c, k,
             dim, h, w, seed);
    if (testutil_run_fixture(py, root, "attpool_fixture.py", path, args, label))
        return;
    imago_model *m = NULL;
    imago_error err = {0};
    if (imago_model_load(path, &m, &err) != 0) {
        ok(0, "%s: fixture loads: %s", label, err.msg);
        return;
    }
    int hw = h * w;
    const float *F = need(m, "input.F", NULL), *a = need(m, "input.a", NULL);
    const float *S = need(m, "input.S", NULL), *W = need(m, "input.fc_w", NULL);
    const float *b = need(m, "input.fc_b", NULL), *p = need(m, "pool.p", NULL);
    float *got = malloc((size_t)(c > dim ? c : dim) * sizeof(float));
    float *vk = malloc((size_t)k * c * sizeof(float));
    imago_apgem_pool(F, a, 1, hw, c, p[0], 2, got);
    double e = max_rel(got, need(m, "expect.apgem", NULL), (size_t)c);
    ok(e < 2e-6, "%s: AP-GeM matches numpy (p = %.3f, max rel err %.3g)", label, p[0], e);
    float *ones = malloc((size_t)hw * sizeof(float));
    for (int i = 0; i < hw; i++)
        ones[i] = 1.0f;
    imago_apgem_pool(F, ones, 1, hw, c, p[0], 2, got);
    e = max_rel(got, need(m, "expect.gem", NULL), (size_t)c);
    ok(e < 2e-6, "%s: AP-GeM with a = 1 matches numpy's plain GeM (max rel err %.3g)", label, e);
    int rc = imago_glap_pool(F, S, 1, hw, c, k, p[0], NULL, NULL, 0, 2, got, vk, &err);
    is_int(rc, 0, "%s: GLAP pooling runs", label);
    e = max_rel(vk, need(m, "expect.glap_vk", NULL), (size_t)k * c);
    ok(e < 1e-5, "%s: GLAP per-map means v_k match numpy (max rel err %.3g)", label, e);
    e = max_rel(got, need(m, "expect.glap_v", NULL), (size_t)c);
    ok(e < 1e-5, "%s: GLAP v = sum_k L2N(v_k) matches numpy (max rel err %.3g)", label, e);
    rc = imago_glap_pool(F, S, 1, hw, c, k, p[0], W, b, dim, 2, got, NULL, &err);
    e = max_rel(got, need(m, "expect.glap_e", NULL), (size_t)dim);
    ok(rc == 0 && e < 1e-5, "%s: GLAP embedding W v + b matches numpy (max rel err %.3g)", label,
       e);
    free(got);
    free(vk);
    free(ones);
    imago_model_free(m);
}

int main(void)
{
    self_contained();
    const char *root, *py = testutil_reference_python("torch, numpy", &root);
    if (!py)
        return tap_done();
    char tmp[64];
    testutil_mkdtemp("attpool", tmp, sizeof tmp);
    fixture(py, root, tmp, "4x7", 12, 3, 5, 4, 7, 0);
    fixture(py, root, tmp, "9x13", 80, 8, 16, 9, 13, 5);
    testutil_rmdir(tmp);
    return tap_done();
}
