/* `imago extract`: images (or raw normalised tensors) -> descriptors, as a
 * .npy file or JSON lines. Also the driver of the parity tests and of
 * tools/bench_extract (--time N reports the mean forward latency).
 */
#include "cmd_extract.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: imago extract IMAGE... [--model F | --demo ARCH] [--backend auto|cpu|cuda]\n"
            "                     [--precision fp32|bf16|fp16] [--scales a,b,...] [--max-side N]\n"
            "                     [--box x1,y1,x2,y2]\n"
            "                     [--threads N] [--batch B] [--out file.npy|-] [--time N]\n"
            "  An IMAGE ending in .npy is a raw float32 NCHW tensor (already normalised).\n"
            "  --demo ARCH  built-in demo model (seeded random weights), default resnet50-gem\n"
            "  --backend    default: $IMAGO_ENGINE_BACKEND, else auto\n"
            "  --out -      JSON lines on stdout (default)\n"
            "  --batch B    run each input as a batch of B copies (benchmarks)\n"
            "  --time N     after the first run, time N more runs; mean on stderr\n");
}

static int parse_floats(const char *s, float *out, int max, int *n)
{
    *n = 0;
    while (*s) {
        if (*n == max)
            return -1;
        char *end;
        errno = 0;
        double v = strtod(s, &end);
        if (end == s || errno)
            return -1;
        out[(*n)++] = (float)v;
        s = end;
        if (*s == ',')
            s++;
        else if (*s)
            return -1;
    }
    return *n > 0 ? 0 : -1;
}

/* Inputs are read whole: images and .npy tensors up to 2 GiB. */
#define INPUT_MAX_BYTES ((size_t)1 << 31)

/* A float32 C-order .npy of shape (1,3,H,W) or (3,H,W) -> NHWC. */
static int read_npy_nchw(const char *path, float **out, int *h, int *w, imago_error *err)
{
    void *bytes;
    size_t len;
    int rc = imago_read_file(path, INPUT_MAX_BYTES, &bytes, &len, err);
    if (rc)
        return rc;
    unsigned char *d = bytes;
    rc = imago_error_set(err, IMAGO_ERR_FORMAT, "%s: not a float32 C-order (1,)3xHxW .npy",
                         path);
    if (len < 10 || memcmp(d, "\x93NUMPY", 6) != 0)
        goto done;
    size_t hl = d[6] == 1 ? (size_t)(d[8] | d[9] << 8) : 0, off = 10;
    if (d[6] >= 2 && len >= 12) {
        hl = (size_t)d[8] | (size_t)d[9] << 8 | (size_t)d[10] << 16 | (size_t)d[11] << 24;
        off = 12;
    }
    if (hl == 0 || off + hl > len)
        goto done;
    char hdr[512];
    size_t cl = hl < sizeof hdr - 1 ? hl : sizeof hdr - 1;
    memcpy(hdr, d + off, cl);
    hdr[cl] = 0;
    if (!strstr(hdr, "'<f4'") || !strstr(hdr, "'fortran_order': False"))
        goto done;
    const char *sh = strstr(hdr, "'shape': (");
    if (!sh)
        goto done;
    long dims[4];
    int nd = 0;
    const char *s = sh + 10;
    while (nd < 4) {
        while (*s == ' ' || *s == ',')
            s++;
        if (*s == ')')
            break;
        char *end;
        dims[nd] = strtol(s, &end, 10);
        if (end == s)
            goto done;
        nd++;
        s = end;
    }
    const long *dm = dims;
    if (nd == 4 && dims[0] == 1)
        dm = dims + 1;
    else if (nd != 3)
        goto done;
    if (dm[0] != 3 || dm[1] < 1 || dm[2] < 1 || dm[1] > 65536 || dm[2] > 65536)
        goto done;
    size_t px = (size_t)dm[1] * (size_t)dm[2];
    if (len - off - hl < px * 3 * sizeof(float))
        goto done;
    imago_error_clear(err);
    rc = 0;
    const unsigned char *raw = d + off + hl;
    float *x = imago_xmalloc(px * 3 * sizeof(float));
    for (int c = 0; c < 3; c++)
        for (size_t i = 0; i < px; i++) {
            float v;
            memcpy(&v, raw + ((size_t)c * px + i) * sizeof(float), sizeof v);
            x[i * 3 + c] = v;
        }
    *out = x;
    *h = (int)dm[1];
    *w = (int)dm[2];
done:
    free(d);
    return rc;
}

static int write_npy(const char *path, const float *v, int n, int dim, imago_error *err)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return imago_error_set(err, IMAGO_ERR_IO, "cannot create %s: %s", path, strerror(errno));
    char hdr[128];
    int hl = snprintf(hdr, sizeof hdr, "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }",
                      n, dim);
    int total = 10 + hl + 1;
    int pad = (64 - total % 64) % 64;
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, 0, 0};
    int hlen = hl + pad + 1;
    pre[8] = (unsigned char)(hlen & 0xff);
    pre[9] = (unsigned char)(hlen >> 8);
    int ok = fwrite(pre, 1, 10, f) == 10 && fwrite(hdr, 1, (size_t)hl, f) == (size_t)hl;
    for (int i = 0; ok && i < pad; i++)
        ok = fputc(' ', f) != EOF;
    ok = ok && fputc('\n', f) != EOF;
    ok = ok && fwrite(v, sizeof(float), (size_t)n * dim, f) == (size_t)n * dim;
    if (fclose(f) != 0)
        ok = 0;
    if (!ok)
        return imago_error_set(err, IMAGO_ERR_IO, "cannot write %s", path);
    return 0;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* One input -> n_batch copies through the engine; descriptor of the first. */
static int run_one(imago_engine *e, const char *path, const imago_decode_params *dp, int batch,
                   int time_iters, float *desc, int dim, imago_error *err)
{
    int rc;
    float *out = imago_xmalloc((size_t)batch * dim * sizeof(float));
    float *x = NULL, *xb = NULL;
    imago_image *img = NULL;
    const imago_image **imgs = NULL;
    int h = 0, w = 0;
    if (ends_with(path, ".npy")) {
        if ((rc = read_npy_nchw(path, &x, &h, &w, err)))
            goto done;
        size_t one = (size_t)h * w * 3;
        xb = imago_xmalloc((size_t)batch * one * sizeof(float));
        for (int i = 0; i < batch; i++)
            memcpy(xb + i * one, x, one * sizeof(float));
    } else {
        void *data;
        size_t len;
        if ((rc = imago_read_file(path, INPUT_MAX_BYTES, &data, &len, err)))
            goto done;
        rc = imago_image_decode(data, len, dp, &img, err);
        free(data);
        if (rc)
            goto done;
        imgs = imago_xmalloc((size_t)batch * sizeof(*imgs));
        for (int i = 0; i < batch; i++)
            imgs[i] = img;
        h = img->height;
        w = img->width;
    }
    int64_t total = 0;
    for (int it = 0; it <= time_iters; it++) {
        int64_t t0 = imago_now_us();
        rc = xb ? imago_engine_embed_nhwc(e, xb, batch, h, w, out, err)
                : imago_engine_embed(e, (const imago_image *const *)imgs, batch, out, err);
        if (rc)
            goto done;
        int64_t dt = imago_now_us() - t0;
        if (it == 0 && time_iters > 0) /* the first run also builds the per-shape plans */
            fprintf(stderr, "first run (plan build + forward): %.1f ms\n", dt / 1e3);
        else if (time_iters > 0) {
            total += dt;
            fprintf(stderr, "run %d: %.2f ms\n", it, dt / 1e3);
        }
    }
    if (time_iters > 0)
        fprintf(stderr, "%s: %dx%d batch %d: %.2f ms per batch, %.3f images/s over %d runs\n",
                path, w, h, batch, total / 1e3 / time_iters,
                1e6 * batch * time_iters / (double)total, time_iters);
    memcpy(desc, out, (size_t)dim * sizeof(float));
    rc = 0;
done:
    free(out);
    free(x);
    free(xb);
    free(imgs);
    imago_image_free(img);
    return rc;
}

int imago_cmd_extract(int argc, char **argv)
{
    imago_engine_params ep = imago_engine_params_default();
    imago_decode_params dp = imago_decode_params_default();
    const char *out_path = "-";
    float scales[8];
    int n_scales = 0, batch = 1, time_iters = 0, max_side = 0;
    const char **inputs = imago_xcalloc((size_t)argc + 1, sizeof(char *));
    int n_in = 0;
    const char *env_backend = getenv("IMAGO_ENGINE_BACKEND");
    if (env_backend && *env_backend)
        ep.backend = env_backend;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int takes = 1;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            free(inputs);
            return 0;
        } else if (a[0] != '-' || strcmp(a, "-") == 0) {
            inputs[n_in++] = a;
            continue;
        }
        if (!v)
            goto bad;
        if (strcmp(a, "--model") == 0)
            ep.model_path = v;
        else if (strcmp(a, "--demo") == 0)
            ep.demo_arch = v;
        else if (strcmp(a, "--precision") == 0)
            ep.precision = v;
        else if (strcmp(a, "--backend") == 0 || strcmp(a, "--engine.backend") == 0)
            ep.backend = v;
        else if (strcmp(a, "--threads") == 0)
            ep.threads = atoi(v);
        else if (strcmp(a, "--max-side") == 0)
            max_side = atoi(v);
        else if (strcmp(a, "--batch") == 0)
            batch = atoi(v);
        else if (strcmp(a, "--time") == 0)
            time_iters = atoi(v);
        else if (strcmp(a, "--out") == 0)
            out_path = v;
        else if (strcmp(a, "--scales") == 0) {
            if (parse_floats(v, scales, 8, &n_scales))
                goto bad;
        } else if (strcmp(a, "--box") == 0) {
            float b[4];
            int nb;
            if (parse_floats(v, b, 4, &nb) || nb != 4)
                goto bad;
            dp.has_box = 1;
            for (int k = 0; k < 4; k++)
                dp.box[k] = b[k];
        } else {
            takes = 0;
        }
        if (!takes)
            goto bad;
        i++;
        continue;
    bad:
        fprintf(stderr, "imago extract: bad argument '%s'%s%s\n", a, v ? " " : "", v ? v : "");
        usage(stderr);
        free(inputs);
        return 2;
    }
    if (n_in == 0 || batch < 1 || time_iters < 0 || max_side < 0) {
        usage(stderr);
        free(inputs);
        return 2;
    }
    if (n_scales) {
        ep.scales = scales;
        ep.n_scales = n_scales;
    }
    ep.max_side = max_side;

    imago_error err;
    imago_error_clear(&err);
    imago_engine *e = NULL;
    float *all = NULL;
    int status = 1;
    if (imago_engine_open(&ep, &e, &err))
        goto fail;
    imago_model_info info;
    imago_engine_describe(e, &info);
    if (!info.trained)
        fprintf(stderr, "imago extract: warning: model '%s' has random weights (not trained)\n",
                info.name);
    dp.max_side = info.max_side;
    all = imago_xmalloc((size_t)n_in * info.dim * sizeof(float));
    for (int i = 0; i < n_in; i++) {
        if (run_one(e, inputs[i], &dp, batch, time_iters, all + (size_t)i * info.dim, info.dim,
                    &err)) {
            imago_error_prefix(&err, "%s", inputs[i]);
            goto fail;
        }
    }
    if (strcmp(out_path, "-") == 0) {
        for (int i = 0; i < n_in; i++) {
            printf("{\"input\": \"");
            for (const char *c = inputs[i]; *c; c++) {
                if (*c == '"' || *c == '\\')
                    printf("\\%c", *c);
                else if ((unsigned char)*c < 0x20)
                    printf("\\u%04x", *c);
                else
                    putchar(*c);
            }
            printf("\", \"dim\": %d, \"descriptor\": [", info.dim);
            for (int k = 0; k < info.dim; k++)
                printf(k ? ", %.9g" : "%.9g", all[(size_t)i * info.dim + k]);
            printf("]}\n");
        }
    } else if (write_npy(out_path, all, n_in, info.dim, &err)) {
        goto fail;
    }
    status = 0;
fail:
    if (status)
        fprintf(stderr, "imago extract: %s (%s)\n", err.msg, imago_error_name(err.code));
    free(all);
    free(inputs);
    imago_engine_free(e);
    return status;
}
