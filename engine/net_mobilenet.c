/* The MobileNetV2 backbone (docs/models.md, torchvision layout) as an op list
 * (engine/net.h): stem, 17 inverted-residual blocks and the last 1x1 conv,
 * with "torch" or "tf_same" padding. imago_net_build (net.c) dispatches
 * here for backbone "mobilenet_v2" and adds pooling/whitening itself.
 */
#include "net.h"

#include <stdio.h>
#include <string.h>

/* Appends one value; the arrays grow one entry at a time (a MobileNetV2 has
 * about 60 values, built once per model). */
static int mb_value(imago_net *net, int channels, int stride)
{
    net->channels = imago_xrealloc(net->channels, (size_t)(net->n_values + 1) * sizeof(int));
    net->stride = imago_xrealloc(net->stride, (size_t)(net->n_values + 1) * sizeof(int));
    net->channels[net->n_values] = channels;
    net->stride[net->n_values] = stride;
    return net->n_values++;
}

/* A convolution + BatchNorm (no bias) from value `in` with an optional
 * ReLU6; returns the op (output value in op->out). */
static imago_net_op *mb_conv(imago_net *net, int in, const char *weight, const char *bn,
                             int cout, int k, int stride, int groups, int tf_same, int relu6)
{
    net->ops = imago_xrealloc(net->ops, (size_t)(net->n_ops + 1) * sizeof(*net->ops));
    imago_net_op *op = &net->ops[net->n_ops++];
    memset(op, 0, sizeof(*op));
    op->kind = IMAGO_NET_CONV;
    op->in = in;
    op->in2 = -1;
    snprintf(op->weight, sizeof op->weight, "%s", weight);
    snprintf(op->bn, sizeof op->bn, "%s", bn);
    op->cin = net->channels[in];
    op->cout = cout;
    op->k = k;
    op->stride = stride;
    op->pad = k / 2;
    op->dilation = 1;
    op->groups = groups;
    op->has_bias = 0;
    /* TF SAME differs from torch's symmetric padding only for the stride-2
     * 3x3s (stride-1 3x3: 1/1; 1x1: 0/0), which is where the reference
     * (tools/reference.py) swaps in its SAME convolution. */
    op->tf_same = tf_same && k > 1 && stride > 1;
    op->bn_gain = 1.0f;
    if (relu6) {
        op->post[0].kind = IMAGO_POST_ACT;
        op->post[0].act = IMAGO_ACT_RELU6;
        op->post[0].value = -1;
        op->n_post = 1;
    }
    int s = net->stride[in] * stride;
    int out = mb_value(net, cout, s);
    op = &net->ops[net->n_ops - 1];
    op->out = out;
    return op;
}

int imago_net_build_mobilenet_v2(imago_net *net, int x, int tf_same, int *feat, imago_error *err)
{
    (void)err;
    static const int cfg[7][4] = {{1, 16, 1, 1},  {6, 24, 2, 2},  {6, 32, 3, 2}, {6, 64, 4, 2},
                                  {6, 96, 3, 1},  {6, 160, 3, 2}, {6, 320, 1, 1}};
    char w[IMAGO_NET_NAME_MAX], bn[IMAGO_NET_NAME_MAX];
    imago_net_op *op = mb_conv(net, x, "backbone.features.0.0", "backbone.features.0.1", 32, 3,
                               2, 1, tf_same, 1);
    int y = op->out;
    int f = 1;
    for (int g = 0; g < 7; g++) {
        int t = cfg[g][0], c = cfg[g][1], n = cfg[g][2];
        for (int i = 0; i < n; i++, f++) {
            int s = i == 0 ? cfg[g][3] : 1;
            int cin = net->channels[y];
            int hidden = cin * t;
            int h = y, j = 0; /* j: index inside features.f.conv */
            if (t != 1) {
                snprintf(w, sizeof w, "backbone.features.%d.conv.%d.0", f, j);
                snprintf(bn, sizeof bn, "backbone.features.%d.conv.%d.1", f, j);
                h = mb_conv(net, h, w, bn, hidden, 1, 1, 1, tf_same, 1)->out;
                j++;
            }
            snprintf(w, sizeof w, "backbone.features.%d.conv.%d.0", f, j);
            snprintf(bn, sizeof bn, "backbone.features.%d.conv.%d.1", f, j);
            h = mb_conv(net, h, w, bn, hidden, 3, s, hidden, tf_same, 1)->out;
            j++;
            snprintf(w, sizeof w, "backbone.features.%d.conv.%d", f, j);
            snprintf(bn, sizeof bn, "backbone.features.%d.conv.%d", f, j + 1);
            op = mb_conv(net, h, w, bn, c, 1, 1, 1, tf_same, 0);
            if (s == 1 && cin == c) {
                /* synthetic init: a small last BN keeps the residual stream O(1) */
                op->bn_gain = 0.2f;
                op->post[0].kind = IMAGO_POST_SUM;
                op->post[0].value = y;
                op->n_post = 1;
            }
            y = op->out;
        }
    }
    op = mb_conv(net, y, "backbone.features.18.0", "backbone.features.18.1", 1280, 1, 1, 1,
                 tf_same, 1);
    *feat = op->out;
    return 0;
}
