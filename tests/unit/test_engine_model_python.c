/* Cross-check with the Python writer (tools/imago_model.py): Python writes a
 * model with F32, F16 and BF16 tensors (including F16 subnormals, infinities
 * and a NaN) plus the fp32 values PyTorch converts them to, and the SHA-256
 * of the file; the C loader must read the same values bit for bit, the same
 * config and the same fingerprint. Skipped when the reference Python or the
 * writer is absent. */
#include "model.h"
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
    "    open(out + '.sha', 'w').write(hashlib.sha256(f.read()).hexdigest())\n";

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
    snprintf(cmd, sizeof cmd, "'%s' '%s' '%s' '%s'", py, script, root, model);
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
    int n = 0, all_same = 1;
    while (f) {
        char name[256];
        int k = 0, ch;
        while ((ch = fgetc(f)) > 0 && k < 255)
            name[k++] = (char)ch;
        if (ch == EOF)
            break;
        name[k] = '\0';
        int64_t count;
        if (fread(&count, 8, 1, f) != 1 || count < 0 || count > 1000000)
            break;
        float *v = malloc((size_t)count * 4 + 4);
        if (fread(v, 4, (size_t)count, f) != (size_t)count) {
            free(v);
            break;
        }
        imago_tensor t;
        int same = imago_model_tensor(m, name, &t, &err) == 0 && t.numel == count;
        for (int64_t i = 0; same && i < count; i++) {
            same = isnan(v[i]) ? isnan(t.data[i]) != 0
                               : memcmp(&v[i], &t.data[i], 4) == 0;
            if (!same)
                tap_diag("%s[%lld]: C %.9g, torch %.9g", name, (long long)i,
                         (double)t.data[i], (double)v[i]);
        }
        ok(same, "%s: %lld values equal torch's fp32 conversion bit for bit", name,
           (long long)count);
        all_same &= same;
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
    tst_cleanup();
    return tap_done();
}
