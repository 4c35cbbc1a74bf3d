/* imago engine: image decoding + preprocessing, the descriptor networks and
 * their backends (oneDNN CPU; CUDA/cuDNN GPU), and the batcher.
 *
 * This is the only header other modules include from engine/. Types of the
 * third-party libraries (tjhandle, png_structp, dnnl_*, cuda*) never appear
 * here.
 */
#ifndef IMAGO_ENGINE_H
#define IMAGO_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

/* ======================================================================
 * Images: decode + orient + crop + resize (engine/image*.c)
 * ====================================================================== */

typedef enum imago_image_format {
    IMAGO_IMAGE_UNKNOWN = 0,
    IMAGO_IMAGE_JPEG = 1,
    IMAGO_IMAGE_PNG = 2
} imago_image_format;

/* A decoded 8-bit RGB image, rows packed (stride = 3 * width). */
typedef struct imago_image {
    int width;
    int height;
    uint8_t *rgb; /* owned by the image; height * width * 3 bytes */
} imago_image;

typedef struct imago_decode_params {
    size_t max_bytes;    /* refuse encoded input larger than this (0 = no limit) */
    uint64_t max_pixels; /* refuse declared width*height above this, before allocating */
    int max_side;        /* resize so the longer side is <= max_side (0 = no resize) */
    int has_box;         /* crop to box (x1,y1,x2,y2) in oriented source pixels */
    double box[4];
    int allow_dct_scaling; /* JPEG: decode at 1/2, 1/4, 1/8 when still >= target (default 1) */
} imago_decode_params;

imago_decode_params imago_decode_params_default(void);

/* Reads format and declared size from the header only (no pixel decode);
 * width/height are after EXIF orientation. Returns 0, IMAGO_ERR_FORMAT or
 * IMAGO_ERR_UNSUPPORTED. Thread-safe. */
int imago_image_probe(const void *data, size_t len, imago_image_format *format, int *width,
                      int *height, imago_error *err);

/* Decodes data (JPEG or PNG, borrowed) into a new RGB image following the
 * preprocessing contract in engine/image.c (orientation, box, DCT scaling,
 * PIL-compatible Lanczos-3 resize). *out is set on success and owned by the
 * caller (imago_image_free). Errors: IMAGO_ERR_FORMAT (corrupt, truncated,
 * not an image), IMAGO_ERR_TOO_LARGE (bytes or declared pixels over the
 * limits), IMAGO_ERR_INVALID (bad box), IMAGO_ERR_NOMEM. Thread-safe. */
int imago_image_decode(const void *data, size_t len, const imago_decode_params *params,
                       imago_image **out, imago_error *err);

/* Allocates an uninitialised width x height image (checked sizes). */
int imago_image_new(int width, int height, imago_image **out, imago_error *err);
void imago_image_free(imago_image *img);

/* ======================================================================
 * Engine: model + backend, image -> global descriptor (engine/engine.c)
 * ====================================================================== */

typedef struct imago_engine imago_engine;

typedef struct imago_engine_params {
    const char *model_path; /* a .safetensors file; NULL or "" = the demo model */
    const char *demo_arch;  /* demo model: "resnet101-agem" (default), "resnet50-gem", ... */
    const char *backend;    /* "auto" | "cpu" | "cuda" */
    const char *precision;  /* "fp32" | "bf16" | "fp16" (cuda) */
    int threads;            /* CPU threads for the backend (0 = all cores) */
    int max_side;           /* 0 = the model's input.max_side */
    const float *scales;    /* NULL = the model's scales */
    int n_scales;
} imago_engine_params;

imago_engine_params imago_engine_params_default(void);

typedef struct imago_model_info {
    char name[128];
    char backbone[32];
    char head[16];
    char whitening[8];
    int dim;
    int trained; /* 0 for the demo model (random weights) */
    char fingerprint[65]; /* hex SHA-256 of the model file (demo: of its seed + arch) */
    int max_side;
    float mean[3], std[3];
    int n_scales;
    float scales[8];
    char backend[16];   /* "cpu" | "cuda" */
    char precision[8];  /* "fp32" | "bf16" | "fp16" */
    char device[128];   /* "oneDNN 2.6 (avx512_core_bf16)", "NVIDIA H100 ..." */
} imago_model_info;

/* Opens the model and creates the backend. Thread-safe to call; the engine
 * returned is shared by all threads. */
int imago_engine_open(const imago_engine_params *params, imago_engine **out, imago_error *err);
void imago_engine_free(imago_engine *engine);

void imago_engine_describe(const imago_engine *engine, imago_model_info *out);

/* Computes the descriptors of n images (borrowed; all must have the same
 * width and height when n > 1) into out (n * dim floats, caller-owned), with
 * every configured scale. Thread-safe: concurrent calls run on separate
 * execution contexts. */
int imago_engine_embed(imago_engine *engine, const imago_image *const *images, int n,
                       float *out, imago_error *err);

#endif /* IMAGO_ENGINE_H */
