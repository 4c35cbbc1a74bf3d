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

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) &&                   \
    !defined(__SANITIZE_ADDRESS__)
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

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_HORIZ_SSE41 1
/* The same arithmetic with the three channels of a tap in one vector: a
 * 4-byte load (R, G, B, next pixel's R) widened to int32, times the tap's
 * weight; the fourth lane is ignored. The tap on the row's last pixel is
 * loaded byte by byte so that no read goes past the row. Packing with
 * signed then unsigned saturation clips to [0, 255] exactly like clip8. */
__attribute__((target("sse4.1"))) static void
horiz_row_sse41(const uint8_t *restrict in, int sw, uint8_t *restrict out, int tw,
                const coeffs *c)
{
    const int ksize = c->ksize;
    const __m128i init = _mm_set1_epi32(1 << (PRECISION_BITS - 1));
    for (int xx = 0; xx < tw; xx++) {
        const int xmin = c->bounds[2 * xx], n = c->bounds[2 * xx + 1];
        const int32_t *restrict k = c->k + (size_t)xx * ksize;
        const uint8_t *restrict s = in + (size_t)xmin * 3;
        const int nfast = xmin + n == sw ? n - 1 : n;
        __m128i acc0 = init, acc1 = _mm_setzero_si128();
        int x = 0;
        for (; x + 1 < nfast; x += 2) {
            uint32_t v0, v1;
            memcpy(&v0, s + 3 * x, 4);
            memcpy(&v1, s + 3 * x + 3, 4);
            __m128i p0 = _mm_cvtepu8_epi32(_mm_cvtsi32_si128((int)v0));
            __m128i p1 = _mm_cvtepu8_epi32(_mm_cvtsi32_si128((int)v1));
            acc0 = _mm_add_epi32(acc0, _mm_mullo_epi32(p0, _mm_set1_epi32(k[x])));
            acc1 = _mm_add_epi32(acc1, _mm_mullo_epi32(p1, _mm_set1_epi32(k[x + 1])));
        }
        for (; x < nfast; x++) {
            uint32_t v0;
            memcpy(&v0, s + 3 * x, 4);
            __m128i p0 = _mm_cvtepu8_epi32(_mm_cvtsi32_si128((int)v0));
            acc0 = _mm_add_epi32(acc0, _mm_mullo_epi32(p0, _mm_set1_epi32(k[x])));
        }
        for (; x < n; x++) {
            __m128i p0 = _mm_setr_epi32(s[3 * x], s[3 * x + 1], s[3 * x + 2], 0);
            acc0 = _mm_add_epi32(acc0, _mm_mullo_epi32(p0, _mm_set1_epi32(k[x])));
        }
        __m128i v = _mm_srai_epi32(_mm_add_epi32(acc0, acc1), PRECISION_BITS);
        v = _mm_packus_epi16(_mm_packs_epi32(v, v), v);
        uint32_t px = (uint32_t)_mm_cvtsi128_si32(v);
        out[3 * xx + 0] = (uint8_t)px;
        out[3 * xx + 1] = (uint8_t)(px >> 8);
        out[3 * xx + 2] = (uint8_t)(px >> 16);
    }
}
#endif

typedef void (*horiz_fn)(const uint8_t *, int, uint8_t *, int, const coeffs *);

static horiz_fn pick_horiz(int simd)
{
#ifdef HAVE_HORIZ_SSE41
    if (simd && __builtin_cpu_supports("sse4.1"))
        return horiz_row_sse41;
#endif
    return horiz_row_scalar;
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
        horiz_fn horiz = pick_horiz(simd);
        for (int y = 0; y < rows; y++)
            horiz(src + (size_t)(row0 + y) * src_stride, sw, hout + (size_t)y * out_stride, tw,
                  &ch);
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
