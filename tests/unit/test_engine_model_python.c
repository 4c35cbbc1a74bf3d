/* Cross-check with the Python writer (tools/imago_model.py): Python writes a
 * model with F32, F16 and BF16 tensors (including F16 subnormals, infinities
 * and a NaN) plus the fp32 values PyTorch converts them to, and the SHA-256
 * of the file; the C loader must read the same values bit for bit, the same
 * config and the same fingerprint. With the real MobileNetV2 state dict of
 * ../shared/models (BN statistics randomised), every conv + BN fold done in C
 * must equal torch's float64 fold. Skipped when the reference Python or the
 * writer is absent. */
#include "engine/model.h"
#include "tap.h"
#include "test_engine_model_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *SCRIPT =
    "import hashlib, sys, json\n"
    "sys.path.insert(0, sys.argv[1] + '/tools')\n"
    "import numpy as np, torch, imago_model as im\n"
    "out = sys.argv[2]\n"
    "g = torch.Generator().manual_seed(5)\n"
    "t = {\n"
    "  'backbone.conv1.weight': torch.randn(4, 3, 3, 3, generator=g),\n"
    "  'backbone.bn1.running_var': torch.rand(4, generator=g) + 0.5,\n"
    "  'pool.p': torch.tensor([3.25]),\n"
    "  'half.special': torch.tensor([1.0, -2.0, 65504.0, 2.0**-24, 1023 * 2.0**-24,\n"
    "      float('inf'), float('-inf'), float('nan'), -0.0, 1/3, 1e-6, 7e4]),\n"
    "  'bf.w': torch.randn(5, 7, generator=g) * 100,\n"
    "  'odd': torch.randn(3, generator=g),\n"
    "  'whiten.P': torch.eye(6),\n"
    "}\n"
    "dt = {'half.special': 'f16', 'bf.w': 'bf16', 'odd': 'f16'}\n"
    "cfg = im.make_config('py-test', 'resnet101', 'agem', 'gem', 2048, 'lw',\n"
    "    max_side=800, scales=[1.0, 0.5], source='test_engine_model_python', trained=False)\n"
    "im.save(out, t, config=cfg, dtypes=dt)\n"
    "with open(out + '.expect', 'wb') as f:\n"
    "    for name in sorted(t):\n"
    "        d = im.st_dtype(dt.get(name, 'f32'))\n"
    "        v = t[name].to(im.DTYPES[d][0]).float().contiguous().numpy().astype('<f4')\n"
    "        f.write(name.encode() + b'\\0')\n"
    "        f.write(np.int64(v.size).tobytes())\n"
    "        f.write(v.tobytes())\n"
    "with open(out, 'rb') as f:\n"
    "    open(out + '.sha', 'w').write(hashlib.sha256(f.read()).hexdigest())\n"
    "# part 2: the real MobileNetV2 weights (when present), BN statistics replaced by\n"
    "# random ones so that folding is not the identity; the folds done by torch in\n"
    "# float64 are the expectation\n"
    "pth = sys.argv[3]\n"
    "if pth:\n"
    "    sd = torch.load(pth, map_location='cpu')\n"
    "    t = {'backbone.' + k: v for k, v in sd.items() if not k.endswith('num_batches_tracked')}\n"
    "    g = torch.Generator().manual_seed(9)\n"
    "    pairs = []\n"
    "    for k in sorted(t):\n"
    "        if not k.endswith('.running_var'):\n"
    "            continue\n"
    "        bn = k[:-len('.running_var')]\n"
    "        n = t[k].numel()\n"
    "        t[bn + '.weight'] = torch.rand(n, generator=g) + 0.5\n"
    "        t[bn + '.bias'] = torch.randn(n, generator=g) * 0.1\n"
    "        t[bn + '.running_mean'] = torch.randn(n, generator=g) * 0.1\n"
    "        t[k] = torch.rand(n, generator=g) + 0.01\n"
    "        head, idx = bn.rsplit('.', 1)\n"
    "        conv = head + '.' + str(int(idx) - 1)\n"
    "        if conv + '.weight' in t and t[conv + '.weight'].dim() == 4:\n"
    "            pairs.append((conv, bn))\n"
    "    t['pool.p'] = torch.tensor([3.0])\n"
    "    cfg = im.make_config('mnv2-test', 'mobilenet_v2', 'gem', 'gem', 1280, 'none',\n"
    "        mean=[0.5] * 3, std=[0.5] * 3, padding='tf_same')\n"
    "    im.save(out + '.mnv2', t, config=cfg)\n"
    "    with open(out + '.mnv2.fold', 'wb') as f:\n"
    "        for conv, bn in pairs:\n"
    "            w = t[conv + '.weight'].double()\n"
    "            a = t[bn + '.weight'].double() / torch.sqrt(t[bn + '.running_var'].double() + "
    "1e-5)\n"
    "            wf = (w * a.view(-1, 1, 1, 1)).float().numpy().astype('<f4')\n"
    "            bf = (t[bn + '.bias'].double() - a * t[bn + "
    "'.running_mean'].double()).float().numpy().astype('<f4')\n"
    "            for name, v in ((conv, wf), (bn, bf)):\n"
    "                f.write(name.encode() + b'\\0')\n"
    "                f.write(np.int64(v.size).tobytes())\n"
    "                f.write(v.tobytes())\n"
    "        print(len(pairs), 'conv+bn pairs', file=sys.stderr)\n";

/* Reads one record (name, count, float32 values) of the files the script writes. */
static float *read_record(FILE *f, char name[256], int64_t *count)
{
    int k = 0, ch;
    while ((ch = fgetc(f)) > 0 && k < 255)
        name[k++] = (char)ch;
    if (ch == EOF)
        return NULL;
    name[k] = '\0';
    if (fread(count, 8, 1, f) != 1 || *count < 0 || *count > 10000000)
        return NULL;
    float *v = malloc((size_t)*count * 4 + 4);
    if (fread(v, 4, (size_t)*count, f) != (size_t)*count) {
        free(v);
        return NULL;
    }
    return v;
}

/* Folds every conv + BN pair of the real MobileNetV2 in C and compares with torch. */
static void check_real_weights(const char *model)
{
    char path[800];
    snprintf(path, sizeof path, "%s.mnv2", model);
    imago_model *m = NULL;
    imago_error err;
    imago_error_clear(&err);
    is_int(imago_model_load(path, &m, &err), 0, "real MobileNetV2 weights load: %s", err.msg);
    if (!m)
        return;
    const imago_model_config *c = imago_model_get_config(m);
    is_str(c->padding, "tf_same", "padding tf_same");
    ok(c->mean[0] == 0.5f && c->std[2] == 0.5f, "mean = std = 0.5");
    is_int(imago_model_n_tensors(m), 314 - 52 + 1,
           "every tensor but num_batches_tracked, + pool.p");
    snprintf(path, sizeof path, "%s.mnv2.fold", model);
    FILE *f = fopen(path, "rb");
    int pairs = 0, exact = 1;
    double worst = 0;
    while (f) {
        char conv[256], bn[256];
        int64_t nw, nb;
        float *wv = read_record(f, conv, &nw);
        if (!wv)
            break;
        float *bv = read_record(f, bn, &nb);
        if (!bv) {
            free(wv);
            break;
        }
        float *w = NULL, *b = NULL;
        imago_tensor ws;
        if (imago_model_conv_bn(m, conv, bn, &ws, &w, &b, &err) != 0 || ws.numel != nw ||
            ws.dims[0] != nb) {
            ok(0, "fold %s + %s: %s", conv, bn, err.msg);
            exact = 0;
        } else {
            for (int64_t i = 0; i < nw + nb; i++) {
                float got = i < nw ? w[i] : b[i - nw], want = i < nw ? wv[i] : bv[i - nw];
                double d = fabs((double)got - want) / (fabs((double)want) + 1e-30);
                if (got != want) {
                    exact = 0;
                    if (d > worst)
                        worst = d;
                }
            }
            pairs++;
        }
        free(w);
        free(b);
        free(wv);
        free(bv);
    }
    if (f)
        fclose(f);
    is_int(pairs, 52, "52 conv + BN pairs folded (stem, blocks, last conv; depthwise included)");
    if (!exact)
        tap_diag("largest relative difference to torch: %g", worst);
    ok(exact, "C folding equals torch's float64 folding bit for bit");
    imago_model_free(m);
}

int main(void)
{
    const char *root = getenv("IMAGO_SOURCE_ROOT");
    const char *py = getenv("IMAGO_PYTHON");
    if (!py || !py[0])
        py = "/usr/bin/python3";
    if (!root)
        tap_skip_all("IMAGO_SOURCE_ROOT not set (run through meson test)");
    char path[1024];
    snprintf(path, sizeof path, "%s/tools/imago_model.py", root);
    if (access(path, R_OK) != 0)
        tap_skip_all("tools/imago_model.py is absent");
    if (access(py, X_OK) != 0)
        tap_skip_all("the reference Python is absent");
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' -c 'import torch, numpy' 2>/dev/null", py);
    if (system(cmd) != 0)
        tap_skip_all("the reference Python has no torch/numpy");

    const char *script = tst_write("writer.py", SCRIPT, strlen(SCRIPT));
    char model[600];
    snprintf(model, sizeof model, "%s/py.safetensors", tst_tmpdir());
    const char *shared = getenv("IMAGO_SHARED");
    char pth[1024] = "";
    if (shared) {
        snprintf(pth, sizeof pth, "%s/models/mobilenet_v2_imagenet.pth", shared);
        if (access(pth, R_OK) != 0)
            pth[0] = '\0';
    }
    snprintf(cmd, sizeof cmd, "'%s' '%s' '%s' '%s' '%s'", py, script, root, model, pth);
    int rc = system(cmd);
    is_int(rc, 0, "the Python writer ran");
    if (rc != 0) {
        tst_cleanup();
        return tap_done();
    }

    imago_model *m = NULL;
    imago_error err;
    imago_error_clear(&err);
    is_int(imago_model_load(model, &m, &err), 0, "C loads the Python-written file");
    if (!m) {
        tap_diag("%s", err.msg);
        tst_cleanup();
        return tap_done();
    }
    const imago_model_config *c = imago_model_get_config(m);
    is_str(c->name, "py-test", "config name");
    is_str(c->backbone, "resnet101", "backbone");
    is_str(c->head, "agem", "head");
    is_str(c->whitening, "lw", "whitening");
    is_int(c->dim, 2048, "dim");
    is_int(c->max_side, 800, "max_side");
    ok(c->n_scales == 2 && c->scales[1] == 0.5f, "scales [1, 0.5]");
    is_int(c->trained, 0, "trained false");
    is_str(c->p_tensor, "pool.p", "p from tensor pool.p");
    is_int(imago_model_n_tensors(m), 7, "7 tensors");

    char shapath[700], want_sha[80] = "";
    snprintf(shapath, sizeof shapath, "%s.sha", model);
    FILE *f = fopen(shapath, "r");
    if (f) {
        if (!fgets(want_sha, sizeof want_sha, f))
            want_sha[0] = '\0';
        fclose(f);
    }
    is_str(c->fingerprint, want_sha, "fingerprint equals Python's hashlib.sha256");

    char expath[700];
    snprintf(expath, sizeof expath, "%s.expect", model);
    f = fopen(expath, "rb");
    int n = 0;
    while (f) {
        char name[256];
        int64_t count;
        float *v = read_record(f, name, &count);
        if (!v)
            break;
        imago_tensor t;
        int same = imago_model_tensor(m, name, &t, &err) == 0 && t.numel == count;
        for (int64_t i = 0; same && i < count; i++) {
            same = isnan(v[i]) ? isnan(t.data[i]) != 0 : memcmp(&v[i], &t.data[i], 4) == 0;
            if (!same)
                tap_diag("%s[%lld]: C %.9g, torch %.9g", name, (long long)i, (double)t.data[i],
                         (double)v[i]);
        }
        ok(same, "%s: %lld values equal torch's fp32 conversion bit for bit", name,
           (long long)count);
        free(v);
        n++;
    }
    if (f)
        fclose(f);
    is_int(n, 7, "checked every tensor");
    imago_tensor t;
    int64_t want[4] = {4, 3, 3, 3};
    is_int(imago_model_tensor_shape(m, "backbone.conv1.weight", 4, want, &t, &err), 0,
           "conv shape [4, 3, 3, 3]");
    imago_model_free(m);
    if (pth[0])
        check_real_weights(model);
    else
        tap_skip(6, "../shared/models/mobilenet_v2_imagenet.pth is absent");
    tst_cleanup();
    return tap_done();
}
