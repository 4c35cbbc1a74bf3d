/* Network descriptions: the ResNet backbones and the GeM / AGeM heads as op
 * lists (engine/net.h), the attention convolutions of the AP-GeM and GLAP
 * heads, the model-file validation they drive, and the tensor specs of
 * synthetic (demo) models. MobileNetV2 and GLAM slot in as further builders
 * next to build_resnet / build_agem.
 */
#include "net.h"

#include "glam.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct builder {
    imago_net *net;
    int cap_ops, cap_values;
} builder;

static int new_value(builder *b, int channels, int stride)
{
    imago_net *net = b->net;
    if (net->n_values == b->cap_values) {
        b->cap_values = b->cap_values ? 2 * b->cap_values : 64;
        net->channels = imago_xrealloc(net->channels, (size_t)b->cap_values * sizeof(int));
        net->stride = imago_xrealloc(net->stride, (size_t)b->cap_values * sizeof(int));
    }
    net->channels[net->n_values] = channels;
    net->stride[net->n_values] = stride;
    return net->n_values++;
}

static imago_net_op *new_op(builder *b, imago_net_op_kind kind, int in)
{
    imago_net *net = b->net;
    if (net->n_ops == b->cap_ops) {
        b->cap_ops = b->cap_ops ? 2 * b->cap_ops : 64;
        net->ops = imago_xrealloc(net->ops, (size_t)b->cap_ops * sizeof(*net->ops));
    }
    imago_net_op *op = &net->ops[net->n_ops++];
    memset(op, 0, sizeof(*op));
    op->kind = kind;
    op->in = in;
    op->in2 = -1;
    op->out = -1;
    op->dilation = 1;
    op->groups = 1;
    op->bn_gain = 1.0f;
    return op;
}

/* A convolution `weight` (+ BatchNorm `bn` when non-NULL) from value `in`;
 * returns the op so the caller can append post-ops, output value in op->out. */
static imago_net_op *conv(builder *b, int in, const char *weight, const char *bn, int cout,
                          int k, int stride, int pad, int has_bias)
{
    imago_net_op *op = new_op(b, IMAGO_NET_CONV, in);
    snprintf(op->weight, sizeof op->weight, "%s", weight);
    if (bn)
        snprintf(op->bn, sizeof op->bn, "%s", bn);
    op->cin = b->net->channels[in];
    op->cout = cout;
    op->k = k;
    op->stride = stride;
    op->pad = pad;
    op->has_bias = has_bias;
    int s = b->net->stride[in] * stride;
    op = &b->net->ops[b->net->n_ops - 1]; /* new_value may not move ops, but be explicit */
    op->out = new_value(b, cout, s);
    return &b->net->ops[b->net->n_ops - 1];
}

static void post_act(imago_net_op *op, imago_net_act act, float alpha, float beta)
{
    imago_net_post *p = &op->post[op->n_post++];
    p->kind = IMAGO_POST_ACT;
    p->act = act;
    p->alpha = alpha;
    p->beta = beta;
    p->value = -1;
}

static void post_value(imago_net_op *op, imago_net_post_kind kind, int value)
{
    imago_net_post *p = &op->post[op->n_post++];
    p->kind = kind;
    p->value = value;
}

/* torchvision Bottleneck (v1.5: stride on the 3x3). Returns the output value. */
static int bottleneck(builder *b, int x, const char *prefix, int planes, int stride, int downsample)
{
    char w[IMAGO_NET_NAME_MAX], bn[IMAGO_NET_NAME_MAX];
    snprintf(w, sizeof w, "%s.conv1", prefix);
    snprintf(bn, sizeof bn, "%s.bn1", prefix);
    imago_net_op *op = conv(b, x, w, bn, planes, 1, 1, 0, 0);
    post_act(op, IMAGO_ACT_RELU, 0, 0);
    int h1 = op->out;
    snprintf(w, sizeof w, "%s.conv2", prefix);
    snprintf(bn, sizeof bn, "%s.bn2", prefix);
    op = conv(b, h1, w, bn, planes, 3, stride, 1, 0);
    post_act(op, IMAGO_ACT_RELU, 0, 0);
    int h2 = op->out;
    int shortcut = x;
    if (downsample) {
        snprintf(w, sizeof w, "%s.downsample.0", prefix);
        snprintf(bn, sizeof bn, "%s.downsample.1", prefix);
        op = conv(b, x, w, bn, planes * 4, 1, stride, 0, 0);
        shortcut = op->out;
    }
    snprintf(w, sizeof w, "%s.conv3", prefix);
    snprintf(bn, sizeof bn, "%s.bn3", prefix);
    op = conv(b, h2, w, bn, planes * 4, 1, 1, 0, 0);
    op->bn_gain = 0.2f; /* synthetic init: keeps the residual stream O(1) */
    post_value(op, IMAGO_POST_SUM, shortcut);
    post_act(op, IMAGO_ACT_RELU, 0, 0);
    return op->out;
}

typedef struct resnet_outputs {
    int layer3;        /* X_{4,last} */
    int layer4[64];    /* outputs of the layer4 blocks */
    int n_layer4;
} resnet_outputs;

/* The ResNet stem and stages. When `stop_layer4` >= 0 the layer4 blocks from
 * that index on are not emitted (the AGeM builder interleaves them). */
static int build_resnet(builder *b, const int blocks[4], int x, resnet_outputs *o, int stop_layer4,
                        int last_stride)
{
    imago_net_op *op = conv(b, x, "backbone.conv1", "backbone.bn1", 64, 7, 2, 3, 0);
    post_act(op, IMAGO_ACT_RELU, 0, 0);
    int y = op->out;
    op = new_op(b, IMAGO_NET_MAXPOOL, y);
    op->k = 3;
    op->stride = 2;
    op->pad = 1;
    op->cin = op->cout = 64;
    op->out = new_value(b, 64, b->net->stride[y] * 2);
    y = b->net->ops[b->net->n_ops - 1].out;
    static const int planes[4] = {64, 128, 256, 512};
    for (int s = 0; s < 4; s++) {
        for (int i = 0; i < blocks[s]; i++) {
            if (s == 3 && stop_layer4 >= 0 && i >= stop_layer4)
                return y;
            char prefix[IMAGO_NET_NAME_MAX];
            snprintf(prefix, sizeof prefix, "backbone.layer%d.%d", s + 1, i);
            int st = i > 0 || s == 0 ? 1 : s == 3 ? last_stride : 2;
            y = bottleneck(b, y, prefix, planes[s], st, i == 0);
            if (s == 2)
                o->layer3 = y;
            if (s == 3)
                o->layer4[o->n_layer4++] = y;
        }
    }
    return y;
}

/* AGeM (docs/models.md) over a ResNet whose layer4 has three blocks. The op order
 * lets the attention products consume X_{5,1} before block 5.2 overwrites it
 * in place, and fuses the final X_{5,3} * (1 + A_{5,2}) into block 5.3's last
 * convolution as a post-op. */
static int build_agem(builder *b, const int blocks[4], int x)
{
    resnet_outputs o = {0};
    int y = build_resnet(b, blocks, x, &o, 1, 2); /* up to and including layer4.0 */
    int x51 = y;
    imago_net_op *op = conv(b, o.layer3, "agem.att1.0", "agem.att1_bn.0", 1024, 3, 2, 1, 0);
    post_act(op, IMAGO_ACT_RELU, 0, 0);
    op = conv(b, op->out, "agem.att1.1", "agem.att1_bn.1", 512, 3, 1, 1, 0);
    post_act(op, IMAGO_ACT_RELU, 0, 0);
    op = conv(b, op->out, "agem.att1.2", "agem.att1_bn.2", 512, 1, 1, 0, 0);
    post_act(op, IMAGO_ACT_RELU, 0, 0);
    op = conv(b, op->out, "agem.att1.3", NULL, 2048, 1, 1, 0, 1);
    post_act(op, IMAGO_ACT_SIGMOID, 0, 0); /* A_4 */
    post_value(op, IMAGO_POST_MUL, x51);   /* A_4 * X_{5,1} */
    op = conv(b, op->out, "agem.att2_1", NULL, 2048, 1, 1, 0, 1);
    post_act(op, IMAGO_ACT_SIGMOID, 0, 0);
    int a51 = op->out;
    int x52 = bottleneck(b, x51, "backbone.layer4.1", 512, 1, 0);
    op = new_op(b, IMAGO_NET_BINARY, a51);
    op->in2 = x52;
    op->binary_mul = 1;
    op->cin = op->cout = 2048;
    op->out = new_value(b, 2048, b->net->stride[x52]);
    int m2 = b->net->ops[b->net->n_ops - 1].out;
    op = conv(b, m2, "agem.att2_2", NULL, 2048, 1, 1, 0, 1);
    post_act(op, IMAGO_ACT_SIGMOID, 0, 0);
    post_act(op, IMAGO_ACT_LINEAR, 1.0f, 1.0f); /* 1 + A_{5,2} */
    int a52p1 = op->out;
    int x53 = bottleneck(b, x52, "backbone.layer4.2", 512, 1, 0);
    op = &b->net->ops[b->net->n_ops - 1];
    post_value(op, IMAGO_POST_MUL, a52p1); /* X_{5,3} + A_{5,2} X_{5,3} */
    return x53;
}

/* The AP-GeM attention on the backbone map F: conv1x1 (c -> c') + BN + ReLU,
 * conv1x1 (c' -> 1, bias) + sigmoid. c' is the demo width here; imago_net_bind
 * sets the model's from apgem.att.0.weight. Returns the attention value. */
#define APGEM_DEMO_WIDTH 512
#define GLAP_DEMO_MAPS 8
#define GLAP_DEMO_DIM 512

static int build_apgem(builder *b, int feat)
{
    imago_net_op *op =
        conv(b, feat, "apgem.att.0", "apgem.att_bn.0", APGEM_DEMO_WIDTH, 1, 1, 0, 0);
    post_act(op, IMAGO_ACT_RELU, 0, 0);
    op = conv(b, op->out, "apgem.att.1", NULL, 1, 1, 1, 0, 1);
    post_act(op, IMAGO_ACT_SIGMOID, 0, 0);
    return op->out;
}

/* The GLAP logits S = conv1x1 (c -> K, bias) of F (softmax in the pooling). */
static int build_glap(builder *b, int feat)
{
    return conv(b, feat, "glap.att", NULL, GLAP_DEMO_MAPS, 1, 1, 0, 1)->out;
}

int imago_net_build(const imago_model_config *cfg, imago_net **out, imago_error *err)
{
    static const int r50[4] = {3, 4, 6, 3}, r101[4] = {3, 4, 23, 3}, r152[4] = {3, 8, 36, 3};
    const int *blocks = NULL;
    if (strcmp(cfg->backbone, "resnet50") == 0)
        blocks = r50;
    else if (strcmp(cfg->backbone, "resnet101") == 0)
        blocks = r101;
    else if (strcmp(cfg->backbone, "resnet152") == 0)
        blocks = r152;
    else if (strcmp(cfg->backbone, "mobilenet_v2") != 0) /* net_mobilenet.c */
        return imago_error_set(err, IMAGO_ERR_UNSUPPORTED,
                               "backbone '%s' is not supported by this engine build "
                               "(supported: resnet50, resnet101, resnet152, mobilenet_v2)",
                               cfg->backbone);

    imago_net *net = imago_xcalloc(1, sizeof *net);
    builder b = {.net = net};
    net->input = new_value(&b, 3, 1);
    int feat;
    int glam = strcmp(cfg->head, "glam") == 0; /* on either backbone (engine/glam.c) */
    int apgem = strcmp(cfg->head, "apgem") == 0, glap = strcmp(cfg->head, "glap") == 0;
    int plain = strcmp(cfg->head, "gem") == 0 || glam || apgem || glap;
    int last_stride = cfg->last_stride == 1 ? 1 : 2;
    net->att = -1;
    if (last_stride != 2 && (!blocks || strcmp(cfg->head, "agem") == 0)) {
        imago_net_free(net);
        return imago_error_set(err, IMAGO_ERR_UNSUPPORTED,
                               "last_stride 1 is for ResNet backbones with head gem, glam, "
                               "apgem or glap (not %s + %s)",
                               cfg->backbone, cfg->head);
    }
    if (!blocks && plain) {
        imago_net_build_mobilenet_v2(net, net->input, strcmp(cfg->padding, "tf_same") == 0,
                                     &feat, err);
        b.cap_ops = net->n_ops; /* it grows the arrays to their exact sizes */
        b.cap_values = net->n_values;
    } else if (blocks && plain) {
        resnet_outputs o = {0};
        feat = build_resnet(&b, blocks, net->input, &o, -1, last_stride);
    } else if (blocks && strcmp(cfg->head, "agem") == 0) {
        feat = build_agem(&b, blocks, net->input);
    } else {
        imago_net_free(net);
        return imago_error_set(err, IMAGO_ERR_UNSUPPORTED,
                               "head '%s' is not supported for backbone %s "
                               "(supported: gem, agem, glam, apgem, glap)",
                               cfg->head, cfg->backbone);
    }
    net->output = feat;
    net->feat_dim = net->channels[feat];
    if (glam) { /* the FC width; imago_net_bind reads the real one from the shapes */
        net->head_glam = 1;
        net->feat_dim = strcmp(cfg->whitening, "none") == 0 && cfg->dim > 0 ? cfg->dim : 512;
    }
    if (apgem) {
        net->head_apgem = 1;
        net->att = build_apgem(&b, feat);
    }
    if (glap) { /* with glap.fc of the demo width; imago_net_bind reads the model's */
        net->head_glap = 1;
        net->att = build_glap(&b, feat);
        int d = strcmp(cfg->whitening, "none") == 0 && cfg->dim > 0 ? cfg->dim : GLAP_DEMO_DIM;
        net->glap_fc_out = d == net->channels[feat] ? 0 : d;
        net->feat_dim = d;
    }
    net->normalize_pooled = cfg->normalize_pooled;

    /* GLAM, AP-GeM and GLAP pool with GeM */
    if (glam || apgem || glap || strcmp(cfg->pooling, "gem") == 0 || cfg->pooling[0] == 0)
        net->pool = IMAGO_POOL_GEM;
    else if (strcmp(cfg->pooling, "spoc") == 0)
        net->pool = IMAGO_POOL_SPOC;
    else if (strcmp(cfg->pooling, "mac") == 0)
        net->pool = IMAGO_POOL_MAC;
    else {
        imago_net_free(net);
        return imago_error_set(err, IMAGO_ERR_UNSUPPORTED, "pooling '%s' is not supported",
                               cfg->pooling);
    }
    net->gem_p = 3.0f;
    net->ms_p = 1.0f;

    char st[IMAGO_MODEL_MAX_WHITEN][4];
    int ns = imago_model_whitening_stages(cfg->whitening, st, IMAGO_MODEL_MAX_WHITEN);
    for (int i = 0; i < ns; i++) {
        if (strcmp(st[i], "lw") != 0 && strcmp(st[i], "fc") != 0)
            ns = -1;
        else
            net->whiten[i] = st[i][0] == 'l' ? IMAGO_WHITEN_LW : IMAGO_WHITEN_FC;
    }
    if (ns < 0) {
        imago_net_free(net);
        return imago_error_set(err, IMAGO_ERR_UNSUPPORTED, "whitening '%s' is not supported",
                               cfg->whitening);
    }
    net->n_whiten = ns;
    net->dim = ns > 0 && cfg->dim > 0 ? cfg->dim : net->feat_dim;
    for (int i = 0; i < ns; i++) /* inner widths: read from the tensors at bind */
        net->whiten_dim[i] = i == ns - 1 ? net->dim : net->feat_dim;
    if (ns == 0 && cfg->dim > 0 && cfg->dim != net->feat_dim) {
        int d = net->feat_dim;
        imago_net_free(net);
        return imago_error_set(err, IMAGO_ERR_FORMAT,
                               "config dim %d does not match the %s feature width %d "
                               "(no whitening)",
                               cfg->dim, cfg->backbone, d);
    }
    *out = net;
    return 0;
}

void imago_net_free(imago_net *net)
{
    if (!net)
        return;
    free(net->ops);
    free(net->channels);
    free(net->stride);
    imago_glam_free(net->glam);
    free(net->glap_fc_w);
    free(net->glap_fc_b);
    free(net);
}

static int check(const imago_model *m, const char *prefix, const char *suffix, int ndim,
                 const int64_t *dims, imago_tensor *t, imago_error *err)
{
    char name[IMAGO_NET_NAME_MAX + 32];
    snprintf(name, sizeof name, "%s%s", prefix, suffix);
    imago_tensor tmp;
    return imago_model_tensor_shape(m, name, ndim, dims, t ? t : &tmp, err);
}

/* The widths the AP-GeM (c') and GLAP (K) attention convolutions take from
 * the model's weight shapes. */
static int bind_att_widths(imago_net *net, const imago_model *m, imago_error *err)
{
    const char *name = net->head_apgem ? "apgem.att.0.weight" : "glap.att.weight";
    int c = net->channels[net->output], rc;
    int64_t wd[4] = {-1, c, 1, 1};
    imago_tensor t;
    if ((rc = imago_model_tensor_shape(m, name, 4, wd, &t, err)))
        return rc;
    if (t.dims[0] < 1 || t.dims[0] > 65536)
        return imago_error_set(err, IMAGO_ERR_FORMAT, "tensor '%s': %lld output channels", name,
                               (long long)t.dims[0]);
    int w = (int)t.dims[0];
    for (int i = 0; i < net->n_ops; i++) {
        imago_net_op *op = &net->ops[i];
        if (op->kind != IMAGO_NET_CONV)
            continue;
        if (strcmp(op->weight, net->head_apgem ? "apgem.att.0" : "glap.att") == 0) {
            op->cout = w;
            net->channels[op->out] = w;
        } else if (strcmp(op->weight, "apgem.att.1") == 0) {
            op->cin = w;
        }
    }
    return 0;
}

/* GLAP's optional embedding glap.fc [D, c] + bias [D]. */
static int bind_glap_fc(imago_net *net, const imago_model *m, imago_error *err)
{
    int c = net->channels[net->output], rc;
    free(net->glap_fc_w);
    free(net->glap_fc_b);
    net->glap_fc_w = net->glap_fc_b = NULL;
    net->glap_fc_out = 0;
    net->feat_dim = c;
    if (!imago_model_has_tensor(m, "glap.fc.weight"))
        return 0;
    imago_tensor w, b;
    int64_t wd[2] = {-1, c};
    if ((rc = imago_model_tensor_shape(m, "glap.fc.weight", 2, wd, &w, err)))
        return rc;
    int64_t bd[1] = {w.dims[0]};
    if ((rc = imago_model_tensor_shape(m, "glap.fc.bias", 1, bd, &b, err)))
        return rc;
    if (w.dims[0] < 1 || w.dims[0] > 65536)
        return imago_error_set(err, IMAGO_ERR_FORMAT, "tensor 'glap.fc.weight': %lld outputs",
                               (long long)w.dims[0]);
    net->glap_fc_out = (int)w.dims[0];
    net->glap_fc_w = imago_xmalloc((size_t)w.numel * sizeof(float));
    net->glap_fc_b = imago_xmalloc((size_t)b.numel * sizeof(float));
    memcpy(net->glap_fc_w, w.data, (size_t)w.numel * sizeof(float));
    memcpy(net->glap_fc_b, b.data, (size_t)b.numel * sizeof(float));
    net->feat_dim = net->glap_fc_out;
    return 0;
}

int imago_net_bind(imago_net *net, const imago_model *m, imago_error *err)
{
    int rc;
    if ((net->head_apgem || net->head_glap) && (rc = bind_att_widths(net, m, err)))
        return rc;
    for (int i = 0; i < net->n_ops; i++) {
        const imago_net_op *op = &net->ops[i];
        if (op->kind != IMAGO_NET_CONV)
            continue;
        int64_t wd[4] = {op->cout, op->cin / op->groups, op->k, op->k};
        if ((rc = check(m, op->weight, ".weight", 4, wd, NULL, err)))
            return rc;
        int64_t cd[1] = {op->cout};
        if (op->has_bias && (rc = check(m, op->weight, ".bias", 1, cd, NULL, err)))
            return rc;
        if (op->bn[0]) {
            static const char *const sfx[4] = {".weight", ".bias", ".running_mean",
                                               ".running_var"};
            for (int j = 0; j < 4; j++)
                if ((rc = check(m, op->bn, sfx[j], 1, cd, NULL, err)))
                    return rc;
        }
    }
    if (net->head_glam) { /* engine/glam.c checks every glam.* tensor */
        imago_glam_free(net->glam);
        net->glam = NULL;
        if ((rc = imago_glam_new(m, net->channels[net->output], &net->glam, err)))
            return rc;
        int od = imago_glam_out_dim(net->glam);
        if (net->n_whiten == 0 && od != net->dim)
            return imago_error_set(err, IMAGO_ERR_FORMAT,
                                   "config dim %d does not match the GLAM head's FC width %d "
                                   "(tensor 'glam.fc.weight')",
                                   net->dim, od);
        net->feat_dim = od;
    }
    if (net->head_glap) {
        if ((rc = bind_glap_fc(net, m, err)))
            return rc;
        if (net->n_whiten == 0 && net->feat_dim != net->dim)
            return imago_error_set(err, IMAGO_ERR_FORMAT,
                                   "config dim %d does not match the GLAP head's width %d "
                                   "(tensor 'glap.fc.weight', or the %d channels without it)",
                                   net->dim, net->feat_dim, net->channels[net->output]);
    }
    if (net->pool == IMAGO_POOL_GEM) {
        imago_tensor p;
        int64_t pd[1] = {1};
        if ((rc = check(m, "pool.p", "", 1, pd, &p, err)))
            return rc;
        if (!(p.data[0] >= 1.0f && p.data[0] <= 64.0f))
            return imago_error_set(err, IMAGO_ERR_FORMAT,
                                   "tensor 'pool.p' = %g is outside [1, 64]", p.data[0]);
        net->gem_p = p.data[0];
    }
    /* each stage's output width from its matrix; the last one must be dim */
    int has_fc = 0;
    for (int i = 0; i < net->n_whiten; i++) {
        int lw = net->whiten[i] == IMAGO_WHITEN_LW;
        int64_t D = i ? net->whiten_dim[i - 1] : net->feat_dim;
        int64_t pd[2] = {i == net->n_whiten - 1 ? net->dim : -1, D};
        imago_tensor P;
        if ((rc = check(m, lw ? "whiten.P" : "whiten.weight", "", 2, pd, &P, err)))
            return rc;
        if (P.dims[0] < 1 || P.dims[0] > 65536)
            return imago_error_set(err, IMAGO_ERR_FORMAT, "tensor '%s': %lld rows",
                                   lw ? "whiten.P" : "whiten.weight", (long long)P.dims[0]);
        int64_t vd[1] = {lw ? D : P.dims[0]};
        if ((rc = check(m, lw ? "whiten.m" : "whiten.bias", "", 1, vd, NULL, err)))
            return rc;
        net->whiten_dim[i] = (int)P.dims[0];
        has_fc |= !lw;
    }
    /* multi-scale uses the learned p for GeM, 1 with an FC (an FC whitening
     * stage, the GLAM and GLAP heads) or other poolings (tools/reference.py,
     * multiscale_p) */
    net->ms_p = (net->pool == IMAGO_POOL_GEM && !has_fc) ? net->gem_p : 1.0f;
    if (net->head_glam || net->head_glap)
        net->ms_p = 1.0f;
    return 0;
}

/* Specs point at names stored after the array in the same allocation. */
typedef struct spec_writer {
    imago_tensor_spec *specs;
    char *names;
    int n;
    size_t used;
} spec_writer;

static void add_spec(spec_writer *w, const char *prefix, const char *suffix, int ndim,
                     const int64_t *dims, imago_init_kind init, float gain)
{
    if (w->specs) {
        imago_tensor_spec *s = &w->specs[w->n];
        char *name = w->names + w->used;
        sprintf(name, "%s%s", prefix, suffix);
        s->name = name;
        s->ndim = ndim;
        for (int i = 0; i < ndim; i++)
            s->dims[i] = dims[i];
        s->init = init;
        s->gain = gain;
    }
    w->n++;
    w->used += strlen(prefix) + strlen(suffix) + 1;
}

static void write_specs(const imago_net *net, spec_writer *w)
{
    for (int i = 0; i < net->n_ops; i++) {
        const imago_net_op *op = &net->ops[i];
        if (op->kind != IMAGO_NET_CONV)
            continue;
        int64_t wd[4] = {op->cout, op->cin / op->groups, op->k, op->k};
        int64_t cd[1] = {op->cout};
        /* Sigmoid gates: a smaller gain keeps them away from saturation. */
        int gate = op->n_post > 0 && op->post[0].kind == IMAGO_POST_ACT &&
                   op->post[0].act == IMAGO_ACT_SIGMOID;
        add_spec(w, op->weight, ".weight", 4, wd, IMAGO_INIT_CONV_HE, gate ? 0.5f : 1.0f);
        if (op->has_bias)
            add_spec(w, op->weight, ".bias", 1, cd, IMAGO_INIT_ZEROS, 0);
        if (op->bn[0]) {
            add_spec(w, op->bn, ".weight", 1, cd, IMAGO_INIT_CONST, op->bn_gain);
            add_spec(w, op->bn, ".bias", 1, cd, IMAGO_INIT_ZEROS, 0);
            add_spec(w, op->bn, ".running_mean", 1, cd, IMAGO_INIT_ZEROS, 0);
            add_spec(w, op->bn, ".running_var", 1, cd, IMAGO_INIT_ONES, 1.0f);
        }
    }
    if (net->head_glam) { /* engine/glam.c; widths c' = 256 as in tools/reference.py */
        imago_tensor_spec gs[IMAGO_GLAM_MAX_SPECS];
        int ng = imago_glam_specs(net->channels[net->output], 256, 256, net->feat_dim, gs);
        for (int i = 0; i < ng; i++)
            add_spec(w, gs[i].name, "", gs[i].ndim, gs[i].dims, gs[i].init, gs[i].gain);
    }
    if (net->head_glap && net->glap_fc_out > 0) {
        int64_t fd[2] = {net->glap_fc_out, net->channels[net->output]}, fb[1] = {fd[0]};
        add_spec(w, "glap.fc.weight", "", 2, fd, IMAGO_INIT_CONV_HE, 1.0f);
        add_spec(w, "glap.fc.bias", "", 1, fb, IMAGO_INIT_ZEROS, 0);
    }
    int64_t one[1] = {1};
    if (net->pool == IMAGO_POOL_GEM)
        add_spec(w, "pool.p", "", 1, one, IMAGO_INIT_CONST, 3.0f);
    for (int i = 0; i < net->n_whiten; i++) {
        int64_t D = i ? net->whiten_dim[i - 1] : net->feat_dim, Dp = net->whiten_dim[i];
        int64_t md[2] = {Dp, D}, vd[1] = {D}, bd[1] = {Dp};
        if (net->whiten[i] == IMAGO_WHITEN_LW) {
            add_spec(w, "whiten.P", "", 2, md, IMAGO_INIT_IDENTITY, 1.0f);
            add_spec(w, "whiten.m", "", 1, vd, IMAGO_INIT_ZEROS, 0);
        } else {
            add_spec(w, "whiten.weight", "", 2, md, IMAGO_INIT_IDENTITY, 1.0f);
            add_spec(w, "whiten.bias", "", 1, bd, IMAGO_INIT_ZEROS, 0);
        }
    }
}

int imago_net_specs(const imago_net *net, imago_tensor_spec **specs, int *n, imago_error *err)
{
    (void)err;
    spec_writer w = {0};
    write_specs(net, &w); /* count */
    size_t bytes = (size_t)w.n * sizeof(imago_tensor_spec) + w.used;
    char *mem = imago_xcalloc(1, bytes);
    spec_writer w2 = {.specs = (imago_tensor_spec *)mem,
                      .names = mem + (size_t)w.n * sizeof(imago_tensor_spec)};
    write_specs(net, &w2);
    *specs = w2.specs;
    *n = w2.n;
    return 0;
}

int imago_net_out_size(int in, int k, int stride, int pad_l, int pad_r, int dilation)
{
    int ek = (k - 1) * dilation + 1;
    int span = in + pad_l + pad_r - ek;
    if (span < 0)
        return 0;
    return span / stride + 1;
}

void imago_net_same_pad(int in, int k, int stride, int dilation, int *pad_l, int *pad_r)
{
    int ek = (k - 1) * dilation + 1;
    int total = in % stride == 0 ? ek - stride : ek - in % stride;
    if (total < 0)
        total = 0;
    *pad_l = total / 2;
    *pad_r = total - total / 2;
}

int imago_net_shapes(const imago_net *net, int h, int w, int *hs, int *ws, imago_error *err)
{
    for (int v = 0; v < net->n_values; v++)
        hs[v] = ws[v] = -1;
    hs[net->input] = h;
    ws[net->input] = w;
    for (int i = 0; i < net->n_ops; i++) {
        const imago_net_op *op = &net->ops[i];
        int ih = hs[op->in], iw = ws[op->in];
        int oh = ih, ow = iw;
        if (op->kind == IMAGO_NET_CONV || op->kind == IMAGO_NET_MAXPOOL) {
            int d = op->kind == IMAGO_NET_CONV ? op->dilation : 1;
            int ph0 = op->pad, ph1 = op->pad, pw0 = op->pad, pw1 = op->pad;
            if (op->tf_same) {
                imago_net_same_pad(ih, op->k, op->stride, d, &ph0, &ph1);
                imago_net_same_pad(iw, op->k, op->stride, d, &pw0, &pw1);
            }
            oh = imago_net_out_size(ih, op->k, op->stride, ph0, ph1, d);
            ow = imago_net_out_size(iw, op->k, op->stride, pw0, pw1, d);
        } else if (op->kind == IMAGO_NET_BINARY) {
            if (hs[op->in2] != ih || ws[op->in2] != iw)
                return imago_error_set(err, IMAGO_ERR_INTERNAL,
                                       "network op %d: operand shapes differ", i);
        }
        for (int j = 0; j < op->n_post; j++) {
            int v = op->post[j].value;
            if (op->post[j].kind != IMAGO_POST_ACT && (hs[v] != oh || ws[v] != ow))
                return imago_error_set(err, IMAGO_ERR_INTERNAL,
                                       "network op %d (%s): post-op operand is %dx%d, "
                                       "output %dx%d",
                                       i, op->weight, hs[v], ws[v], oh, ow);
        }
        if (oh < 1 || ow < 1)
            return imago_error_set(err, IMAGO_ERR_INVALID,
                                   "input %dx%d is too small for the network", w, h);
        hs[op->out] = oh;
        ws[op->out] = ow;
    }
    return 0;
}
