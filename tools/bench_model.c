/* Benchmark of the model-file code (not a test; timings are noisy on a
 * shared machine). Prints, side by side with a peer run in the same process:
 *   - SHA-256: SHA-NI path vs the portable path, and vs coreutils sha256sum;
 *   - F16 -> F32: F16C vs portable;
 *   - synthetic weights for a ResNet-101 + AGeM sized model (~67M values)
 *     vs a plain memset of the same memory (the floor);
 *   - loading the same model as an F32 .safetensors file (mmap, parse, hash).
 * Build: ninja -C BUILDDIR tools/bench_model (engine/meson.build, not built
 * by default). Run: BUILDDIR/engine/bench_model [--no-file]. */
#include "engine/model_int.h"
#include "../tests/unit/test_engine_model_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ResNet-101 (torchvision layout) + AGeM convolution weights, BN ignored. */
static int resnet101_agem_specs(imago_tensor_spec *s, char names[][64])
{
    int n = 0;
#define ADD(O, I, K)                                                                               \
    do {                                                                                           \
        snprintf(names[n], 64, "w%d", n);                                                          \
        s[n] = (imago_tensor_spec){names[n], 4, {O, I, K, K}, IMAGO_INIT_CONV_HE, 1.0f};           \
        n++;                                                                                       \
    } while (0)
    ADD(64, 3, 7);
    const int blocks[4] = {3, 4, 23, 3}, width[4] = {64, 128, 256, 512};
    int cin = 64;
    for (int st = 0; st < 4; st++) {
        for (int b = 0; b < blocks[st]; b++) {
            int w = width[st];
            ADD(w, cin, 1);
            ADD(w, w, 3);
            ADD(4 * w, w, 1);
            if (b == 0)
                ADD(4 * w, cin, 1);
            cin = 4 * w;
        }
    }
    ADD(1024, 1024, 3);
    ADD(512, 1024, 3);
    ADD(512, 512, 1);
    ADD(2048, 512, 1);
    ADD(2048, 2048, 1);
    ADD(2048, 2048, 1);
    snprintf(names[n], 64, "pool.p");
    s[n] = (imago_tensor_spec){names[n], 1, {1}, IMAGO_INIT_CONST, 3.0f};
    n++;
    return n;
#undef ADD
}

int main(int argc, char **argv)
{
    int with_file = !(argc > 1 && strcmp(argv[1], "--no-file") == 0);
    imago_error err;
    imago_error_clear(&err);

    /* SHA-256 over 128 MiB */
    size_t n = (size_t)128 << 20;
    uint8_t *buf = malloc(n);
    for (size_t i = 0; i < n; i++)
        buf[i] = (uint8_t)(i * 131 + (i >> 12));
    uint8_t d[32];
    int accel = imago_sha256_set_accel(1);
    double t0 = now();
    imago_sha256(buf, n, d);
    double t_acc = now() - t0;
    imago_sha256_set_accel(0);
    t0 = now();
    imago_sha256(buf, n, d);
    double t_port = now() - t0;
    printf("sha256 128 MiB: accelerated(%s) %.3f s (%.0f MB/s) | portable %.3f s (%.0f MB/s) | "
           "ratio %.2fx\n",
           accel ? "sha-ni" : "none", t_acc, n / t_acc / 1e6, t_port, n / t_port / 1e6,
           t_port / t_acc);
    imago_sha256_set_accel(1);
    if (with_file) {
        const char *path = tst_write("blob.bin", buf, n);
        char hex[65];
        t0 = now();
        imago_sha256_file(path, hex, &err);
        double t_file = now() - t0;
        char cmd[700];
        snprintf(cmd, sizeof cmd, "sha256sum '%s' > /dev/null", path);
        t0 = now();
        int rc = system(cmd);
        double t_peer = now() - t0;
        printf("sha256 file 128 MiB: imago %.3f s | sha256sum %.3f s%s | ratio %.2fx\n", t_file,
               t_peer, rc ? " (failed)" : "", t_peer / t_file);
    }

    /* F16 -> F32, 32M values */
    size_t nh = (size_t)32 << 20;
    float *f = malloc(nh * 4);
    memset(f, 0, nh * 4); /* fault the pages in before timing either path */
    t0 = now();
    imago_model_f16_to_f32_(buf, f, nh, 1);
    double t_f16c = now() - t0;
    t0 = now();
    imago_model_f16_to_f32_(buf, f, nh, 0);
    double t_f16p = now() - t0;
    printf("f16->f32 32M values: f16c(%s) %.3f s | portable %.3f s | ratio %.2fx\n",
           imago_model_f16c_available_() ? "yes" : "no", t_f16c, t_f16p, t_f16p / t_f16c);
    free(f);
    free(buf);

    /* synthetic ResNet-101 + AGeM */
    static imago_tensor_spec specs[256];
    static char names[256][64];
    int ns = resnet101_agem_specs(specs, names);
    int64_t total = 0;
    for (int i = 0; i < ns; i++) {
        int64_t k = 1;
        for (int j = 0; j < specs[i].ndim; j++)
            k *= specs[i].dims[j];
        total += k;
    }
    imago_model_config cfg;
    imago_model_config_default(&cfg);
    snprintf(cfg.name, sizeof cfg.name, "bench-resnet101-agem");
    snprintf(cfg.backbone, sizeof cfg.backbone, "resnet101");
    snprintf(cfg.head, sizeof cfg.head, "agem");
    cfg.dim = 2048;
    imago_model *m = NULL;
    t0 = now();
    int rc = imago_model_synthetic(&cfg, specs, ns, 1234, &m, &err);
    double t_syn = now() - t0;
    if (rc) {
        fprintf(stderr, "synthetic: %s\n", err.msg);
        return 1;
    }
    /* the floor: fresh memory of the same size (page faults included, as for
     * the synthetic arena), written once */
    t0 = now();
    float *floor_buf = malloc((size_t)total * 4);
    memset(floor_buf, 1, (size_t)total * 4);
    volatile float keep = floor_buf[total / 2];
    double t_floor = now() - t0;
    (void)keep;
    printf("synthetic resnet101+agem: %d tensors, %.1fM values: %.3f s | memset of the same "
           "bytes %.3f s | ratio %.1fx\n",
           ns, total / 1e6, t_syn, t_floor, t_syn / t_floor);
    free(floor_buf);

    if (with_file) {
        /* write it as an F32 file (the test writer), then load it */
        tst_tensor *t = calloc((size_t)ns, sizeof *t);
        for (int i = 0; i < ns; i++) {
            imago_tensor x;
            imago_model_tensor(m, specs[i].name, &x, NULL);
            t[i] = (tst_tensor){specs[i].name, "F32", x.ndim, {0}, x.data, (size_t)x.numel * 4};
            for (int j = 0; j < x.ndim; j++)
                t[i].dims[j] = x.dims[j];
        }
        char config[256];
        snprintf(config, sizeof config,
                 "{\"format\": 1, \"backbone\": \"resnet101\", \"head\": \"agem\", "
                 "\"dim\": 2048}");
        size_t len;
        uint8_t *img = tst_build(config, t, ns, 1, &len);
        const char *path = tst_write("bench.safetensors", img, len);
        free(img);
        free(t);
        imago_model *lm = NULL;
        t0 = now();
        rc = imago_model_load(path, &lm, &err);
        double t_load = now() - t0;
        char hex[65];
        t0 = now();
        imago_sha256_file(path, hex, &err);
        double t_hash = now() - t0;
        printf("load %.0f MB F32 file: %.3f s (rc %d) | hashing it alone %.3f s | ratio %.2fx\n",
               len / 1e6, t_load, rc, t_hash, t_load / t_hash);
        imago_model_free(lm);
    }
    imago_model_free(m);
    tst_cleanup();
    return 0;
}
