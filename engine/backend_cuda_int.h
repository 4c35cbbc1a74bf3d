/* engine-private: what the files of the CUDA/cuDNN backend share
 * (backend_cuda.c: errors, state, load, contexts, run; backend_cuda_plan.c:
 * the per-shape plans; backend_cuda_exec.c: running a plan). The overview
 * is at the top of backend_cuda.c. Everything here stays inside the plugin
 * (hidden visibility): it exports only IMAGO_CUDA_PLUGIN_ENTRY.
 *
 * Thread safety: the algorithm cache is under b->lock; plans and contexts
 * belong to the thread that holds the context for the run.
 */
#ifndef IMAGO_ENGINE_BACKEND_CUDA_INT_H
#define IMAGO_ENGINE_BACKEND_CUDA_INT_H

#include "backend.h"
#include "cuda_kernels.h"
#include "cuda_plan.h"
#include "ctx_pool.h"
#include "plan_lru.h"

#include <cuda_runtime.h>
#include <cudnn.h>

#include <pthread.h>

#define CU_PRIVATE __attribute__((visibility("hidden")))

#define CU_ALIGN 256                    /* arena offsets (cuDNN wants >= 16) */
#define CU_STAGE_CHUNK (8u << 20)       /* bytes per pinned input chunk */
#define CU_WS_LIMIT ((size_t)1 << 30)   /* workspace a convolution may ask for */
#define CU_MAX_PLANS 8

/* ---- errors: name the call, carry the CUDA / cuDNN message; an allocation
 * failure is IMAGO_ERR_NOMEM, anything else IMAGO_ERR_BACKEND ------------ */

CU_PRIVATE int imago_cuda_fail(imago_error *err, cudaError_t e, const char *call,
                               const char *what);
CU_PRIVATE int imago_cudnn_fail(imago_error *err, cudnnStatus_t s, const char *call,
                                const char *what);
/* e is the cudaError_t a kernel launcher of cuda_kernels.h returned */
CU_PRIVATE int imago_cuda_kernel_fail(imago_error *err, int e, const char *kernel,
                                      const char *what);

#define CU_TRY(call, what)                                                                 \
    do {                                                                                   \
        cudaError_t cu_e_ = (call);                                                        \
        if (cu_e_ != cudaSuccess) {                                                        \
            rc = imago_cuda_fail(err, cu_e_, #call, what);                                 \
            goto fail;                                                                     \
        }                                                                                  \
    } while (0)
#define DNN_TRY(call, what)                                                                \
    do {                                                                                   \
        cudnnStatus_t dnn_s_ = (call);                                                     \
        if (dnn_s_ != CUDNN_STATUS_SUCCESS) {                                              \
            rc = imago_cudnn_fail(err, dnn_s_, #call, what);                               \
            goto fail;                                                                     \
        }                                                                                  \
    } while (0)
#define K_TRY(call, what)                                                                  \
    do {                                                                                   \
        int k_e_ = (call);                                                                 \
        if (k_e_) {                                                                        \
            rc = imago_cuda_kernel_fail(err, k_e_, #call, what);                           \
            goto fail;                                                                     \
        }                                                                                  \
    } while (0)

/* ---- state ----------------------------------------------------------------- */

typedef struct cu_layer {
    void *w;        /* device, KRSC (O x kh x kw x I/groups) in the working type */
    float *bias;    /* device fp32 [cout] (epilogue) */
    void *bias_t;   /* device [cout] in the working type (fused path) */
    cudnnFilterDescriptor_t wdesc;
    cudnnTensorDescriptor_t bdesc; /* 1 x cout x 1 x 1 */
} cu_layer;

typedef struct cu_algo_key {
    int n, h, w, cin, cout, k, stride, pad_h, pad_w, dilation, groups;
} cu_algo_key;

typedef struct cu_algo {
    cu_algo_key key;
    cudnnConvolutionFwdAlgo_t algo;
    cudnnMathType_t math;
    size_t ws;
} cu_algo;

typedef struct cu_step {
    cudnnTensorDescriptor_t x, y;
    cudnnConvolutionDescriptor_t conv;
    cudnnConvolutionFwdAlgo_t algo;
    size_t ws;
    int fused;     /* BiasActivation: posts are [RELU] or [SUM, RELU] */
    int fused_sum; /* the SUM operand is z */
} cu_step;

typedef struct cu_plan {
    int n, h, w;
    imago_cuda_plan *mem;
    char *arena;
    float *in_f32;    /* device fp32 input when the working type is not fp32 */
    float *pooled;    /* device n x feat_dim */
    float *map_f32;   /* GLAM: device fp32 copy of the output map */
    float *att_w;     /* AP-GeM / GLAP: device n x hw x k attention weights */
    float *att_out;   /* GLAP: device n x k x c per-map means */
    cu_step *steps;   /* per op (conv ops only have descriptors) */
    size_t ws;        /* the largest workspace of its convolutions */
} cu_plan;

typedef struct cu_ctx {
    cudaStream_t stream;
    cudnnHandle_t dnn;
    imago_plan_lru plans;
    void *ws;
    size_t ws_cap;
    void *stage[2];         /* pinned input chunks */
    cudaEvent_t stage_done[2];
    float *out_host;        /* pinned output (pooled features or the GLAM map) */
    size_t out_cap;
} cu_ctx;

struct imago_backend {
    imago_backend_params p;
    int device;
    imago_cu_dtype dt;
    cudnnDataType_t cdt;
    const imago_net *net;
    cu_layer *layers;
    cudnnActivationDescriptor_t relu;
    pthread_mutex_t lock; /* the algorithm cache */
    imago_ctx_pool pool;  /* idle execution contexts */
    cu_algo *algos;
    int n_algos, cap_algos;
};

static inline void *tensor_ptr(const cu_plan *pl, const imago_cuda_tensor *t)
{
    return pl->arena + t->offset;
}

static inline void *value_ptr(const cu_plan *pl, int v)
{
    return tensor_ptr(pl, &pl->mem->values[v]);
}

/* ---- plans (backend_cuda_plan.c) and their execution (backend_cuda_exec.c) */

/* Builds the plan of an n x h x w batch for context c (descriptors,
 * algorithms, arena; grows c's workspace and pinned output to fit). */
CU_PRIVATE int imago_cuda_be_plan_build(imago_backend *b, cu_ctx *c, int n, int h, int w,
                                        cu_plan **out, imago_error *err);
/* Accepts NULL. */
CU_PRIVATE void imago_cuda_be_plan_free(const imago_net *net, cu_plan *pl);
/* Runs the network on nhwc (pl's shape) on c's stream and writes the pooled
 * features; returns once they are in pooled. */
CU_PRIVATE int imago_cuda_be_plan_run(imago_backend *b, cu_ctx *c, cu_plan *pl,
                                      const float *nhwc, float *pooled, imago_error *err);

#endif /* IMAGO_ENGINE_BACKEND_CUDA_INT_H */
