/* Decode benchmark: a large JPEG to max_side px with DCT-scaled decoding +
 * resize vs full decode + resize (the same resize code), N runs each,
 * median thread CPU time, images/s and the ratio side by side. Single-threaded.
 *
 *   bench_decode [FILE] [RUNS] [MAX_SIDE]
 *   (default: $IMAGO_SHARED/data/photos/large/Elephants_5640x3172.jpg, 9, 1024)
 * tools/bench_decode.py runs this and Pillow (the peer) in one go.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/engine.h"
#include "engine/image_int.h"

/* Thread CPU time: unlike wall time it does not count the time this thread
 * waits for a core, so it stays meaningful while other jobs load the
 * machine (cache and memory-bandwidth contention still show). */
static double cpu_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double run(const unsigned char *d, size_t len, int max_side, int dct, int runs,
                  int *w, int *h)
{
    double *t = calloc((size_t)runs, sizeof *t);
    imago_decode_params p = imago_decode_params_default();
    p.max_bytes = 0;
    p.max_side = max_side;
    p.allow_dct_scaling = dct;
    for (int i = 0; i < runs; i++) {
        imago_image *img = NULL;
        imago_error err;
        imago_error_clear(&err);
        double t0 = cpu_s();
        if (imago_image_decode(d, len, &p, &img, &err) != 0) {
            fprintf(stderr, "decode failed: %s\n", err.msg);
            exit(1);
        }
        t[i] = cpu_s() - t0;
        *w = img->width;
        *h = img->height;
        imago_image_free(img);
    }
    qsort(t, (size_t)runs, sizeof *t, cmp_double);
    double med = t[runs / 2];
    free(t);
    return med;
}

int main(int argc, char **argv)
{
    char def[4096];
    const char *shared = getenv("IMAGO_SHARED");
    snprintf(def, sizeof def, "%s/data/photos/large/Elephants_5640x3172.jpg",
             shared ? shared : "../shared");
    const char *file = argc > 1 ? argv[1] : def;
    int runs = argc > 2 ? atoi(argv[2]) : 9;
    int max_side = argc > 3 ? atoi(argv[3]) : 1024;
    if (runs < 1)
        runs = 1;
    FILE *f = fopen(file, "rb");
    if (!f) {
        perror(file);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *d = malloc((size_t)n);
    if (fread(d, 1, (size_t)n, f) != (size_t)n) {
        fprintf(stderr, "short read\n");
        return 1;
    }
    fclose(f);
    int w0 = 0, h0 = 0, w = 0, h = 0;
    imago_image_probe(d, (size_t)n, NULL, &w0, &h0, NULL);
    /* one warm-up of each */
    run(d, (size_t)n, max_side, 1, 1, &w, &h);
    run(d, (size_t)n, max_side, 0, 1, &w, &h);
    /* interleaved, so that load from other processes hits both alike */
    double *af = calloc((size_t)runs, sizeof *af), *as = calloc((size_t)runs, sizeof *as);
    for (int i = 0; i < runs; i++) {
        af[i] = run(d, (size_t)n, max_side, 0, 1, &w, &h);
        as[i] = run(d, (size_t)n, max_side, 1, 1, &w, &h);
    }
    qsort(af, (size_t)runs, sizeof *af, cmp_double);
    qsort(as, (size_t)runs, sizeof *as, cmp_double);
    double tf = af[runs / 2], ts = as[runs / 2];
    free(af);
    free(as);
    /* breakdown: TurboJPEG decode alone at 1/1 and 1/k, resize alone */
    imago_image_header hdr;
    imago_jpeg_read_header(d, (size_t)n, &hdr, NULL);
    int tw, th;
    imago_image_target_size(hdr.width, hdr.height, max_side, &tw, &th);
    int k = imago_image_dct_scale(hdr.width, hdr.height, tw, th);
    double dec[2], rsz[2];
    for (int v = 0; v < 2; v++) {
        int kk = v ? k : 1;
        int dw = (hdr.width + kk - 1) / kk, dh = (hdr.height + kk - 1) / kk;
        uint8_t *buf = malloc((size_t)dw * dh * 3), *o = malloc((size_t)tw * th * 3);
        float box[4] = {0, 0, (float)((double)hdr.width / kk), (float)((double)hdr.height / kk)};
        double bd = 1e9, br = 1e9;
        for (int i = 0; i < runs; i++) {
            double t0 = cpu_s();
            imago_jpeg_decode(d, (size_t)n, &hdr, kk, buf, NULL);
            double t1 = cpu_s();
            imago_image_resample(buf, dw, dh, (size_t)dw * 3, box, tw, th, o, NULL);
            double t2 = cpu_s();
            bd = t1 - t0 < bd ? t1 - t0 : bd;
            br = t2 - t1 < br ? t2 - t1 : br;
        }
        dec[v] = bd;
        rsz[v] = br;
        free(buf);
        free(o);
    }
    printf("file: %s (%dx%d, %ld bytes) -> %dx%d, %d runs, median thread CPU time\n", file, w0, h0, n, w, h,
           runs);
    printf("%-34s %10s %10s\n", "", "ms", "images/s");
    printf("%-34s %10.1f %10.2f\n", "imago full decode + resize", tf * 1e3, 1.0 / tf);
    printf("%-34s %10.1f %10.2f\n", "imago DCT-scaled decode + resize", ts * 1e3, 1.0 / ts);
    printf("ratio full / DCT-scaled: %.2fx\n", tf / ts);
    printf("breakdown (best of %d): decode 1/1 %.1f ms + resize %.1f ms; decode 1/%d %.1f ms + "
           "resize %.1f ms\n",
           runs, dec[0] * 1e3, rsz[0] * 1e3, k, dec[1] * 1e3, rsz[1] * 1e3);
    printf("imago_dct_ms=%.3f imago_full_ms=%.3f\n", ts * 1e3, tf * 1e3);
    free(d);
    return 0;
}
