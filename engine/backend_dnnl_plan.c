/* The per-shape plans of the oneDNN CPU backend (see backend_dnnl.c): the
 * op list turned into primitives with fused post-ops, activation tensors in
 * slots reused by liveness, one scratchpad, and the execution argument lists.
 */
#include "backend_dnnl_int.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

void imago_dnnl_plan_free(dn_plan *pl)
{
    if (!pl)
        return;
    for (int i = 0; i < pl->n_steps; i++) {
        if (pl->steps[i].prim)
            dnnl_primitive_destroy(pl->steps[i].prim);
        if (pl->steps[i].scratch_mem)
            dnnl_memory_destroy(pl->steps[i].scratch_mem);
    }
    for (int i = 0; i < pl->n_tensors; i++)
        if (pl->tensors[i].mem)
            dnnl_memory_destroy(pl->tensors[i].mem);
    for (int i = 0; i < pl->n_slots; i++)
        imago_free_aligned(pl->slots[i].ptr);
    imago_free_aligned(pl->scratch);
    free(pl->steps);
    free(pl->tensors);
    free(pl->slots);
    free(pl);
}

static int new_tensor(dn_plan *pl, const dnnl_memory_desc_t *md, int slot)
{
    if (pl->n_tensors == pl->cap_tensors) {
        pl->cap_tensors = pl->cap_tensors ? 2 * pl->cap_tensors : 128;
        pl->tensors = imago_xrealloc(pl->tensors, (size_t)pl->cap_tensors * sizeof(dn_tensor));
    }
    dn_tensor *t = &pl->tensors[pl->n_tensors];
    memset(t, 0, sizeof *t);
    t->md = *md;
    t->slot = slot;
    return pl->n_tensors++;
}

/* Best-fit reuse of a free slot, else a new one; sizes grow to fit. */
static int slot_acquire(dn_plan *pl, size_t size)
{
    int best = -1;
    for (int i = 0; i < pl->n_slots; i++) {
        if (pl->slots[i].busy)
            continue;
        if (best < 0)
            best = i;
        else {
            size_t bs = pl->slots[best].size, s = pl->slots[i].size;
            /* prefer the smallest slot that fits, else the largest one (grown) */
            int fits = s >= size, bfits = bs >= size;
            if ((fits && (!bfits || s < bs)) || (!fits && !bfits && s > bs))
                best = i;
        }
    }
    if (best < 0) {
        if (pl->n_slots == pl->cap_slots) {
            pl->cap_slots = pl->cap_slots ? 2 * pl->cap_slots : 16;
            pl->slots = imago_xrealloc(pl->slots, (size_t)pl->cap_slots * sizeof(dn_slot));
        }
        best = pl->n_slots++;
        pl->slots[best].size = 0;
        pl->slots[best].ptr = NULL;
    }
    if (pl->slots[best].size < size)
        pl->slots[best].size = size;
    pl->slots[best].busy = 1;
    return best;
}

static int act_tensor(dn_plan *pl, const dnnl_memory_desc_t *md)
{
    return new_tensor(pl, md, slot_acquire(pl, dnnl_memory_desc_get_size(md)));
}

static dn_step *new_step(dn_plan *pl)
{
    if (pl->n_steps == pl->cap_steps) {
        pl->cap_steps = pl->cap_steps ? 2 * pl->cap_steps : 128;
        pl->steps = imago_xrealloc(pl->steps, (size_t)pl->cap_steps * sizeof(dn_step));
    }
    dn_step *s = &pl->steps[pl->n_steps++];
    memset(s, 0, sizeof *s);
    return s;
}

static void step_arg(dn_step *s, int arg, int tensor)
{
    s->arg[s->nargs] = arg;
    s->tensor[s->nargs] = tensor;
    s->nargs++;
}

/* Creates the primitive of pd into a new step (pd is destroyed). */
static int add_step(dn_plan *pl, dnnl_primitive_desc_t pd, dn_step **out, const char *what,
                    const char *where, imago_error *err)
{
    int rc = 0;
    dn_step *s = new_step(pl);
    s->scratch_md = *dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    DN_TRY(dnnl_primitive_create(&s->prim, pd), what, where);
    dnnl_primitive_desc_destroy(pd);
    *out = s;
    return 0;
fail:
    dnnl_primitive_desc_destroy(pd);
    pl->n_steps--;
    return rc;
}

static int scratch_attr(dnnl_primitive_attr_t *attr, imago_error *err)
{
    int rc = 0;
    DN_TRY(dnnl_primitive_attr_create(attr), "attribute creation", "");
    DN_TRY(dnnl_primitive_attr_set_scratchpad_mode(*attr, dnnl_scratchpad_mode_user),
           "scratchpad mode", "");
    return 0;
fail:
    return rc;
}

/* Creates the primitive of the op descriptor d (user scratchpad) into a new
 * step and, with dst_t, a new activation tensor in the layout of its
 * destination. */
static int prim_step(imago_backend *b, dn_plan *pl, const_dnnl_op_desc_t d, int *dst_t,
                     const char *what, const char *where, dn_step **out, imago_error *err)
{
    int rc = 0;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    if ((rc = scratch_attr(&attr, err)))
        return rc;
    DN_TRY(dnnl_primitive_desc_create(&pd, d, attr, b->eng, NULL), what, where);
    dnnl_primitive_attr_destroy(attr);
    if (dst_t)
        *dst_t = act_tensor(pl, dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0));
    return add_step(pl, pd, out, what, where, err);
fail:
    dnnl_primitive_attr_destroy(attr);
    return rc;
}

/* Returns a tensor holding tensor `t` in layout `want` (t itself, or a new
 * one filled by a reorder step; its slot is released by the caller through
 * `temps`). */
static int ensure_md(imago_backend *b, dn_plan *pl, int t, const dnnl_memory_desc_t *want,
                     int *out, int *temps, int *n_temps, const char *where, imago_error *err)
{
    (void)b;
    int rc = 0;
    if (dnnl_memory_desc_equal(&pl->tensors[t].md, want)) {
        *out = t;
        return 0;
    }
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_attr_t attr = NULL;
    if ((rc = scratch_attr(&attr, err)))
        goto fail;
    DN_TRY(dnnl_reorder_primitive_desc_create(&pd, &pl->tensors[t].md, b->eng, want, b->eng,
                                              attr),
           "reorder", where);
    dnnl_primitive_attr_destroy(attr);
    attr = NULL;
    int nt = act_tensor(pl, want);
    if (temps)
        temps[(*n_temps)++] = nt;
    dn_step *s;
    if ((rc = add_step(pl, pd, &s, "reorder", where, err)))
        goto fail;
    step_arg(s, DNNL_ARG_FROM, t);
    step_arg(s, DNNL_ARG_TO, nt);
    *out = nt;
    return 0;
fail:
    if (attr)
        dnnl_primitive_attr_destroy(attr);
    return rc;
}

static dnnl_alg_kind_t act_alg(imago_net_act a, float *alpha, float *beta)
{
    switch (a) {
    case IMAGO_ACT_RELU: *alpha = 0; *beta = 0; return dnnl_eltwise_relu;
    case IMAGO_ACT_RELU6: *alpha = 0; *beta = 6; return dnnl_eltwise_clip;
    case IMAGO_ACT_SIGMOID: *alpha = 0; *beta = 0; return dnnl_eltwise_logistic;
    case IMAGO_ACT_LINEAR: return dnnl_eltwise_linear;
    }
    return dnnl_eltwise_relu;
}

typedef struct build_state {
    int *vt;        /* value -> tensor (-1 once its slot is released or moved) */
    unsigned char *keep_f32; /* bf16 mode: values kept in fp32 (the residual stream) */
    int *last_use;  /* value -> index of the last op reading it */
    int *hs, *ws;
} build_state;

static void release_value(dn_plan *pl, build_state *bs, int v)
{
    int t = bs->vt[v];
    if (t >= 0 && pl->tensors[t].slot >= 0)
        pl->slots[pl->tensors[t].slot].busy = 0;
    bs->vt[v] = -1;
}

/* One unfused post-op, in place on tensor t: an eltwise or a binary step. */
static int build_post_step(imago_backend *b, dn_plan *pl, build_state *bs,
                           const imago_net_post *p, int t, int *temps, int *n_temps,
                           const char *name, imago_error *err)
{
    int rc = 0;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_memory_desc_t md = pl->tensors[t].md;
    int src1 = -1;
    if ((rc = scratch_attr(&attr, err)))
        goto fail;
    if (p->kind == IMAGO_POST_SUM) {
        rc = imago_error_set(err, IMAGO_ERR_INTERNAL, "%s: a sum after a binary post-op", name);
        goto fail;
    } else if (p->kind == IMAGO_POST_ACT) {
        float alpha = p->alpha, beta = p->beta;
        dnnl_alg_kind_t alg = act_alg(p->act, &alpha, &beta);
        dnnl_eltwise_desc_t d;
        DN_TRY(dnnl_eltwise_forward_desc_init(&d, dnnl_forward_inference, alg, &md, alpha, beta),
               "eltwise descriptor", name);
        DN_TRY(dnnl_primitive_desc_create(&pd, &d, attr, b->eng, NULL), "eltwise", name);
    } else {
        if ((rc = ensure_md(b, pl, bs->vt[p->value], &md, &src1, temps, n_temps, name, err)))
            goto fail;
        dnnl_binary_desc_t d;
        DN_TRY(dnnl_binary_desc_init(&d, p->kind == IMAGO_POST_MUL ? dnnl_binary_mul
                                                                   : dnnl_binary_add,
                                     &md, &pl->tensors[src1].md, &md),
               "binary descriptor", name);
        DN_TRY(dnnl_primitive_desc_create(&pd, &d, attr, b->eng, NULL), "binary", name);
    }
    dnnl_primitive_attr_destroy(attr);
    attr = NULL;
    dn_step *s;
    rc = add_step(pl, pd, &s, "post-op", name, err);
    pd = NULL;
    if (rc)
        goto fail;
    if (src1 >= 0) {
        step_arg(s, DNNL_ARG_SRC_0, t);
        step_arg(s, DNNL_ARG_SRC_1, src1);
    } else {
        step_arg(s, DNNL_ARG_SRC, t);
    }
    step_arg(s, DNNL_ARG_DST, t);
    return 0;
fail:
    if (attr)
        dnnl_primitive_attr_destroy(attr);
    if (pd)
        dnnl_primitive_desc_destroy(pd);
    return rc;
}

static int build_conv(imago_backend *b, dn_plan *pl, dn_ctx *ctx, build_state *bs, int i,
                      int *temps, int *n_temps, imago_error *err)
{
    int rc = 0;
    const imago_net_op *op = &b->net->ops[i];
    const char *name = op->weight;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_primitive_desc_t pd = NULL;
    int ih = bs->hs[op->in], iw = bs->ws[op->in];
    int oh = bs->hs[op->out], ow = bs->ws[op->out];
    dnnl_memory_desc_t src_md, wei_md, bias_md, dst_md;
    dnnl_dims_t sd = {pl->n, op->cin, ih, iw}, dd = {pl->n, op->cout, oh, ow}, wd;
    dnnl_dims_t bd = {op->cout};
    int nd;
    imago_dnnl_weight_dims(op, wd, &nd);
    DN_TRY(dnnl_memory_desc_init_by_tag(&src_md, 4, sd, b->act_dt, dnnl_format_tag_any),
           "descriptor", name);
    DN_TRY(dnnl_memory_desc_init_by_tag(&wei_md, nd, wd, b->act_dt, dnnl_format_tag_any),
           "descriptor", name);
    DN_TRY(dnnl_memory_desc_init_by_tag(&bias_md, 1, bd, dnnl_f32, dnnl_a), "descriptor",
           name);
    DN_TRY(dnnl_memory_desc_init_by_tag(&dst_md, 4, dd,
                                        bs->keep_f32[op->out] ? dnnl_f32 : b->act_dt,
                                        dnnl_format_tag_any),
           "descriptor", name);
    dnnl_dims_t strides = {op->stride, op->stride}, dil = {op->dilation - 1, op->dilation - 1};
    dnnl_dims_t pl_ = {op->pad, op->pad}, pr_ = {op->pad, op->pad};
    if (op->tf_same) {
        int a, c;
        imago_net_same_pad(ih, op->k, op->stride, op->dilation, &a, &c);
        pl_[0] = a;
        pr_[0] = c;
        imago_net_same_pad(iw, op->k, op->stride, op->dilation, &a, &c);
        pl_[1] = a;
        pr_[1] = c;
    }
    dnnl_convolution_desc_t cd;
    DN_TRY(dnnl_dilated_convolution_forward_desc_init(&cd, dnnl_forward_inference,
                                                      dnnl_convolution_direct, &src_md,
                                                      &wei_md, &bias_md, &dst_md, strides, dil,
                                                      pl_, pr_),
           "convolution descriptor", name);
    /* All post-ops fused first; when that makes oneDNN fall back to a slow
     * implementation (2.6 runs a convolution with a full-tensor binary
     * post-op on gemm, in plain nchw, with reorders around it), the
     * post-ops from the first binary one on run as separate in-place
     * binary / eltwise primitives instead. */
    int n_fused = op->n_post, first_binary = op->n_post, sum_value = -1;
    for (int j = op->n_post - 1; j >= 0; j--)
        if (op->post[j].kind == IMAGO_POST_MUL || op->post[j].kind == IMAGO_POST_ADD)
            first_binary = j;
    for (;;) {
        if ((rc = scratch_attr(&attr, err)))
            goto fail;
        DN_TRY(dnnl_post_ops_create(&po), "post-ops", name);
        sum_value = -1;
        for (int j = 0; j < n_fused; j++) {
            const imago_net_post *p = &op->post[j];
            if (p->kind == IMAGO_POST_ACT) {
                float alpha = p->alpha, beta = p->beta;
                dnnl_alg_kind_t alg = act_alg(p->act, &alpha, &beta);
                DN_TRY(dnnl_post_ops_append_eltwise(po, 1.0f, alg, alpha, beta), "post-ops",
                       name);
            } else if (p->kind == IMAGO_POST_SUM) {
                sum_value = p->value;
                DN_TRY(dnnl_post_ops_append_sum(po, 1.0f), "post-ops", name);
            } else {
                int t = bs->vt[p->value];
                DN_TRY(dnnl_post_ops_append_binary(po, p->kind == IMAGO_POST_MUL
                                                           ? dnnl_binary_mul
                                                           : dnnl_binary_add,
                                                   &pl->tensors[t].md),
                       "post-ops", name);
            }
        }
        DN_TRY(dnnl_primitive_attr_set_post_ops(attr, po), "post-ops", name);
        dnnl_status_t st = dnnl_primitive_desc_create(&pd, &cd, attr, b->eng, NULL);
        dnnl_post_ops_destroy(po);
        po = NULL;
        dnnl_primitive_attr_destroy(attr);
        attr = NULL;
        const char *impl = "";
        if (st == dnnl_success)
            dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
        int slow = st != dnnl_success || strstr(impl, "gemm") || strstr(impl, "ref");
        if (!slow || n_fused <= first_binary) {
            if (st != dnnl_success) {
                rc = imago_dnnl_fail(err, st, "convolution", name);
                goto fail;
            }
            break;
        }
        if (pd)
            dnnl_primitive_desc_destroy(pd);
        pd = NULL;
        n_fused = first_binary;
    }

    const dnnl_memory_desc_t *want_src = dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
    const dnnl_memory_desc_t *want_wei =
        dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    dnnl_memory_desc_t want_dst = *dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
    int src_t;
    if ((rc = ensure_md(b, pl, bs->vt[op->in], want_src, &src_t, temps, n_temps, name, err)))
        goto fail;
    dnnl_memory_t wmem = NULL;
    if ((rc = imago_dnnl_weights(b, ctx->stream, i, want_wei, &wmem, err)))
        goto fail;
    int wei_t = new_tensor(pl, want_wei, DN_SLOT_FIXED);
    pl->tensors[wei_t].fixed = wmem;
    int bias_t = new_tensor(pl, &bias_md, DN_SLOT_FIXED);
    pl->tensors[bias_t].fixed = b->layers[i].bias_mem;

    int dst_t;
    if (sum_value >= 0) {
        int st = bs->vt[sum_value];
        if (bs->last_use[sum_value] == i && sum_value != b->net->output &&
            dnnl_memory_desc_equal(&pl->tensors[st].md, &want_dst)) {
            /* accumulate in place: the residual's buffer becomes the output */
            dst_t = new_tensor(pl, &want_dst, pl->tensors[st].slot);
            bs->vt[sum_value] = -1;
        } else {
            int dummy = 0;
            int copy;
            /* ensure_md copies into a fresh tensor only when layouts differ; force
             * a copy when the residual is still needed later. */
            if (!dnnl_memory_desc_equal(&pl->tensors[st].md, &want_dst)) {
                if ((rc = ensure_md(b, pl, st, &want_dst, &copy, NULL, &dummy, name, err)))
                    goto fail;
            } else {
                dnnl_primitive_desc_t rpd = NULL;
                DN_TRY(dnnl_reorder_primitive_desc_create(&rpd, &want_dst, b->eng, &want_dst,
                                                          b->eng, NULL),
                       "reorder", name);
                copy = act_tensor(pl, &want_dst);
                dn_step *s;
                if ((rc = add_step(pl, rpd, &s, "reorder", name, err)))
                    goto fail;
                step_arg(s, DNNL_ARG_FROM, st);
                step_arg(s, DNNL_ARG_TO, copy);
            }
            dst_t = copy;
        }
    } else {
        dst_t = act_tensor(pl, &want_dst);
    }
    dn_step *s;
    if ((rc = add_step(pl, pd, &s, "convolution", name, err))) {
        pd = NULL;
        goto fail;
    }
    pd = NULL;
    step_arg(s, DNNL_ARG_SRC, src_t);
    step_arg(s, DNNL_ARG_WEIGHTS, wei_t);
    step_arg(s, DNNL_ARG_BIAS, bias_t);
    step_arg(s, DNNL_ARG_DST, dst_t);
    for (int j = 0; j < n_fused; j++) {
        const imago_net_post *p = &op->post[j];
        if (p->kind == IMAGO_POST_MUL || p->kind == IMAGO_POST_ADD)
            step_arg(s, DNNL_ARG_ATTR_MULTIPLE_POST_OP(j) | DNNL_ARG_SRC_1, bs->vt[p->value]);
    }
    for (int j = n_fused; j < op->n_post; j++)
        if ((rc = build_post_step(b, pl, bs, &op->post[j], dst_t, temps, n_temps, name, err)))
            goto fail;
    bs->vt[op->out] = dst_t;
    return 0;
fail:
    if (po)
        dnnl_post_ops_destroy(po);
    if (attr)
        dnnl_primitive_attr_destroy(attr);
    if (pd)
        dnnl_primitive_desc_destroy(pd);
    return rc;
}

static int build_maxpool(imago_backend *b, dn_plan *pl, build_state *bs, int i,
                         imago_error *err)
{
    int rc = 0;
    const imago_net_op *op = &b->net->ops[i];
    int st = bs->vt[op->in];
    dnnl_memory_desc_t dst_md;
    dnnl_dims_t dd = {pl->n, op->cout, bs->hs[op->out], bs->ws[op->out]};
    DN_TRY(dnnl_memory_desc_init_by_tag(&dst_md, 4, dd, b->act_dt, dnnl_format_tag_any),
           "descriptor", "maxpool");
    dnnl_dims_t strides = {op->stride, op->stride}, kernel = {op->k, op->k}, dil = {0, 0};
    dnnl_dims_t pad = {op->pad, op->pad};
    dnnl_pooling_v2_desc_t d;
    DN_TRY(dnnl_pooling_v2_forward_desc_init(&d, dnnl_forward_inference, dnnl_pooling_max,
                                             &pl->tensors[st].md, &dst_md, strides, kernel, dil,
                                             pad, pad),
           "pooling descriptor", "maxpool");
    int dst_t;
    dn_step *s;
    if ((rc = prim_step(b, pl, &d, &dst_t, "pooling", "maxpool", &s, err)))
        return rc;
    step_arg(s, DNNL_ARG_SRC, st);
    step_arg(s, DNNL_ARG_DST, dst_t);
    bs->vt[op->out] = dst_t;
    return 0;
fail:
    return rc;
}

static int build_binary(imago_backend *b, dn_plan *pl, build_state *bs, int i, int *temps,
                        int *n_temps, imago_error *err)
{
    int rc = 0;
    const imago_net_op *op = &b->net->ops[i];
    int a = bs->vt[op->in], c;
    if ((rc = ensure_md(b, pl, bs->vt[op->in2], &pl->tensors[a].md, &c, temps, n_temps,
                        "binary", err)))
        return rc;
    dnnl_binary_desc_t d;
    DN_TRY(dnnl_binary_desc_init(&d, op->binary_mul ? dnnl_binary_mul : dnnl_binary_add,
                                 &pl->tensors[a].md, &pl->tensors[c].md, &pl->tensors[a].md),
           "binary descriptor", "binary");
    int dst_t;
    dn_step *s;
    if ((rc = prim_step(b, pl, &d, &dst_t, "binary", "binary", &s, err)))
        return rc;
    step_arg(s, DNNL_ARG_SRC_0, a);
    step_arg(s, DNNL_ARG_SRC_1, c);
    step_arg(s, DNNL_ARG_DST, dst_t);
    bs->vt[op->out] = dst_t;
    return 0;
fail:
    return rc;
}

/* Allocates the slots and the scratchpad, creates the memory objects and
 * fills the execution argument lists. */
static int plan_finalize(imago_backend *b, dn_plan *pl, imago_error *err)
{
    int rc = 0;
    for (int i = 0; i < pl->n_slots; i++)
        if ((rc = imago_alloc_array(pl->slots[i].size, 1, 0, &pl->slots[i].ptr, err)))
            return rc;
    size_t scratch = 0;
    for (int i = 0; i < pl->n_steps; i++) {
        size_t s = dnnl_memory_desc_get_size(&pl->steps[i].scratch_md);
        if (s > scratch)
            scratch = s;
    }
    if (scratch && (rc = imago_alloc_array(scratch, 1, 0, &pl->scratch, err)))
        return rc;
    for (int i = 0; i < pl->n_tensors; i++) {
        dn_tensor *t = &pl->tensors[i];
        if (t->slot == DN_SLOT_FIXED)
            continue;
        void *h = t->slot >= 0 ? pl->slots[t->slot].ptr : DNNL_MEMORY_NONE;
        DN_TRY(dnnl_memory_create(&t->mem, &t->md, b->eng, h), "memory creation", "activation");
    }
    for (int i = 0; i < pl->n_steps; i++) {
        dn_step *s = &pl->steps[i];
        for (int j = 0; j < s->nargs; j++) {
            dn_tensor *t = &pl->tensors[s->tensor[j]];
            s->exec[j].arg = s->arg[j];
            s->exec[j].memory = t->slot == DN_SLOT_FIXED ? t->fixed : t->mem;
        }
        if (dnnl_memory_desc_get_size(&s->scratch_md) > 0) {
            DN_TRY(dnnl_memory_create(&s->scratch_mem, &s->scratch_md, b->eng, pl->scratch),
                   "memory creation", "scratchpad");
            s->exec[s->nargs].arg = DNNL_ARG_SCRATCHPAD;
            s->exec[s->nargs].memory = s->scratch_mem;
            s->nargs++;
        }
    }
    return 0;
fail:
    return rc;
}

int imago_dnnl_plan_build(imago_backend *b, dn_ctx *ctx, int n, int h, int w, dn_plan **out,
                          imago_error *err)
{
    const imago_net *net = b->net;
    int rc = 0;
    dn_plan *pl = imago_xcalloc(1, sizeof *pl);
    pl->n = n;
    pl->h = h;
    pl->w = w;
    build_state bs = {0};
    int nv = net->n_values;
    bs.vt = imago_xmalloc((size_t)nv * 4 * sizeof(int));
    bs.last_use = bs.vt + nv;
    bs.hs = bs.vt + 2 * nv;
    bs.ws = bs.vt + 3 * nv;
    for (int v = 0; v < nv; v++) {
        bs.vt[v] = -1;
        bs.last_use[v] = -1;
    }
    if ((rc = imago_net_shapes(net, h, w, bs.hs, bs.ws, err)))
        goto fail;
    for (int i = 0; i < net->n_ops; i++) {
        const imago_net_op *op = &net->ops[i];
        bs.last_use[op->in] = i;
        if (op->in2 >= 0)
            bs.last_use[op->in2] = i;
        for (int j = 0; j < op->n_post; j++)
            if (op->post[j].kind != IMAGO_POST_ACT)
                bs.last_use[op->post[j].value] = i;
    }
    bs.last_use[net->output] = INT_MAX;
    if (net->head_apgem || net->head_glap)
        bs.last_use[net->att] = INT_MAX;
    /* bf16: values kept in fp32 (none for now: keeping the residual stream
     * in fp32 was measured not to improve the bf16 descriptors). */
    bs.keep_f32 = imago_xcalloc((size_t)nv, 1);
    bs.keep_f32[net->input] = 0;

    dnnl_memory_desc_t in_md;
    dnnl_dims_t id = {n, 3, h, w};
    DN_TRY(dnnl_memory_desc_init_by_tag(&in_md, 4, id, dnnl_f32, dnnl_nhwc), "descriptor",
           "input");
    pl->input_tensor = new_tensor(pl, &in_md, DN_SLOT_INPUT);
    bs.vt[net->input] = pl->input_tensor;

    int temps[8];
    for (int i = 0; i < net->n_ops; i++) {
        const imago_net_op *op = &net->ops[i];
        int n_temps = 0;
        if (op->kind == IMAGO_NET_CONV)
            rc = build_conv(b, pl, ctx, &bs, i, temps, &n_temps, err);
        else if (op->kind == IMAGO_NET_MAXPOOL)
            rc = build_maxpool(b, pl, &bs, i, err);
        else
            rc = build_binary(b, pl, &bs, i, temps, &n_temps, err);
        if (rc)
            goto fail;
        for (int t = 0; t < n_temps; t++)
            if (pl->tensors[temps[t]].slot >= 0)
                pl->slots[pl->tensors[temps[t]].slot].busy = 0;
        /* release every value this op read for the last time */
        if (bs.last_use[op->in] == i)
            release_value(pl, &bs, op->in);
        if (op->in2 >= 0 && bs.last_use[op->in2] == i)
            release_value(pl, &bs, op->in2);
        for (int j = 0; j < op->n_post; j++) {
            int v = op->post[j].value;
            if (op->post[j].kind != IMAGO_POST_ACT && bs.last_use[v] == i)
                release_value(pl, &bs, v);
        }
    }

    /* the pooled feature map: plain nhwc fp32 */
    dnnl_memory_desc_t out_md;
    pl->out_h = bs.hs[net->output];
    pl->out_w = bs.ws[net->output];
    dnnl_dims_t od = {n, net->channels[net->output], pl->out_h, pl->out_w};
    DN_TRY(dnnl_memory_desc_init_by_tag(&out_md, 4, od, dnnl_f32, dnnl_nhwc), "descriptor",
           "output");
    if ((rc = ensure_md(b, pl, bs.vt[net->output], &out_md, &pl->output_tensor, NULL, NULL,
                        "output", err)))
        goto fail;
    pl->att_tensor = -1;
    if (net->head_apgem || net->head_glap) {
        dnnl_memory_desc_t att_md;
        dnnl_dims_t ad = {n, net->channels[net->att], pl->out_h, pl->out_w};
        DN_TRY(dnnl_memory_desc_init_by_tag(&att_md, 4, ad, dnnl_f32, dnnl_nhwc), "descriptor",
               "attention");
        if ((rc = ensure_md(b, pl, bs.vt[net->att], &att_md, &pl->att_tensor, NULL, NULL,
                            "attention", err)))
            goto fail;
    }
    if ((rc = plan_finalize(b, pl, err)))
        goto fail;
    free(bs.vt);
    free(bs.keep_f32);
    *out = pl;
    return 0;
fail:
    free(bs.vt);
    free(bs.keep_f32);
    imago_dnnl_plan_free(pl);
    return rc;
}
