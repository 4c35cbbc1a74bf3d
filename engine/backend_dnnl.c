/* The oneDNN CPU backend (Debian libdnnl 2.6, C API): turns an imago_net op
 * list into convolution / pooling / binary / reorder primitives per input
 * shape, with BN folded into the weights, bias + activations + residual add
 * + attention products fused as post-ops, and activations in the layouts the
 * convolutions choose (format_tag any). fp32 and bf16 (bf16 weights and
 * activations, fp32 accumulation).
 *
 * DESIGN (threads): weights are shared by all callers. A weight is kept in
 * every layout a convolution asked for ("variants", created once under
 * b->lock). Each concurrent run() takes an execution context from a pool
 * (its own stream and its own per-shape plans: primitives, activation
 * buffers, scratchpad; an LRU of max_plans shapes) and gives it back after
 * the run, so concurrent calls never share mutable memory. Primitive
 * creation is cheap after the first context thanks to oneDNN's primitive
 * cache. oneDNN runs on OpenMP: each run sets its team size to p.threads.
 *
 * This file holds the backend's state, the weights, the contexts, run() and
 * the pooling; the per-shape plans are built in backend_dnnl_plan.c.
 */
#include "backend_dnnl_int.h"
#include "attpool.h"
#include "glam.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include <oneapi/dnnl/dnnl_debug.h>

int imago_dnnl_fail(imago_error *err, dnnl_status_t st, const char *what, const char *where)
{
    return imago_error_set(err, IMAGO_ERR_BACKEND, "oneDNN %s failed%s%s: %s", what,
                           where && where[0] ? " for " : "", where ? where : "",
                           dnnl_status2str(st));
}

static const char *isa_name(dnnl_cpu_isa_t isa)
{
    switch (isa) {
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_sse41: return "sse41";
    default: return "generic";
    }
}

static int dn_probe(const imago_backend_params *p, char *device, size_t len, imago_error *err)
{
    if (p->precision == IMAGO_PREC_FP16)
        return imago_error_set(err, IMAGO_ERR_UNSUPPORTED,
                               "the CPU backend runs fp32 or bf16, not fp16");
    const dnnl_version_t *v = dnnl_version();
    if (device && len)
        snprintf(device, len, "oneDNN %d.%d.%d (%s)", v->major, v->minor, v->patch,
                 isa_name(dnnl_get_effective_cpu_isa()));
    return 0;
}

static int dn_create(const imago_backend_params *p, imago_backend **out, imago_error *err)
{
    int rc = dn_probe(p, NULL, 0, err);
    if (rc)
        return rc;
    imago_backend *b = imago_xcalloc(1, sizeof *b);
    b->p = *p;
    if (b->p.max_plans <= 0)
        b->p.max_plans = 8;
    b->act_dt = p->precision == IMAGO_PREC_BF16 ? dnnl_bf16 : dnnl_f32;
    pthread_mutex_init(&b->lock, NULL);
    imago_ctx_pool_init(&b->pool);
    DN_TRY(dnnl_engine_create(&b->eng, dnnl_cpu, 0), "engine creation", "cpu");
    *out = b;
    return 0;
fail:
    imago_ctx_pool_fini(&b->pool, NULL);
    pthread_mutex_destroy(&b->lock);
    free(b);
    return rc;
}

static void layer_free(dn_layer *l)
{
    for (int i = 0; i < l->n_var; i++)
        dnnl_memory_destroy(l->var[i].mem);
    free(l->var);
    if (l->w_mem)
        dnnl_memory_destroy(l->w_mem);
    if (l->bias_mem)
        dnnl_memory_destroy(l->bias_mem);
    free(l->w);
    free(l->bias);
}

void imago_dnnl_weight_dims(const imago_net_op *op, dnnl_dims_t d, int *nd)
{
    if (op->groups > 1) {
        d[0] = op->groups;
        d[1] = op->cout / op->groups;
        d[2] = op->cin / op->groups;
        d[3] = op->k;
        d[4] = op->k;
        *nd = 5;
    } else {
        d[0] = op->cout;
        d[1] = op->cin;
        d[2] = op->k;
        d[3] = op->k;
        *nd = 4;
    }
}

static int dn_load(imago_backend *b, const imago_net *net, const imago_model *m,
                   imago_error *err)
{
    int rc = 0;
    b->net = net;
    b->layers = imago_xcalloc((size_t)net->n_ops, sizeof *b->layers);
    for (int i = 0; i < net->n_ops; i++) {
        const imago_net_op *op = &net->ops[i];
        if (op->kind != IMAGO_NET_CONV)
            continue;
        dn_layer *l = &b->layers[i];
        imago_tensor shape;
        rc = imago_model_conv_bn(m, op->weight, op->bn[0] ? op->bn : NULL, &shape, &l->w,
                                 &l->bias, err);
        if (rc)
            return rc;
        dnnl_dims_t wd;
        int nd;
        imago_dnnl_weight_dims(op, wd, &nd);
        DN_TRY(dnnl_memory_desc_init_by_tag(&l->w_md, nd, wd, dnnl_f32,
                                            nd == 5 ? dnnl_goihw : dnnl_oihw),
               "weights descriptor", op->weight);
        DN_TRY(dnnl_memory_create(&l->w_mem, &l->w_md, b->eng, l->w), "weights memory",
               op->weight);
        dnnl_memory_desc_t bmd;
        dnnl_dims_t bd = {op->cout};
        DN_TRY(dnnl_memory_desc_init_by_tag(&bmd, 1, bd, dnnl_f32, dnnl_a), "bias descriptor",
               op->weight);
        DN_TRY(dnnl_memory_create(&l->bias_mem, &bmd, b->eng, l->bias), "bias memory",
               op->weight);
    }
    return 0;
fail:
    return rc;
}

/* The weights of layer `i` in layout `want`, reordered once and shared. */
int imago_dnnl_weights(imago_backend *b, dnnl_stream_t stream, int i,
                       const dnnl_memory_desc_t *want, dnnl_memory_t *out, imago_error *err)
{
    int rc = 0;
    dn_layer *l = &b->layers[i];
    const char *name = b->net->ops[i].weight;
    dnnl_primitive_desc_t rpd = NULL;
    dnnl_primitive_t r = NULL;
    dnnl_memory_t mem = NULL;
    pthread_mutex_lock(&b->lock);
    for (int v = 0; v < l->n_var; v++) {
        if (dnnl_memory_desc_equal(&l->var[v].md, want)) {
            *out = l->var[v].mem;
            pthread_mutex_unlock(&b->lock);
            return 0;
        }
    }
    DN_TRY(dnnl_memory_create(&mem, want, b->eng, DNNL_MEMORY_ALLOCATE), "weights memory",
           name);
    DN_TRY(dnnl_reorder_primitive_desc_create(&rpd, &l->w_md, b->eng, want, b->eng, NULL),
           "weights reorder", name);
    DN_TRY(dnnl_primitive_create(&r, rpd), "weights reorder", name);
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, l->w_mem}, {DNNL_ARG_TO, mem}};
    DN_TRY(dnnl_primitive_execute(r, stream, 2, args), "weights reorder", name);
    DN_TRY(dnnl_stream_wait(stream), "weights reorder", name);
    l->var = imago_xrealloc(l->var, (size_t)(l->n_var + 1) * sizeof *l->var);
    l->var[l->n_var].md = *want;
    l->var[l->n_var].mem = mem;
    l->n_var++;
    *out = mem;
    mem = NULL;
fail:
    pthread_mutex_unlock(&b->lock);
    if (r)
        dnnl_primitive_destroy(r);
    if (rpd)
        dnnl_primitive_desc_destroy(rpd);
    if (mem)
        dnnl_memory_destroy(mem);
    return rc;
}

/* ---- contexts ---------------------------------------------------------- */

static void plan_free_cb(void *ctx, void *plan)
{
    (void)ctx;
    imago_dnnl_plan_free(plan);
}

static void ctx_free(dn_ctx *c)
{
    imago_plan_lru_fini(&c->plans);
    if (c->stream)
        dnnl_stream_destroy(c->stream);
    free(c);
}

static int ctx_acquire(imago_backend *b, dn_ctx **out, imago_error *err)
{
    int rc = 0;
    dn_ctx *c = imago_ctx_pool_take(&b->pool);
    if (!c) {
        c = imago_xcalloc(1, sizeof *c);
        imago_plan_lru_init(&c->plans, b->p.max_plans, plan_free_cb, NULL);
        DN_TRY(dnnl_stream_create(&c->stream, b->eng, dnnl_stream_default_flags),
               "stream creation", "");
    }
    *out = c;
    return 0;
fail:
    ctx_free(c);
    return rc;
}

static void ctx_release(imago_backend *b, dn_ctx *c)
{
    imago_ctx_pool_give(&b->pool, c);
}

static void ctx_free_cb(void *c)
{
    ctx_free(c);
}

static int ctx_plan(imago_backend *b, dn_ctx *c, int n, int h, int w, dn_plan **out,
                    imago_error *err)
{
    dn_plan *pl = imago_plan_lru_find(&c->plans, n, h, w);
    if (!pl) {
        int rc = imago_dnnl_plan_build(b, c, n, h, w, &pl, err);
        if (rc)
            return rc;
        imago_plan_lru_add(&c->plans, n, h, w, pl);
    }
    *out = pl;
    return 0;
}

/* ---- pooling ----------------------------------------------------------- */

static void pool_features(const imago_net *net, const float *fm, int n, int hw, int threads,
                          float *out)
{
    int C = net->feat_dim;
    double p = net->gem_p;
    int cube = p == 3.0;
    for (int img = 0; img < n; img++) {
        const float *x = fm + (size_t)img * hw * C;
        float *o = out + (size_t)img * C;
#pragma omp parallel for num_threads(threads) schedule(static)
        for (int c0 = 0; c0 < C; c0 += 64) {
            int c1 = c0 + 64 < C ? c0 + 64 : C;
            double acc[64];
            for (int c = c0; c < c1; c++)
                acc[c - c0] = net->pool == IMAGO_POOL_MAC ? -INFINITY : 0.0;
            for (int i = 0; i < hw; i++) {
                const float *row = x + (size_t)i * C;
                for (int c = c0; c < c1; c++) {
                    float v = row[c];
                    if (net->pool == IMAGO_POOL_MAC) {
                        if (v > acc[c - c0])
                            acc[c - c0] = v;
                    } else if (net->pool == IMAGO_POOL_SPOC) {
                        acc[c - c0] += v;
                    } else {
                        double t = v > 1e-6f ? v : 1e-6;
                        acc[c - c0] += cube ? t * t * t : pow(t, p);
                    }
                }
            }
            for (int c = c0; c < c1; c++) {
                double a = acc[c - c0];
                if (net->pool == IMAGO_POOL_GEM)
                    a = pow(a / hw, 1.0 / p);
                else if (net->pool == IMAGO_POOL_SPOC)
                    a /= hw;
                o[c] = (float)a;
            }
        }
    }
}

static int dn_run(imago_backend *b, const float *nhwc, int n, int h, int w, float *pooled,
                  imago_error *err)
{
    int rc = 0;
    dn_ctx *c = NULL;
    if (n < 1 || h < 1 || w < 1)
        return imago_error_set(err, IMAGO_ERR_INVALID, "empty batch %dx%dx%d", n, h, w);
    if ((rc = ctx_acquire(b, &c, err)))
        return rc;
    int threads = b->p.threads > 0 ? b->p.threads : omp_get_num_procs();
    omp_set_num_threads(threads);
    dn_plan *pl;
    if ((rc = ctx_plan(b, c, n, h, w, &pl, err)))
        goto done;
    DN_TRY(dnnl_memory_set_data_handle(pl->tensors[pl->input_tensor].mem, (void *)nhwc),
           "set input", "");
    for (int i = 0; i < pl->n_steps; i++) {
        dn_step *s = &pl->steps[i];
        DN_TRY(dnnl_primitive_execute(s->prim, c->stream, s->nargs, s->exec), "execution", "");
    }
    DN_TRY(dnnl_stream_wait(c->stream), "execution", "");
    {
        const float *fm = pl->slots[pl->tensors[pl->output_tensor].slot].ptr;
        const imago_net *net = b->net;
        int hw = pl->out_h * pl->out_w, ch = net->channels[net->output];
        const float *att =
            pl->att_tensor >= 0 ? pl->slots[pl->tensors[pl->att_tensor].slot].ptr : NULL;
        if (net->glam) /* the GLAM head pools itself, in fp32 (engine/glam.c) */
            rc = imago_glam_run(net->glam, fm, n, pl->out_h, pl->out_w, net->gem_p, threads,
                                pooled, err);
        else if (net->head_apgem)
            imago_apgem_pool(fm, att, n, hw, ch, net->gem_p, threads, pooled);
        else if (net->head_glap)
            rc = imago_glap_pool(fm, att, n, hw, ch, net->channels[net->att], net->gem_p,
                                 net->glap_fc_w, net->glap_fc_b, net->glap_fc_out, threads,
                                 pooled, NULL, err);
        else
            pool_features(b->net, fm, n, pl->out_h * pl->out_w, threads, pooled);
    }
    goto done;
fail:
done:
    ctx_release(b, c);
    return rc;
}

static void dn_destroy(imago_backend *b)
{
    imago_ctx_pool_fini(&b->pool, ctx_free_cb);
    if (b->layers) {
        for (int i = 0; i < b->net->n_ops; i++)
            layer_free(&b->layers[i]);
        free(b->layers);
    }
    if (b->eng)
        dnnl_engine_destroy(b->eng);
    pthread_mutex_destroy(&b->lock);
    free(b);
}

const imago_backend_vtable imago_backend_dnnl = {
    .name = "cpu",
    .probe = dn_probe,
    .create = dn_create,
    .load = dn_load,
    .run = dn_run,
    .destroy = dn_destroy,
};
