/* Engine image input: PNG variants (RGB, gray, gray+alpha, RGBA, palette
 * with tRNS, 2-bit gray, 16-bit RGB and gray, Adam7 interlaced) decode to
 * the RGB values of the formula they were written with
 * (tests/data/make_image_fixtures.py: png_pattern). */
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "tap.h"
#include "testutil.h"

static int pattern(int x, int y, int c)
{
    return (x * 7 + y * 13 + c * 50) & 255;
}

typedef int (*expect_fn)(int x, int y, int c);

static int e_rgb(int x, int y, int c) { return pattern(x, y, c); }
static int e_gray(int x, int y, int c) { (void)c; return pattern(x, y, 0); }
static int e_pal(int x, int y, int c) { return pattern((x + y) % 16, 0, c); }
static int e_gray2(int x, int y, int c) { (void)c; return ((x + 2 * y) & 3) * 85; }

int main(void)
{
    struct { const char *file; expect_fn f; } cs[] = {
        {"img_png_rgb8.png", e_rgb},     {"img_png_rgb8_interlaced.png", e_rgb},
        {"img_png_rgba8.png", e_rgb},    {"img_png_rgb16.png", e_rgb},
        {"img_png_gray8.png", e_gray},   {"img_png_graya8.png", e_gray},
        {"img_png_gray16.png", e_gray},  {"img_png_palette.png", e_pal},
        {"img_png_gray2.png", e_gray2},
    };
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
        size_t len;
        unsigned char *d = testutil_read_fixture(cs[i].file, &len);
        imago_image_format fmt;
        int w = 0, h = 0;
        is_int(imago_image_probe(d, len, &fmt, &w, &h, NULL), 0, "%s: probe", cs[i].file);
        ok(fmt == IMAGO_IMAGE_PNG && w == 13 && h == 9, "%s: PNG 13x9", cs[i].file);
        imago_decode_params p = imago_decode_params_default();
        imago_image *img = NULL;
        imago_error err;
        imago_error_clear(&err);
        int rc = imago_image_decode(d, len, &p, &img, &err);
        free(d);
        is_int(rc, 0, "%s: decodes (%s)", cs[i].file, err.msg);
        if (rc != 0)
            continue;
        int bad = 0, first = -1;
        for (int y = 0; y < img->height; y++)
            for (int x = 0; x < img->width; x++)
                for (int c = 0; c < 3; c++)
                    if (img->rgb[(y * img->width + x) * 3 + c] != cs[i].f(x, y, c)) {
                        if (first < 0)
                            first = (y * img->width + x) * 3 + c;
                        bad++;
                    }
        is_int(bad, 0, "%s: all pixels as written (first bad byte %d)", cs[i].file, first);
        imago_image_free(img);
    }
    return tap_done();
}
