/* The CUDA/cuDNN backend (see backend.h), built as the plugin imago_cuda.so.
 *
 * Convolutions run on cuDNN in NHWC with folded BN: weights are converted
 * once at load to KRSC in the working precision (fp32 with TF32 off, fp16 or
 * bf16 on tensor cores) and kept on the device. A convolution whose
 * post-ops are ReLU or residual-add + ReLU (every ResNet convolution but the
 * projections) runs as one cudnnConvolutionBiasActivationForward; any other
 * runs as cudnnConvolutionForward followed by one fused epilogue kernel
 * (bias, sigmoid, multiply, ... : engine/cuda_kernels.cu). Max pooling,
 * element-wise ops, TensorFlow-SAME padding and the global pooling are CUDA
 * kernels. The GLAM head runs on the host in fp32 (engine/glam.c) on the
 * layer-4 map copied back. The AP-GeM and GLAP attention convolutions are
 * ops of the list; their pooling runs as two kernels (attention weights,
 * weighted power means), GLAP's last sum and embedding on the host
 * (engine/attpool.c).
 *
 * Plans: per input shape (n, h, w) a plan holds the cuDNN descriptors, the
 * algorithm of every convolution (cudnnFindConvolutionForwardAlgorithmEx
 * once per distinct convolution shape, cached backend-wide, like
 * torch.backends.cudnn.benchmark) and one device arena in which tensors
 * whose lifetimes do not overlap share memory (engine/cuda_plan.c).
 *
 * Contexts: run() may be called from many threads; each concurrent caller
 * gets an execution context (a CUDA stream, a cuDNN handle, an LRU of plans,
 * a workspace, pinned staging buffers), as in the oneDNN backend. Input is
 * staged through two pinned chunks so that the host copy of one chunk
 * overlaps the DMA of the other.
 *
 * Errors name the call and carry the CUDA / cuDNN message; an allocation
 * failure is IMAGO_ERR_NOMEM (after dropping this context's other plans and
 * retrying once), so that the batcher retries with smaller batches.
 *
 * This file must not log (the plugin has its own copy of common/); the
 * engine logs what probe() reports.
 */
#include "backend.h"
#include "cuda_kernels.h"
#include "cuda_plan.h"
#include "attpool.h"
#include "glam.h"
#include "ctx_pool.h"
#include "plan_lru.h"
#include "imago_build.h"

#include <cuda_runtime.h>
#include <cudnn.h>

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CU_ALIGN 256                    /* arena offsets (cuDNN wants >= 16) */
#define CU_STAGE_CHUNK (8u << 20)       /* bytes per pinned input chunk */
#define CU_WS_LIMIT ((size_t)1 << 30)   /* workspace a convolution may ask for */
#define CU_MAX_PLANS 8

/* ---- errors -------------------------------------------------------------- */

static int cuda_fail(imago_error *err, cudaError_t e, const char *call, const char *what)
{
    cudaGetLastError(); /* clear a non-sticky error */
    int code = e == cudaErrorMemoryAllocation ? IMAGO_ERR_NOMEM : IMAGO_ERR_BACKEND;
    return imago_error_set(err, code, "cuda: %s%s%s failed: %s (%s)", call, *what ? " " : "",
                           what, cudaGetErrorString(e), cudaGetErrorName(e));
}

static int dnn_fail(imago_error *err, cudnnStatus_t s, const char *call, const char *what)
{
    int code = s == CUDNN_STATUS_ALLOC_FAILED ? IMAGO_ERR_NOMEM : IMAGO_ERR_BACKEND;
    return imago_error_set(err, code, "cudnn: %s%s%s failed: %s", call, *what ? " " : "", what,
                           cudnnGetErrorString(s));
}

static int kernel_fail(imago_error *err, int e, const char *kernel, const char *what)
{
    return cuda_fail(err, (cudaError_t)e, kernel, what);
}

#define CU_TRY(call, what)                                                                 \
    do {                                                                                   \
        cudaError_t cu_e_ = (call);                                                        \
        if (cu_e_ != cudaSuccess) {                                                        \
            rc = cuda_fail(err, cu_e_, #call, what);                                       \
            goto fail;                                                                     \
        }                                                                                  \
    } while (0)
#define DNN_TRY(call, what)                                                                \
    do {                                                                                   \
        cudnnStatus_t dnn_s_ = (call);                                                     \
        if (dnn_s_ != CUDNN_STATUS_SUCCESS) {                                              \
            rc = dnn_fail(err, dnn_s_, #call, what);                                       \
            goto fail;                                                                     \
        }                                                                                  \
    } while (0)
#define K_TRY(call, what)                                                                  \
    do {                                                                                   \
        int k_e_ = (call);                                                                 \
        if (k_e_) {                                                                        \
            rc = kernel_fail(err, k_e_, #call, what);                                      \
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

/* ---- probe / create -------------------------------------------------------- */

static int cu_probe(const imago_backend_params *p, char *device, size_t device_len,
                    imago_error *err)
{
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return imago_error_set(err, IMAGO_ERR_UNSUPPORTED, "no CUDA device: %s (%s)",
                               cudaGetErrorString(e), cudaGetErrorName(e));
    }
    if (count < 1)
        return imago_error_set(err, IMAGO_ERR_UNSUPPORTED, "no CUDA device");
    struct cudaDeviceProp prop;
    if ((e = cudaGetDeviceProperties(&prop, 0)) != cudaSuccess)
        return imago_error_set(err, IMAGO_ERR_UNSUPPORTED,
                               "CUDA device 0: cudaGetDeviceProperties failed: %s",
                               cudaGetErrorString(e));
    if (p->precision == IMAGO_PREC_BF16 && prop.major < 8)
        return imago_error_set(err, IMAGO_ERR_UNSUPPORTED,
                               "%s (sm_%d%d) has no bf16 tensor cores (sm_80 or newer); use "
                               "engine.precision fp16 or fp32",
                               prop.name, prop.major, prop.minor);
    size_t ver = cudnnGetVersion();
    if (ver / 10000 != CUDNN_MAJOR)
        return imago_error_set(err, IMAGO_ERR_UNSUPPORTED,
                               "cuDNN %zu.%zu is loaded, the plugin was built with cuDNN %d",
                               ver / 10000, ver / 100 % 100, CUDNN_MAJOR);
    int drv = 0;
    cudaDriverGetVersion(&drv);
    snprintf(device, device_len, "%s (sm_%d%d, %.0f GiB, driver %d.%d, cuDNN %zu.%zu.%zu)",
             prop.name, prop.major, prop.minor, (double)prop.totalGlobalMem / (1u << 30),
             drv / 1000, drv % 1000 / 10, ver / 10000, ver / 100 % 100, ver % 100);
    return 0;
}

static int cu_create(const imago_backend_params *p, imago_backend **out, imago_error *err)
{
    int rc = 0;
    imago_backend *b = imago_xcalloc(1, sizeof *b);
    b->p = *p;
    if (b->p.max_plans <= 0)
        b->p.max_plans = CU_MAX_PLANS;
    b->device = 0;
    b->dt = p->precision == IMAGO_PREC_FP16   ? IMAGO_CU_F16
            : p->precision == IMAGO_PREC_BF16 ? IMAGO_CU_BF16
                                              : IMAGO_CU_F32;
    b->cdt = b->dt == IMAGO_CU_F16    ? CUDNN_DATA_HALF
             : b->dt == IMAGO_CU_BF16 ? CUDNN_DATA_BFLOAT16
                                      : CUDNN_DATA_FLOAT;
    pthread_mutex_init(&b->lock, NULL);
    imago_ctx_pool_init(&b->pool);
    CU_TRY(cudaSetDevice(b->device), "0");
    DNN_TRY(cudnnCreateActivationDescriptor(&b->relu), "");
    DNN_TRY(cudnnSetActivationDescriptor(b->relu, CUDNN_ACTIVATION_RELU, CUDNN_NOT_PROPAGATE_NAN,
                                         0.0),
            "relu");
    *out = b;
    return 0;
fail:
    if (b->relu)
        cudnnDestroyActivationDescriptor(b->relu);
    imago_ctx_pool_fini(&b->pool, NULL);
    pthread_mutex_destroy(&b->lock);
    free(b);
    return rc;
}

/* ---- load: weights to the device ------------------------------------------ */

/* n values from host fp32 to a new device buffer in type t */
static int upload(const float *src, size_t n, imago_cu_dtype t, void **dst, const char *what,
                  imago_error *err)
{
    int rc = 0;
    size_t es = imago_cu_dtype_size(t);
    void *host = imago_xmalloc(n * es);
    if (t == IMAGO_CU_F32) {
        memcpy(host, src, n * es);
    } else {
        uint16_t *h = host;
        for (size_t i = 0; i < n; i++)
            h[i] = t == IMAGO_CU_F16 ? imago_cuda_f32_to_f16(src[i])
                                     : imago_cuda_f32_to_bf16(src[i]);
    }
    *dst = NULL;
    CU_TRY(cudaMalloc(dst, n * es), what);
    CU_TRY(cudaMemcpy(*dst, host, n * es, cudaMemcpyHostToDevice), what);
    free(host);
    return 0;
fail:
    if (*dst)
        cudaFree(*dst);
    *dst = NULL;
    free(host);
    return rc;
}

static int cu_load(imago_backend *b, const imago_net *net, const imago_model *m, imago_error *err)
{
    int rc = 0;
    float *w = NULL, *bias = NULL, *krsc = NULL;
    if (net->head_glap && net->channels[net->att] > IMAGO_CU_WPOOL_MAX_K)
        return imago_error_set(err, IMAGO_ERR_UNSUPPORTED,
                               "the CUDA backend runs GLAP heads of at most %d maps, not %d "
                               "(tensor 'glap.att.weight'; engine.backend=cpu runs it)",
                               IMAGO_CU_WPOOL_MAX_K, net->channels[net->att]);
    b->net = net;
    b->layers = imago_xcalloc((size_t)net->n_ops, sizeof *b->layers);
    CU_TRY(cudaSetDevice(b->device), "");
    for (int i = 0; i < net->n_ops; i++) {
        const imago_net_op *op = &net->ops[i];
        if (op->kind != IMAGO_NET_CONV)
            continue;
        cu_layer *l = &b->layers[i];
        imago_tensor shape;
        if ((rc = imago_model_conv_bn(m, op->weight, op->bn[0] ? op->bn : NULL, &shape, &w,
                                      &bias, err)))
            goto fail;
        int cig = op->cin / op->groups, k = op->k;
        size_t nw = (size_t)op->cout * (size_t)cig * (size_t)k * (size_t)k;
        krsc = imago_xmalloc(nw * sizeof *krsc);
        for (int o = 0; o < op->cout; o++)
            for (int c = 0; c < cig; c++)
                for (int y = 0; y < k; y++)
                    for (int x = 0; x < k; x++)
                        krsc[(((size_t)o * k + y) * k + x) * cig + c] =
                            w[(((size_t)o * cig + c) * k + y) * k + x];
        if ((rc = upload(krsc, nw, b->dt, &l->w, op->weight, err)) ||
            (rc = upload(bias, (size_t)op->cout, IMAGO_CU_F32, (void **)&l->bias, op->weight,
                         err)))
            goto fail;
        if (b->dt == IMAGO_CU_F32) {
            l->bias_t = l->bias;
        } else if ((rc = upload(bias, (size_t)op->cout, b->dt, &l->bias_t, op->weight, err))) {
            goto fail;
        }
        free(w);
        free(bias);
        free(krsc);
        w = bias = krsc = NULL;
        DNN_TRY(cudnnCreateFilterDescriptor(&l->wdesc), op->weight);
        DNN_TRY(cudnnSetFilter4dDescriptor(l->wdesc, b->cdt, CUDNN_TENSOR_NHWC, op->cout, cig, k,
                                           k),
                op->weight);
        DNN_TRY(cudnnCreateTensorDescriptor(&l->bdesc), op->weight);
        DNN_TRY(cudnnSetTensor4dDescriptor(l->bdesc, CUDNN_TENSOR_NHWC, b->cdt, 1, op->cout, 1,
                                           1),
                op->weight);
    }
    return 0;
fail:
    free(w);
    free(bias);
    free(krsc);
    return rc; /* the layers are freed by destroy() */
}

static void layer_free(cu_layer *l)
{
    if (l->bias_t && l->bias_t != l->bias)
        cudaFree(l->bias_t);
    if (l->bias)
        cudaFree(l->bias);
    if (l->w)
        cudaFree(l->w);
    if (l->wdesc)
        cudnnDestroyFilterDescriptor(l->wdesc);
    if (l->bdesc)
        cudnnDestroyTensorDescriptor(l->bdesc);
}

/* ---- plans ------------------------------------------------------------------- */

static void plan_free(const imago_net *net, cu_plan *pl)
{
    if (!pl)
        return;
    if (pl->steps) {
        for (int i = 0; i < net->n_ops; i++) {
            cu_step *s = &pl->steps[i];
            if (s->x)
                cudnnDestroyTensorDescriptor(s->x);
            if (s->y)
                cudnnDestroyTensorDescriptor(s->y);
            if (s->conv)
                cudnnDestroyConvolutionDescriptor(s->conv);
        }
        free(pl->steps);
    }
    cudaFree(pl->arena);
    cudaFree(pl->in_f32);
    cudaFree(pl->pooled);
    cudaFree(pl->map_f32);
    cudaFree(pl->att_w);
    cudaFree(pl->att_out);
    imago_cuda_plan_free(pl->mem);
    free(pl);
}

static void *tensor_ptr(const cu_plan *pl, const imago_cuda_tensor *t)
{
    return pl->arena + t->offset;
}

static void *value_ptr(const cu_plan *pl, int v)
{
    return tensor_ptr(pl, &pl->mem->values[v]);
}

static int is_relu(const imago_net_post *p)
{
    return p->kind == IMAGO_POST_ACT && p->act == IMAGO_ACT_RELU;
}

/* the cache holds copies: lookups copy an entry out under the lock */
static void algo_add(imago_backend *b, const cu_algo *a)
{
    pthread_mutex_lock(&b->lock);
    if (b->n_algos == b->cap_algos) {
        b->cap_algos = b->cap_algos ? 2 * b->cap_algos : 128;
        b->algos = imago_xrealloc(b->algos, (size_t)b->cap_algos * sizeof *b->algos);
    }
    b->algos[b->n_algos++] = *a;
    pthread_mutex_unlock(&b->lock);
}

static int plan_alloc(void **p, size_t bytes, const char *what, imago_error *err);

/* The algorithm of convolution i of the plan: from the cache, or measured
 * with cudnnFindConvolutionForwardAlgorithmEx on the plan's own buffers (the
 * search workspace *ws, ws_limit bytes, is allocated at the first miss). */
static int find_algo(imago_backend *b, cu_ctx *c, cu_plan *pl, int i, cu_step *s, void **ws,
                     size_t ws_limit, cu_algo *out, imago_error *err)
{
    int rc = 0;
    const imago_net_op *op = &b->net->ops[i];
    const imago_cuda_op_plan *o = &pl->mem->ops[i];
    const imago_cuda_tensor *xt = o->explicit_pad ? &o->padded : &pl->mem->values[op->in];
    cu_algo_key key = {pl->n, xt->h, xt->w, op->cin, op->cout, op->k, op->stride,
                       o->explicit_pad ? 0 : o->pt, o->explicit_pad ? 0 : o->pl, op->dilation,
                       op->groups};
    pthread_mutex_lock(&b->lock);
    for (int j = 0; j < b->n_algos; j++)
        if (memcmp(&b->algos[j].key, &key, sizeof key) == 0) {
            *out = b->algos[j];
            pthread_mutex_unlock(&b->lock);
            return 0;
        }
    pthread_mutex_unlock(&b->lock);

    if (!*ws && ws_limit &&
        (rc = plan_alloc(ws, ws_limit, "(algorithm search workspace)", err)))
        goto fail;
    cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    int got = 0;
    DNN_TRY(cudnnFindConvolutionForwardAlgorithmEx(
                c->dnn, s->x, o->explicit_pad ? tensor_ptr(pl, &o->padded)
                                              : value_ptr(pl, op->in),
                b->layers[i].wdesc, b->layers[i].w, s->conv, s->y, value_ptr(pl, op->out),
                CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &got, perf, *ws, ws_limit),
            op->weight);
    int pick = -1;
    for (int j = 0; j < got && pick < 0; j++) {
        if (perf[j].status != CUDNN_STATUS_SUCCESS || perf[j].memory > ws_limit)
            continue;
        /* fp32 is the parity precision: no TF32 (tensor-op) algorithms */
        if (b->dt == IMAGO_CU_F32 && perf[j].mathType != CUDNN_FMA_MATH &&
            perf[j].mathType != CUDNN_DEFAULT_MATH)
            continue;
        pick = j;
    }
    if (pick < 0) {
        rc = imago_error_set(err, IMAGO_ERR_BACKEND,
                             "cudnn: no convolution algorithm for %s (%d x %d x %d x %d, %d "
                             "outputs, %dx%d/%d) within a %zu MiB workspace",
                             op->weight, pl->n, xt->h, xt->w, op->cin, op->cout, op->k, op->k,
                             op->stride, ws_limit >> 20);
        goto fail;
    }
    out->key = key;
    out->algo = perf[pick].algo;
    out->math = b->dt == IMAGO_CU_F32 ? CUDNN_FMA_MATH : perf[pick].mathType;
    out->ws = perf[pick].memory;
    algo_add(b, out);
    return 0;
fail:
    return rc;
}

static int plan_alloc(void **p, size_t bytes, const char *what, imago_error *err)
{
    int rc = 0;
    *p = NULL;
    if (!bytes)
        return 0;
    CU_TRY(cudaMalloc(p, bytes), what);
    return 0;
fail:
    *p = NULL;
    return rc;
}

static int plan_build(imago_backend *b, cu_ctx *c, int n, int h, int w, cu_plan **out,
                      imago_error *err)
{
    const imago_net *net = b->net;
    int rc = 0;
    void *find_ws = NULL;
    cu_plan *pl = imago_xcalloc(1, sizeof *pl);
    pl->n = n;
    pl->h = h;
    pl->w = w;
    if ((rc = imago_cuda_plan_build(net, n, h, w, imago_cu_dtype_size(b->dt), CU_ALIGN, &pl->mem,
                                    err)))
        goto fail;
    const imago_cuda_tensor *ot = &pl->mem->values[net->output];
    char what[96];
    snprintf(what, sizeof what, "(activations of a %dx%dx%d batch: %.1f MiB)", n, h, w,
             pl->mem->arena_bytes / 1048576.0);
    if ((rc = plan_alloc((void **)&pl->arena, pl->mem->arena_bytes, what, err)))
        goto fail;
    if (b->dt != IMAGO_CU_F32 &&
        (rc = plan_alloc((void **)&pl->in_f32, (size_t)n * h * w * 3 * sizeof(float), "(input)",
                         err)))
        goto fail;
    if ((rc = plan_alloc((void **)&pl->pooled, (size_t)n * net->feat_dim * sizeof(float),
                         "(features)", err)))
        goto fail;
    if (net->head_apgem || net->head_glap) {
        size_t k = (size_t)net->channels[net->att], hw = (size_t)ot->h * ot->w;
        if ((rc = plan_alloc((void **)&pl->att_w, (size_t)n * hw * k * sizeof(float),
                             "(attention weights)", err)))
            goto fail;
        if (net->head_glap &&
            (rc = plan_alloc((void **)&pl->att_out, (size_t)n * k * ot->c * sizeof(float),
                             "(GLAP means)", err)))
            goto fail;
    }
    if (net->glam && b->dt != IMAGO_CU_F32 &&
        (rc = plan_alloc((void **)&pl->map_f32, (size_t)n * ot->h * ot->w * ot->c * sizeof(float),
                         "(GLAM map)", err)))
        goto fail;

    /* descriptors, then one algorithm search per distinct convolution */
    pl->steps = imago_xcalloc((size_t)net->n_ops, sizeof *pl->steps);
    size_t free_b = 0, total_b = 0;
    CU_TRY(cudaMemGetInfo(&free_b, &total_b), "");
    size_t ws_limit = free_b / 4 < CU_WS_LIMIT ? free_b / 4 : CU_WS_LIMIT;
    for (int i = 0; i < net->n_ops; i++) {
        const imago_net_op *op = &net->ops[i];
        if (op->kind != IMAGO_NET_CONV)
            continue;
        cu_step *s = &pl->steps[i];
        const imago_cuda_op_plan *o = &pl->mem->ops[i];
        const imago_cuda_tensor *xt = o->explicit_pad ? &o->padded : &pl->mem->values[op->in];
        const imago_cuda_tensor *yt = &pl->mem->values[op->out];
        DNN_TRY(cudnnCreateTensorDescriptor(&s->x), op->weight);
        DNN_TRY(cudnnSetTensor4dDescriptor(s->x, CUDNN_TENSOR_NHWC, b->cdt, n, xt->c, xt->h,
                                           xt->w),
                op->weight);
        DNN_TRY(cudnnCreateTensorDescriptor(&s->y), op->weight);
        DNN_TRY(cudnnSetTensor4dDescriptor(s->y, CUDNN_TENSOR_NHWC, b->cdt, n, yt->c, yt->h,
                                           yt->w),
                op->weight);
        DNN_TRY(cudnnCreateConvolutionDescriptor(&s->conv), op->weight);
        DNN_TRY(cudnnSetConvolution2dDescriptor(
                    s->conv, o->explicit_pad ? 0 : o->pt, o->explicit_pad ? 0 : o->pl,
                    op->stride, op->stride, op->dilation, op->dilation, CUDNN_CROSS_CORRELATION,
                    CUDNN_DATA_FLOAT),
                op->weight);
        DNN_TRY(cudnnSetConvolutionGroupCount(s->conv, op->groups), op->weight);
        DNN_TRY(cudnnSetConvolutionMathType(s->conv, b->dt == IMAGO_CU_F32 ? CUDNN_FMA_MATH
                                                                            : CUDNN_TENSOR_OP_MATH),
                op->weight);
        int on = 0, oc = 0, oh = 0, ow = 0;
        DNN_TRY(cudnnGetConvolution2dForwardOutputDim(s->conv, s->x, b->layers[i].wdesc, &on,
                                                      &oc, &oh, &ow),
                op->weight);
        if (on != n || oc != yt->c || oh != yt->h || ow != yt->w) {
            rc = imago_error_set(err, IMAGO_ERR_INTERNAL,
                                 "cudnn: %s gives %dx%dx%dx%d, the plan says %dx%dx%dx%d",
                                 op->weight, on, oc, oh, ow, n, yt->c, yt->h, yt->w);
            goto fail;
        }
        s->fused = (op->n_post == 1 && is_relu(&op->post[0])) ||
                   (op->n_post == 2 && op->post[0].kind == IMAGO_POST_SUM &&
                    is_relu(&op->post[1]));
        s->fused_sum = s->fused && op->n_post == 2;
        cu_algo a;
        if ((rc = find_algo(b, c, pl, i, s, &find_ws, ws_limit, &a, err)))
            goto fail;
        s->algo = a.algo;
        s->ws = a.ws;
        DNN_TRY(cudnnSetConvolutionMathType(s->conv, a.math), op->weight);
        if (a.ws > pl->ws)
            pl->ws = a.ws;
    }
    cudaFree(find_ws);
    find_ws = NULL;
    if (pl->ws > c->ws_cap) {
        cudaFree(c->ws);
        c->ws = NULL;
        c->ws_cap = 0;
        if ((rc = plan_alloc(&c->ws, pl->ws, "(convolution workspace)", err)))
            goto fail;
        c->ws_cap = pl->ws;
    }
    size_t out_floats = net->glam ? (size_t)n * ot->h * ot->w * ot->c : (size_t)n * net->feat_dim;
    if (net->head_glap)
        out_floats = (size_t)n * net->channels[net->att] * ot->c;
    if (out_floats * sizeof(float) > c->out_cap) {
        cudaFreeHost(c->out_host);
        c->out_host = NULL;
        c->out_cap = 0;
        CU_TRY(cudaHostAlloc((void **)&c->out_host, out_floats * sizeof(float),
                             cudaHostAllocDefault),
               "(pinned output)");
        c->out_cap = out_floats * sizeof(float);
    }
    *out = pl;
    return 0;
fail:
    cudaFree(find_ws);
    plan_free(net, pl);
    return rc;
}

/* ---- execution ------------------------------------------------------------- */

static int run_conv(imago_backend *b, cu_ctx *c, cu_plan *pl, int i, imago_error *err)
{
    int rc = 0;
    const imago_net_op *op = &b->net->ops[i];
    const imago_cuda_op_plan *o = &pl->mem->ops[i];
    cu_step *s = &pl->steps[i];
    const cu_layer *l = &b->layers[i];
    const imago_cuda_tensor *it = &pl->mem->values[op->in];
    void *x = value_ptr(pl, op->in), *y = value_ptr(pl, op->out);
    if (o->explicit_pad) {
        K_TRY(imago_cu_pad(x, tensor_ptr(pl, &o->padded), b->dt, pl->n, it->h, it->w, it->c, o->pt,
                           o->pb, o->pl, o->pr, c->stream),
              op->weight);
        x = tensor_ptr(pl, &o->padded);
    }
    const float one = 1.0f, zero = 0.0f;
    if (s->fused) {
        const float alpha2 = s->fused_sum ? 1.0f : 0.0f;
        void *z = s->fused_sum ? value_ptr(pl, op->post[0].value) : y;
        cudnnStatus_t st = cudnnConvolutionBiasActivationForward(
            c->dnn, &one, s->x, x, l->wdesc, l->w, s->conv, s->algo, c->ws, s->ws, &alpha2, s->y,
            z, l->bdesc, l->bias_t, b->relu, s->y, y);
        if (st == CUDNN_STATUS_SUCCESS)
            return 0;
        if (st != CUDNN_STATUS_NOT_SUPPORTED && st != CUDNN_STATUS_BAD_PARAM) {
            rc = dnn_fail(err, st, "cudnnConvolutionBiasActivationForward", op->weight);
            goto fail;
        }
        s->fused = 0; /* this algorithm has no fused form: convolution + epilogue from now on */
    }
    DNN_TRY(cudnnConvolutionForward(c->dnn, &one, s->x, x, l->wdesc, l->w, s->conv, s->algo, c->ws,
                                    s->ws, &zero, s->y, y),
            op->weight);
    imago_cu_post posts[IMAGO_CU_MAX_POST];
    for (int j = 0; j < op->n_post; j++) {
        const imago_net_post *p = &op->post[j];
        posts[j] = (imago_cu_post){.kind = (int)p->kind,
                                   .act = (int)p->act,
                                   .alpha = p->alpha,
                                   .beta = p->beta,
                                   .value = p->kind == IMAGO_POST_ACT ? NULL
                                                                      : value_ptr(pl, p->value)};
    }
    const imago_cuda_tensor *yt = &pl->mem->values[op->out];
    K_TRY(imago_cu_epilogue(y, b->dt, yt->bytes / imago_cu_dtype_size(b->dt), yt->c, l->bias,
                            posts, op->n_post, c->stream),
          op->weight);
    return 0;
fail:
    return rc;
}

/* the caller's n x h x w x 3 fp32 input to the device, through two pinned
 * chunks: the host copy into one overlaps the DMA out of the other */
static int upload_input(cu_ctx *c, const float *src, size_t bytes, void *dst, imago_error *err)
{
    int rc = 0;
    for (int k = 0; k < 2; k++) {
        if (!c->stage[k]) {
            CU_TRY(cudaHostAlloc(&c->stage[k], CU_STAGE_CHUNK, cudaHostAllocDefault),
                   "(pinned input)");
            CU_TRY(cudaEventCreateWithFlags(&c->stage_done[k], cudaEventDisableTiming), "");
        }
    }
    int k = 0;
    for (size_t off = 0; off < bytes; off += CU_STAGE_CHUNK, k ^= 1) {
        size_t len = bytes - off < CU_STAGE_CHUNK ? bytes - off : CU_STAGE_CHUNK;
        CU_TRY(cudaEventSynchronize(c->stage_done[k]), "(input chunk)");
        memcpy(c->stage[k], (const char *)src + off, len);
        CU_TRY(cudaMemcpyAsync((char *)dst + off, c->stage[k], len, cudaMemcpyHostToDevice,
                               c->stream),
               "(input)");
        CU_TRY(cudaEventRecord(c->stage_done[k], c->stream), "");
    }
    return 0;
fail:
    return rc;
}

static int plan_run(imago_backend *b, cu_ctx *c, cu_plan *pl, const float *nhwc, float *pooled,
                    imago_error *err)
{
    const imago_net *net = b->net;
    int rc = 0;
    size_t in_elems = (size_t)pl->n * pl->h * pl->w * 3;
    void *in = value_ptr(pl, net->input);
    if (b->dt == IMAGO_CU_F32) {
        if ((rc = upload_input(c, nhwc, in_elems * sizeof(float), in, err)))
            goto fail;
    } else {
        if ((rc = upload_input(c, nhwc, in_elems * sizeof(float), pl->in_f32, err)))
            goto fail;
        K_TRY(imago_cu_from_f32(pl->in_f32, in, b->dt, in_elems, c->stream), "(input)");
    }
    for (int i = 0; i < net->n_ops; i++) {
        const imago_net_op *op = &net->ops[i];
        const imago_cuda_tensor *it = &pl->mem->values[op->in];
        const imago_cuda_tensor *ot = &pl->mem->values[op->out];
        if (op->kind == IMAGO_NET_CONV) {
            if ((rc = run_conv(b, c, pl, i, err)))
                goto fail;
        } else if (op->kind == IMAGO_NET_MAXPOOL) {
            const imago_cuda_op_plan *o = &pl->mem->ops[i];
            K_TRY(imago_cu_maxpool(value_ptr(pl, op->in), value_ptr(pl, op->out), b->dt, pl->n,
                                   it->h, it->w, it->c, op->k, op->stride, o->pt, o->pl, ot->h,
                                   ot->w, c->stream),
                  "(max pooling)");
        } else {
            K_TRY(imago_cu_binary(value_ptr(pl, op->in), value_ptr(pl, op->in2),
                                  value_ptr(pl, op->out), b->dt,
                                  ot->bytes / imago_cu_dtype_size(b->dt), op->binary_mul,
                                  c->stream),
                  "(element-wise)");
        }
    }
    const imago_cuda_tensor *ot = &pl->mem->values[net->output];
    size_t hw = (size_t)ot->h * ot->w;
    if (net->glam) {
        /* the GLAM head pools itself, in fp32, on the host (engine/glam.c) */
        size_t elems = (size_t)pl->n * hw * ot->c;
        const float *map = value_ptr(pl, net->output);
        if (b->dt != IMAGO_CU_F32) {
            K_TRY(imago_cu_to_f32(value_ptr(pl, net->output), b->dt, pl->map_f32, elems,
                                  c->stream),
                  "(GLAM map)");
            map = pl->map_f32;
        }
        CU_TRY(cudaMemcpyAsync(c->out_host, map, elems * sizeof(float), cudaMemcpyDeviceToHost,
                               c->stream),
               "(GLAM map)");
        CU_TRY(cudaStreamSynchronize(c->stream), "(network)");
        int threads = b->p.threads > 0 ? b->p.threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
        rc = imago_glam_run(net->glam, c->out_host, pl->n, ot->h, ot->w, net->gem_p,
                            threads > 0 ? threads : 1, pooled, err);
        return rc;
    }
    if (net->head_apgem || net->head_glap) {
        /* AP-GeM / GLAP: attention weights, then the weighted power means on
         * the device; GLAP's sum of L2N-ed maps and embedding on the host */
        int k = net->channels[net->att];
        K_TRY(imago_cu_att_weights(value_ptr(pl, net->att), b->dt, pl->n, (int)hw, k,
                                   net->head_glap ? IMAGO_CU_ATT_SOFTMAX : IMAGO_CU_ATT_NORMALIZE,
                                   1e-6f, pl->att_w, c->stream),
              "(attention weights)");
        float *dst = net->head_glap ? pl->att_out : pl->pooled;
        K_TRY(imago_cu_wpool(value_ptr(pl, net->output), b->dt, pl->n, (int)hw, ot->c, k,
                             pl->att_w, net->gem_p, 1e-6f, dst, c->stream),
              "(attention pooling)");
        size_t bytes = (size_t)pl->n * k * ot->c * sizeof(float);
        CU_TRY(cudaMemcpyAsync(c->out_host, dst, bytes, cudaMemcpyDeviceToHost, c->stream),
               "(features)");
        CU_TRY(cudaStreamSynchronize(c->stream), "(network)");
        if (net->head_glap)
            imago_glap_finish(c->out_host, pl->n, k, ot->c, net->glap_fc_w, net->glap_fc_b,
                              net->glap_fc_out, pooled);
        else
            memcpy(pooled, c->out_host, bytes);
        return 0;
    }
    int kind = net->pool == IMAGO_POOL_MAC    ? IMAGO_CU_POOL_MAC
               : net->pool == IMAGO_POOL_SPOC ? IMAGO_CU_POOL_SPOC
                                              : IMAGO_CU_POOL_GEM;
    K_TRY(imago_cu_pool(value_ptr(pl, net->output), b->dt, pl->n, (int)hw, ot->c, kind,
                        net->gem_p, 1e-6f, pl->pooled, c->stream),
          "(pooling)");
    size_t out_bytes = (size_t)pl->n * net->feat_dim * sizeof(float);
    CU_TRY(cudaMemcpyAsync(c->out_host, pl->pooled, out_bytes, cudaMemcpyDeviceToHost, c->stream),
           "(features)");
    CU_TRY(cudaStreamSynchronize(c->stream), "(network)");
    memcpy(pooled, c->out_host, out_bytes);
    return 0;
fail:
    cudaStreamSynchronize(c->stream); /* leave no work reading the arena behind */
    cudaGetLastError();
    return rc;
}

/* ---- contexts -------------------------------------------------------------- */

static void plan_free_cb(void *ctx, void *plan)
{
    const imago_backend *b = ctx;
    plan_free(b->net, plan);
}

static void ctx_free(cu_ctx *c)
{
    if (c->stream)
        cudaStreamSynchronize(c->stream);
    imago_plan_lru_fini(&c->plans);
    cudaFree(c->ws);
    for (int k = 0; k < 2; k++) {
        if (c->stage[k])
            cudaFreeHost(c->stage[k]);
        if (c->stage_done[k])
            cudaEventDestroy(c->stage_done[k]);
    }
    cudaFreeHost(c->out_host);
    if (c->dnn)
        cudnnDestroy(c->dnn);
    if (c->stream)
        cudaStreamDestroy(c->stream);
    free(c);
}

static int ctx_acquire(imago_backend *b, cu_ctx **out, imago_error *err)
{
    int rc = 0;
    cu_ctx *c = imago_ctx_pool_take(&b->pool);
    if (!c) {
        c = imago_xcalloc(1, sizeof *c);
        imago_plan_lru_init(&c->plans, b->p.max_plans, plan_free_cb, b);
        CU_TRY(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking), "");
        DNN_TRY(cudnnCreate(&c->dnn), "");
        DNN_TRY(cudnnSetStream(c->dnn, c->stream), "");
    }
    *out = c;
    return 0;
fail:
    ctx_free(c);
    return rc;
}

static void ctx_release(imago_backend *b, cu_ctx *c)
{
    imago_ctx_pool_give(&b->pool, c);
}

static void ctx_free_cb(void *c)
{
    ctx_free(c);
}

static int ctx_plan(imago_backend *b, cu_ctx *c, int n, int h, int w, cu_plan **out,
                    imago_error *err)
{
    cu_plan *pl = imago_plan_lru_find(&c->plans, n, h, w);
    if (pl) {
        *out = pl;
        return 0;
    }
    int rc = plan_build(b, c, n, h, w, &pl, err);
    if (rc == IMAGO_ERR_NOMEM && c->plans.count > 0) {
        /* the device is full: give back this context's other shapes, retry */
        imago_plan_lru_clear(&c->plans);
        imago_error_clear(err);
        rc = plan_build(b, c, n, h, w, &pl, err);
    }
    if (rc)
        return rc;
    imago_plan_lru_add(&c->plans, n, h, w, pl);
    *out = pl;
    return 0;
}

static int cu_run(imago_backend *b, const float *nhwc, int n, int h, int w, float *pooled,
                  imago_error *err)
{
    int rc = 0;
    cu_ctx *c = NULL;
    if (n < 1 || h < 1 || w < 1)
        return imago_error_set(err, IMAGO_ERR_INVALID, "empty batch %dx%dx%d", n, h, w);
    cudaError_t e = cudaSetDevice(b->device);
    if (e != cudaSuccess)
        return cuda_fail(err, e, "cudaSetDevice", "");
    if ((rc = ctx_acquire(b, &c, err)))
        return rc;
    cu_plan *pl;
    if ((rc = ctx_plan(b, c, n, h, w, &pl, err)) == 0)
        rc = plan_run(b, c, pl, nhwc, pooled, err);
    ctx_release(b, c);
    return rc;
}

static void cu_destroy(imago_backend *b)
{
    cudaSetDevice(b->device);
    imago_ctx_pool_fini(&b->pool, ctx_free_cb);
    if (b->layers) {
        for (int i = 0; i < b->net->n_ops; i++)
            layer_free(&b->layers[i]);
        free(b->layers);
    }
    if (b->relu)
        cudnnDestroyActivationDescriptor(b->relu);
    free(b->algos);
    pthread_mutex_destroy(&b->lock);
    free(b);
}

static const imago_backend_vtable cuda_vtable = {
    .name = "cuda",
    .probe = cu_probe,
    .create = cu_create,
    .load = cu_load,
    .run = cu_run,
    .destroy = cu_destroy,
};

__attribute__((visibility("default"))) const imago_backend_vtable *
imago_cuda_backend(int abi, size_t net_size, size_t op_size, size_t params_size);

const imago_backend_vtable *imago_cuda_backend(int abi, size_t net_size, size_t op_size,
                                               size_t params_size)
{
    if (abi != IMAGO_BACKEND_ABI || net_size != sizeof(imago_net) ||
        op_size != sizeof(imago_net_op) || params_size != sizeof(imago_backend_params))
        return NULL;
    return &cuda_vtable;
}
