/* engine-private: the backend interface. A backend turns an imago_net (the
 * op list) plus a model's weights into something that runs a batch of
 * normalised images and returns the pooled feature vectors. The oneDNN CPU
 * backend (backend_dnnl.c) and the CUDA/cuDNN one (backend_cuda.c) implement it.
 *
 * Contract: run() receives n images as one NHWC fp32 buffer (already
 * normalised with the model's mean/std and resized to this scale) and writes
 * n x net->feat_dim floats: the pooled (GeM / SPoC / MAC) features, or what
 * the head makes of the map (GLAM, AP-GeM, GLAP), before L2N. Everything
 * after that (L2N, multi-scale combination, whitening) is backend-independent
 * and lives in engine.c.
 *
 * Thread safety: probe/create/load/destroy are called by one thread;
 * run() may be called concurrently from any number of threads (the backend
 * keeps one execution context per concurrent caller).
 */
#ifndef IMAGO_ENGINE_BACKEND_H
#define IMAGO_ENGINE_BACKEND_H

#include <stddef.h>

#include "common/common.h"
#include "model.h"
#include "net.h"

typedef enum imago_precision {
    IMAGO_PREC_FP32 = 0,
    IMAGO_PREC_BF16,
    IMAGO_PREC_FP16
} imago_precision;

typedef struct imago_backend_params {
    imago_precision precision;
    int threads;    /* 0 = all cores */
    int max_plans;  /* per-context LRU bound on cached per-shape plans (0 = default) */
} imago_backend_params;

typedef struct imago_backend imago_backend; /* backend-specific state */

typedef struct imago_backend_vtable {
    const char *name; /* "cpu" | "cuda" */
    /* 0 when the backend can run here (device description in device),
     * IMAGO_ERR_UNSUPPORTED with a reason otherwise. */
    int (*probe)(const imago_backend_params *p, char *device, size_t device_len,
                 imago_error *err);
    int (*create)(const imago_backend_params *p, imago_backend **out, imago_error *err);
    /* Converts the weights the net reads from m (BN folded) into the
     * backend's layouts; m may be freed afterwards. */
    int (*load)(imago_backend *b, const imago_net *net, const imago_model *m, imago_error *err);
    int (*run)(imago_backend *b, const float *nhwc, int n, int h, int w, float *pooled,
               imago_error *err);
    void (*destroy)(imago_backend *b);
} imago_backend_vtable;

extern const imago_backend_vtable imago_backend_dnnl;

/* The CUDA/cuDNN backend (engine/backend_cuda.c) is a plugin, imago_cuda.so,
 * that engine.c dlopens: it exports IMAGO_CUDA_PLUGIN_ENTRY, a function of
 * type imago_backend_entry_fn that returns the vtable, or NULL when the
 * plugin was built from a different version of these structures (abi and
 * the sizes do not match). */
#define IMAGO_BACKEND_ABI 2
#define IMAGO_CUDA_PLUGIN_ENTRY "imago_cuda_backend"
typedef const imago_backend_vtable *(*imago_backend_entry_fn)(int abi, size_t net_size,
                                                               size_t op_size,
                                                               size_t params_size);

static inline int imago_backend_probe(const imago_backend_vtable *vt,
                                      const imago_backend_params *p, char *device,
                                      size_t device_len, imago_error *err)
{
    return vt->probe(p, device, device_len, err);
}

static inline int imago_backend_create(const imago_backend_vtable *vt,
                                       const imago_backend_params *p, imago_backend **out,
                                       imago_error *err)
{
    return vt->create(p, out, err);
}

static inline int imago_backend_load(const imago_backend_vtable *vt, imago_backend *b,
                                     const imago_net *net, const imago_model *m,
                                     imago_error *err)
{
    return vt->load(b, net, m, err);
}

static inline int imago_backend_run(const imago_backend_vtable *vt, imago_backend *b,
                                    const float *nhwc, int n, int h, int w, float *pooled,
                                    imago_error *err)
{
    return vt->run(b, nhwc, n, h, w, pooled, err);
}

static inline void imago_backend_destroy(const imago_backend_vtable *vt, imago_backend *b)
{
    if (b)
        vt->destroy(b);
}

#endif
