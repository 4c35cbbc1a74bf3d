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

#include "common/common.h"

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

/* Encodes img as a baseline JPEG (4:2:0, quality 1..100) into malloc'ed
 * memory the caller frees; IMAGO_ERR_BACKEND when TurboJPEG fails,
 * IMAGO_ERR_INVALID for a bad quality, IMAGO_ERR_NOMEM. Thread-safe. */
int imago_image_encode_jpeg(const imago_image *img, int quality, void **jpeg, size_t *jpeg_len,
                            imago_error *err);

/* SHA-256 helpers (engine/sha256.c). Uses the x86 SHA extensions when the
 * CPU has them (IMAGO_SHA256_PORTABLE=1 in the environment disables them). */
typedef struct imago_sha256_ctx {
    uint32_t h[8];
    uint64_t len;
    uint8_t buf[64];
    size_t nbuf;
} imago_sha256_ctx;
void imago_sha256_init(imago_sha256_ctx *c);
void imago_sha256_update(imago_sha256_ctx *c, const void *data, size_t len);
void imago_sha256_final(imago_sha256_ctx *c, uint8_t digest[32]);
void imago_sha256(const void *data, size_t len, uint8_t digest[32]);
void imago_sha256_hex(const uint8_t digest[32], char hex[65]);
int imago_sha256_file(const char *path, char hex[65], imago_error *err);
/* Tests/benchmarks: select the accelerated path (on != 0) when available or
 * the portable one; returns whether the accelerated path is now used. */
int imago_sha256_set_accel(int on);

/* ======================================================================
 * Engine: model + backend, image -> global descriptor (engine/engine.c)
 * ====================================================================== */

typedef struct imago_engine imago_engine;

typedef struct imago_engine_params {
    const char *model_path; /* a .safetensors file; NULL or "" = the demo model */
    const char *demo_arch;  /* demo model: "resnet50-gem" (default), "resnet101-agem", ... */
    const char *backend;    /* "auto" | "cpu" | "cuda": auto uses the GPU backend when its
                             * plugin loads and finds a device, else the CPU */
    const char *cuda_plugin; /* path of imago_cuda.so; NULL = next to the executable
                              * (../lib/imago/), the install dir, then the build tree */
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
    char backend_note[192]; /* backend auto: why the GPU backend is not used ("" if it is
                             * or was not asked for) */
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

/* Engine entry point for tests and parity drivers (engine.c): like
 * imago_engine_embed, on n already normalised images given as one NHWC fp32
 * buffer (n x h x w x 3, borrowed), so that a reference implementation and
 * the engine can be fed bit-identical inputs. Thread-safe like
 * imago_engine_embed. */
int imago_engine_embed_nhwc(imago_engine *engine, const float *nhwc, int n, int h, int w,
                            float *out, imago_error *err);

/* ======================================================================
 * Batcher: decode threads -> per-shape queues -> dynamic batches ->
 * forward threads -> one callback per image (engine/batcher*.c)
 *
 * The HTTP server and the ingest job runner hand encoded images (or
 * already decoded ones) to a batcher and get each descriptor back through
 * a callback. Images are batched only with images of the same decoded
 * shape, so batching never changes a descriptor. Thread safety: every
 * function except imago_batcher_close/free may be called from any thread
 * at any time, concurrently; close/free are called once, by the owner,
 * never from a callback.
 * ====================================================================== */

typedef struct imago_batcher imago_batcher;

#define IMAGO_BATCHER_MAX_BATCH 1024

/* Where an image's time went (microseconds, monotonic clock). */
typedef struct imago_batch_timings {
    int64_t decode_us;  /* decode + orient + crop + resize (0: submitted decoded) */
    int64_t queue_us;   /* waiting: for a decode thread, then for a batch to form
                           and a forward thread to take it */
    int64_t forward_us; /* from the batch's first engine call to the end of the call
                           that produced this descriptor (includes NOMEM retries) */
    int batch_size;     /* images in the engine call that produced it (0: no call) */
} imago_batch_timings;

/* Completion callback: called exactly once per accepted submission, from a
 * batcher thread, with no batcher lock held. status is 0 or IMAGO_ERR_*:
 * the decode error (FORMAT, TOO_LARGE, INVALID, UNSUPPORTED, NOMEM), the
 * engine's error for the batch, or IMAGO_ERR_CANCELLED when the batcher
 * was closed without draining. message is "" on success. descriptor (dim
 * floats, NULL on error) and timings are borrowed for the duration of the
 * call only. The callback must not block (it holds up a decode or forward
 * thread) and must not call imago_batcher_close/free; it may submit. */
typedef void (*imago_batcher_cb)(void *user_data, int status, const char *message,
                                 const float *descriptor, int dim,
                                 const imago_batch_timings *timings);

/* Replacement for imago_engine_embed, FOR TESTS AND BENCHMARKS ONLY (a fake
 * engine that can block, fail or count calls). Same contract as
 * imago_engine_embed; called concurrently from the forward threads. */
typedef int (*imago_batcher_embed_fn)(void *ctx, const imago_image *const *images, int n,
                                      float *out, imago_error *err);

typedef struct imago_batcher_params {
    int decode_threads;   /* decode + resize threads; 0 = one per online CPU */
    int forward_threads;  /* threads calling the engine; default 1 (oneDNN already
                             uses every core for one call) */
    int max_batch;        /* most images per engine call, 1..IMAGO_BATCHER_MAX_BATCH (8) */
    int64_t max_delay_us; /* longest wait of a shape queue's oldest image for its
                             batch to fill (2000) */
    int queue_depth;      /* most images waiting at once: in the decode queue, being
                             decoded, or in shape queues (not those in a forward
                             pass); beyond it submissions get IMAGO_ERR_BUSY (256) */
    size_t max_bytes;     /* largest encoded image (32 MiB; 0 = no limit) */
    uint64_t max_pixels;  /* largest declared width*height (100e6; 0 = no limit) */
    int max_side;         /* resize target; 0 = the engine's model info max_side */
    /* tests and benchmarks only: */
    imago_batcher_embed_fn embed_fn; /* NULL = imago_engine_embed on the engine */
    void *embed_ctx;
    int dim;                         /* descriptor size, required with embed_fn */
} imago_batcher_params;

imago_batcher_params imago_batcher_params_default(void);

/* Creates a batcher and starts its threads. engine is borrowed and must
 * outlive the batcher (it may be NULL only with params->embed_fn, which
 * then needs params->dim > 0 and params->max_side > 0). *out is set on
 * success. Errors: IMAGO_ERR_INVALID (bad params), IMAGO_ERR_BACKEND
 * (threads could not be started). */
int imago_batcher_new(imago_engine *engine, const imago_batcher_params *params,
                      imago_batcher **out, imago_error *err);

/* Stops accepting work (later submissions get IMAGO_ERR_NOT_READY) and
 * waits until every accepted submission had its callback. drain != 0:
 * waiting images are all processed, partial batches go at once (no
 * max_delay wait). drain == 0: images not yet in a forward pass or a decode
 * get IMAGO_ERR_CANCELLED; running decodes and forward passes finish (their
 * images are delivered, or cancelled when they had not reached a forward
 * pass). Then the threads are joined. Idempotent. Owner thread only, never
 * from a callback. */
void imago_batcher_close(imago_batcher *b, int drain);

/* imago_batcher_close(b, 0) when not closed yet, then frees. NULL is a no-op. */
void imago_batcher_free(imago_batcher *b);

typedef enum imago_batcher_ownership {
    IMAGO_BATCHER_COPY = 0, /* bytes are borrowed: copied before submit returns */
    IMAGO_BATCHER_TAKE = 1  /* bytes came from malloc(); on success the batcher owns
                               them and free()s them; on error the caller keeps them */
} imago_batcher_ownership;

/* Queues one encoded image (JPEG or PNG) for decode + descriptor; cb gets
 * the result (see imago_batcher_cb). Never blocks. req (may be NULL) gives
 * the per-request decode options: has_box/box and allow_dct_scaling are
 * used; max_bytes/max_pixels can only tighten the batcher's limits;
 * max_side is ignored (always the batcher's, so that descriptors agree).
 * Returns 0 when accepted (then cb is called exactly once), or, with no
 * callback: IMAGO_ERR_BUSY (queue_depth images already waiting; counted in
 * the stats), IMAGO_ERR_TOO_LARGE (len over max_bytes), IMAGO_ERR_NOT_READY
 * (closed), IMAGO_ERR_INVALID (NULL cb or bytes), IMAGO_ERR_NOMEM (copy). */
int imago_batcher_submit(imago_batcher *b, const void *bytes, size_t len,
                         imago_batcher_ownership ownership, const imago_decode_params *req,
                         imago_batcher_cb cb, void *user_data, imago_error *err);

/* Queues an already decoded image (e.g. decoded by the job runner with
 * imago_batcher_decode_params()); it goes straight to its shape queue. img
 * is taken on success (the batcher frees it), left to the caller on error.
 * Same return codes as imago_batcher_submit, and IMAGO_ERR_INVALID for an
 * image whose longer side is over the batcher's max_side. */
int imago_batcher_submit_image(imago_batcher *b, imago_image *img, imago_batcher_cb cb,
                               void *user_data, imago_error *err);

/* Synchronous convenience (CLI, tools): submits bytes (borrowed), waits
 * for the result and writes imago_batcher_dim(b) floats to out. timings
 * may be NULL. Returns the callback's status (its message in err) or a
 * submit error. Must not be called from a callback. */
int imago_batcher_embed_sync(imago_batcher *b, const void *bytes, size_t len,
                             const imago_decode_params *req, float *out,
                             imago_batch_timings *timings, imago_error *err);

/* The decode parameters the batcher uses (its limits and max_side). */
void imago_batcher_decode_params(const imago_batcher *b, imago_decode_params *out);

/* Descriptor size of the results. */
int imago_batcher_dim(const imago_batcher *b);

/* Changes max_delay_us for the batches formed from now on (for an embedder
 * that tunes it while running; the server sets it once). Returns
 * IMAGO_ERR_INVALID for a negative value. */
int imago_batcher_set_max_delay(imago_batcher *b, int64_t max_delay_us, imago_error *err);

/* A consistent snapshot of the batcher's counters (for /metrics). */
typedef struct imago_batcher_stats {
    int max_batch, queue_depth;
    int64_t queued;        /* now: waiting (decode queue + decoding + shape queues) */
    int64_t queued_decode; /* now: of those, waiting for or in a decode */
    int64_t queued_batch;  /* now: of those, decoded and waiting in shape queues */
    int64_t in_flight;     /* now: images in running forward passes */
    int shapes;            /* now: non-empty shape queues */
    uint64_t submitted;    /* accepted submissions */
    uint64_t completed;    /* callbacks with a descriptor */
    uint64_t failed;       /* callbacks with an error (the three below) */
    uint64_t failed_decode, failed_engine, cancelled;
    uint64_t rejected_busy; /* IMAGO_ERR_BUSY returns */
    uint64_t batches;       /* successful engine calls */
    uint64_t nomem_splits;  /* batches split in halves after IMAGO_ERR_NOMEM */
    uint64_t batch_hist[IMAGO_BATCHER_MAX_BATCH + 1]; /* [k]: successful calls of k images */
    double decode_s_total;  /* sum over decoded images */
    double queue_s_total;   /* sum over images that reached a forward pass */
    double forward_s_total; /* sum over engine calls (failed ones included) */
    double images_per_s;    /* completed images per second over the last window_s */
    double window_s;        /* up to 10 s (less right after the start) */
} imago_batcher_stats;

void imago_batcher_stats_get(const imago_batcher *b, imago_batcher_stats *out);

#endif /* IMAGO_ENGINE_H */
