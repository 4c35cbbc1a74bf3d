/* Unit tests for engine/cuda_plan.c, the GPU backend's memory planner:
 * shapes and paddings equal the network's, tensors alive at the same time
 * never share bytes, an op's operands are alive while it runs, the arena is
 * much smaller than one buffer per tensor, and errors are typed. Runs
 * everywhere (no GPU needed). */
#include "engine/cuda_plan.h"
#include "engine/model.h"
#include "engine/net.h"
#include "tap.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static imago_model_config config(const char *backbone, const char *head, const char *padding)
{
    imago_model_config cfg;
    imago_model_config_default(&cfg);
    snprintf(cfg.name, sizeof cfg.name, "plan-%s-%s", backbone, head);
    snprintf(cfg.backbone, sizeof cfg.backbone, "%s", backbone);
    snprintf(cfg.head, sizeof cfg.head, "%s", head);
    snprintf(cfg.whitening, sizeof cfg.whitening, "none");
    snprintf(cfg.padding, sizeof cfg.padding, "%s", padding);
    cfg.dim = strcmp(backbone, "mobilenet_v2") == 0 ? 1280 : 2048;
    return cfg;
}

/* every pair of tensors whose lifetimes overlap occupies disjoint bytes */
static int count_overlaps(const imago_cuda_plan *p)
{
    int n = 0;
    const imago_cuda_tensor **t = malloc(((size_t)p->n_values + (size_t)p->n_ops) * sizeof *t);
    for (int v = 0; v < p->n_values; v++)
        if (p->values[v].bytes)
            t[n++] = &p->values[v];
    for (int i = 0; i < p->n_ops; i++)
        if (p->ops[i].explicit_pad)
            t[n++] = &p->ops[i].padded;
    int bad = 0;
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++) {
            int live = t[i]->first <= t[j]->last && t[j]->first <= t[i]->last;
            int mem = t[i]->offset < t[j]->offset + t[j]->bytes &&
                      t[j]->offset < t[i]->offset + t[i]->bytes;
            if (live && mem && bad++ < 3)
                tap_diag("  overlap: [%zu,+%zu) life %d..%d and [%zu,+%zu) life %d..%d",
                         t[i]->offset, t[i]->bytes, t[i]->first, t[i]->last, t[j]->offset,
                         t[j]->bytes, t[j]->first, t[j]->last);
        }
    free(t);
    return bad;
}

/* the most bytes alive at one time: no placement can use less */
static size_t peak_live(const imago_cuda_plan *p)
{
    size_t peak = 0;
    for (int t = -1; t <= p->n_ops; t++) {
        size_t live = 0;
        for (int v = 0; v < p->n_values; v++)
            if (p->values[v].bytes && p->values[v].first <= t && t <= p->values[v].last)
                live += (p->values[v].bytes + p->align - 1) & ~(p->align - 1);
        if (t >= 0 && t < p->n_ops && p->ops[t].explicit_pad)
            live += (p->ops[t].padded.bytes + p->align - 1) & ~(p->align - 1);
        if (live > peak)
            peak = live;
    }
    return peak;
}

static void check_net(const char *backbone, const char *head, const char *padding, int n, int h,
                      int w)
{
    imago_model_config cfg = config(backbone, head, padding);
    imago_net *net = NULL;
    imago_error err;
    imago_error_clear(&err);
    if (imago_net_build(&cfg, &net, &err)) {
        ok(0, "%s-%s builds: %s", backbone, head, err.msg);
        return;
    }
    imago_cuda_plan *p = NULL;
    int rc = imago_cuda_plan_build(net, n, h, w, 2, 256, &p, &err);
    is_int(rc, 0, "%s-%s (%s) %dx%dx%d plans (%s)", backbone, head, padding, n, h, w, err.msg);
    if (rc) {
        imago_net_free(net);
        return;
    }
    int *hs = malloc(2 * (size_t)net->n_values * sizeof *hs), *ws = hs + net->n_values;
    imago_net_shapes(net, h, w, hs, ws, &err);
    int shape_bad = 0, align_bad = 0, life_bad = 0, pad_bad = 0;
    for (int v = 0; v < net->n_values; v++) {
        const imago_cuda_tensor *t = &p->values[v];
        if (!t->bytes)
            continue;
        if (t->h != hs[v] || t->w != ws[v] || t->c != net->channels[v] ||
            t->bytes != (size_t)n * hs[v] * ws[v] * net->channels[v] * 2)
            shape_bad++;
        if (t->offset % 256 || t->offset + t->bytes > p->arena_bytes)
            align_bad++;
    }
    for (int i = 0; i < net->n_ops; i++) {
        const imago_net_op *op = &net->ops[i];
        const imago_cuda_op_plan *o = &p->ops[i];
        int vals[2 + IMAGO_NET_MAX_POST], nv = 0;
        vals[nv++] = op->in;
        vals[nv++] = op->out;
        for (int j = 0; j < op->n_post; j++)
            if (op->post[j].kind != IMAGO_POST_ACT)
                vals[nv++] = op->post[j].value;
        for (int k = 0; k < nv; k++) {
            const imago_cuda_tensor *t = &p->values[vals[k]];
            if (!t->bytes || t->first > i || t->last < i)
                life_bad++;
        }
        if (op->kind == IMAGO_NET_CONV) {
            /* the window fits: out = (in + pads - k_eff) / stride + 1 */
            int ke = (op->k - 1) * op->dilation + 1;
            int oh = (hs[op->in] + o->pt + o->pb - ke) / op->stride + 1;
            int ow = (ws[op->in] + o->pl + o->pr - ke) / op->stride + 1;
            if (oh != hs[op->out] || ow != ws[op->out])
                pad_bad++;
            int asym = o->pt != o->pb || o->pl != o->pr;
            if (asym != o->explicit_pad ||
                (asym && (o->padded.h != hs[op->in] + o->pt + o->pb ||
                          o->padded.w != ws[op->in] + o->pl + o->pr ||
                          o->padded.first != i || o->padded.last != i)))
                pad_bad++;
        }
    }
    is_int(shape_bad, 0, "%s-%s: every value has the network's shape", backbone, head);
    is_int(align_bad, 0, "%s-%s: offsets aligned and inside the arena", backbone, head);
    is_int(life_bad, 0, "%s-%s: every op's operands are alive while it runs", backbone, head);
    is_int(pad_bad, 0, "%s-%s: paddings give the network's output sizes", backbone, head);
    is_int(p->values[net->output].last, net->n_ops, "%s-%s: the output lives to the end",
           backbone, head);
    is_int(count_overlaps(p), 0, "%s-%s: tensors alive together never share bytes", backbone,
           head);
    size_t peak = peak_live(p);
    ok(p->arena_bytes >= peak && p->arena_bytes <= peak + peak / 10,
       "%s-%s: arena %.1f MB within 10%% of the live peak %.1f MB (one buffer per tensor: "
       "%.1f MB)", backbone, head, p->arena_bytes / 1e6, peak / 1e6, p->sum_bytes / 1e6);
    free(hs);
    imago_cuda_plan_free(p);
    imago_net_free(net);
}

static void test_tf_same(void)
{
    imago_model_config cfg = config("mobilenet_v2", "gem", "tf_same");
    imago_net *net = NULL;
    imago_error err;
    imago_error_clear(&err);
    if (imago_net_build(&cfg, &net, &err)) {
        ok(0, "mobilenet_v2 tf_same builds: %s", err.msg);
        return;
    }
    imago_cuda_plan *p = NULL;
    /* even sizes: a 3x3 stride-2 SAME window pads 0 before and 1 after */
    is_int(imago_cuda_plan_build(net, 1, 224, 160, 4, 64, &p, &err), 0, "tf_same plans");
    int explicit_ops = 0, first = -1;
    for (int i = 0; p && i < net->n_ops; i++)
        if (p->ops[i].explicit_pad) {
            explicit_ops++;
            if (first < 0)
                first = i;
        }
    ok(explicit_ops >= 4, "tf_same: the stride-2 convolutions pad explicitly (%d ops)",
       explicit_ops);
    if (first >= 0) {
        const imago_cuda_op_plan *o = &p->ops[first];
        ok(o->pt == 0 && o->pb == 1 && o->pl == 0 && o->pr == 1,
           "tf_same: the first stem conv pads (0,1)x(0,1) (got %d,%d,%d,%d)", o->pt, o->pb,
           o->pl, o->pr);
        is_int(o->padded.h, 225, "tf_same: padded copy is 225 high");
        is_int(o->padded.bytes, (size_t)225 * 161 * 3 * 4, "tf_same: padded copy bytes");
    }
    imago_cuda_plan_free(p);
    imago_net_free(net);
}

/* a hand-made chain: the first-fit placement is known exactly */
static void test_chain(void)
{
    imago_net net;
    memset(&net, 0, sizeof net);
    imago_net_op ops[3];
    memset(ops, 0, sizeof ops);
    int channels[4] = {3, 8, 8, 8}, stride[4] = {1, 1, 1, 1};
    for (int i = 0; i < 3; i++) {
        ops[i].kind = IMAGO_NET_CONV;
        ops[i].in = i;
        ops[i].in2 = -1;
        ops[i].out = i + 1;
        ops[i].cin = channels[i];
        ops[i].cout = 8;
        ops[i].k = ops[i].stride = ops[i].dilation = ops[i].groups = 1;
    }
    net.n_ops = 3;
    net.ops = ops;
    net.n_values = 4;
    net.channels = channels;
    net.stride = stride;
    net.input = 0;
    net.output = 3;
    net.feat_dim = 8;
    imago_cuda_plan *p = NULL;
    imago_error err;
    imago_error_clear(&err);
    is_int(imago_cuda_plan_build(&net, 1, 4, 4, 4, 64, &p, &err), 0, "chain plans");
    if (p) {
        /* largest first: v1 at 0, v2 (alive with v1) after it, v3 (alive with
         * v2 only) back at 0, the input (alive with v1) after v1: the peak */
        is_int(p->values[1].offset, 0, "chain: v1 at 0");
        is_int(p->values[2].offset, 512, "chain: v2 after v1");
        is_int(p->values[3].offset, 0, "chain: v3 reuses v1's bytes");
        is_int(p->values[0].offset, 512, "chain: the input after v1");
        is_int(p->arena_bytes, 1024, "chain: arena = the live peak");
        is_int(p->sum_bytes, 192 + 3 * 512, "chain: sum");
        is_int(count_overlaps(p), 0, "chain: no overlaps");
    }
    imago_cuda_plan_free(p);

    /* an op that reads a value no op wrote */
    ops[1].in = 3;
    p = NULL;
    is_int(imago_cuda_plan_build(&net, 1, 4, 4, 4, 64, &p, &err), IMAGO_ERR_INTERNAL,
           "reading an unwritten value is an internal error (%s)", err.msg);
    ops[1].in = 1;
    ops[2].out = 2;
    is_int(imago_cuda_plan_build(&net, 1, 4, 4, 4, 64, &p, &err), IMAGO_ERR_INTERNAL,
           "writing a value twice is an internal error (%s)", err.msg);
    ops[2].out = 3;
    ops[0].k = 3; /* a 3x3 window without padding does not fit a 2x2 input */
    is_int(imago_cuda_plan_build(&net, 1, 2, 2, 4, 64, &p, &err), IMAGO_ERR_INVALID,
           "an input too small for the network is invalid (%s)", err.msg);
    ok(p == NULL, "no plan is returned on errors");
}

static void test_errors(void)
{
    imago_model_config cfg = config("resnet50", "gem", "torch");
    imago_net *net = NULL;
    imago_error err;
    imago_error_clear(&err);
    if (imago_net_build(&cfg, &net, &err)) {
        ok(0, "resnet50 builds: %s", err.msg);
        return;
    }
    imago_cuda_plan *p = NULL;
    is_int(imago_cuda_plan_build(net, 1, 1, 1, 2, 256, &p, &err), 0, "a 1x1 input plans");
    imago_cuda_plan_free(p);
    p = NULL;
    is_int(imago_cuda_plan_build(net, 1024, 4096, 4096, 2, 256, &p, &err), IMAGO_ERR_TOO_LARGE,
           "a 2^31-element activation is refused (%s)", err.msg);
    ok(strstr(err.msg, "smaller batch") != NULL, "the message says what to do");
    is_int(imago_cuda_plan_build(net, 0, 64, 64, 2, 256, &p, &err), IMAGO_ERR_INVALID,
           "an empty batch is invalid");
    is_int(imago_cuda_plan_build(net, 1, 64, 64, 2, 100, &p, &err), IMAGO_ERR_INVALID,
           "a non-power-of-two alignment is invalid");
    ok(p == NULL, "no plan is returned on errors");
    imago_net_free(net);
}

/* exact value of half bits h */
static double half_value(uint16_t h)
{
    int e = (h >> 10) & 31, m = h & 1023;
    double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(1024 + m, e - 25);
    return (h & 0x8000) ? -v : v;
}

static float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Every half and bf16 value converts to itself, every midpoint between two
 * neighbours rounds to the even one, and a nudge either side of it to the
 * nearer one; overflow, Inf and NaN. */
static void test_conversions(void)
{
    int self = 0, mid = 0, near = 0;
    for (uint32_t h = 0; h < 0x10000; h++) {
        if (((h >> 10) & 31) == 31)
            continue; /* Inf / NaN: below */
        float f = (float)half_value((uint16_t)h);
        self += imago_cuda_f32_to_f16(f) != h;
        uint32_t n = h + 1; /* the next half of the same sign */
        if ((n & 0x7fff) >= 0x7c00 || (n & 0x7fff) == 0)
            continue;
        double a = half_value((uint16_t)h), b = half_value((uint16_t)n);
        float m = (float)((a + b) / 2); /* exact in fp32 */
        uint16_t even = (h & 1) ? (uint16_t)n : (uint16_t)h;
        mid += imago_cuda_f32_to_f16(m) != even;
        float below = nextafterf(m, (float)a), above = nextafterf(m, (float)b);
        near += imago_cuda_f32_to_f16(below) != h || imago_cuda_f32_to_f16(above) != n;
    }
    is_int(self, 0, "f16: every half converts to itself");
    is_int(mid, 0, "f16: midpoints round to even");
    is_int(near, 0, "f16: off-midpoints round to the nearer");
    is_int(imago_cuda_f32_to_f16(65519.0f), 0x7bff, "f16: 65519 rounds to 65504");
    is_int(imago_cuda_f32_to_f16(65520.0f), 0x7c00, "f16: 65520 overflows to Inf");
    is_int(imago_cuda_f32_to_f16(-1e30f), 0xfc00, "f16: -1e30 is -Inf");
    is_int(imago_cuda_f32_to_f16(INFINITY), 0x7c00, "f16: Inf");
    ok((imago_cuda_f32_to_f16(NAN) & 0x7e00) == 0x7e00, "f16: NaN stays a quiet NaN");
    is_int(imago_cuda_f32_to_f16(ldexpf(1.0f, -25)), 0, "f16: 2^-25 (a tie) rounds to 0");
    is_int(imago_cuda_f32_to_f16(nextafterf(ldexpf(1.0f, -25), 1.0f)), 1,
           "f16: just above 2^-25 rounds to the smallest subnormal");

    int bself = 0, bmid = 0;
    for (uint32_t h = 0; h < 0x10000; h++) {
        if (((h >> 7) & 255) == 255)
            continue;
        bself += imago_cuda_f32_to_bf16(bits_f32(h << 16)) != h;
        if (((h + 1) >> 7 & 255) == 255 || ((h + 1) & 0x7fff) == 0)
            continue;
        uint16_t even = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;
        bmid += imago_cuda_f32_to_bf16(bits_f32((h << 16) | 0x8000)) != even;
        bmid += imago_cuda_f32_to_bf16(bits_f32((h << 16) | 0x7fff)) != h;
        bmid += imago_cuda_f32_to_bf16(bits_f32((h << 16) | 0x8001)) != h + 1;
    }
    is_int(bself, 0, "bf16: every bf16 converts to itself");
    is_int(bmid, 0, "bf16: ties to even, others to the nearer");
    is_int(imago_cuda_f32_to_bf16(INFINITY), 0x7f80, "bf16: Inf");
    is_int(imago_cuda_f32_to_bf16(bits_f32(0x7f7fffffu)), 0x7f80,
           "bf16: the largest float rounds to Inf");
    ok((imago_cuda_f32_to_bf16(NAN) & 0x7fc0) == 0x7fc0, "bf16: NaN stays a quiet NaN");
    ok((imago_cuda_f32_to_bf16(bits_f32(0x7f800001u)) & 0x7f80) == 0x7f80 &&
           (imago_cuda_f32_to_bf16(bits_f32(0x7f800001u)) & 0x7f) != 0,
       "bf16: a NaN with only low payload bits is not turned into Inf");
}

int main(void)
{
    test_conversions();
    check_net("resnet50", "gem", "torch", 2, 333, 517);
    check_net("resnet101", "agem", "torch", 32, 768, 1024);
    check_net("resnet101", "glam", "torch", 4, 768, 1024);
    check_net("resnet152", "gem", "torch", 1, 224, 224);
    check_net("mobilenet_v2", "gem", "torch", 8, 300, 401);
    check_net("mobilenet_v2", "gem", "tf_same", 8, 300, 400);
    test_tf_same();
    test_chain();
    test_errors();
    return tap_done();
}
