/* engine-private, model files only: the imago_model struct shared by
 * model.c (table, lookup, BN folding), model_config.c, safetensors.c (file
 * loader) and model_synth.c (synthetic weights). Other engine files use
 * model.h. */
#ifndef IMAGO_ENGINE_MODEL_INT_H
#define IMAGO_ENGINE_MODEL_INT_H

#include <stdatomic.h>

#include "model.h"

typedef struct imago_model_rec {
    char *name; /* owned */
    int ndim;
    int64_t dims[IMAGO_TENSOR_MAX_DIMS];
    int64_t numel;
    const float *data; /* into the mapping, the arena, or owned */
    float *owned;      /* converted / realigned copy (imago_free_aligned) or NULL */
} imago_model_rec;

struct imago_model {
    atomic_int refs;
    imago_model_config cfg;
    int n, cap;
    imago_model_rec *t;
    uint32_t *slots; /* open addressing: tensor index + 1, 0 = empty */
    size_t nslots;   /* power of two, >= 2 n */
    void *map;       /* mmap of the file (munmap) or NULL */
    size_t map_len;
    void *mem;    /* load_memory copy (free) or NULL */
    float *arena; /* synthetic values (imago_free_aligned) or NULL */
};

imago_model *imago_model_new_(void);

/* Appends a tensor (name copied, owned taken on success and on failure).
 * IMAGO_ERR_FORMAT when the name is already present. */
int imago_model_add_(imago_model *m, const char *name, int ndim, const int64_t *dims, int64_t numel,
                     const float *data, float *owned, imago_error *err);

/* When cfg pools with GeM and takes p from a tensor, checks that m has that
 * tensor with one element (IMAGO_ERR_FORMAT otherwise). */
int imago_model_check_p_(const imago_model *m, const imago_model_config *cfg, imago_error *err);

/* F16 / BF16 -> fp32 (safetensors.c); exposed for the tests, which check the
 * F16C path against the portable one on all 65536 inputs. accel = 0 forces
 * the portable code. */
int imago_model_f16c_available_(void);
void imago_model_f16_to_f32_(const void *src, float *dst, size_t n, int accel);
void imago_model_bf16_to_f32_(const void *src, float *dst, size_t n);

#endif
