/* PNG decoding through libpng, from memory, to packed 8-bit RGB: palette
 * expanded, gray replicated, alpha dropped, 16-bit reduced to its high byte,
 * interlacing handled. libpng's longjmp errors become IMAGO_ERR_FORMAT with
 * libpng's message.
 */
#include "image_int.h"

#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

typedef struct png_ctx {
    const uint8_t *data;
    size_t len, pos;
    char msg[200];
} png_ctx;

static void png_read_mem(png_structp png, png_bytep out, png_size_t n)
{
    png_ctx *c = png_get_io_ptr(png);
    if (n > c->len - c->pos) {
        snprintf(c->msg, sizeof c->msg, "truncated PNG data (wanted %zu bytes at offset %zu)",
                 (size_t)n, c->pos);
        png_longjmp(png, 1);
    }
    memcpy(out, c->data + c->pos, n);
    c->pos += n;
}

static void png_on_error(png_structp png, png_const_charp msg)
{
    png_ctx *c = png_get_error_ptr(png);
    if (c->msg[0] == 0)
        snprintf(c->msg, sizeof c->msg, "%s", msg);
    png_longjmp(png, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg; /* warnings (bad ancillary chunks, ...) do not fail a decode */
}

/* A read struct with its info struct and the memory source it reads. */
typedef struct png_reader {
    png_ctx c;
    png_structp png;
    png_infop info;
} png_reader;

/* Sets up the read struct; the caller does setjmp right after. */
static int png_open(png_reader *r, const uint8_t *data, size_t len, imago_error *err)
{
    png_ctx *c = &r->c;
    memset(c, 0, sizeof *c);
    c->data = data;
    c->len = len;
    r->info = NULL;
    r->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, c, png_on_error, png_on_warning);
    if (!r->png)
        return imago_error_set(err, IMAGO_ERR_NOMEM, "png_create_read_struct failed");
    r->info = png_create_info_struct(r->png);
    if (!r->info) {
        png_destroy_read_struct(&r->png, NULL, NULL);
        return imago_error_set(err, IMAGO_ERR_NOMEM, "png_create_info_struct failed");
    }
    png_set_read_fn(r->png, c, png_read_mem);
    /* Our own max_pixels check comes first; lift libpng's default 1e6 x 1e6
     * limit only as far as PNG itself allows, and cap chunk sizes so that a
     * huge declared ancillary chunk cannot make libpng allocate. */
    png_set_user_limits(r->png, 0x7fffffff, 0x7fffffff);
    png_set_chunk_malloc_max(r->png, 8u << 20);
    return 0;
}

/* After libpng's longjmp: frees the reader, returns libpng's message. */
static int png_fail(png_reader *r, imago_error *err)
{
    png_destroy_read_struct(&r->png, &r->info, NULL);
    return imago_error_set(err, IMAGO_ERR_FORMAT, "invalid PNG: %s", r->c.msg);
}

int imago_png_read_header(const uint8_t *data, size_t len, imago_image_header *hdr,
                          imago_error *err)
{
    png_reader r;
    int rc = png_open(&r, data, len, err);
    if (rc != 0)
        return rc;
    if (setjmp(png_jmpbuf(r.png)))
        return png_fail(&r, err);
    png_read_info(r.png, r.info);
    png_uint_32 w = png_get_image_width(r.png, r.info), h = png_get_image_height(r.png, r.info);
    png_destroy_read_struct(&r.png, &r.info, NULL);
    if (w == 0 || h == 0 || w > 0x7fffffff || h > 0x7fffffff)
        return imago_error_set(err, IMAGO_ERR_FORMAT, "invalid PNG size %ux%u", (unsigned)w,
                               (unsigned)h);
    hdr->format = IMAGO_IMAGE_PNG;
    hdr->width = (int)w;
    hdr->height = (int)h;
    hdr->orientation = 1;
    hdr->cmyk = 0;
    return 0;
}

int imago_png_decode(const uint8_t *data, size_t len, const imago_image_header *hdr, uint8_t *dst,
                     imago_error *err)
{
    png_reader r;
    int rc = png_open(&r, data, len, err);
    if (rc != 0)
        return rc;
    /* volatile: modified between setjmp and a possible longjmp */
    png_bytep *volatile rows = NULL;
    if (setjmp(png_jmpbuf(r.png))) {
        free(rows);
        return png_fail(&r, err);
    }
    png_read_info(r.png, r.info);
    png_uint_32 w = png_get_image_width(r.png, r.info), h = png_get_image_height(r.png, r.info);
    if ((int)w != hdr->width || (int)h != hdr->height)
        png_error(r.png, "size changed between header and decode");
    int color = png_get_color_type(r.png, r.info);
    int depth = png_get_bit_depth(r.png, r.info);
    if (depth == 16)
        png_set_strip_16(r.png); /* keeps the high byte */
    if (color == PNG_COLOR_TYPE_PALETTE)
        png_set_palette_to_rgb(r.png);
    if (color == PNG_COLOR_TYPE_GRAY && depth < 8)
        png_set_expand_gray_1_2_4_to_8(r.png);
    if (color == PNG_COLOR_TYPE_GRAY || color == PNG_COLOR_TYPE_GRAY_ALPHA)
        png_set_gray_to_rgb(r.png);
    /* Alpha is dropped, including the one that palette expansion makes out
     * of a tRNS chunk. */
    if ((color & PNG_COLOR_MASK_ALPHA) || png_get_valid(r.png, r.info, PNG_INFO_tRNS))
        png_set_strip_alpha(r.png);
    png_set_interlace_handling(r.png);
    png_read_update_info(r.png, r.info);
    if (png_get_rowbytes(r.png, r.info) != (size_t)w * 3 || png_get_channels(r.png, r.info) != 3 ||
        png_get_bit_depth(r.png, r.info) != 8)
        png_error(r.png, "unexpected PNG layout after transformations");
    rows = malloc((size_t)h * sizeof *rows);
    if (!rows) {
        png_destroy_read_struct(&r.png, &r.info, NULL);
        return imago_error_set(err, IMAGO_ERR_NOMEM, "no memory for %u PNG row pointers",
                               (unsigned)h);
    }
    for (png_uint_32 y = 0; y < h; y++)
        rows[y] = dst + (size_t)y * w * 3;
    png_read_image(r.png, rows);
    /* The image data is complete once png_read_image returns; a missing IEND
     * or a damaged trailing chunk is tolerated (as Pillow does). */
    free(rows);
    rows = NULL;
    png_destroy_read_struct(&r.png, &r.info, NULL);
    return 0;
}
