/* Engine image input: the 8 EXIF orientations against Pillow's
 * ImageOps.exif_transpose (golden PNGs made by tests/data/
 * make_image_fixtures.py), both TIFF byte orders, malformed EXIF ignored,
 * and the EXIF reader on every truncation of a file (no crash, no
 * out-of-bounds read: run under ASan in build-image-asan). */
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "engine/image_int.h"
#include "tap.h"
#include "testutil.h"

static imago_image *load(const char *name, int max_side)
{
    size_t len;
    unsigned char *d = testutil_read_fixture(name, &len);
    imago_decode_params p = imago_decode_params_default();
    p.max_side = max_side;
    imago_image *img = NULL;
    imago_error err;
    imago_error_clear(&err);
    if (imago_image_decode(d, len, &p, &img, &err) != 0)
        tap_diag("%s: %s", name, err.msg);
    free(d);
    return img;
}

/* Number of differing bytes (or -1 when the sizes differ). */
static long diff(const imago_image *a, const imago_image *b)
{
    if (!a || !b || a->width != b->width || a->height != b->height)
        return -1;
    long n = 0;
    for (size_t i = 0; i < (size_t)a->width * a->height * 3; i++)
        n += a->rgb[i] != b->rgb[i];
    return n;
}

int main(void)
{
    for (int o = 1; o <= 8; o++) {
        char jpg[64], golden[64];
        snprintf(jpg, sizeof jpg, "img_orient_%d.jpg", o);
        snprintf(golden, sizeof golden, "img_orient_%d.golden.png", o);
        size_t len;
        unsigned char *d = testutil_read_fixture(jpg, &len);
        is_int(imago_jpeg_exif_orientation(d, len), o, "EXIF orientation of %s", jpg);
        int w = 0, h = 0;
        imago_image_probe(d, len, NULL, &w, &h, NULL);
        ok(o >= 5 ? (w == 13 && h == 20) : (w == 20 && h == 13), "probe of %s: %dx%d", jpg,
           w, h);
        free(d);
        imago_image *got = load(jpg, 0), *want = load(golden, 0);
        is_int(diff(got, want), 0, "orientation %d equals PIL exif_transpose", o);
        imago_image_free(got);
        imago_image_free(want);
    }

    /* big-endian (MM) TIFF header */
    {
        size_t len;
        unsigned char *d = testutil_read_fixture("img_orient_6_be.jpg", &len);
        is_int(imago_jpeg_exif_orientation(d, len), 6, "big-endian EXIF: orientation 6");
        free(d);
        imago_image *got = load("img_orient_6_be.jpg", 0),
                    *want = load("img_orient_6.golden.png", 0);
        is_int(diff(got, want), 0, "big-endian orientation 6 decodes like little-endian");
        imago_image_free(got);
        imago_image_free(want);
    }

    /* malformed EXIF: ignored (orientation 1), the image still decodes */
    /* (an IFD entry count past the end of the segment: like Pillow, the
     * entries before the damage still count) */
    const char *bad[] = {"img_orient_badifd", "img_orient_badcount"};
    const int bad_o[] = {1, 6};
    for (int i = 0; i < 2; i++) {
        char jpg[64], golden[64];
        snprintf(jpg, sizeof jpg, "%s.jpg", bad[i]);
        snprintf(golden, sizeof golden, "%s.golden.png", bad[i]);
        size_t len;
        unsigned char *d = testutil_read_fixture(jpg, &len);
        is_int(imago_jpeg_exif_orientation(d, len), bad_o[i], "%s: orientation %d", jpg,
               bad_o[i]);
        free(d);
        imago_image *got = load(jpg, 0), *want = load(golden, 0);
        is_int(diff(got, want), 0, "%s decodes like PIL exif_transpose", jpg);
        imago_image_free(got);
        imago_image_free(want);
    }

    /* every prefix of an EXIF JPEG: the reader gives 1 or the real value.
     * Each prefix is copied into an exact-size buffer so that ASan sees any
     * read past its end. */
    {
        size_t len;
        unsigned char *d = testutil_read_fixture("img_orient_7.jpg", &len);
        int bad_n = 0;
        for (size_t n = 0; n <= len; n++) {
            unsigned char *c = malloc(n ? n : 1);
            memcpy(c, d, n);
            int o = imago_jpeg_exif_orientation(c, n);
            if (o != 1 && o != 7)
                bad_n++;
            free(c);
        }
        is_int(bad_n, 0, "EXIF reader on all %zu prefixes", len + 1);
        /* byte flips inside the APP1 segment never yield an invalid value */
        int out_of_range = 0;
        for (size_t i = 2; i < 60 && i < len; i++)
            for (int v = 0; v < 256; v += 17) {
                unsigned char save = d[i];
                d[i] = (unsigned char)v;
                int o = imago_jpeg_exif_orientation(d, len);
                if (o < 1 || o > 8)
                    out_of_range++;
                d[i] = save;
            }
        is_int(out_of_range, 0, "EXIF reader under byte flips stays in 1..8");
        free(d);
    }

    /* orient() itself on a 3x2 image with known pixels */
    {
        /* pixel value = 10 * (y * 3 + x) in all channels */
        uint8_t src[3 * 2 * 3], dst[3 * 2 * 3];
        for (int i = 0; i < 6; i++)
            memset(src + 3 * i, 10 * i, 3);
        /* expected first row of each orientation (values / 10) */
        static const int first[9][3] = {{0},       {0, 1, 2}, {2, 1, 0}, {5, 4, 3}, {3, 4, 5},
                                        {0, 3, -1}, {3, 0, -1}, {5, 2, -1}, {2, 5, -1}};
        for (int o = 1; o <= 8; o++) {
            imago_image_orient(src, 3, 2, o, dst);
            int n = o >= 5 ? 2 : 3, good = 1;
            for (int x = 0; x < n; x++)
                good &= dst[3 * x] == 10 * first[o][x];
            ok(good, "orient %d: first row", o);
        }
    }
    return tap_done();
}
