/* Engine image input: every error class with its exact code (corrupt,
 * truncated, zero-byte, not an image, decompression bombs refused before
 * allocating, max_bytes, bad boxes). Fixtures: tests/data/img_*. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "engine/engine.h"
#include "tap.h"
#include "testutil.h"

/* Decodes data and checks the return code, that *out stays NULL on error,
 * and that a message is set. */
static void expect(const unsigned char *d, size_t len, const imago_decode_params *p, int want,
                   const char *what)
{
    imago_error err;
    imago_error_clear(&err);
    imago_image *img = NULL;
    int rc = imago_image_decode(d, len, p, &img, &err);
    is_int(rc, want, "%s: code %s", what, imago_error_name(want));
    if (want != 0) {
        ok(img == NULL, "%s: no image on error", what);
        ok(err.code == want && err.msg[0] != 0, "%s: message \"%s\"", what, err.msg);
    } else {
        ok(img != NULL, "%s: image", what);
    }
    imago_image_free(img);
}

static void expect_file(const char *name, const imago_decode_params *p, int want)
{
    size_t len;
    unsigned char *d = testutil_read_fixture(name, &len);
    expect(d, len, p, want, name);
    free(d);
}

int main(void)
{
    imago_decode_params p = imago_decode_params_default();

    /* valid inputs decode */
    expect_file("img_ok.jpg", &p, 0);
    expect_file("img_png_rgb8.png", &p, 0);

    /* malformed */
    expect_file("img_corrupt.jpg", &p, IMAGO_ERR_FORMAT);
    expect_file("img_badsof.jpg", &p, IMAGO_ERR_FORMAT);
    expect_file("img_truncated.jpg", &p, IMAGO_ERR_FORMAT);
    expect_file("img_truncated.png", &p, IMAGO_ERR_FORMAT);
    expect_file("img_badcrc.png", &p, IMAGO_ERR_FORMAT);
    expect_file("img_text.txt", &p, IMAGO_ERR_FORMAT);
    expect((const unsigned char *)"", 0, &p, IMAGO_ERR_FORMAT, "zero bytes");
    expect(NULL, 0, &p, IMAGO_ERR_FORMAT, "NULL, zero bytes");
    expect((const unsigned char *)"\xff\xd8\xff", 3, &p, IMAGO_ERR_FORMAT, "JPEG SOI only");
    expect((const unsigned char *)"\x89PNG\r\n\x1a\n", 8, &p, IMAGO_ERR_FORMAT,
           "PNG signature only");

    /* a progressive JPEG whose last scan is repeated 600 times: refused
     * (TJFLAG_LIMITSCANS) instead of burning CPU on thousands of scans */
    {
        size_t len;
        unsigned char *d = testutil_read_fixture("img_scene_prog.jpg", &len);
        size_t sos = 0;
        for (size_t i = 0; i + 1 < len; i++)
            if (d[i] == 0xFF && d[i + 1] == 0xDA)
                sos = i;
        size_t scan = len - 2 - sos; /* the last scan, up to EOI */
        size_t blen = sos + 600 * scan + 2;
        unsigned char *b = malloc(blen);
        memcpy(b, d, sos);
        for (int r = 0; r < 600; r++)
            memcpy(b + sos + (size_t)r * scan, d + sos, scan);
        memcpy(b + blen - 2, "\xff\xd9", 2);
        expect(b, blen, &p, IMAGO_ERR_FORMAT, "progressive JPEG with 600+ scans");
        expect(d, len, &p, 0, "the same JPEG with its own scans");
        free(b);
        free(d);
    }

    /* every prefix of a valid JPEG and PNG is refused (never a crash); a PNG
     * whose image data is complete but whose 12-byte IEND chunk is cut is
     * accepted, as Pillow does */
    for (int f = 0; f < 2; f++) {
        size_t len;
        unsigned char *d = testutil_read_fixture(f ? "img_png_rgb8.png" : "img_ok.jpg", &len);
        int bad = 0;
        size_t upto = f ? len - 12 : len - 2;
        for (size_t n = 0; n < upto; n++) {
            imago_image *img = NULL;
            imago_error err;
            imago_error_clear(&err);
            int rc = imago_image_decode(d, n, &p, &img, NULL);
            if (rc != IMAGO_ERR_FORMAT || img)
                bad++;
            imago_image_free(img);
        }
        is_int(bad, 0, "%s: all %zu truncations give IMAGO_ERR_FORMAT", f ? "png" : "jpeg",
               upto);
        free(d);
    }

    /* decompression bombs: the header is refused before any pixel buffer */
    expect_file("img_huge.jpg", &p, IMAGO_ERR_TOO_LARGE);
    expect_file("img_huge.png", &p, IMAGO_ERR_TOO_LARGE);
    {
        size_t len;
        unsigned char *d = testutil_read_fixture("img_huge.jpg", &len);
        imago_image_format fmt = IMAGO_IMAGE_UNKNOWN;
        int w = 0, h = 0;
        is_int(imago_image_probe(d, len, &fmt, &w, &h, NULL), 0, "probe of the 60000^2 JPEG");
        ok(fmt == IMAGO_IMAGE_JPEG && w == 60000 && h == 60000, "probe says JPEG 60000x60000");
        free(d);
        d = testutil_read_fixture("img_huge.png", &len);
        is_int(imago_image_probe(d, len, &fmt, &w, &h, NULL), 0, "probe of the 60000^2 PNG");
        ok(fmt == IMAGO_IMAGE_PNG && w == 60000 && h == 60000, "probe says PNG 60000x60000");
        free(d);
    }
#if !defined(__SANITIZE_ADDRESS__)
    {
        /* With a 2 GiB address-space limit, trying to allocate the 10.8 GB
         * of a 60000x60000 RGB image fails (NOMEM): the TOO_LARGE above
         * therefore came from the header check, not from the allocator. */
        struct rlimit old, lim;
        getrlimit(RLIMIT_AS, &old);
        lim = old;
        lim.rlim_cur = (rlim_t)2 << 30;
        if (setrlimit(RLIMIT_AS, &lim) == 0) {
            expect_file("img_huge.jpg", &p, IMAGO_ERR_TOO_LARGE);
            imago_decode_params nolimit = p;
            nolimit.max_pixels = 0;
            nolimit.max_side = 0;
            expect_file("img_huge.jpg", &nolimit, IMAGO_ERR_NOMEM);
            setrlimit(RLIMIT_AS, &old);
        } else {
            tap_skip(7, "setrlimit(RLIMIT_AS) not permitted");
        }
    }
#else
    tap_skip(7, "address-space limit test skipped under ASan");
#endif

    /* max_pixels: img_ok.jpg is 64x48 = 3072 pixels */
    imago_decode_params q = p;
    q.max_pixels = 3071;
    expect_file("img_ok.jpg", &q, IMAGO_ERR_TOO_LARGE);
    q.max_pixels = 3072;
    expect_file("img_ok.jpg", &q, 0);
    q.max_pixels = 116; /* img_png_rgb8.png is 13x9 = 117 */
    expect_file("img_png_rgb8.png", &q, IMAGO_ERR_TOO_LARGE);

    /* max_bytes is checked first (even before the format) */
    {
        size_t len;
        unsigned char *d = testutil_read_fixture("img_ok.jpg", &len);
        q = p;
        q.max_bytes = len - 1;
        expect(d, len, &q, IMAGO_ERR_TOO_LARGE, "max_bytes = size - 1");
        q.max_bytes = len;
        expect(d, len, &q, 0, "max_bytes = size");
        q.max_bytes = 4;
        expect((const unsigned char *)"hello", 5, &q, IMAGO_ERR_TOO_LARGE,
               "max_bytes before format");
        free(d);
    }

    /* boxes (img_ok.jpg is 64x48) */
    q = p;
    q.has_box = 1;
    double boxes[][4] = {
        {10.2, 5, 10.4, 20},         /* rounds to an empty width */
        {10.5, 5, 11.5, 20},         /* x: 10 -> 12, fine */
        {70, 5, 90, 20},             /* entirely right of the image */
        {-20, -20, -1, 10},          /* entirely left */
        {20, 30, 10, 40},            /* x2 < x1 */
        {0, 0, 1e300, 1e300},        /* clamped to the whole image */
        {NAN, 0, 10, 10},            /* NaN */
        {0, 0, INFINITY, 10},        /* inf */
        {63.5, 47.5, 64.4, 48.4},    /* half to even: 64 -> 64: empty */
        {62.5, 46.5, 64.4, 48.4},    /* 62 -> 64: 2x2 */
    };
    int want[] = {IMAGO_ERR_INVALID, 0, IMAGO_ERR_INVALID, IMAGO_ERR_INVALID,
                  IMAGO_ERR_INVALID, 0, IMAGO_ERR_INVALID, IMAGO_ERR_INVALID,
                  IMAGO_ERR_INVALID, 0};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        memcpy(q.box, boxes[i], sizeof q.box);
        char what[128];
        snprintf(what, sizeof what, "box %zu (%g,%g,%g,%g)", i, boxes[i][0], boxes[i][1],
                 boxes[i][2], boxes[i][3]);
        size_t len;
        unsigned char *d = testutil_read_fixture("img_ok.jpg", &len);
        expect(d, len, &q, want[i], what);
        free(d);
    }
    {
        size_t len;
        unsigned char *d = testutil_read_fixture("img_ok.jpg", &len);
        memcpy(q.box, boxes[9], sizeof q.box);
        q.max_side = 0;
        imago_image *img = NULL;
        is_int(imago_image_decode(d, len, &q, &img, NULL), 0, "2x2 corner box");
        ok(img && img->width == 2 && img->height == 2, "corner box is 2x2");
        imago_image_free(img);
        q.max_side = -1;
        expect(d, len, &q, IMAGO_ERR_INVALID, "negative max_side");
        free(d);
    }

    /* probe errors */
    {
        imago_error err;
        imago_error_clear(&err);
        is_int(imago_image_probe("GIF89a....", 10, NULL, NULL, NULL, &err), IMAGO_ERR_FORMAT,
               "probe of a GIF header: format");
        size_t len;
        unsigned char *d = testutil_read_fixture("img_badsof.jpg", &len);
        is_int(imago_image_probe(d, len, NULL, NULL, NULL, NULL), IMAGO_ERR_FORMAT,
               "probe of a 13-bit JPEG: format");
        free(d);
    }
    /* image_new size checks */
    {
        imago_image *img = NULL;
        is_int(imago_image_new(0, 5, &img, NULL), IMAGO_ERR_INVALID, "image_new 0x5");
        is_int(imago_image_new(5, -1, &img, NULL), IMAGO_ERR_INVALID, "image_new 5x-1");
        ok(img == NULL, "no image");
        imago_image_free(NULL);
    }
    return tap_done();
}
