/* engine-private: the pieces of the image pipeline (engine/image*.c) that
 * the decoders, the resampler and the unit tests share. The public entry
 * points are in engine.h; the contract they implement is
 * docs/preprocessing.md.
 *
 * Thread safety: every function here is reentrant (no global state).
 */
#ifndef IMAGO_ENGINE_IMAGE_INT_H
#define IMAGO_ENGINE_IMAGE_INT_H

#include <stddef.h>
#include <stdint.h>

#include "common/common.h"
#include "engine.h"

/* ---- geometry (image.c) ------------------------------------------------ */

/* Round half to even (banker's rounding), as Python's round(). */
double imago_image_round_half_even(double v);

/* Target size of step 4: cw x ch resized so that the longer side is at most
 * max_side (0 = no limit), never upscaling. cw, ch >= 1. */
void imago_image_target_size(int cw, int ch, int max_side, int *tw, int *th);

/* DCT scale of step 5: the largest k of 8, 4, 2 with
 * floor(max(cw, ch) / k) >= max(tw, th), else 1. */
int imago_image_dct_scale(int cw, int ch, int tw, int th);

/* Integer crop of step 3 for an oriented w x h image: box (x1,y1,x2,y2)
 * rounded half to even and clamped. Returns 0 and sets c[4] = x0,y0,x1,y1,
 * or IMAGO_ERR_INVALID (non-finite or empty after clamping). */
int imago_image_crop_rect(const double box[4], int w, int h, int c[4], imago_error *err);

/* ---- orientation (image_orient.c) -------------------------------------- */

/* EXIF orientation (1..8) of a JPEG held in data: the Orientation tag of
 * IFD0 in the first APP1 "Exif" segment. Returns 1 when there is none or
 * when the segment is malformed (never reads outside data). */
int imago_jpeg_exif_orientation(const uint8_t *data, size_t len);

/* Applies EXIF orientation o (1..8) to the packed RGB image src (w x h) into
 * dst, which must not overlap src and holds w*h*3 bytes. The result is
 * w x h for o in 1..4 and h x w for o in 5..8 (like PIL exif_transpose). */
void imago_image_orient(const uint8_t *src, int w, int h, int o, uint8_t *dst);

/* ---- resampling (image_resize.c) --------------------------------------- */

/* Pillow-compatible 8-bit Lanczos-3 resize (Image.resize(size, LANCZOS,
 * box)) of the source rectangle box = (x0, y0, x1, y1) (single precision, as
 * Pillow stores it; 0 <= x0 < x1 <= sw, same for y) of the packed RGB image
 * src (sw x sh, row stride src_stride bytes) to dst (tw x th, packed).
 * Returns 0, IMAGO_ERR_INVALID (bad box / sizes) or IMAGO_ERR_NOMEM. */
int imago_image_resample(const uint8_t *src, int sw, int sh, size_t src_stride,
                         const float box[4], int tw, int th, uint8_t *dst, imago_error *err);
/* The same with the SIMD kernels allowed (simd = 1) or not (0, the portable
 * reference the tests compare the SIMD kernels with). */
int imago_image_resample_impl(const uint8_t *src, int sw, int sh, size_t src_stride,
                              const float box[4], int tw, int th, uint8_t *dst, int simd,
                              imago_error *err);

/* ---- decoders (image_jpeg.c, image_png.c) ------------------------------- */

/* Header of an encoded image: stored size (before orientation) and the EXIF
 * orientation (1 for PNG). */
typedef struct imago_image_header {
    imago_image_format format;
    int width, height; /* as stored */
    int orientation;   /* 1..8 */
    int cmyk;          /* JPEG stored as CMYK or YCCK (converted like Pillow) */
} imago_image_header;

int imago_jpeg_read_header(const uint8_t *data, size_t len, imago_image_header *hdr,
                           imago_error *err);
/* Decodes at 1/k (k in 1, 2, 4, 8; the caller checked that TurboJPEG will
 * use exactly that factor with imago_jpeg_scale_ok) into dst, which holds
 * ceil(W0/k) * ceil(H0/k) * 3 bytes. Truncated or corrupt data gives
 * IMAGO_ERR_FORMAT. */
int imago_jpeg_decode(const uint8_t *data, size_t len, const imago_image_header *hdr, int k,
                      uint8_t *dst, imago_error *err);
/* Whether TurboJPEG, asked for ceil(W0/k) x ceil(H0/k), picks the factor 1/k
 * (for tiny images a larger factor can give the same size). */
int imago_jpeg_scale_ok(int w0, int h0, int k);

int imago_png_read_header(const uint8_t *data, size_t len, imago_image_header *hdr,
                          imago_error *err);
/* Decodes a PNG into dst (W0 * H0 * 3 bytes, packed RGB). max_pixels is
 * re-checked against the IHDR before anything is allocated. */
int imago_png_decode(const uint8_t *data, size_t len, const imago_image_header *hdr,
                     uint8_t *dst, imago_error *err);

#endif /* IMAGO_ENGINE_IMAGE_INT_H */
