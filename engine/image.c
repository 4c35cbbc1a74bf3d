/* Image input: format sniffing, limits, and the preprocessing pipeline of
 * docs/preprocessing.md (decode -> EXIF orientation -> query box -> target
 * size -> DCT scaling -> Pillow-compatible Lanczos-3 resize). The decoders
 * live in image_jpeg.c / image_png.c, the resampler in image_resize.c.
 */
#include "image_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

imago_decode_params imago_decode_params_default(void)
{
    imago_decode_params p;
    memset(&p, 0, sizeof p);
    p.max_bytes = 64u << 20;
    p.max_pixels = 100000000u; /* 100 MP: 300 MB of RGB */
    p.max_side = 1024;
    p.has_box = 0;
    p.allow_dct_scaling = 1;
    return p;
}

int imago_image_new(int width, int height, imago_image **out, imago_error *err)
{
    if (width <= 0 || height <= 0)
        return imago_error_set(err, IMAGO_ERR_INVALID, "image size %dx%d is not positive",
                               width, height);
    size_t n;
    if (imago_size_mul3((size_t)width, (size_t)height, 3, &n) != 0)
        return imago_error_set(err, IMAGO_ERR_TOO_LARGE, "image %dx%d is too large", width,
                               height);
    void *px = NULL;
    int rc = imago_alloc_array(n, 1, 0, &px, err);
    if (rc != 0)
        return rc;
    imago_image *img = imago_xmalloc(sizeof *img);
    img->width = width;
    img->height = height;
    img->rgb = px;
    *out = img;
    return 0;
}

void imago_image_free(imago_image *img)
{
    if (!img)
        return;
    imago_free_aligned(img->rgb);
    free(img);
}

/* ---- geometry ---------------------------------------------------------- */

double imago_image_round_half_even(double v)
{
    /* nearbyint rounds half to even in the default rounding mode, which
     * imago never changes. */
    return nearbyint(v);
}

void imago_image_target_size(int cw, int ch, int max_side, int *tw, int *th)
{
    int lng = cw > ch ? cw : ch;
    if (max_side <= 0 || lng <= max_side) {
        *tw = cw;
        *th = ch;
        return;
    }
    int shrt = cw > ch ? ch : cw;
    double s = imago_image_round_half_even((double)shrt * (double)max_side / (double)lng);
    int si = s < 1.0 ? 1 : (int)s;
    if (cw >= ch) {
        *tw = max_side;
        *th = si;
    } else {
        *tw = si;
        *th = max_side;
    }
}

int imago_image_dct_scale(int cw, int ch, int tw, int th)
{
    int lng = cw > ch ? cw : ch;
    int tl = tw > th ? tw : th;
    static const int ks[3] = {8, 4, 2};
    for (int i = 0; i < 3; i++)
        if (lng / ks[i] >= tl)
            return ks[i];
    return 1;
}

static int clampi(double v, int lo, int hi)
{
    if (v < lo)
        return lo;
    if (v > hi)
        return hi;
    return (int)v;
}

int imago_image_crop_rect(const double box[4], int w, int h, int c[4], imago_error *err)
{
    for (int i = 0; i < 4; i++)
        if (!isfinite(box[i]))
            return imago_error_set(err, IMAGO_ERR_INVALID, "box coordinate %d is not finite",
                                   i);
    int x0 = clampi(imago_image_round_half_even(box[0]), 0, w);
    int y0 = clampi(imago_image_round_half_even(box[1]), 0, h);
    int x1 = clampi(imago_image_round_half_even(box[2]), 0, w);
    int y1 = clampi(imago_image_round_half_even(box[3]), 0, h);
    if (x1 <= x0 || y1 <= y0)
        return imago_error_set(err, IMAGO_ERR_INVALID,
                               "box (%g,%g,%g,%g) is empty in the %dx%d image", box[0], box[1],
                               box[2], box[3], w, h);
    c[0] = x0;
    c[1] = y0;
    c[2] = x1;
    c[3] = y1;
    return 0;
}

/* ---- format sniffing and header ------------------------------------------ */

static imago_image_format sniff(const uint8_t *d, size_t len)
{
    static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (len >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF)
        return IMAGO_IMAGE_JPEG;
    if (len >= 8 && memcmp(d, png_sig, 8) == 0)
        return IMAGO_IMAGE_PNG;
    return IMAGO_IMAGE_UNKNOWN;
}

static int read_header(const uint8_t *d, size_t len, imago_image_header *hdr, imago_error *err)
{
    if (len == 0)
        return imago_error_set(err, IMAGO_ERR_FORMAT, "empty image data");
    switch (sniff(d, len)) {
    case IMAGO_IMAGE_JPEG: return imago_jpeg_read_header(d, len, hdr, err);
    case IMAGO_IMAGE_PNG: return imago_png_read_header(d, len, hdr, err);
    default:
        return imago_error_set(err, IMAGO_ERR_FORMAT,
                               "not a JPEG or PNG image (%zu bytes, unknown signature)", len);
    }
}

int imago_image_probe(const void *data, size_t len, imago_image_format *format, int *width,
                      int *height, imago_error *err)
{
    if (!data && len > 0)
        return imago_error_set(err, IMAGO_ERR_INVALID, "NULL image data");
    imago_image_header hdr;
    int rc = read_header(data, len, &hdr, err);
    if (rc != 0)
        return rc;
    int swap = hdr.orientation >= 5;
    if (format)
        *format = hdr.format;
    if (width)
        *width = swap ? hdr.height : hdr.width;
    if (height)
        *height = swap ? hdr.width : hdr.height;
    return 0;
}

/* ---- the pipeline -------------------------------------------------------- */

/* Copies the integer rectangle (x0, y0, w, h) of a packed RGB image. */
static void copy_rect(const uint8_t *src, int sw, int x0, int y0, int w, int h, uint8_t *dst)
{
    size_t row = (size_t)w * 3;
    for (int y = 0; y < h; y++)
        memcpy(dst + (size_t)y * row, src + ((size_t)(y0 + y) * (size_t)sw + (size_t)x0) * 3,
               row);
}

int imago_image_decode(const void *data, size_t len, const imago_decode_params *params,
                       imago_image **out, imago_error *err)
{
    imago_decode_params defaults = imago_decode_params_default();
    const imago_decode_params *p = params ? params : &defaults;
    const uint8_t *d = data;
    if (!d && len > 0)
        return imago_error_set(err, IMAGO_ERR_INVALID, "NULL image data");
    if (p->max_side < 0)
        return imago_error_set(err, IMAGO_ERR_INVALID, "max_side %d is negative", p->max_side);
    if (p->max_bytes > 0 && len > p->max_bytes)
        return imago_error_set(err, IMAGO_ERR_TOO_LARGE,
                               "image is %zu bytes, over the limit of %zu", len, p->max_bytes);

    imago_image_header hdr;
    int rc = read_header(d, len, &hdr, err);
    if (rc != 0)
        return rc;
    uint64_t npix = (uint64_t)hdr.width * (uint64_t)hdr.height;
    if (p->max_pixels > 0 && npix > p->max_pixels)
        return imago_error_set(err, IMAGO_ERR_TOO_LARGE,
                               "image is %dx%d = %llu pixels, over the limit of %llu",
                               hdr.width, hdr.height, (unsigned long long)npix,
                               (unsigned long long)p->max_pixels);

    /* Step 2-4: oriented size, crop, target. */
    int swap = hdr.orientation >= 5;
    int W = swap ? hdr.height : hdr.width;
    int H = swap ? hdr.width : hdr.height;
    int c[4] = {0, 0, W, H};
    if (p->has_box) {
        rc = imago_image_crop_rect(p->box, W, H, c, err);
        if (rc != 0)
            return rc;
    }
    int cw = c[2] - c[0], ch = c[3] - c[1];
    int tw, th;
    imago_image_target_size(cw, ch, p->max_side, &tw, &th);

    /* Step 5: DCT scale. TurboJPEG 2.1 picks its factor from the requested
     * size; for tiny images that can be a factor other than 1/k, in which
     * case we step down to the next k it does honour. */
    int k = 1;
    if (hdr.format == IMAGO_IMAGE_JPEG && p->allow_dct_scaling) {
        k = imago_image_dct_scale(cw, ch, tw, th);
        while (k > 1 && !imago_jpeg_scale_ok(hdr.width, hdr.height, k))
            k /= 2;
    }
    int dw0 = (hdr.width + k - 1) / k, dh0 = (hdr.height + k - 1) / k;
    int dw = swap ? dh0 : dw0, dh = swap ? dw0 : dh0;

    /* Source rectangle in the decoded, oriented image. */
    float rect[4] = {(float)((double)c[0] / k), (float)((double)c[1] / k),
                     (float)((double)c[2] / k), (float)((double)c[3] / k)};
    if (rect[2] > (float)dw)
        rect[2] = (float)dw;
    if (rect[3] > (float)dh)
        rect[3] = (float)dh;

    imago_image *img = NULL;
    rc = imago_image_new(tw, th, &img, err);
    if (rc != 0)
        return rc;

    int whole = rect[0] == 0.0f && rect[1] == 0.0f && rect[2] == (float)dw &&
                rect[3] == (float)dh;
    if (whole && hdr.orientation == 1 && tw == dw && th == dh) {
        /* Nothing to do after decoding: decode straight into the result. */
        rc = hdr.format == IMAGO_IMAGE_JPEG
                 ? imago_jpeg_decode(d, len, &hdr, k, img->rgb, err)
                 : imago_png_decode(d, len, &hdr, img->rgb, err);
        if (rc != 0) {
            imago_image_free(img);
            return rc;
        }
        *out = img;
        return 0;
    }

    size_t nbytes;
    if (imago_size_mul3((size_t)dw0, (size_t)dh0, 3, &nbytes) != 0) {
        imago_image_free(img);
        return imago_error_set(err, IMAGO_ERR_TOO_LARGE, "decoded image is too large");
    }
    void *buf = NULL, *obuf = NULL;
    rc = imago_alloc_array(nbytes, 1, 0, &buf, err);
    if (rc == 0)
        rc = hdr.format == IMAGO_IMAGE_JPEG ? imago_jpeg_decode(d, len, &hdr, k, buf, err)
                                            : imago_png_decode(d, len, &hdr, buf, err);
    const uint8_t *src = buf;
    if (rc == 0 && hdr.orientation != 1) {
        rc = imago_alloc_array(nbytes, 1, 0, &obuf, err);
        if (rc == 0) {
            imago_image_orient(buf, dw0, dh0, hdr.orientation, obuf);
            src = obuf;
        }
    }
    if (rc == 0) {
        /* An integer rectangle of the target size is a plain copy (Pillow's
         * resampling with unit scale and integer offsets is the identity). */
        int integral = rect[0] == floorf(rect[0]) && rect[1] == floorf(rect[1]) &&
                       rect[2] == floorf(rect[2]) && rect[3] == floorf(rect[3]);
        if (integral && (int)rect[2] - (int)rect[0] == tw && (int)rect[3] - (int)rect[1] == th)
            copy_rect(src, dw, (int)rect[0], (int)rect[1], tw, th, img->rgb);
        else
            rc = imago_image_resample(src, dw, dh, (size_t)dw * 3, rect, tw, th, img->rgb, err);
    }
    imago_free_aligned(obuf);
    imago_free_aligned(buf);
    if (rc != 0) {
        imago_image_free(img);
        return rc;
    }
    *out = img;
    return 0;
}
