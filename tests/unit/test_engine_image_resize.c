/* Engine image input: the Lanczos-3 resampler is bit-exact with Pillow's
 * Image.resize(size, LANCZOS, box) (golden outputs made by tests/data/
 * make_image_fixtures.py), and so is the whole pipeline with EXIF
 * orientation, a query box and DCT scaling; plus properties that hold for
 * any input (constant images stay constant, bad boxes are refused). */
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "engine/image_int.h"
#include "tap.h"
#include "testutil.h"

static imago_image *load(const char *name, const imago_decode_params *p)
{
    size_t len;
    unsigned char *d = testutil_read_fixture(name, &len);
    imago_image *img = NULL;
    imago_error err;
    imago_error_clear(&err);
    if (imago_image_decode(d, len, p, &img, &err) != 0)
        tap_diag("%s: %s", name, err.msg);
    free(d);
    return img;
}

/* max abs difference, -1 on size mismatch; *neq = differing bytes */
static int cmp(const uint8_t *a, const imago_image *b, int w, int h, long *neq)
{
    *neq = 0;
    if (!b || b->width != w || b->height != h)
        return -1;
    int mx = 0;
    for (size_t i = 0; i < (size_t)w * h * 3; i++) {
        int d = abs((int)a[i] - (int)b->rgb[i]);
        *neq += d != 0;
        if (d > mx)
            mx = d;
    }
    return mx;
}

int main(void)
{
    imago_decode_params raw = imago_decode_params_default();
    raw.max_side = 0;
    imago_image *src = load("img_resize_src.png", &raw);
    if (!src)
        tap_bail("cannot load img_resize_src.png");

    /* golden cases: name tw th x0 y0 x1 y1 */
    size_t len;
    char *cases = (char *)testutil_read_fixture("img_resize_cases.txt", &len);
    char *save = NULL;
    for (char *line = strtok_r(cases, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char name[16];
        int tw, th;
        float b[4];
        if (sscanf(line, "%15s %d %d %f %f %f %f", name, &tw, &th, &b[0], &b[1], &b[2], &b[3]) !=
            7)
            continue;
        uint8_t *out = malloc((size_t)tw * th * 3);
        imago_error err;
        imago_error_clear(&err);
        int rc = imago_image_resample(src->rgb, src->width, src->height, (size_t)src->width * 3,
                                      b, tw, th, out, &err);
        is_int(rc, 0, "resample case %s (%s)", name, err.msg);
        char golden[64];
        snprintf(golden, sizeof golden, "img_resize_%s.golden.png", name);
        imago_image *want = load(golden, &raw);
        long neq;
        int mx = cmp(out, want, tw, th, &neq);
        is_int(mx, 0, "case %s: %dx%d box (%g,%g,%g,%g) bit-exact with Pillow (%ld bytes differ)",
               name, tw, th, b[0], b[1], b[2], b[3], neq);
        imago_image_free(want);
        free(out);
    }
    free(cases);

    /* the whole pipeline vs the contract computed with Pillow */
    struct { const char *golden; int ms, box, dct; double b[4]; } pc[] = {
        {"img_scene_o6.ms40.golden.png", 40, 0, 1, {0}},
        {"img_scene_o6.ms40nodct.golden.png", 40, 0, 0, {0}},
        {"img_scene_o6.ms100.golden.png", 100, 0, 1, {0}},
        {"img_scene_o6.box.golden.png", 30, 1, 1, {10.5, 20.5, 130.0, 190.0}},
        {"img_scene_o6.boxhalf.golden.png", 0, 1, 1, {2.5, 3.5, 61.5, 80.5}},
        {"img_scene_444.ms30.golden.png", 30, 0, 1, {0}},
        {"img_scene_422.ms30.golden.png", 30, 0, 1, {0}},
        {"img_scene_prog.ms30.golden.png", 30, 0, 1, {0}},
        {"img_scene_prog.ms13.golden.png", 13, 0, 1, {0}},
        {"img_scene_gray.ms50.golden.png", 50, 0, 1, {0}},
        {"img_cmyk.ms0.golden.png", 0, 0, 1, {0}},
        {"img_cmyk.ms16.golden.png", 16, 0, 1, {0}},
    };
    for (size_t i = 0; i < sizeof pc / sizeof pc[0]; i++) {
        imago_decode_params p = imago_decode_params_default();
        p.max_side = pc[i].ms;
        p.has_box = pc[i].box;
        p.allow_dct_scaling = pc[i].dct;
        memcpy(p.box, pc[i].b, sizeof p.box);
        /* the JPEG's name is the golden's up to the first '.' */
        char jpg[64];
        snprintf(jpg, sizeof jpg, "%.*s.jpg", (int)strcspn(pc[i].golden, "."), pc[i].golden);
        imago_image *got = load(jpg, &p);
        imago_image *want = load(pc[i].golden, &raw);
        long neq = 0;
        int mx = got && want ? cmp(got->rgb, want, got->width, got->height, &neq) : -1;
        is_int(mx, 0, "pipeline %s: bit-exact with Pillow (%ld bytes differ)", pc[i].golden,
               neq);
        imago_image_free(got);
        imago_image_free(want);
    }
    /* DCT scaling changes the result (the test above can tell them apart) */
    {
        imago_image *a = load("img_scene_o6.ms40.golden.png", &raw);
        imago_image *b = load("img_scene_o6.ms40nodct.golden.png", &raw);
        long neq;
        cmp(a->rgb, b, a->width, a->height, &neq);
        ok(neq > 0, "DCT-scaled and full decodes differ (%ld bytes)", neq);
        imago_image_free(a);
        imago_image_free(b);
    }

    /* a constant image stays constant whatever the box and size */
    {
        int sw = 57, sh = 31;
        uint8_t *c = malloc((size_t)sw * sh * 3);
        for (int i = 0; i < sw * sh; i++) {
            c[3 * i] = 200;
            c[3 * i + 1] = 7;
            c[3 * i + 2] = 255;
        }
        float boxes[][4] = {{0, 0, 57, 31}, {3.3f, 2.7f, 40.1f, 30.9f}, {56, 30, 57, 31}};
        int sizes[][2] = {{10, 6}, {57, 31}, {100, 3}, {1, 1}};
        int bad = 0;
        for (int bi = 0; bi < 3; bi++)
            for (int si = 0; si < 4; si++) {
                int tw = sizes[si][0], th = sizes[si][1];
                uint8_t *o = malloc((size_t)tw * th * 3);
                if (imago_image_resample(c, sw, sh, (size_t)sw * 3, boxes[bi], tw, th, o, NULL))
                    bad++;
                for (int i = 0; i < tw * th; i++)
                    bad += o[3 * i] != 200 || o[3 * i + 1] != 7 || o[3 * i + 2] != 255;
                free(o);
            }
        is_int(bad, 0, "constant image stays constant (12 box/size combinations)");
        /* invalid boxes */
        float inv[][4] = {{-1, 0, 10, 10}, {0, 0, 58, 31}, {5, 5, 5, 10}, {0, 0, 10, 31.5f}};
        uint8_t o[30];
        for (int i = 0; i < 4; i++)
            is_int(imago_image_resample(c, sw, sh, (size_t)sw * 3, inv[i], 2, 5, o, NULL),
                   IMAGO_ERR_INVALID, "resample refuses box %d", i);
        free(c);
    }
    /* SIMD kernels == portable kernels, on random images, sizes and boxes */
    {
        uint64_t st = 12345;
        int mismatches = 0, runs = 0;
        for (int it = 0; it < 200; it++) {
#define RND() (st = st * 6364136223846793005ull + 1442695040888963407ull, (unsigned)(st >> 33))
            int sw = 1 + (int)(RND() % 90), sh = 1 + (int)(RND() % 60);
            int tw = 1 + (int)(RND() % 70), th = 1 + (int)(RND() % 70);
            float b[4];
            b[0] = (float)(RND() % (unsigned)(sw * 4)) / 4.0f;
            b[1] = (float)(RND() % (unsigned)(sh * 4)) / 4.0f;
            b[2] = b[0] + (float)(1 + RND() % (unsigned)(sw * 4)) / 4.0f;
            b[3] = b[1] + (float)(1 + RND() % (unsigned)(sh * 4)) / 4.0f;
            if (b[2] > sw)
                b[2] = (float)sw;
            if (b[3] > sh)
                b[3] = (float)sh;
            if (b[2] <= b[0] || b[3] <= b[1])
                continue;
            /* exact-size buffers: ASan checks the kernels' reads */
            uint8_t *in = malloc((size_t)sw * sh * 3);
            for (int i = 0; i < sw * sh * 3; i++)
                in[i] = (uint8_t)(RND() & 255);
            uint8_t *o1 = malloc((size_t)tw * th * 3), *o2 = malloc((size_t)tw * th * 3);
            int r1 = imago_image_resample_impl(in, sw, sh, (size_t)sw * 3, b, tw, th, o1, 1, NULL);
            int r2 = imago_image_resample_impl(in, sw, sh, (size_t)sw * 3, b, tw, th, o2, 0, NULL);
            mismatches += r1 != 0 || r2 != 0 || memcmp(o1, o2, (size_t)tw * th * 3) != 0;
            runs++;
            free(in);
            free(o1);
            free(o2);
        }
        is_int(mismatches, 0, "SIMD and portable resize agree on %d random cases", runs);
        ok(runs > 150, "random cases ran (%d)", runs);
    }
    imago_image_free(src);
    return tap_done();
}
