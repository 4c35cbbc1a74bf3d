/* JPEG decoding through the TurboJPEG 2.1 API, with DCT scaling (1/2, 1/4,
 * 1/8) and errors translated into IMAGO_ERR_FORMAT. CMYK/YCCK JPEGs are
 * decoded as CMYK and converted to RGB with Pillow's formula.
 *
 * Warnings policy: libjpeg-turbo only *warns* on a truncated stream (it pads
 * the missing data with gray and returns success), so a decode that ends
 * with a warning is refused as IMAGO_ERR_FORMAT, with one exception: the
 * "extraneous bytes before marker" warning, which many cameras trigger on
 * otherwise intact files and which Pillow decodes silently. The decode runs
 * without TJFLAG_STOPONWARNING so that the last warning (the one that
 * decides) is the one TurboJPEG reports. Garbage entropy-coded data that
 * happens to decode without a warning cannot be told from a real picture and
 * is accepted (so does every other decoder).
 */
#include "image_int.h"

#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

static int tj_fail(tjhandle h, imago_error *err, const char *what)
{
    return imago_error_set(err, IMAGO_ERR_FORMAT, "invalid JPEG (%s): %s", what,
                           tjGetErrorStr2(h));
}

int imago_jpeg_read_header(const uint8_t *data, size_t len, imago_image_header *hdr,
                           imago_error *err)
{
    if (len > (size_t)0xFFFFFFFFu)
        return imago_error_set(err, IMAGO_ERR_TOO_LARGE, "JPEG over 4 GiB");
    tjhandle h = tjInitDecompress();
    if (!h)
        return imago_error_set(err, IMAGO_ERR_NOMEM, "tjInitDecompress: %s",
                               tjGetErrorStr2(NULL));
    int w = 0, ht = 0, subsamp = 0, cs = 0;
    int rc = 0;
    if (tjDecompressHeader3(h, data, (unsigned long)len, &w, &ht, &subsamp, &cs) != 0)
        rc = tj_fail(h, err, "header");
    else if (w <= 0 || ht <= 0)
        rc = imago_error_set(err, IMAGO_ERR_FORMAT, "invalid JPEG: size %dx%d", w, ht);
    tjDestroy(h);
    if (rc != 0)
        return rc;
    hdr->format = IMAGO_IMAGE_JPEG;
    hdr->width = w;
    hdr->height = ht;
    hdr->orientation = imago_jpeg_exif_orientation(data, len);
    hdr->cmyk = cs == TJCS_CMYK || cs == TJCS_YCCK;
    return 0;
}

int imago_jpeg_scale_ok(int w0, int h0, int k)
{
    if (k == 1)
        return 1;
    int want_w = (w0 + k - 1) / k, want_h = (h0 + k - 1) / k;
    int n = 0;
    tjscalingfactor *sf = tjGetScalingFactors(&n);
    if (!sf)
        return 0;
    /* The same search tjDecompress2 does: the first (largest) factor whose
     * scaled size fits the requested one. */
    for (int i = 0; i < n; i++) {
        if (TJSCALED(w0, sf[i]) <= want_w && TJSCALED(h0, sf[i]) <= want_h)
            return sf[i].num * k == sf[i].denom;
    }
    return 0;
}

/* CMYK -> RGB exactly as Pillow does it for JPEGs: the decoded values are
 * taken as inverted ("CMYK;I", Adobe's convention, which Pillow assumes for
 * every CMYK JPEG), then r = (255 - k) - (c * (255 - k)) / 255 with Pillow's
 * rounded integer division. */
static uint8_t cmyk_channel(unsigned c, unsigned nk)
{
    unsigned t = c * nk + 128;
    unsigned m = ((t >> 8) + t) >> 8;
    return (uint8_t)(nk > m ? nk - m : 0);
}

static void cmyk_to_rgb(const uint8_t *in, size_t npix, uint8_t *out)
{
    for (size_t i = 0; i < npix; i++, in += 4, out += 3) {
        unsigned nk = in[3]; /* 255 - (255 - raw k) */
        out[0] = cmyk_channel(255u - in[0], nk);
        out[1] = cmyk_channel(255u - in[1], nk);
        out[2] = cmyk_channel(255u - in[2], nk);
    }
}

int imago_jpeg_decode(const uint8_t *data, size_t len, const imago_image_header *hdr, int k,
                      uint8_t *dst, imago_error *err)
{
    int dw = (hdr->width + k - 1) / k, dh = (hdr->height + k - 1) / k;
    uint8_t *out = dst;
    void *cmyk = NULL;
    if (hdr->cmyk) {
        int rc = imago_alloc_array((size_t)dw * (size_t)dh, 4, 0, &cmyk, err);
        if (rc != 0)
            return rc;
        out = cmyk;
    }
    tjhandle h = tjInitDecompress();
    if (!h) {
        imago_free_aligned(cmyk);
        return imago_error_set(err, IMAGO_ERR_NOMEM, "tjInitDecompress: %s",
                               tjGetErrorStr2(NULL));
    }
    int rc = 0;
    /* TJFLAG_LIMITSCANS: a progressive JPEG with more than 500 scans is
     * refused (a few KB can otherwise keep a core busy for minutes). No
     * other flag: the default (accurate) IDCT and fancy upsampling are what
     * Pillow uses, which keeps the two bit-exact. */
    if (tjDecompress2(h, data, (unsigned long)len, out, dw, 0, dh,
                      hdr->cmyk ? TJPF_CMYK : TJPF_RGB, TJFLAG_LIMITSCANS) != 0) {
        const char *msg = tjGetErrorStr2(h);
        if (tjGetErrorCode(h) == TJERR_FATAL)
            rc = tj_fail(h, err, "decode");
        else if (!strstr(msg, "extraneous bytes before marker"))
            rc = imago_error_set(err, IMAGO_ERR_FORMAT, "corrupt or truncated JPEG: %s", msg);
    }
    tjDestroy(h);
    if (rc == 0 && hdr->cmyk)
        cmyk_to_rgb(cmyk, (size_t)dw * (size_t)dh, dst);
    imago_free_aligned(cmyk);
    return rc;
}

int imago_image_encode_jpeg(const imago_image *img, int quality, void **jpeg, size_t *jpeg_len,
                            imago_error *err)
{
    if (quality < 1 || quality > 100)
        return imago_error_set(err, IMAGO_ERR_INVALID, "JPEG quality %d outside 1..100", quality);
    tjhandle tj = tjInitCompress();
    if (!tj)
        return imago_error_set(err, IMAGO_ERR_BACKEND, "JPEG encode: tjInitCompress: %s",
                               tjGetErrorStr2(NULL));
    unsigned char *buf = NULL;
    unsigned long n = 0;
    int rc = 0;
    if (tjCompress2(tj, img->rgb, img->width, 0, img->height, TJPF_RGB, &buf, &n, TJSAMP_420,
                    quality, 0) != 0) {
        rc = imago_error_set(err, IMAGO_ERR_BACKEND, "JPEG encode: tjCompress2: %s",
                             tjGetErrorStr2(tj));
    } else {
        /* hand back malloc'ed memory (tjFree must free TurboJPEG's buffer) */
        void *copy = malloc(n ? n : 1);
        if (!copy) {
            rc = imago_error_set(err, IMAGO_ERR_NOMEM, "JPEG encode: out of memory");
        } else {
            memcpy(copy, buf, n);
            *jpeg = copy;
            *jpeg_len = n;
        }
    }
    tjFree(buf);
    tjDestroy(tj);
    return rc;
}
