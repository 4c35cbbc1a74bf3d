/* Unit tests for BatchNorm folding (imago_model_conv_bn / _linear_bn), checked
 * against numbers computed by hand, and for synthetic models (determinism,
 * seeds, init kinds, statistics, spec errors). */
#include "engine/model_int.h"
#include "tap.h"
#include "test_engine_model_util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static imago_error err;

static imago_model *load(const tst_tensor *t, int n)
{
    size_t len;
    uint8_t *img = tst_build(TST_CONFIG_NOP, t, n, 1, &len);
    imago_model *m = NULL;
    imago_error_clear(&err);
    if (imago_model_load_memory(img, len, &m, &err) != 0)
        tap_bail(err.msg);
    free(img);
    return m;
}

static void test_conv_bn(void)
{
    /* conv [O=2, I=1, 1, 2]; BN chosen so that var + eps is a perfect square:
     *   a0 = 2 / sqrt(3.99999 + 1e-5) = 1,   a1 = 3 / sqrt(0.24999 + 1e-5) = 6
     *   w' = [1*1, 1*2, 6*3, 6*4] = [1, 2, 18, 24]
     *   with conv bias [0.5, -1]: b' = beta - a mean + a bias
     *     b0 = 0.1 - 1*1 + 1*0.5 = -0.4,  b1 = 0.2 - 6*(-1) + 6*(-1) = 0.2
     *   without bias: b0 = -0.9, b1 = 6.2 */
    const float w[4] = {1, 2, 3, 4}, bias[2] = {0.5f, -1.0f};
    const float gamma[2] = {2, 3}, beta[2] = {0.1f, 0.2f}, mean[2] = {1, -1};
    const float var[2] = {3.99999f, 0.24999f};
    const float gamma3[3] = {1, 1, 1}, negvar[2] = {1, -1};
    const float fcw[6] = {1, -1, 2, 0.5f, 0, 4}, l1w[3] = {1, 2, 3};
    tst_tensor t[] = {
        {"c.weight", "F32", 4, {2, 1, 1, 2}, w, sizeof w},
        {"c.bias", "F32", 1, {2}, bias, sizeof bias},
        {"nb.weight", "F32", 4, {2, 1, 1, 2}, w, sizeof w},
        {"bn.weight", "F32", 1, {2}, gamma, sizeof gamma},
        {"bn.bias", "F32", 1, {2}, beta, sizeof beta},
        {"bn.running_mean", "F32", 1, {2}, mean, sizeof mean},
        {"bn.running_var", "F32", 1, {2}, var, sizeof var},
        {"b3.weight", "F32", 1, {3}, gamma3, sizeof gamma3},
        {"b3.bias", "F32", 1, {2}, beta, sizeof beta},
        {"b3.running_mean", "F32", 1, {2}, mean, sizeof mean},
        {"b3.running_var", "F32", 1, {2}, var, sizeof var},
        {"neg.weight", "F32", 1, {2}, gamma, sizeof gamma},
        {"neg.bias", "F32", 1, {2}, beta, sizeof beta},
        {"neg.running_mean", "F32", 1, {2}, mean, sizeof mean},
        {"neg.running_var", "F32", 1, {2}, negvar, sizeof negvar},
        {"half.weight", "F32", 1, {2}, gamma, sizeof gamma},
        {"half.bias", "F32", 1, {2}, beta, sizeof beta},
        {"half.running_mean", "F32", 1, {2}, mean, sizeof mean},
        {"fc.weight", "F32", 2, {2, 3}, fcw, sizeof fcw},
        {"fc.bias", "F32", 1, {2}, bias, sizeof bias},
        {"c1d.weight", "F32", 3, {1, 1, 3}, l1w, sizeof l1w},
        {"wrongbias.weight", "F32", 4, {2, 1, 1, 2}, w, sizeof w},
        {"wrongbias.bias", "F32", 1, {3}, gamma3, sizeof gamma3},
    };
    imago_model *m = load(t, (int)(sizeof t / sizeof t[0]));
    imago_tensor ws;
    float *fw = NULL, *fb = NULL;
    is_int(imago_model_conv_bn(m, "c", "bn", &ws, &fw, &fb, &err), 0, "conv + bias + BN folds");
    ok(ws.ndim == 4 && ws.dims[0] == 2 && ws.dims[3] == 2 && ws.numel == 4 && ws.data == fw,
       "wshape is the conv shape with data = w'");
    is_close(fw[0], 1, 1e-5, "w'[0] = 1");
    is_close(fw[1], 2, 1e-5, "w'[1] = 2");
    is_close(fw[2], 18, 1e-4, "w'[2] = 18");
    is_close(fw[3], 24, 1e-4, "w'[3] = 24");
    is_close(fb[0], -0.4, 1e-5, "b'[0] = 0.1 - 1 + 0.5");
    is_close(fb[1], 0.2, 1e-4, "b'[1] = 0.2 + 6 - 6");
    free(fw);
    free(fb);

    is_int(imago_model_conv_bn(m, "nb", "bn", &ws, &fw, &fb, &err), 0, "conv without bias");
    is_close(fb[0], -0.9, 1e-5, "b'[0] = 0.1 - 1");
    is_close(fb[1], 6.2, 1e-4, "b'[1] = 0.2 + 6");
    is_close(fw[3], 24, 1e-4, "w'[3] = 24");
    free(fw);
    free(fb);

    is_int(imago_model_conv_bn(m, "c", NULL, &ws, &fw, &fb, &err), 0, "no BN: bias only");
    ok(fw[0] == 1 && fw[3] == 4 && fb[0] == 0.5f && fb[1] == -1.0f, "w unchanged, b = bias");
    free(fw);
    free(fb);
    is_int(imago_model_conv_bn(m, "nb", NULL, NULL, &fw, &fb, &err), 0, "no BN, no bias");
    ok(fb[0] == 0 && fb[1] == 0, "b = 0");
    free(fw);
    free(fb);

    is_int(imago_model_conv_bn(m, "c1d", NULL, &ws, &fw, &fb, &err), 0,
           "Conv1d weight [1, 1, 3] accepted");
    ok(ws.ndim == 3 && fw[2] == 3.0f, "Conv1d copied");
    free(fw);
    free(fb);

    /* linear + BatchNorm1d: W' rows scaled by a = [1, 6]; b' = beta - a mean + a bias */
    is_int(imago_model_linear_bn(m, "fc", "bn", &ws, &fw, &fb, &err), 0, "linear + BN1d folds");
    ok(ws.ndim == 2 && ws.dims[0] == 2 && ws.dims[1] == 3, "linear shape [2, 3]");
    is_close(fw[0], 1, 1e-5, "W'[0,0] = 1");
    is_close(fw[1], -1, 1e-5, "W'[0,1] = -1");
    is_close(fw[3], 3, 1e-4, "W'[1,0] = 6 * 0.5");
    is_close(fw[5], 24, 1e-4, "W'[1,2] = 6 * 4");
    is_close(fb[0], -0.4, 1e-5, "b'[0]");
    is_close(fb[1], 0.2, 1e-4, "b'[1]");
    free(fw);
    free(fb);

    /* errors */
    fw = fb = (float *)&err;
    imago_error_clear(&err);
    is_int(imago_model_conv_bn(m, "c", "b3", &ws, &fw, &fb, &err), IMAGO_ERR_FORMAT,
           "BN weight of 3 elements for 2 channels");
    ok(strstr(err.msg, "b3.weight") != NULL, "names the tensor: %s", err.msg);
    ok(fw == (float *)&err, "outputs untouched on failure");
    imago_error_clear(&err);
    is_int(imago_model_conv_bn(m, "c", "half", &ws, &fw, &fb, &err), IMAGO_ERR_NOT_FOUND,
           "missing running_var");
    ok(strstr(err.msg, "half.running_var") != NULL, "names it: %s", err.msg);
    imago_error_clear(&err);
    is_int(imago_model_conv_bn(m, "c", "neg", &ws, &fw, &fb, &err), IMAGO_ERR_FORMAT,
           "negative running_var");
    ok(strstr(err.msg, "neg.running_var") != NULL, "names it: %s", err.msg);
    imago_error_clear(&err);
    is_int(imago_model_conv_bn(m, "nope", "bn", &ws, &fw, &fb, &err), IMAGO_ERR_NOT_FOUND,
           "missing conv");
    ok(strstr(err.msg, "nope.weight") != NULL, "names it: %s", err.msg);
    imago_error_clear(&err);
    is_int(imago_model_conv_bn(m, "fc", "bn", &ws, &fw, &fb, &err), IMAGO_ERR_FORMAT,
           "a 2-D weight is not a convolution");
    imago_error_clear(&err);
    is_int(imago_model_linear_bn(m, "c", "bn", &ws, &fw, &fb, &err), IMAGO_ERR_FORMAT,
           "a 4-D weight is not a linear layer");
    imago_error_clear(&err);
    is_int(imago_model_conv_bn(m, "wrongbias", NULL, &ws, &fw, &fb, &err), IMAGO_ERR_FORMAT,
           "conv bias of the wrong size");
    ok(strstr(err.msg, "wrongbias.bias") != NULL, "names it: %s", err.msg);
    ok(fw == (float *)&err && fb == (float *)&err, "outputs still untouched");
    imago_model_free(m);
}

static imago_model_config test_cfg(void)
{
    imago_model_config c;
    imago_model_config_default(&c);
    snprintf(c.name, sizeof c.name, "synthetic-test");
    snprintf(c.backbone, sizeof c.backbone, "resnet50");
    snprintf(c.head, sizeof c.head, "gem");
    c.dim = 2048;
    return c;
}

static const imago_tensor_spec SPECS[] = {
    {"c.weight", 4, {64, 3, 7, 7}, IMAGO_INIT_CONV_HE, 1.0f},
    {"bn.weight", 1, {64}, IMAGO_INIT_ONES, 0.0f},
    {"bn.bias", 1, {64}, IMAGO_INIT_ZEROS, 0.0f},
    {"k", 2, {3, 5}, IMAGO_INIT_CONST, 0.25f},
    {"whiten.P", 2, {3, 4}, IMAGO_INIT_IDENTITY, 0.0f},
    {"n", 1, {20000}, IMAGO_INIT_NORMAL, 2.0f},
    {"pool.p", 1, {1}, IMAGO_INIT_CONST, 3.0f},
    {"empty", 2, {0, 5}, IMAGO_INIT_CONV_HE, 1.0f},
};
#define NSPECS ((int)(sizeof SPECS / sizeof SPECS[0]))

static void stats(const float *x, int64_t n, double *mean, double *sd, double *amax)
{
    double s = 0, s2 = 0, mx = 0;
    for (int64_t i = 0; i < n; i++) {
        s += x[i];
        s2 += (double)x[i] * x[i];
        if (fabs(x[i]) > mx)
            mx = fabs(x[i]);
    }
    *mean = s / (double)n;
    *sd = sqrt(s2 / (double)n - *mean * *mean);
    *amax = mx;
}

static void test_synthetic(void)
{
    imago_model_config cfg = test_cfg();
    cfg.trained = 1;
    imago_model *a = NULL, *b = NULL, *c = NULL;
    imago_error_clear(&err);
    is_int(imago_model_synthetic(&cfg, SPECS, NSPECS, 42, &a, &err), 0, "synthetic model");
    is_int(imago_model_synthetic(&cfg, SPECS, NSPECS, 42, &b, &err), 0, "again, same seed");
    is_int(imago_model_synthetic(&cfg, SPECS, NSPECS, 43, &c, &err), 0, "another seed");
    if (!a || !b || !c)
        tap_bail("synthetic models needed");
    const imago_model_config *ca = imago_model_get_config(a);
    is_int(ca->trained, 0, "trained forced to 0");
    is_int((int)strlen(ca->fingerprint), 64, "fingerprint is 64 hex digits");
    is_str(ca->fingerprint, imago_model_get_config(b)->fingerprint, "same seed, same fingerprint");
    ok(strcmp(ca->fingerprint, imago_model_get_config(c)->fingerprint) != 0,
       "different seed, different fingerprint");
    is_int(imago_model_n_tensors(a), NSPECS, "one tensor per spec");

    int same = 1;
    for (int i = 0; i < NSPECS; i++) {
        imago_tensor x, y;
        imago_model_tensor(a, SPECS[i].name, &x, NULL);
        imago_model_tensor(b, SPECS[i].name, &y, NULL);
        same &= x.numel == y.numel && memcmp(x.data, y.data, (size_t)x.numel * 4) == 0;
        same &= ((uintptr_t)x.data & 63) == 0;
    }
    ok(same, "same seed: bit-identical tensors, each 64-byte aligned");

    imago_tensor x, y;
    imago_model_tensor(a, "c.weight", &x, NULL);
    imago_model_tensor(c, "c.weight", &y, NULL);
    int64_t diff = 0;
    for (int64_t i = 0; i < x.numel; i++)
        diff += x.data[i] != y.data[i];
    ok(diff > x.numel * 99 / 100, "different seed: %lld of %lld conv weights differ",
       (long long)diff, (long long)x.numel);

    /* He init: sd = sqrt(2 / fan_in) with fan_in = 3*7*7 = 147; tails cut at 3.46 sd */
    double mean, sd, amax, want = sqrt(2.0 / 147.0);
    stats(x.data, x.numel, &mean, &sd, &amax);
    is_close(sd, want, want * 0.03, "He init standard deviation sqrt(2/147)");
    is_close(mean, 0, want * 0.05, "He init mean 0");
    ok(amax <= want * 3.4642, "He init bounded by 3.46 sd (max %g)", amax / want);
    imago_model_tensor(a, "n", &x, NULL);
    stats(x.data, x.numel, &mean, &sd, &amax);
    is_close(sd, 2.0, 0.04, "normal(0, 2): sd");
    is_close(mean, 0, 0.06, "normal(0, 2): mean");
    double k4 = 0;
    for (int64_t i = 0; i < x.numel; i++)
        k4 += pow((x.data[i] - mean) / sd, 4);
    is_close(k4 / (double)x.numel, 2.7, 0.15, "kurtosis of Irwin-Hall(4) = 2.7 (normal: 3)");
    int64_t neg = 0;
    for (int64_t i = 0; i < x.numel; i++)
        neg += x.data[i] < 0;
    ok(neg > 9600 && neg < 10400, "symmetric: %lld of 20000 negative", (long long)neg);

    imago_model_tensor(a, "bn.weight", &x, NULL);
    ok(x.data[0] == 1.0f && x.data[63] == 1.0f, "ONES with gain 0 means 1");
    imago_model_tensor(a, "bn.bias", &x, NULL);
    ok(x.data[0] == 0.0f && x.data[63] == 0.0f, "ZEROS");
    imago_model_tensor(a, "k", &x, NULL);
    ok(x.data[0] == 0.25f && x.data[14] == 0.25f, "CONST 0.25");
    imago_model_tensor(a, "whiten.P", &x, NULL);
    ok(x.data[0] == 1 && x.data[5] == 1 && x.data[10] == 1 && x.data[1] == 0 && x.data[3] == 0 &&
           x.data[11] == 0,
       "IDENTITY on a 3x4 matrix");
    imago_model_tensor(a, "empty", &x, NULL);
    ok(x.numel == 0 && x.dims[1] == 5, "empty tensor");

    /* golden values: the generator is platform independent, so these never change */
    imago_tensor g;
    imago_model_tensor(a, "c.weight", &g, NULL);
    ok(g.data[0] == -0.0685509071f && g.data[1] == -0.0467929244f && g.data[2] == 0.10041412f,
       "golden values of c.weight for seed 42: %.9g %.9g %.9g", (double)g.data[0],
       (double)g.data[1], (double)g.data[2]);
    is_str(ca->fingerprint, "330092219c71504f52e5a4df0d5d484f11a675ea5772f731ffa663e6c229d72a",
           "golden fingerprint for seed 42");

    /* a tensor's values depend only on (seed, name): dropping other specs keeps them */
    imago_model *d = NULL;
    is_int(imago_model_synthetic(&cfg, SPECS + 5, 2, 42, &d, &err), 0, "subset of the specs");
    imago_model_tensor(a, "n", &x, NULL);
    imago_model_tensor(d, "n", &y, NULL);
    ok(memcmp(x.data, y.data, (size_t)x.numel * 4) == 0, "same values for 'n' in the subset");
    ok(strcmp(imago_model_get_config(d)->fingerprint, ca->fingerprint) != 0,
       "but a different fingerprint");
    imago_model_free(d);

    /* the folded BN of a synthetic conv works like any other */
    imago_model_config cfg2 = cfg;
    imago_tensor_spec bn[] = {
        {"conv.weight", 4, {4, 2, 3, 3}, IMAGO_INIT_CONV_HE, 1.0f},
        {"bn.weight", 1, {4}, IMAGO_INIT_CONST, 0.5f},
        {"bn.bias", 1, {4}, IMAGO_INIT_ZEROS, 0},
        {"bn.running_mean", 1, {4}, IMAGO_INIT_ZEROS, 0},
        {"bn.running_var", 1, {4}, IMAGO_INIT_ONES, 0},
        {"pool.p", 1, {1}, IMAGO_INIT_CONST, 3},
    };
    is_int(imago_model_synthetic(&cfg2, bn, 6, 7, &d, &err), 0, "synthetic conv + BN");
    float *fw, *fb;
    is_int(imago_model_conv_bn(d, "conv", "bn", NULL, &fw, &fb, &err), 0, "folds");
    imago_model_tensor(d, "conv.weight", &x, NULL);
    is_close(fw[7], x.data[7] * 0.5 / sqrt(1 + 1e-5), 1e-7, "w' = w * 0.5 / sqrt(1 + eps)");
    free(fw);
    free(fb);
    imago_model_free(d);

    imago_model_free(a);
    imago_model_free(b);
    imago_model_free(c);

    /* spec and config errors */
    imago_tensor_spec dup[] = {{"a", 1, {2}, IMAGO_INIT_ZEROS, 0},
                               {"a", 1, {2}, IMAGO_INIT_ZEROS, 0},
                               {"pool.p", 1, {1}, IMAGO_INIT_CONST, 3}};
    imago_error_clear(&err);
    d = (imago_model *)&err;
    is_int(imago_model_synthetic(&cfg, dup, 3, 1, &d, &err), IMAGO_ERR_INVALID, "duplicate names");
    ok(strstr(err.msg, "'a'") != NULL, "names it: %s", err.msg);
    ok(d == (imago_model *)&err, "output untouched");
    imago_tensor_spec id3[] = {{"i", 3, {2, 2, 2}, IMAGO_INIT_IDENTITY, 0}};
    imago_error_clear(&err);
    is_int(imago_model_synthetic(&cfg, id3, 1, 1, &d, &err), IMAGO_ERR_INVALID,
           "identity needs 2 dims");
    imago_tensor_spec negd[] = {{"n", 2, {2, -2}, IMAGO_INIT_ZEROS, 0}};
    imago_error_clear(&err);
    is_int(imago_model_synthetic(&cfg, negd, 1, 1, &d, &err), IMAGO_ERR_INVALID, "negative dim");
    imago_tensor_spec big[] = {{"b", 4, {1 << 20, 1 << 20, 1 << 20, 1}, IMAGO_INIT_ZEROS, 0}};
    imago_error_clear(&err);
    is_int(imago_model_synthetic(&cfg, big, 1, 1, &d, &err), IMAGO_ERR_INVALID,
           "2^60 elements refused before allocating");
    imago_tensor_spec nop[] = {{"w", 1, {2}, IMAGO_INIT_ZEROS, 0}};
    imago_error_clear(&err);
    is_int(imago_model_synthetic(&cfg, nop, 1, 1, &d, &err), IMAGO_ERR_FORMAT,
           "GeM p from tensor pool.p without a pool.p spec");
    ok(strstr(err.msg, "pool.p") != NULL, "names it: %s", err.msg);
    imago_model_config badcfg = cfg;
    badcfg.dim = 0;
    imago_error_clear(&err);
    is_int(imago_model_synthetic(&badcfg, SPECS, NSPECS, 1, &d, &err), IMAGO_ERR_FORMAT,
           "invalid config refused");
    ok(d == (imago_model *)&err, "output untouched");
}

int main(void)
{
    test_conv_bn();
    test_synthetic();
    return tap_done();
}
