/* The per-shape plans of the CUDA/cuDNN backend (see backend_cuda.c): the
 * cuDNN descriptors of every convolution, its algorithm (searched once per
 * distinct convolution shape, cached backend-wide), the device arena laid
 * out by engine/cuda_plan.c and the buffers of the heads.
 */
#include "backend_cuda_int.h"

#include <stdlib.h>
#include <string.h>

void imago_cuda_be_plan_free(const imago_net *net, cu_plan *pl)
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

int imago_cuda_be_plan_build(imago_backend *b, cu_ctx *c, int n, int h, int w, cu_plan **out,
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
    imago_cuda_be_plan_free(net, pl);
    return rc;
}
