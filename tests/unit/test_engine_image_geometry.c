/* Engine image input: the geometry rules of docs/preprocessing.md — round
 * half to even, crop rectangle clamping, target size (never upscale, the
 * closest aspect ratio, portrait), DCT scale choice — and the sizes that the
 * whole pipeline produces for them. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "engine/image_int.h"
#include "tap.h"
#include "testutil.h"

static void target(int cw, int ch, int ms, int ew, int eh)
{
    int tw = -1, th = -1;
    imago_image_target_size(cw, ch, ms, &tw, &th);
    ok(tw == ew && th == eh, "target %dx%d @ %d = %dx%d (got %dx%d)", cw, ch, ms, ew, eh, tw,
       th);
}

int main(void)
{
    /* round half to even */
    double rv[][2] = {{0.5, 0},   {1.5, 2},     {2.5, 2},    {3.5, 4},   {-0.5, 0},
                      {-1.5, -2}, {2.4999, 2},  {2.5001, 3}, {1e9 + 0.5, 1e9}, {7, 7}};
    for (size_t i = 0; i < sizeof rv / sizeof rv[0]; i++)
        is_close(imago_image_round_half_even(rv[i][0]), rv[i][1], 0, "round(%g) = %g",
                 rv[i][0], rv[i][1]);

    /* target size */
    target(5640, 3172, 1024, 1024, 576);
    target(3172, 5640, 1024, 576, 1024); /* portrait */
    target(4000, 3000, 1024, 1024, 768);
    target(800, 600, 1024, 800, 600);    /* never upscale */
    target(1024, 768, 1024, 1024, 768);
    target(1025, 768, 1024, 1024, 767);  /* 767.25 */
    target(3000, 1000, 1024, 1024, 341); /* 341.33 */
    target(2000, 25, 1000, 1000, 12);    /* 12.5 -> 12 (half to even) */
    target(2000, 27, 1000, 1000, 14);    /* 13.5 -> 14 */
    target(5000, 1, 1024, 1024, 1);      /* 0.2 -> max(1, 0) */
    target(1000, 1000, 500, 500, 500);
    target(640, 480, 0, 640, 480);       /* max_side 0: no resize */
    target(1, 1, 1024, 1, 1);

    /* DCT scale */
    struct { int cw, ch, tw, th, k; } ks[] = {
        {5640, 3172, 1024, 576, 4}, {4000, 3000, 1024, 768, 2}, {8192, 6144, 1024, 768, 8},
        {8191, 6144, 1024, 768, 4}, {2048, 1536, 1024, 768, 2}, {2047, 1536, 1024, 768, 1},
        {1000, 800, 1000, 800, 1},  {3172, 5640, 576, 1024, 4}, {640, 480, 80, 60, 8},
        {640, 480, 81, 61, 4},
    };
    for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++)
        is_int(imago_image_dct_scale(ks[i].cw, ks[i].ch, ks[i].tw, ks[i].th), ks[i].k,
               "dct scale %dx%d -> %dx%d", ks[i].cw, ks[i].ch, ks[i].tw, ks[i].th);

    /* crop rectangle */
    {
        int c[4];
        double b1[4] = {0.5, 1.5, 2.5, 3.5};
        is_int(imago_image_crop_rect(b1, 100, 100, c, NULL), 0, "crop 0.5,1.5,2.5,3.5");
        ok(c[0] == 0 && c[1] == 2 && c[2] == 2 && c[3] == 4, "crop rounds half to even: %d %d %d %d",
           c[0], c[1], c[2], c[3]);
        double b2[4] = {-5, -5, 1e9, 1e9};
        is_int(imago_image_crop_rect(b2, 30, 20, c, NULL), 0, "crop clamps");
        ok(c[0] == 0 && c[1] == 0 && c[2] == 30 && c[3] == 20, "crop clamped to 30x20");
        double b3[4] = {5, 5, 5.4, 9};
        imago_error err;
        imago_error_clear(&err);
        is_int(imago_image_crop_rect(b3, 30, 20, c, &err), IMAGO_ERR_INVALID, "empty crop");
        ok(strstr(err.msg, "empty") != NULL, "message: %s", err.msg);
    }

    /* the pipeline's output sizes, on the 240x160 JPEG stored with
     * orientation 6 (160x240 oriented) */
    {
        size_t len;
        unsigned char *d = testutil_read_fixture("img_scene_o6.jpg", &len);
        struct { int ms, box; double b[4]; int w, h; } cs[] = {
            {1024, 0, {0}, 160, 240},  {0, 0, {0}, 160, 240},   {100, 0, {0}, 67, 100},
            {40, 0, {0}, 27, 40},      {1, 0, {0}, 1, 1},       {30, 1, {10.5, 20.5, 130, 190}, 21, 30},
            {0, 1, {2.5, 3.5, 61.5, 80.5}, 60, 76}, {500, 1, {-10, -10, 500, 500}, 160, 240},
        };
        for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
            imago_decode_params p = imago_decode_params_default();
            p.max_side = cs[i].ms;
            p.has_box = cs[i].box;
            memcpy(p.box, cs[i].b, sizeof p.box);
            imago_image *img = NULL;
            imago_error err;
            imago_error_clear(&err);
            int rc = imago_image_decode(d, len, &p, &img, &err);
            ok(rc == 0 && img && img->width == cs[i].w && img->height == cs[i].h,
               "pipeline case %zu: %dx%d (got %dx%d, %s)", i, cs[i].w, cs[i].h,
               img ? img->width : -1, img ? img->height : -1, err.msg);
            imago_image_free(img);
        }
        free(d);
    }
    return tap_done();
}
