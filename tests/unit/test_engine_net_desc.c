/* Unit tests for engine/net.c: the network descriptions (op counts, shapes,
 * fused post-ops), the tensor specs of synthetic models, and model-file
 * validation errors that name the tensor. */
#include "engine/model.h"
#include "engine/net.h"
#include "tap.h"

#include <stdlib.h>
#include <string.h>

static imago_model_config config(const char *backbone, const char *head, const char *whiten)
{
    imago_model_config cfg;
    imago_model_config_default(&cfg);
    snprintf(cfg.name, sizeof cfg.name, "test-%s-%s", backbone, head);
    snprintf(cfg.backbone, sizeof cfg.backbone, "%s", backbone);
    snprintf(cfg.head, sizeof cfg.head, "%s", head);
    snprintf(cfg.whitening, sizeof cfg.whitening, "%s", whiten);
    cfg.dim = 2048;
    return cfg;
}

static int count_kind(const imago_net *net, imago_net_op_kind kind)
{
    int n = 0;
    for (int i = 0; i < net->n_ops; i++)
        n += net->ops[i].kind == kind;
    return n;
}

static const imago_net_op *find_op(const imago_net *net, const char *weight)
{
    for (int i = 0; i < net->n_ops; i++)
        if (strcmp(net->ops[i].weight, weight) == 0)
            return &net->ops[i];
    return NULL;
}

static const imago_tensor_spec *find_spec(const imago_tensor_spec *s, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (strcmp(s[i].name, name) == 0)
            return &s[i];
    return NULL;
}

static void test_counts(void)
{
    static const struct {
        const char *backbone, *head;
        int convs, binary;
    } cases[] = {
        {"resnet50", "gem", 53, 0},   {"resnet101", "gem", 104, 0},
        {"resnet152", "gem", 155, 0}, {"resnet50", "agem", 59, 1},
        {"resnet101", "agem", 110, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        imago_model_config cfg = config(cases[i].backbone, cases[i].head, "none");
        imago_net *net = NULL;
        imago_error err;
        imago_error_clear(&err);
        int rc = imago_net_build(&cfg, &net, &err);
        is_int(rc, 0, "%s-%s builds (%s)", cases[i].backbone, cases[i].head, err.msg);
        if (rc)
            continue;
        is_int(count_kind(net, IMAGO_NET_CONV), cases[i].convs, "%s-%s: convolutions",
               cases[i].backbone, cases[i].head);
        is_int(count_kind(net, IMAGO_NET_MAXPOOL), 1, "%s-%s: one max pool", cases[i].backbone,
               cases[i].head);
        is_int(count_kind(net, IMAGO_NET_BINARY), cases[i].binary, "%s-%s: binary ops",
               cases[i].backbone, cases[i].head);
        is_int(net->feat_dim, 2048, "%s-%s: 2048 features", cases[i].backbone, cases[i].head);
        is_int(net->stride[net->output], 32, "%s-%s: output stride 32", cases[i].backbone,
               cases[i].head);
        imago_net_free(net);
    }
}

static void test_resnet_structure(void)
{
    imago_model_config cfg = config("resnet50", "gem", "none");
    imago_net *net = NULL;
    if (imago_net_build(&cfg, &net, NULL) != 0) {
        ok(0, "resnet50 builds");
        return;
    }
    const imago_net_op *c1 = find_op(net, "backbone.conv1");
    ok(c1 && c1->k == 7 && c1->stride == 2 && c1->pad == 3 && c1->cin == 3 && c1->cout == 64,
       "stem conv 7x7/2 p3 3->64");
    ok(c1 && strcmp(c1->bn, "backbone.bn1") == 0 && c1->n_post == 1 &&
           c1->post[0].act == IMAGO_ACT_RELU,
       "stem BN + ReLU fused");
    const imago_net_op *c2 = find_op(net, "backbone.layer2.0.conv2");
    ok(c2 && c2->stride == 2 && c2->k == 3, "v1.5: the stride sits on the 3x3");
    const imago_net_op *ds = find_op(net, "backbone.layer3.0.downsample.0");
    ok(ds && ds->k == 1 && ds->stride == 2 && ds->cout == 1024 &&
           strcmp(ds->bn, "backbone.layer3.0.downsample.1") == 0,
       "downsample 1x1/2 + BN");
    ok(!find_op(net, "backbone.layer3.1.downsample.0"), "only the first block downsamples");
    const imago_net_op *c3 = find_op(net, "backbone.layer4.2.conv3");
    ok(c3 && c3->n_post == 2 && c3->post[0].kind == IMAGO_POST_SUM &&
           c3->post[1].kind == IMAGO_POST_ACT && c3->post[1].act == IMAGO_ACT_RELU,
       "residual add then ReLU fused into conv3");
    ok(c3 && c3->out == net->output, "the last block is the pooled feature map");

    int *hs = calloc((size_t)net->n_values * 2, sizeof(int)), *ws = hs + net->n_values;
    imago_error err;
    imago_error_clear(&err);
    is_int(imago_net_shapes(net, 97, 203, hs, ws, &err), 0, "shapes of 97x203");
    is_int(hs[net->output], 4, "97 -> 4 (five ceil-halvings)");
    is_int(ws[net->output], 7, "203 -> 7");
    is_int(imago_net_shapes(net, 768, 1024, hs, ws, &err), 0, "shapes of 1024x768");
    is_int(hs[net->output], 24, "768 -> 24");
    is_int(ws[net->output], 32, "1024 -> 32");
    is_int(imago_net_shapes(net, 1, 1, hs, ws, &err), 0, "a 1x1 input still has a 1x1 output");
    is_int(hs[net->output], 1, "1 -> 1");
    free(hs);
    imago_net_free(net);
}

static void test_agem_structure(void)
{
    imago_model_config cfg = config("resnet101", "agem", "lw");
    imago_net *net = NULL;
    if (imago_net_build(&cfg, &net, NULL) != 0) {
        ok(0, "resnet101-agem builds");
        return;
    }
    const imago_net_op *a0 = find_op(net, "agem.att1.0");
    const imago_net_op *l3 = find_op(net, "backbone.layer3.22.conv3");
    ok(a0 && l3 && a0->in == l3->out && a0->stride == 2 && a0->k == 3 && a0->cout == 1024,
       "Att1 starts from X_{4,23} with a 3x3/2 conv");
    const imago_net_op *a3 = find_op(net, "agem.att1.3");
    const imago_net_op *x51 = find_op(net, "backbone.layer4.0.conv3");
    ok(a3 && x51 && a3->has_bias && !a3->bn[0] && a3->n_post == 2 &&
           a3->post[0].act == IMAGO_ACT_SIGMOID && a3->post[1].kind == IMAGO_POST_MUL &&
           a3->post[1].value == x51->out,
       "A_4 = sigmoid(conv) multiplied by X_{5,1} as post-ops");
    const imago_net_op *x53 = find_op(net, "backbone.layer4.2.conv3");
    const imago_net_op *a22 = find_op(net, "agem.att2_2");
    ok(a22 && a22->n_post == 2 && a22->post[1].act == IMAGO_ACT_LINEAR &&
           a22->post[1].alpha == 1.0f && a22->post[1].beta == 1.0f,
       "att2_2: sigmoid then 1 + A");
    ok(x53 && a22 && x53->n_post == 3 && x53->post[2].kind == IMAGO_POST_MUL &&
           x53->post[2].value == a22->out && x53->out == net->output,
       "X = X_{5,3} (1 + A_{5,2}) fused into block 5.3");
    /* X_{5,1} must be read by the attention before block 5.2 overwrites it */
    int idx_a3 = (int)(a3 - net->ops), idx_x52 = (int)(find_op(net, "backbone.layer4.1.conv3") - net->ops);
    ok(idx_a3 < idx_x52, "attention consumes X_{5,1} before block 5.2");
    is_int(net->n_whiten == 1 ? (int)net->whiten[0] : -1, IMAGO_WHITEN_LW, "lw whitening");
    imago_net_free(net);
}

static void test_errors(void)
{
    imago_error err;
    imago_net *net = NULL;
    imago_model_config cfg = config("vgg16", "gem", "none");
    imago_error_clear(&err);
    is_int(imago_net_build(&cfg, &net, &err), IMAGO_ERR_UNSUPPORTED, "unknown backbone refused");
    ok(strstr(err.msg, "vgg16") != NULL, "message names the backbone: %s", err.msg);
    cfg = config("mobilenet_v2", "agem", "none"); /* glam is built now (engine/glam.c) */
    imago_error_clear(&err);
    is_int(imago_net_build(&cfg, &net, &err), IMAGO_ERR_UNSUPPORTED,
           "agem on MobileNetV2 refused");
    ok(strstr(err.msg, "agem") != NULL, "message names the head: %s", err.msg);
    cfg = config("resnet50", "gem", "none");
    cfg.dim = 512;
    imago_error_clear(&err);
    is_int(imago_net_build(&cfg, &net, &err), IMAGO_ERR_FORMAT,
           "dim 512 without whitening is inconsistent");
}

static void test_same_pad(void)
{
    int a, b;
    imago_net_same_pad(224, 3, 2, 1, &a, &b);
    ok(a == 0 && b == 1, "tf_same 224 k3 s2: 0 top, 1 bottom");
    imago_net_same_pad(225, 3, 2, 1, &a, &b);
    ok(a == 1 && b == 1, "tf_same 225 k3 s2: 1, 1");
    imago_net_same_pad(7, 3, 1, 1, &a, &b);
    ok(a == 1 && b == 1, "tf_same stride 1: 1, 1");
    is_int(imago_net_out_size(224, 3, 2, 0, 1, 1), 112, "224 -> 112 with SAME padding");
    is_int(imago_net_out_size(49, 3, 2, 1, 1, 1), 25, "maxpool 49 -> 25");
}

static void test_specs_and_bind(void)
{
    imago_model_config cfg = config("resnet50", "agem", "lw");
    imago_net *net = NULL;
    imago_error err;
    imago_error_clear(&err);
    if (imago_net_build(&cfg, &net, &err) != 0) {
        ok(0, "resnet50-agem builds: %s", err.msg);
        return;
    }
    imago_tensor_spec *specs = NULL;
    int n = 0;
    is_int(imago_net_specs(net, &specs, &n, &err), 0, "specs");
    /* 53 backbone convs x (weight + 4 BN) + att1.0-2 (weight + 4 BN) +
     * att1.3, att2_1, att2_2 (weight + bias) + pool.p + whiten.P + whiten.m */
    is_int(n, 53 * 5 + 3 * 5 + 3 * 2 + 1 + 2, "spec count");
    int dup = 0;
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            dup += strcmp(specs[i].name, specs[j].name) == 0;
    is_int(dup, 0, "spec names are unique");
    const imago_tensor_spec *s = find_spec(specs, n, "backbone.layer1.0.bn3.weight");
    ok(s && s->init == IMAGO_INIT_CONST && s->gain == 0.2f,
       "last BN of a residual branch starts at gamma 0.2");
    s = find_spec(specs, n, "backbone.layer1.0.bn2.weight");
    ok(s && s->init == IMAGO_INIT_CONST && s->gain == 1.0f, "other BN gamma 1");
    s = find_spec(specs, n, "backbone.layer3.2.conv2.weight");
    ok(s && s->init == IMAGO_INIT_CONV_HE && s->ndim == 4 && s->dims[0] == 256 &&
           s->dims[1] == 256 && s->dims[2] == 3,
       "He-normal 3x3 conv 256x256x3x3");
    s = find_spec(specs, n, "backbone.layer2.0.downsample.1.running_var");
    ok(s && s->init == IMAGO_INIT_ONES && s->dims[0] == 512, "BN running_var = 1");
    s = find_spec(specs, n, "agem.att1.3.bias");
    ok(s && s->dims[0] == 2048, "agem.att1.3 has a bias");
    s = find_spec(specs, n, "whiten.P");
    ok(s && s->init == IMAGO_INIT_IDENTITY && s->ndim == 2, "identity whitening P");
    s = find_spec(specs, n, "pool.p");
    ok(s && s->init == IMAGO_INIT_CONST && s->gain == 3.0f, "GeM p = 3");

    imago_model *m = NULL;
    cfg.dim = 2048;
    imago_error_clear(&err);
    int rc = imago_model_synthetic(&cfg, specs, n, 7, &m, &err);
    is_int(rc, 0, "synthetic model from the specs (%s)", err.msg);
    if (rc == 0) {
        imago_error_clear(&err);
        is_int(imago_net_bind(net, m, &err), 0, "binds (%s)", err.msg);
        is_close(net->gem_p, 3.0, 1e-6, "p read from pool.p");
        is_close(net->ms_p, 3.0, 1e-6, "multi-scale exponent = p for gem + lw");
        imago_model_free(m);
    }

    /* a missing tensor: the error names it */
    imago_tensor_spec *cut = malloc((size_t)n * sizeof *cut);
    int k = 0;
    for (int i = 0; i < n; i++)
        if (strcmp(specs[i].name, "backbone.layer3.5.bn2.running_var") != 0)
            cut[k++] = specs[i];
    is_int(k, n - 1, "removed one spec");
    m = NULL;
    if (imago_model_synthetic(&cfg, cut, k, 7, &m, NULL) == 0) {
        imago_error_clear(&err);
        is_int(imago_net_bind(net, m, &err), IMAGO_ERR_NOT_FOUND, "missing tensor refused");
        ok(strstr(err.msg, "backbone.layer3.5.bn2.running_var") != NULL, "names it: %s",
           err.msg);
        imago_model_free(m);
    } else {
        ok(0, "synthetic model without one tensor");
    }

    /* a wrong shape: the error names the tensor */
    memcpy(cut, specs, (size_t)n * sizeof *cut);
    for (int i = 0; i < n; i++)
        if (strcmp(cut[i].name, "backbone.layer2.0.conv2.weight") == 0)
            cut[i].dims[1] = 64;
    m = NULL;
    if (imago_model_synthetic(&cfg, cut, n, 7, &m, NULL) == 0) {
        imago_error_clear(&err);
        is_int(imago_net_bind(net, m, &err), IMAGO_ERR_FORMAT, "wrong shape refused");
        ok(strstr(err.msg, "backbone.layer2.0.conv2.weight") != NULL, "names it: %s", err.msg);
        imago_model_free(m);
    } else {
        ok(0, "synthetic model with a wrong shape");
    }

    /* a GeM p out of range */
    memcpy(cut, specs, (size_t)n * sizeof *cut);
    for (int i = 0; i < n; i++)
        if (strcmp(cut[i].name, "pool.p") == 0)
            cut[i].gain = 0.25f;
    m = NULL;
    if (imago_model_synthetic(&cfg, cut, n, 7, &m, NULL) == 0) {
        imago_error_clear(&err);
        is_int(imago_net_bind(net, m, &err), IMAGO_ERR_FORMAT, "p = 0.25 refused");
        ok(strstr(err.msg, "pool.p") != NULL, "names pool.p: %s", err.msg);
        imago_model_free(m);
    } else {
        ok(0, "synthetic model with p = 0.25");
    }
    free(cut);
    free(specs);
    imago_net_free(net);
}

/* AP-GeM / GLAP: the attention ops after the backbone, last_stride 1, and the
 * whitening stages with their widths read from the tensors at bind */
static void test_apgem_glap(void)
{
    imago_model_config cfg = config("resnet50", "apgem", "none");
    imago_net *net = NULL;
    imago_error err;
    imago_error_clear(&err);
    if (imago_net_build(&cfg, &net, &err) != 0) {
        ok(0, "resnet50-apgem builds (%s)", err.msg);
        return;
    }
    is_int(count_kind(net, IMAGO_NET_CONV), 55, "resnet50-apgem: 53 + 2 attention convolutions");
    const imago_net_op *a0 = find_op(net, "apgem.att.0"), *a1 = find_op(net, "apgem.att.1");
    ok(a0 && a0->in == net->output && a0->cout == 512 && a0->k == 1 &&
           strcmp(a0->bn, "apgem.att_bn.0") == 0 && a0->post[0].act == IMAGO_ACT_RELU,
       "apgem.att.0: conv1x1 2048->512 + BN + ReLU on the backbone map");
    ok(a1 && a1->cout == 1 && a1->has_bias && a1->post[0].act == IMAGO_ACT_SIGMOID &&
           net->att == a1->out && net->head_apgem,
       "apgem.att.1: conv1x1 512->1 + bias + sigmoid is the attention value");
    is_int(net->feat_dim, 2048, "resnet50-apgem: 2048 pooled features");
    imago_net_free(net);

    cfg = config("resnet50", "glap", "none");
    cfg.last_stride = 1;
    cfg.dim = 512;
    net = NULL;
    if (imago_net_build(&cfg, &net, &err) != 0) {
        ok(0, "resnet50-glap builds (%s)", err.msg);
        return;
    }
    is_int(net->stride[net->output], 16, "last_stride 1: output stride 16");
    const imago_net_op *d = find_op(net, "backbone.layer4.0.downsample.0");
    const imago_net_op *c2 = find_op(net, "backbone.layer4.0.conv2");
    ok(d && c2 && d->stride == 1 && c2->stride == 1, "layer4.0 conv2 and downsample stride 1");
    const imago_net_op *g = find_op(net, "glap.att");
    ok(g && g->cout == 8 && g->has_bias && g->n_post == 0 && net->att == g->out &&
           net->glap_fc_out == 512 && net->feat_dim == 512,
       "glap.att: conv1x1 2048->8 logits; demo embedding 512");
    int w[2] = {-1, -1};
    imago_tensor_spec *specs = NULL;
    int n = 0;
    imago_net_specs(net, &specs, &n, &err);
    ok(find_spec(specs, n, "glap.fc.weight") && find_spec(specs, n, "glap.att.bias"),
       "glap specs carry glap.att and glap.fc");
    free(specs);
    imago_net_free(net);

    cfg = config("resnet50", "gem", "fc,lw");
    cfg.dim = 300;
    net = NULL;
    if (imago_net_build(&cfg, &net, &err) != 0) {
        ok(0, "resnet50-gem [fc, lw] builds (%s)", err.msg);
        return;
    }
    ok(net->n_whiten == 2 && net->whiten[0] == IMAGO_WHITEN_FC &&
           net->whiten[1] == IMAGO_WHITEN_LW && net->dim == 300,
       "whitening fc,lw: two stages in order, dim 300");
    w[0] = net->whiten_dim[0];
    w[1] = net->whiten_dim[1];
    ok(w[0] == 2048 && w[1] == 300, "stage widths before bind: 2048, 300");
    imago_net_free(net);
    cfg = config("mobilenet_v2", "gem", "none");
    cfg.last_stride = 1;
    net = NULL;
    is_int(imago_net_build(&cfg, &net, &err), IMAGO_ERR_UNSUPPORTED,
           "last_stride 1 on MobileNetV2 is refused (%s)", err.msg);
    imago_net_free(net);
}

int main(void)
{
    test_counts();
    test_apgem_glap();
    test_resnet_structure();
    test_agem_structure();
    test_errors();
    test_same_pad();
    test_specs_and_bind();
    return tap_done();
}
