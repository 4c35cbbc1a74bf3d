/* Running a plan of the CUDA/cuDNN backend (see backend_cuda.c): the input
 * staged through pinned chunks, the convolutions on cuDNN (fused or with the
 * epilogue kernel), the other ops and the pooling as CUDA kernels, the GLAM
 * and GLAP tails on the host.
 */
#include "backend_cuda_int.h"
#include "attpool.h"
#include "glam.h"

#include <string.h>
#include <unistd.h>

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
            rc = imago_cudnn_fail(err, st, "cudnnConvolutionBiasActivationForward", op->weight);
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

int imago_cuda_be_plan_run(imago_backend *b, cu_ctx *c, cu_plan *pl, const float *nhwc,
                           float *pooled, imago_error *err)
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
