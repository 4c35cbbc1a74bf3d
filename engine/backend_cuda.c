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
 * The plugin's files must not log (the plugin has its own copy of common/);
 * the engine logs what probe() reports.
 *
 * This file holds the errors, probe / create, load, the contexts and run();
 * the plans are built in backend_cuda_plan.c and run in backend_cuda_exec.c.
 */#include "backend_cuda_int.h"
#include "imago_build.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- errors -------------------------------------------------------------- */

int imago_cuda_fail(imago_error *err, cudaError_t e, const char *call, const char *what)
{
    cudaGetLastError(); /* clear a non-sticky error */
    int code = e == cudaErrorMemoryAllocation ? IMAGO_ERR_NOMEM : IMAGO_ERR_BACKEND;
    return imago_error_set(err, code, "cuda: %s%s%s failed: %s (%s)", call, *what ? " " : "",
                           what, cudaGetErrorString(e), cudaGetErrorName(e));
}

int imago_cudnn_fail(imago_error *err, cudnnStatus_t s, const char *call, const char *what)
{
    int code = s == CUDNN_STATUS_ALLOC_FAILED ? IMAGO_ERR_NOMEM : IMAGO_ERR_BACKEND;
    return imago_error_set(err, code, "cudnn: %s%s%s failed: %s", call, *what ? " " : "", what,
                           cudnnGetErrorString(s));
}

int imago_cuda_kernel_fail(imago_error *err, int e, const char *kernel, const char *what)
{
    return imago_cuda_fail(err, (cudaError_t)e, kernel, what);
}

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
/* ---- contexts -------------------------------------------------------------- */

static void plan_free_cb(void *ctx, void *plan)
{
    const imago_backend *b = ctx;
    imago_cuda_be_plan_free(b->net, plan);
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
    int rc = imago_cuda_be_plan_build(b, c, n, h, w, &pl, err);
    if (rc == IMAGO_ERR_NOMEM && c->plans.count > 0) {
        /* the device is full: give back this context's other shapes, retry */
        imago_plan_lru_clear(&c->plans);
        imago_error_clear(err);
        rc = imago_cuda_be_plan_build(b, c, n, h, w, &pl, err);
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
        return imago_cuda_fail(err, e, "cudaSetDevice", "");
    if ((rc = ctx_acquire(b, &c, err)))
        return rc;
    cu_plan *pl;
    if ((rc = ctx_plan(b, c, n, h, w, &pl, err)) == 0)
        rc = imago_cuda_be_plan_run(b, c, pl, nhwc, pooled, err);
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
