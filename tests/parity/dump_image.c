/* Parity helper: decodes an image file with imago_image_decode and writes
 * the result as a binary PPM (P6) to stdout.
 *
 *   dump_image FILE MAX_SIDE [X1 Y1 X2 Y2] [--no-dct]
 *
 * Exit status 0, or 1 with the imago error on stderr.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"

static int read_file(const char *path, unsigned char **data, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    size_t cap = 1 << 20, n = 0;
    unsigned char *buf = malloc(cap);
    for (;;) {
        if (n == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        if (r == 0)
            break;
        n += r;
    }
    fclose(f);
    *data = buf;
    *len = n;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s FILE MAX_SIDE [X1 Y1 X2 Y2] [--no-dct]\n", argv[0]);
        return 2;
    }
    imago_decode_params p = imago_decode_params_default();
    p.max_bytes = 0;
    p.max_side = atoi(argv[2]);
    int nargs = argc;
    if (strcmp(argv[argc - 1], "--no-dct") == 0) {
        p.allow_dct_scaling = 0;
        nargs--;
    }
    if (nargs >= 7) {
        p.has_box = 1;
        for (int i = 0; i < 4; i++)
            p.box[i] = strtod(argv[3 + i], NULL);
    }
    unsigned char *data;
    size_t len;
    if (read_file(argv[1], &data, &len) != 0) {
        perror(argv[1]);
        return 1;
    }
    imago_error err;
    imago_error_clear(&err);
    imago_image *img = NULL;
    int rc = imago_image_decode(data, len, &p, &img, &err);
    free(data);
    if (rc != 0) {
        fprintf(stderr, "%s: %s (%s)\n", argv[1], err.msg, imago_error_name(rc));
        return 1;
    }
    printf("P6\n%d %d\n255\n", img->width, img->height);
    fwrite(img->rgb, 3, (size_t)img->width * img->height, stdout);
    imago_image_free(img);
    return 0;
}
