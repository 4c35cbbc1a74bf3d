/* engine-private: descriptor networks described as data.
 *
 * A network is a list of operations over numbered values (activation
 * tensors). The list is built from the model config (backbone + head) by
 * imago_net_build; the same list drives the backends (which turn each op into
 * primitives), the validation of a model file (every tensor an op reads, with
 * its shape) and the tensor specs of the synthetic demo model. Adding a
 * backbone (MobileNetV2) or a head (GLAM) means adding a builder that emits
 * ops, not a new execution path.
 *
 * Thread safety: a built imago_net is immutable; any number of threads may
 * read it. imago_net_free must not race with readers.
 */
#ifndef IMAGO_ENGINE_NET_H
#define IMAGO_ENGINE_NET_H

#include <stdint.h>

#include "common/common.h"
#include "model.h"

typedef enum imago_net_op_kind {
    IMAGO_NET_CONV = 0, /* 2-D convolution (+ folded BN, bias) with post-ops */
    IMAGO_NET_MAXPOOL,  /* max pooling k x k / stride, symmetric padding */
    IMAGO_NET_BINARY    /* element-wise in op in2 (same shape) */
} imago_net_op_kind;

typedef enum imago_net_act {
    IMAGO_ACT_RELU = 0, /* max(x, 0) */
    IMAGO_ACT_RELU6,    /* min(max(x, 0), 6) */
    IMAGO_ACT_SIGMOID,  /* 1 / (1 + exp(-x)) */
    IMAGO_ACT_LINEAR    /* alpha * x + beta */
} imago_net_act;

typedef enum imago_net_post_kind {
    IMAGO_POST_ACT = 0, /* element-wise activation */
    IMAGO_POST_SUM,     /* += value (residual add) */
    IMAGO_POST_MUL,     /* *= value (attention) */
    IMAGO_POST_ADD      /* += value, when the value must stay intact */
} imago_net_post_kind;

typedef struct imago_net_post {
    imago_net_post_kind kind;
    imago_net_act act; /* IMAGO_POST_ACT */
    float alpha, beta; /* IMAGO_ACT_LINEAR */
    int value;         /* SUM / MUL / ADD: the other operand (same shape as the output) */
} imago_net_post;

#define IMAGO_NET_MAX_POST 4
#define IMAGO_NET_NAME_MAX 64

typedef enum imago_net_pool {
    IMAGO_POOL_GEM = 0,
    IMAGO_POOL_SPOC,
    IMAGO_POOL_MAC
} imago_net_pool;

typedef enum imago_net_whiten {
    IMAGO_WHITEN_NONE = 0,
    IMAGO_WHITEN_LW, /* L2N(P (x - m)) */
    IMAGO_WHITEN_FC  /* L2N(W x + b) */
} imago_net_whiten;

typedef struct imago_net_op {
    imago_net_op_kind kind;
    int in, in2, out; /* value ids (in2: IMAGO_NET_BINARY only, else -1) */
    /* IMAGO_NET_CONV: tensors "<weight>.weight" [cout, cin/groups, k, k],
     * "<weight>.bias" [cout] when has_bias, and the BatchNorm "<bn>.weight",
     * ".bias", ".running_mean", ".running_var" [cout] when bn[0] != 0. */
    char weight[IMAGO_NET_NAME_MAX];
    char bn[IMAGO_NET_NAME_MAX];
    int cin, cout, k, stride, pad, dilation, groups, has_bias;
    int tf_same;   /* padding from the input size (TensorFlow SAME) instead of pad */
    float bn_gain; /* synthetic init: BN gamma (the last BN of a residual branch is small) */
    int n_post;
    imago_net_post post[IMAGO_NET_MAX_POST];
    /* IMAGO_NET_MAXPOOL: k, stride, pad above. IMAGO_NET_BINARY: */
    int binary_mul; /* 1: out = in * in2; 0: out = in + in2 */
} imago_net_op;

typedef struct imago_net {
    int n_ops;
    imago_net_op *ops;
    int n_values;
    int *channels;   /* channels of each value */
    int *stride;     /* spatial stride of each value w.r.t. the input (informational) */
    int input;       /* value id of the network input (3 channels) */
    int output;      /* value id of the feature map that is pooled */
    int feat_dim;    /* channels of the output feature map */
    imago_net_pool pool;
    float gem_p;     /* from pool.p (set by imago_net_bind), 3 before */
    float ms_p;      /* exponent of the multi-scale combination */
    /* whitening stages in order, each followed by L2N (engine.c applies
     * them): stage i maps whiten_dim[i-1] (feat_dim for i = 0) values to
     * whiten_dim[i]; imago_net_bind reads the widths from the tensors */
    int n_whiten;
    imago_net_whiten whiten[IMAGO_MODEL_MAX_WHITEN];
    int whiten_dim[IMAGO_MODEL_MAX_WHITEN];
    int normalize_pooled; /* L2N of each scale's pooled vector (cfg.normalize_pooled) */
    int dim;         /* descriptor dimension after whitening */
    /* GLAM head (engine/glam.c): when head_glam, `output` is the backbone map
     * (channels[output] wide), feat_dim is the FC width of the head (512) and
     * the backend hands the fp32 map to imago_glam_run instead of pooling.
     * glam holds the prepared weights (set by imago_net_bind). */
    int head_glam;
    struct imago_glam *glam;
    /* AP-GeM and GLAP heads (engine/attpool.c): `att` is the value holding
     * the attention computed by ops of the list (AP-GeM: the sigmoid map, 1
     * channel; GLAP: the K logit maps S before their softmax), read by the
     * backend next to `output` (both kept alive to the end); the backend
     * pools them with imago_apgem_pool / imago_glap_pool. Meaningful only when
 * head_apgem or head_glap (imago_net_build sets -1 otherwise).
     * GLAP's optional embedding glap.fc (fc_w [fc_out x channels[output]],
     * fc_b) is prepared by imago_net_bind; feat_dim is then fc_out. */
    int head_apgem, head_glap;
    int att;
    float *glap_fc_w, *glap_fc_b;
    int glap_fc_out; /* 0 without glap.fc */
} imago_net;

/* Builds the op list for cfg (backbone resnet50|resnet101|resnet152 (with
 * last_stride 2 or 1) | mobilenet_v2, head gem|agem|glam|apgem|glap; pooling
 * gem|spoc|mac; whitening none or stages lw / fc). cfg->dim is the
 * whitened dimension (ignored and set to the feature width without
 * whitening). IMAGO_ERR_UNSUPPORTED names what is not supported. *out is
 * owned by the caller (imago_net_free). */
int imago_net_build(const imago_model_config *cfg, imago_net **out, imago_error *err);
void imago_net_free(imago_net *net);

/* ---- MobileNetV2 (engine/net_mobilenet.c) ---------------------------------
 * Appends the MobileNetV2 backbone ops (torchvision layout, tensors
 * "backbone.features.N...") to net, reading value x (3 channels); tf_same
 * selects TensorFlow SAME padding for the stride-2 3x3 convolutions. The ops
 * and value arrays are grown to their exact sizes. *feat receives the 1280-
 * channel output value. Returns 0. */
int imago_net_build_mobilenet_v2(imago_net *net, int x, int tf_same, int *feat,
                                 imago_error *err);
/* ---- end MobileNetV2 ---------------------------------------------------- */

/* Checks that m holds every tensor the ops, pooling and whitening read, with
 * the right shapes (errors name the tensor), and reads pool.p into net->gem_p
 * and sets net->ms_p. */
int imago_net_bind(imago_net *net, const imago_model *m, imago_error *err);

/* Tensor specs of a synthetic model for net (He-normal convs, BN identity
 * statistics with gamma = op.bn_gain, GeM p = 3, identity whitening). The
 * returned array and the names it points to are one allocation: free(*specs). */
int imago_net_specs(const imago_net *net, imago_tensor_spec **specs, int *n, imago_error *err);

/* Output spatial size of a k/stride/pad/dilation window over `in` (torch
 * floor semantics) and the TensorFlow-SAME padding pair. */
int imago_net_out_size(int in, int k, int stride, int pad_l, int pad_r, int dilation);
void imago_net_same_pad(int in, int k, int stride, int dilation, int *pad_l, int *pad_r);

/* Spatial size of every value for an h x w input: hs/ws arrays of
 * net->n_values entries (caller-allocated). IMAGO_ERR_INVALID when a value
 * would be empty. */
int imago_net_shapes(const imago_net *net, int h, int w, int *hs, int *ws, imago_error *err);

struct imago_engine;

/* Pooled features before L2N of one scale (n x imago_engine_feat_dim
 * floats into pooled), for tests that check activation magnitudes. */
int imago_engine_pooled_nhwc(struct imago_engine *engine, const float *nhwc, int n, int h,
                             int w, float *pooled, imago_error *err);
int imago_engine_feat_dim(const struct imago_engine *engine);

#endif
