/* engine-private: the model container. A model is an imago.config (parsed
 * from the safetensors header's __metadata__) plus named tensors, exposed as
 * fp32 whatever the file's dtype. Architecture knowledge (which tensors a
 * ResNet-101 + AGeM needs, with which shapes) lives in the network code
 * (engine/net*.c), not here: this file is generic.
 *
 * Thread safety: a loaded model is immutable; any number of threads may read
 * it. imago_model_free must not race with readers of the same reference:
 * give each owner its own reference (imago_model_retain).
 */
#ifndef IMAGO_ENGINE_MODEL_H
#define IMAGO_ENGINE_MODEL_H

#include <stdint.h>

#include "common/common.h"
#include "engine.h"

#define IMAGO_MODEL_MAX_SCALES 8
#define IMAGO_TENSOR_MAX_DIMS 4
#define IMAGO_MODEL_MAX_WHITEN 2 /* whitening stages: lw and fc, each at most once */

typedef struct imago_model_config {
    int format;          /* 1 */
    char name[128];
    char backbone[32];   /* resnet50 | resnet101 | resnet152 | mobilenet_v2 */
    char head[16];       /* gem | agem | glam | apgem | glap */
    char pooling[8];     /* gem | spoc | mac */
    int dim;             /* output descriptor dimension */
    char whitening[8];   /* none, or the stages in order joined by ',': lw | fc | fc,lw |
                          * lw,fc (the JSON list ["fc", "lw"]); each stage at most once */
    int last_stride;     /* ResNet layer4 stride: 2 (default) or 1 (output stride 16) */
    int normalize_pooled;/* 1 (default): L2N of each scale's pooled vector; 0: the pooled
                          * vector goes to the whitening as it is (dirtorch without
                          * norm_features: GeM -> fc) */
    char padding[16];    /* torch | tf_same */
    int max_side;        /* default 1024 */
    float mean[3], std[3];
    int n_scales;
    float scales[IMAGO_MODEL_MAX_SCALES];
    char source[256];
    int trained;         /* 0 for synthetic / demo weights */
    char fingerprint[65];/* hex SHA-256 of the file (synthetic: of arch + seed) */
    /* Added by the model-file implementation (engine/model_config.c): */
    float gem_p;         /* pooling p given as a number in the config (gem; 1 for
                          * spoc/mac); meaningful only when p_tensor is "" */
    char p_tensor[64];   /* "pool.p" when the config says "from tensor pool.p"
                          * (the default for gem), else "" */
} imago_model_config;

/* Fills the defaults of docs/models.md (max_side 1024, ImageNet mean/std, scales
 * [1, 1/sqrt 2, 1/2], pooling gem with p from tensor pool.p, padding torch,
 * whitening none, last_stride 2, normalize_pooled 1, trained 1). backbone, head and name are "" and dim is 0:
 * a config must name them. */
void imago_model_config_default(imago_model_config *cfg);

/* Parses an imago.config JSON string (docs/models.md, the model file) into *cfg: starts from the
 * defaults, then reads format (must be 1), backbone, head, dim (required),
 * pooling ({"type": gem|spoc|mac, "p": number | "from tensor NAME"} or just
 * the type string), whitening ("none", "lw", "fc" or a list of 1..2 distinct
 * stages such as ["fc", "lw"], stored joined by ','), last_stride (1 | 2,
 * ResNet only), normalize_pooled (bool), padding, input {max_side, mean[3], std[3]},
 * scales (1..8 values in (0, 4]), name, source (truncated to fit at a UTF-8
 * boundary), trained (bool). Bounds: dim 1..65536, max_side 1..16384, std > 0,
 * numeric p in (0, 64]. Unknown keys are ignored. Errors: IMAGO_ERR_FORMAT (not JSON, wrong
 * type, value out of range) and IMAGO_ERR_UNSUPPORTED (format != 1, unknown
 * backbone/head/pooling/whitening/padding, agem without a ResNet), each
 * message naming the key. *cfg is written only on success (fingerprint "").
 * Thread-safe. */
int imago_model_config_parse(const char *json, imago_model_config *cfg, imago_error *err);

/* Splits a config's whitening string ("fc,lw") into at most max stage names
 * (each < 4 chars) and returns their count: 0 for "none" or "", -1 when it
 * does not split into at most max names. Thread-safe. */
int imago_model_whitening_stages(const char *whitening, char stages[][4], int max);

/* Checks the values of a filled config (the rules of imago_model_config_parse);
 * used for configs built in code (the demo model). Thread-safe. */
int imago_model_config_validate(const imago_model_config *cfg, imago_error *err);

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
 * IMAGO_ERR_UNSUPPORTED with a message naming the tensor or key (prefixed
 * with the path). F32 tensors aligned to 4 bytes point into the read-only
 * mapping: the file must not be truncated while the model is loaded (replace
 * model files by rename, as any mmapped file). The header may be at most
 * 100 MiB; tensors have at most 4 dims; gaps between tensors are allowed.
 * When the config takes GeM p from a tensor, that tensor must exist with one
 * element. *out is set on success (one reference; imago_model_free).
 * Thread-safe (different calls share nothing). */
int imago_model_load(const char *path, imago_model **out, imago_error *err);

/* Same checks as imago_model_load over a file image in memory (data is
 * copied; the fingerprint is the SHA-256 of the bytes). For tests and fuzzing. */
int imago_model_load_memory(const void *data, size_t len, imago_model **out,
                            imago_error *err);

/* Reference counting for a model shared between threads (the engine and its
 * workers): retain returns m; imago_model_free drops one reference and frees
 * on the last. Both are thread-safe with respect to each other. */
imago_model *imago_model_retain(imago_model *m);

/* Number of tensors, and the i-th one (0 <= i < n) in file order; *name is
 * borrowed from the model. IMAGO_ERR_INVALID for a bad index. */
int imago_model_n_tensors(const imago_model *m);
int imago_model_tensor_at(const imago_model *m, int i, const char **name, imago_tensor *out,
                          imago_error *err);

/* 1 when the model has a tensor of that name, else 0. */
int imago_model_has_tensor(const imago_model *m, const char *name);

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
 * the caller (free()). The weight must have 3 or 4 dims (Conv1d / Conv2d; any
 * groups), the conv bias and the four BN tensors [O] elements each. a' and b'
 * are computed in double and rounded once. *wshape receives the weight shape
 * with data = *w. IMAGO_ERR_NOT_FOUND (missing tensor), IMAGO_ERR_FORMAT (a
 * size that does not match O, running_var + eps <= 0), IMAGO_ERR_NOMEM.
 * Outputs set only on success. Thread-safe. */
int imago_model_conv_bn(const imago_model *m, const char *conv_prefix, const char *bn_prefix,
                        imago_tensor *wshape, float **w, float **b, imago_error *err);

/* The same folding for a Linear layer [O, I] followed by BatchNorm1d (the
 * GLAM head's fc + bn): W' = a W, b' = beta - a mean + a fc_bias. */
int imago_model_linear_bn(const imago_model *m, const char *fc_prefix, const char *bn_prefix,
                          imago_tensor *wshape, float **w, float **b, imago_error *err);

const imago_model_config *imago_model_get_config(const imago_model *m);

/* Synthetic models (the demo model and tests): the caller describes every
 * tensor; values are drawn from a fixed-seed generator so the same arch and
 * seed always give the same weights. */
/* "normal" below is the Irwin-Hall sum of four 16-bit uniforms scaled to the
 * wanted standard deviation (a normal truncated at 3.46 sigma): exact integer
 * arithmetic, so the same seed gives bit-identical weights on every platform.
 * A gain of 0 means 1 for every kind but IMAGO_INIT_CONST. fan_in = numel /
 * dims[0]. Each tensor has its own stream, seeded from (seed, name): adding or
 * reordering specs does not change the other tensors. */
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

/* Builds an in-memory model from cfg (copied and validated; trained forced to
 * 0 and the fingerprint = hex SHA-256 of (cfg->name, seed, every spec)) and n
 * tensor specs (names copied; unique; ndim 0..4). IMAGO_ERR_INVALID for a bad
 * spec, IMAGO_ERR_NOMEM. About 1 ns per value (60M values: ~0.1 s). */
int imago_model_synthetic(const imago_model_config *cfg, const imago_tensor_spec *specs, int n,
                          uint64_t seed, imago_model **out, imago_error *err);

void imago_model_free(imago_model *m);

#endif
