/* engine-private: the model container. A model is an imago.config (parsed
 * from the safetensors header's __metadata__) plus named tensors, exposed as
 * fp32 whatever the file's dtype. Architecture knowledge (which tensors a
 * ResNet-101 + AGeM needs, with which shapes) lives in the network code
 * (engine/net*.c), not here: this file is generic.
 *
 * Thread safety: a loaded model is immutable; any number of threads may read
 * it. imago_model_free must not race with readers.
 */
#ifndef IMAGO_ENGINE_MODEL_H
#define IMAGO_ENGINE_MODEL_H

#include <stdint.h>

#include "common.h"

#define IMAGO_MODEL_MAX_SCALES 8
#define IMAGO_TENSOR_MAX_DIMS 4

typedef struct imago_model_config {
    int format;          /* 1 */
    char name[128];
    char backbone[32];   /* resnet50 | resnet101 | resnet152 | mobilenet_v2 */
    char head[16];       /* gem | agem | glam */
    char pooling[8];     /* gem | spoc | mac */
    int dim;             /* output descriptor dimension */
    char whitening[8];   /* none | lw | fc */
    char padding[16];    /* torch | tf_same */
    int max_side;        /* default 1024 */
    float mean[3], std[3];
    int n_scales;
    float scales[IMAGO_MODEL_MAX_SCALES];
    char source[256];
    int trained;         /* 0 for synthetic / demo weights */
    char fingerprint[65];/* hex SHA-256 of the file (synthetic: of arch + seed) */
} imago_model_config;

/* Fills the defaults of DESIGN §3 (max_side 1024, ImageNet mean/std, scales
 * [1, 1/sqrt 2, 1/2], pooling gem, padding torch, whitening none). */
void imago_model_config_default(imago_model_config *cfg);

typedef struct imago_tensor {
    int ndim;
    int64_t dims[IMAGO_TENSOR_MAX_DIMS];
    int64_t numel;
    const float *data; /* fp32, borrowed from the model; valid until imago_model_free */
} imago_tensor;

typedef struct imago_model imago_model;

/* Loads a .safetensors file: checks the 8-byte header length against the file
 * size, parses the JSON header (jansson), checks every tensor's dtype
 * (F32/F16/BF16), shape, offsets (inside the data area, consistent with
 * dtype x shape, no overlaps), parses __metadata__["imago.config"], mmaps the
 * data, converts F16/BF16 to fp32 copies, and computes the SHA-256 of the
 * whole file as the fingerprint. IMAGO_ERR_IO / IMAGO_ERR_FORMAT /
 * IMAGO_ERR_UNSUPPORTED with a message naming the tensor or key. */
int imago_model_load(const char *path, imago_model **out, imago_error *err);

/* Looks a tensor up by its full name ("backbone.layer1.0.conv1.weight").
 * Returns 0 or IMAGO_ERR_NOT_FOUND ("model has no tensor 'x'"). */
int imago_model_tensor(const imago_model *m, const char *name, imago_tensor *out,
                       imago_error *err);

/* Like imago_model_tensor, and also checks the shape: ndim dims given in
 * want (-1 = any). IMAGO_ERR_FORMAT naming the tensor, want and got. */
int imago_model_tensor_shape(const imago_model *m, const char *name, int ndim,
                             const int64_t *want, imago_tensor *out, imago_error *err);

/* Convolution weight (O x I x kh x kw) with the BatchNorm `bn_prefix`
 * ("backbone.bn1") folded in: a = gamma / sqrt(var + 1e-5); w' = a w;
 * b' = beta - a mean (+ a * conv bias when the conv has one). bn_prefix may
 * be NULL (then b' = conv bias, or zeros). *w and *b are new arrays owned by
 * the caller (free()). */
int imago_model_conv_bn(const imago_model *m, const char *conv_prefix, const char *bn_prefix,
                        imago_tensor *wshape, float **w, float **b, imago_error *err);

const imago_model_config *imago_model_get_config(const imago_model *m);

/* Synthetic models (the demo model and tests): the caller describes every
 * tensor; values are drawn from a fixed-seed generator so the same arch and
 * seed always give the same weights. */
typedef enum imago_init_kind {
    IMAGO_INIT_CONV_HE = 0, /* normal(0, sqrt(2 / fan_in)) * gain */
    IMAGO_INIT_ZEROS,
    IMAGO_INIT_ONES,        /* times gain */
    IMAGO_INIT_CONST,       /* every value = gain */
    IMAGO_INIT_NORMAL,      /* normal(0, gain) */
    IMAGO_INIT_IDENTITY     /* 2-D: identity matrix (whitening P) */
} imago_init_kind;

typedef struct imago_tensor_spec {
    const char *name;
    int ndim;
    int64_t dims[IMAGO_TENSOR_MAX_DIMS];
    imago_init_kind init;
    float gain;
} imago_tensor_spec;

/* Builds an in-memory model from cfg (copied; trained forced to 0 and the
 * fingerprint derived from cfg->name and seed) and n tensor specs. */
int imago_model_synthetic(const imago_model_config *cfg, const imago_tensor_spec *specs, int n,
                          uint64_t seed, imago_model **out, imago_error *err);

void imago_model_free(imago_model *m);

/* SHA-256 helpers (engine/sha256.c). */
void imago_sha256(const void *data, size_t len, uint8_t digest[32]);
int imago_sha256_file(const char *path, char hex[65], imago_error *err);

#endif
