/* Pillow-compatible 8-bit Lanczos-3 resampling of a (fractional) source box,
 * written from the algorithm Pillow documents and implements in
 * libImaging/Resample.c, so that imago and a Pillow-based reference agree
 * bit for bit:
 *   - per output pixel, taps [xmin, xmin + n) with xmin = (int)(center -
 *     support + 0.5), weights sinc(x) sinc(x/3) evaluated at (tap - center +
 *     0.5) / filterscale in double precision, normalised to sum 1 and then
 *     quantised to 22-bit fixed point (round half away from zero);
 *   - horizontal pass first (only over the source rows the vertical pass
 *     reads), then vertical; each pass accumulates in int32 from 1 << 21 and
 *     clips (acc >> 22) to [0, 255]; a pass whose size and offset are
 *     unchanged is skipped.
 * Coefficients are computed once per call; the inner loops are integer
 * multiply-adds the compiler vectorises (AVX-512/AVX2 clones picked at run
 * time).
 */
#include "image_int.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PRECISION_BITS (32 - 8 - 2)
#define LANCZOS_SUPPORT 3.0

/* not under ASan or TSan: the ifunc resolver runs before the sanitizer's
 * runtime is initialised (TSan crashes in it at load time) */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) &&                   \
    !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
#define IMAGO_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define IMAGO_CLONES
#endif

static double sinc(double x)
{
    if (x == 0.0)
        return 1.0;
    x = x * M_PI;
    return sin(x) / x;
}

static double lanczos(double x)
{
    if (-3.0 <= x && x < 3.0)
        return sinc(x) * sinc(x / 3);
    return 0.0;
}

typedef struct coeffs {
    int ksize;
    int *bounds; /* per output: xmin, n */
    int32_t *k;  /* per output: ksize fixed-point weights (zero past n) */
} coeffs;

static void coeffs_free(coeffs *c)
{
    free(c->bounds);
    free(c->k);
    c->bounds = NULL;
    c->k = NULL;
}

static int coeffs_compute(int in_size, float in0, float in1, int out_size, coeffs *c,
                          imago_error *err)
{
    /* The box is single precision and its width is taken in float, as
     * Pillow does. */
    double scale = (double)(in1 - in0) / out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = LANCZOS_SUPPORT * filterscale;
    int ksize = (int)ceil(support) * 2 + 1;
    if (out_size > INT_MAX / (ksize * (int)sizeof(double)))
        return imago_error_set(err, IMAGO_ERR_TOO_LARGE, "resize %d -> %d is too large",
                               in_size, out_size);
    double *w = malloc((size_t)ksize * sizeof *w);
    c->bounds = malloc((size_t)out_size * 2 * sizeof *c->bounds);
    c->k = malloc((size_t)out_size * (size_t)ksize * sizeof *c->k);
    if (!w || !c->bounds || !c->k) {
        free(w);
        coeffs_free(c);
        return imago_error_set(err, IMAGO_ERR_NOMEM, "no memory for resize coefficients");
    }
    c->ksize = ksize;
    double ss = 1.0 / filterscale;
    for (int xx = 0; xx < out_size; xx++) {
        double center = in0 + (xx + 0.5) * scale;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0)
            xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size)
            xmax = in_size;
        xmax -= xmin;
        if (xmax < 0)
            xmax = 0;
        double ww = 0.0;
        for (int x = 0; x < xmax; x++) {
            double v = lanczos((x + xmin - center + 0.5) * ss);
            w[x] = v;
            ww += v;
        }
        int32_t *k = c->k + (size_t)xx * ksize;
        for (int x = 0; x < xmax; x++) {
            double v = ww != 0.0 ? w[x] / ww : w[x];
            k[x] = v < 0 ? (int32_t)(-0.5 + v * (1 << PRECISION_BITS))
                         : (int32_t)(0.5 + v * (1 << PRECISION_BITS));
        }
        for (int x = xmax; x < ksize; x++)
            k[x] = 0;
        c->bounds[2 * xx] = xmin;
        c->bounds[2 * xx + 1] = xmax;
    }
    free(w);
    return 0;
}

static inline uint8_t clip8(int32_t v)
{
    v >>= PRECISION_BITS;
    return v < 0 ? 0 : v > 255 ? 255 : (uint8_t)v;
}

/* One row, horizontal pass: out (tw pixels) from in (sw packed RGB pixels). */
static void horiz_row_scalar(const uint8_t *restrict in, int sw, uint8_t *restrict out, int tw,
                             const coeffs *c)
{
    (void)sw;
    const int ksize = c->ksize;
    for (int xx = 0; xx < tw; xx++) {
        const int xmin = c->bounds[2 * xx], n = c->bounds[2 * xx + 1];
        const int32_t *restrict k = c->k + (size_t)xx * ksize;
        const uint8_t *restrict s = in + (size_t)xmin * 3;
        int32_t s0 = 1 << (PRECISION_BITS - 1), s1 = s0, s2 = s0;
        for (int x = 0; x < n; x++) {
            s0 += s[3 * x + 0] * k[x];
            s1 += s[3 * x + 1] * k[x];
            s2 += s[3 * x + 2] * k[x];
        }
        out[3 * xx + 0] = clip8(s0);
        out[3 * xx + 1] = clip8(s1);
        out[3 * xx + 2] = clip8(s2);
    }
}

/* Horizontal pass over a block of up to HB rows at once. The block is
 * first transposed so that, for each source pixel x, its RGB values in the
 * HB rows sit together (HB x 4 bytes, the 4th byte of each unused): every
 * tap then becomes one contiguous 32-lane multiply-add, which the compiler
 * vectorises (2 zmm or 4 ymm vectors), instead of a 3-lane one. The integer
 * arithmetic per channel is exactly horiz_row_scalar's (int32 sums, no
 * overflow, so the order of the additions does not matter). */
#define HB 8
IMAGO_CLONES
static void horiz_block(const uint8_t *restrict in, size_t in_stride, int nrows, int sw,
                        uint8_t *restrict out, size_t out_stride, int tw, const coeffs *c,
                        uint8_t *restrict tr, uint8_t *restrict otr)
{
    /* 4-byte moves: the 4th byte is the next pixel's R, which lands in the
     * unused lane; the row's last pixel is moved byte by byte so that no
     * read goes past the row. */
    for (int r = 0; r < nrows; r++) {
        const uint8_t *restrict p = in + (size_t)r * in_stride;
        uint8_t *restrict t = tr + 4 * r;
        for (int x = 0; x < sw - 1; x++)
            memcpy(t + (size_t)x * 4 * HB, p + 3 * x, 4);
        uint8_t *restrict q = t + (size_t)(sw - 1) * 4 * HB;
        q[0] = p[3 * (sw - 1) + 0];
        q[1] = p[3 * (sw - 1) + 1];
        q[2] = p[3 * (sw - 1) + 2];
    }
    const int ksize = c->ksize;
    for (int xx = 0; xx < tw; xx++) {
        const int xmin = c->bounds[2 * xx], n = c->bounds[2 * xx + 1];
        const int32_t *restrict k = c->k + (size_t)xx * ksize;
        const uint8_t *restrict p = tr + (size_t)xmin * 4 * HB;
        int32_t acc[4 * HB];
        for (int i = 0; i < 4 * HB; i++)
            acc[i] = 1 << (PRECISION_BITS - 1);
        for (int t = 0; t < n; t++, p += 4 * HB) {
            const int32_t kv = k[t];
            for (int i = 0; i < 4 * HB; i++)
                acc[i] += p[i] * kv;
        }
        /* clipped in the transposed layout (vectorises), untransposed below */
        uint8_t *restrict ot = otr + (size_t)xx * 4 * HB;
        for (int i = 0; i < 4 * HB; i++)
            ot[i] = clip8(acc[i]);
    }
    for (int r = 0; r < nrows; r++) {
        uint8_t *restrict o = out + (size_t)r * out_stride;
        const uint8_t *restrict t = otr + 4 * r;
        /* 4-byte moves whose 4th byte the next pixel overwrites */
        for (int xx = 0; xx < tw - 1; xx++)
            memcpy(o + 3 * xx, t + (size_t)xx * 4 * HB, 4);
        memcpy(o + 3 * (tw - 1), t + (size_t)(tw - 1) * 4 * HB, 3);
    }
}

/* One output row of the vertical pass: n input rows (stride apart) weighted
 * by k, over nb bytes; acc is scratch of nb int32. */
IMAGO_CLONES
static void vert_row(const uint8_t *restrict in, size_t stride, int n,
                     const int32_t *restrict k, uint8_t *restrict out, size_t nb,
                     int32_t *restrict acc)
{
    for (size_t i = 0; i < nb; i++)
        acc[i] = 1 << (PRECISION_BITS - 1);
    for (int y = 0; y < n; y++) {
        const uint8_t *restrict r = in + (size_t)y * stride;
        const int32_t ky = k[y];
        for (size_t i = 0; i < nb; i++)
            acc[i] += r[i] * ky;
    }
    for (size_t i = 0; i < nb; i++)
        out[i] = clip8(acc[i]);
}


int imago_image_resample(const uint8_t *src, int sw, int sh, size_t src_stride,
                         const float box[4], int tw, int th, uint8_t *dst, imago_error *err)
{
    return imago_image_resample_impl(src, sw, sh, src_stride, box, tw, th, dst, 1, err);
}

int imago_image_resample_impl(const uint8_t *src, int sw, int sh, size_t src_stride,
                              const float box[4], int tw, int th, uint8_t *dst, int simd,
                              imago_error *err)
{
    if (sw <= 0 || sh <= 0 || tw <= 0 || th <= 0)
        return imago_error_set(err, IMAGO_ERR_INVALID, "resize %dx%d -> %dx%d: bad size", sw,
                               sh, tw, th);
    if (!(box[0] >= 0.0f && box[1] >= 0.0f && box[2] <= (float)sw && box[3] <= (float)sh &&
          box[2] > box[0] && box[3] > box[1]))
        return imago_error_set(err, IMAGO_ERR_INVALID,
                               "resize box (%g,%g,%g,%g) is outside the %dx%d image or empty",
                               (double)box[0], (double)box[1], (double)box[2], (double)box[3],
                               sw, sh);
    const size_t out_stride = (size_t)tw * 3;
    int need_h = tw != sw || box[0] != 0.0f || box[2] != (float)tw;
    int need_v = th != sh || box[1] != 0.0f || box[3] != (float)th;
    if (!need_h && !need_v) {
        for (int y = 0; y < th; y++)
            memcpy(dst + (size_t)y * out_stride, src + (size_t)y * src_stride, out_stride);
        return 0;
    }

    coeffs cv = {0}, ch = {0};
    int rc = coeffs_compute(sh, box[1], box[3], th, &cv, err);
    if (rc != 0)
        return rc;
    /* Source rows the vertical pass reads. */
    int yfirst = cv.bounds[0];
    int ylast = cv.bounds[2 * (th - 1)] + cv.bounds[2 * (th - 1) + 1];
    if (ylast <= yfirst) {
        coeffs_free(&cv);
        return imago_error_set(err, IMAGO_ERR_INVALID, "resize box selects no rows");
    }

    uint8_t *tmp = NULL;
    int32_t *acc = NULL;
    const uint8_t *vin = src;
    size_t vstride = src_stride;
    int voff = 0;
    if (need_h) {
        rc = coeffs_compute(sw, box[0], box[2], tw, &ch, err);
        if (rc != 0)
            goto out;
        int rows = need_v ? ylast - yfirst : th;
        int row0 = need_v ? yfirst : 0;
        uint8_t *hout = dst;
        if (need_v) {
            void *p = NULL;
            rc = imago_alloc_array((size_t)rows, out_stride, 0, &p, err);
            if (rc != 0)
                goto out;
            tmp = p;
            hout = tmp;
        }
        if (simd) {
            /* zeroed once: the unused 4th byte of each pixel and the rows of
             * a short last block then hold no indeterminate values */
            uint8_t *tr = calloc((size_t)sw, 4 * HB), *otr = malloc((size_t)tw * 4 * HB);
            if (!tr || !otr) {
                free(tr);
                free(otr);
                rc = imago_error_set(err, IMAGO_ERR_NOMEM, "no memory for the resize block");
                goto out;
            }
            for (int y = 0; y < rows; y += HB) {
                int nr = rows - y < HB ? rows - y : HB;
                horiz_block(src + (size_t)(row0 + y) * src_stride, src_stride, nr, sw,
                            hout + (size_t)y * out_stride, out_stride, tw, &ch, tr, otr);
            }
            free(tr);
            free(otr);
        } else {
            for (int y = 0; y < rows; y++)
                horiz_row_scalar(src + (size_t)(row0 + y) * src_stride, sw,
                                 hout + (size_t)y * out_stride, tw, &ch);
        }
        vin = tmp;
        vstride = out_stride;
        voff = yfirst;
    }
    if (need_v) {
        acc = malloc(out_stride * sizeof *acc);
        if (!acc) {
            rc = imago_error_set(err, IMAGO_ERR_NOMEM, "no memory for the resize accumulator");
            goto out;
        }
        for (int yy = 0; yy < th; yy++) {
            int ymin = cv.bounds[2 * yy] - voff, n = cv.bounds[2 * yy + 1];
            vert_row(vin + (size_t)ymin * vstride, vstride, n, cv.k + (size_t)yy * cv.ksize,
                     dst + (size_t)yy * out_stride, out_stride, acc);
        }
    }
out:
    free(acc);
    imago_free_aligned(tmp);
    coeffs_free(&ch);
    coeffs_free(&cv);
    return rc;
}
