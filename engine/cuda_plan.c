/* The GPU backend's memory planner (see cuda_plan.h). */
#include "cuda_plan.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct item {
    imago_cuda_tensor *t;
    size_t bytes; /* rounded up to the alignment */
} item;

/* largest first; ties by birth, then by address (a total order) */
static int item_cmp(const void *a, const void *b)
{
    const item *x = a, *y = b;
    if (x->bytes != y->bytes)
        return x->bytes > y->bytes ? -1 : 1;
    if (x->t->first != y->t->first)
        return x->t->first < y->t->first ? -1 : 1;
    return x->t < y->t ? -1 : x->t > y->t;
}

static int offset_cmp(const void *a, const void *b)
{
    const item *x = *(const item *const *)a, *y = *(const item *const *)b;
    return x->t->offset < y->t->offset ? -1 : x->t->offset > y->t->offset;
}

/* bytes of an n x h x w x c tensor, with the limits of the header */
static int tensor_bytes(const imago_cuda_plan *p, int h, int w, int c, size_t *out,
                        imago_error *err)
{
    size_t e = 0;
    if (imago_size_mul((size_t)p->n, (size_t)h, &e) || imago_size_mul(e, (size_t)w, &e) ||
        imago_size_mul(e, (size_t)c, &e) || e >= ((size_t)1 << 31))
        return imago_error_set(err, IMAGO_ERR_TOO_LARGE,
                               "a %d x %d x %d x %d tensor is too large for the GPU backend "
                               "(2^31 elements at most): use a smaller batch or max_side",
                               p->n, h, w, c);
    if (imago_size_mul(e, p->elt, out))
        return imago_error_set(err, IMAGO_ERR_TOO_LARGE, "tensor size overflows");
    return 0;
}

/* Greedy by size: the largest tensors are placed first, each at the lowest
 * offset where it overlaps no already placed tensor that is alive at the
 * same time. Near the live peak for the chain-with-skips shape of CNNs
 * (tests/unit/test_engine_cuda_plan.c bounds it). */
static int place(imago_cuda_plan *p, item *items, int n_items, imago_error *err)
{
    qsort(items, (size_t)n_items, sizeof *items, item_cmp);
    item **conflict = imago_xmalloc((size_t)(n_items > 0 ? n_items : 1) * sizeof *conflict);
    size_t top = 0;
    for (int i = 0; i < n_items; i++) {
        item *it = &items[i];
        int n_conflict = 0;
        for (int j = 0; j < i; j++)
            if (items[j].t->first <= it->t->last && it->t->first <= items[j].t->last)
                conflict[n_conflict++] = &items[j];
        qsort(conflict, (size_t)n_conflict, sizeof *conflict, offset_cmp);
        size_t off = 0;
        for (int j = 0; j < n_conflict; j++) {
            const item *a = conflict[j];
            if (a->t->offset >= off + it->bytes)
                break; /* the gap before a fits */
            size_t end = a->t->offset + a->bytes;
            if (end > off)
                off = end;
        }
        if (off > SIZE_MAX - it->bytes) {
            free(conflict);
            return imago_error_set(err, IMAGO_ERR_TOO_LARGE, "GPU arena size overflows");
        }
        it->t->offset = off;
        if (off + it->bytes > top)
            top = off + it->bytes;
    }
    free(conflict);
    p->arena_bytes = top;
    return 0;
}

int imago_cuda_plan_build(const imago_net *net, int n, int h, int w, size_t elt, size_t align,
                          imago_cuda_plan **out, imago_error *err)
{
    if (n < 1 || h < 1 || w < 1 || elt < 1 || align < 1 || (align & (align - 1)))
        return imago_error_set(err, IMAGO_ERR_INVALID,
                               "GPU plan: bad shape %dx%dx%d (element %zu, alignment %zu)", n,
                               h, w, elt, align);
    int rc = 0;
    int nv = net->n_values, no = net->n_ops;
    imago_cuda_plan *p = imago_xcalloc(1, sizeof *p);
    p->n = n;
    p->h = h;
    p->w = w;
    p->elt = elt;
    p->align = align;
    p->n_values = nv;
    p->n_ops = no;
    p->values = imago_xcalloc((size_t)nv, sizeof *p->values);
    p->ops = imago_xcalloc((size_t)(no > 0 ? no : 1), sizeof *p->ops);
    int *hs = imago_xmalloc(2 * (size_t)nv * sizeof *hs), *ws = hs + nv;
    item *items = imago_xmalloc(((size_t)nv + (size_t)no) * sizeof *items);
    int n_items = 0;

    for (int v = 0; v < nv; v++) {
        p->values[v].first = INT_MAX; /* not written yet */
        p->values[v].last = -1;
    }
    p->values[net->input].first = -1;
    for (int i = 0; i < no; i++) {
        const imago_net_op *op = &net->ops[i];
        int reads[2 + IMAGO_NET_MAX_POST], n_reads = 0;
        reads[n_reads++] = op->in;
        if (op->kind == IMAGO_NET_BINARY)
            reads[n_reads++] = op->in2;
        for (int j = 0; j < op->n_post; j++)
            if (op->post[j].kind != IMAGO_POST_ACT)
                reads[n_reads++] = op->post[j].value;
        for (int r = 0; r < n_reads; r++) {
            int v = reads[r];
            if (v < 0 || v >= nv || p->values[v].first == INT_MAX || v == op->out) {
                rc = imago_error_set(err, IMAGO_ERR_INTERNAL,
                                     "network op %d reads value %d before it is written", i, v);
                goto done;
            }
            p->values[v].last = i;
        }
        if (op->out < 0 || op->out >= nv || p->values[op->out].first != INT_MAX) {
            rc = imago_error_set(err, IMAGO_ERR_INTERNAL, "network op %d writes value %d twice",
                                 i, op->out);
            goto done;
        }
        p->values[op->out].first = i;
        p->values[op->out].last = i;
    }
    p->values[net->output].last = no;
    /* AP-GeM / GLAP: the attention is read by the pooling after the last op */
    if (net->head_apgem || net->head_glap)
        p->values[net->att].last = no;
    if ((rc = imago_net_shapes(net, h, w, hs, ws, err)))
        goto done;
    for (int i = 0; i < no; i++) {
        const imago_net_op *op = &net->ops[i];
        imago_cuda_op_plan *o = &p->ops[i];
        if (op->kind == IMAGO_NET_CONV || op->kind == IMAGO_NET_MAXPOOL) {
            o->pt = o->pb = o->pl = o->pr = op->pad;
            if (op->tf_same) {
                int d = op->kind == IMAGO_NET_CONV ? op->dilation : 1;
                imago_net_same_pad(hs[op->in], op->k, op->stride, d, &o->pt, &o->pb);
                imago_net_same_pad(ws[op->in], op->k, op->stride, d, &o->pl, &o->pr);
            }
            if (op->kind == IMAGO_NET_CONV && (o->pt != o->pb || o->pl != o->pr)) {
                o->explicit_pad = 1;
                o->padded.h = hs[op->in] + o->pt + o->pb;
                o->padded.w = ws[op->in] + o->pl + o->pr;
                o->padded.c = net->channels[op->in];
                o->padded.first = o->padded.last = i;
                if ((rc = tensor_bytes(p, o->padded.h, o->padded.w, o->padded.c,
                                       &o->padded.bytes, err)))
                    goto done;
            }
        }
    }

    for (int v = 0; v < nv; v++) {
        imago_cuda_tensor *t = &p->values[v];
        if (t->first == INT_MAX) { /* never written: no storage */
            t->first = t->last = -1;
            continue;
        }
        t->h = hs[v];
        t->w = ws[v];
        t->c = net->channels[v];
        if ((rc = tensor_bytes(p, t->h, t->w, t->c, &t->bytes, err)))
            goto done;
        items[n_items++].t = t;
    }
    for (int i = 0; i < no; i++)
        if (p->ops[i].explicit_pad)
            items[n_items++].t = &p->ops[i].padded;
    for (int i = 0; i < n_items; i++) {
        size_t b = items[i].t->bytes;
        if (b > SIZE_MAX - align) {
            rc = imago_error_set(err, IMAGO_ERR_TOO_LARGE, "tensor size overflows");
            goto done;
        }
        items[i].bytes = (b + align - 1) & ~(align - 1);
        if (p->sum_bytes > SIZE_MAX - items[i].bytes) {
            rc = imago_error_set(err, IMAGO_ERR_TOO_LARGE, "GPU arena size overflows");
            goto done;
        }
        p->sum_bytes += items[i].bytes;
    }
    rc = place(p, items, n_items, err);
done:
    free(hs);
    free(items);
    if (rc)
        imago_cuda_plan_free(p);
    else
        *out = p;
    return rc;
}

void imago_cuda_plan_free(imago_cuda_plan *p)
{
    if (!p)
        return;
    free(p->values);
    free(p->ops);
    free(p);
}

/* ---- host conversions (the backend's weights, once at load) --------------- */

uint16_t imago_cuda_f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

uint16_t imago_cuda_f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    x &= 0x7fffffffu;
    if (x >= 0x7f800000u) /* Inf, NaN */
        return (uint16_t)(sign | (x > 0x7f800000u ? 0x7e00u : 0x7c00u));
    if (x >= 0x477ff000u) /* >= 65520 rounds to Inf */
        return (uint16_t)(sign | 0x7c00u);
    if (x < 0x38800000u) { /* below 2^-14: a subnormal half (or 0) */
        float a;
        memcpy(&a, &x, 4);
        /* a * 2^24 < 1024 is exact in fp32; adding 2^23 rounds it to an
         * integer, to nearest even */
        float r = (a * 16777216.0f + 8388608.0f) - 8388608.0f;
        return (uint16_t)(sign | (uint16_t)r);
    }
    uint32_t odd = (x >> 13) & 1u;
    x += 0xc8000fffu + odd; /* rebias the exponent (-112 << 23), round to nearest even */
    return (uint16_t)(sign | (x >> 13));
}
