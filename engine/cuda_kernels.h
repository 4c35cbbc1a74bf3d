/* engine-private: the CUDA kernels of the GPU backend (engine/cuda_kernels*.cu),
 * callable from C. cuDNN runs the convolutions; these kernels do the rest
 * of a network's ops on NHWC tensors: dtype conversion, explicit (TensorFlow
 * SAME) padding, the fused bias + post-op epilogue, max pooling, element-wise
 * binaries, the global pooling (GeM / SPoC / MAC) and the AP-GeM / GLAP
 * attention pooling into fp32 features.
 *
 * Every launcher enqueues its work on `stream` (a cudaStream_t passed as
 * void *, NULL = the legacy default stream) and returns 0 or the
 * cudaError_t of the launch (cudaGetLastError() right after it; errors of the
 * kernel itself surface at the next synchronisation). Tensors are device
 * pointers in the element type `t`; arithmetic is fp32 whatever `t` is, and
 * results are rounded to `t` once, round-to-nearest-even. Sizes of 0 launch
 * nothing and return 0.
 *
 * Thread safety: every launcher may be called from any thread; work on one
 * stream runs in order.
 */
#ifndef IMAGO_ENGINE_CUDA_KERNELS_H
#define IMAGO_ENGINE_CUDA_KERNELS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum imago_cu_dtype {
    IMAGO_CU_F32 = 0,
    IMAGO_CU_F16 = 1,
    IMAGO_CU_BF16 = 2
} imago_cu_dtype;

/* bytes of one element of t */
size_t imago_cu_dtype_size(imago_cu_dtype t);

/* dst[i] = (t) src[i], count elements (fp32 -> t; a plain copy for F32). */
int imago_cu_from_f32(const float *src, void *dst, imago_cu_dtype t, size_t count,
                      void *stream);
/* dst[i] = (float) src[i]. */
int imago_cu_to_f32(const void *src, imago_cu_dtype t, float *dst, size_t count, void *stream);

/* Zero padding of an NHWC tensor: src n x h x w x c -> dst
 * n x (h + pt + pb) x (w + pl + pr) x c, with src at offset (pt, pl). */
int imago_cu_pad(const void *src, void *dst, imago_cu_dtype t, int n, int h, int w, int c,
                 int pt, int pb, int pl, int pr, void *stream);

/* The post-ops of a convolution, in order (mirrors imago_net_post of
 * engine/net.h; the enum values are the same). */
enum {
    IMAGO_CU_POST_ACT = 0, /* v = act(v) */
    IMAGO_CU_POST_SUM = 1, /* v = v + value[i] */
    IMAGO_CU_POST_MUL = 2, /* v = v * value[i] */
    IMAGO_CU_POST_ADD = 3  /* v = v + value[i] (same as SUM here) */
};
enum {
    IMAGO_CU_ACT_RELU = 0,    /* max(v, 0) */
    IMAGO_CU_ACT_RELU6 = 1,   /* min(max(v, 0), 6) */
    IMAGO_CU_ACT_SIGMOID = 2, /* 1 / (1 + exp(-v)) */
    IMAGO_CU_ACT_LINEAR = 3   /* alpha * v + beta */
};
#define IMAGO_CU_MAX_POST 4
typedef struct imago_cu_post {
    int kind;          /* IMAGO_CU_POST_* */
    int act;           /* IMAGO_CU_ACT_* (kind ACT) */
    float alpha, beta; /* IMAGO_CU_ACT_LINEAR */
    const void *value; /* SUM / MUL / ADD: device tensor of y's shape and type t */
} imago_cu_post;

/* In place on y (count elements, NHWC with c channels, so that the channel of
 * element i is i % c): v = y[i] (+ bias[i % c] when bias != NULL; bias is
 * fp32, c entries), then each of the n_post (<= IMAGO_CU_MAX_POST) post-ops
 * in order, then y[i] = (t) v. */
int imago_cu_epilogue(void *y, imago_cu_dtype t, size_t count, int c, const float *bias,
                      const imago_cu_post *posts, int n_post, void *stream);

/* Max pooling k x k / stride over NHWC x (n x h x w x c) into y (n x oh x ow
 * x c); the window of output (oy, ox) starts at (oy * stride - pad_t,
 * ox * stride - pad_l); positions outside the input are ignored (as
 * torch.nn.MaxPool2d's implicit -inf padding). */
int imago_cu_maxpool(const void *x, void *y, imago_cu_dtype t, int n, int h, int w, int c,
                     int k, int stride, int pad_t, int pad_l, int oh, int ow, void *stream);

/* y[i] = a[i] * b[i] (mul != 0) or a[i] + b[i], count elements. y may be a
 * or b. */
int imago_cu_binary(const void *a, const void *b, void *y, imago_cu_dtype t, size_t count,
                    int mul, void *stream);

/* Global pooling of NHWC x (n images x hw positions x c channels) into
 * out (device, n x c fp32), accumulated in fp32 or better:
 *   IMAGO_CU_POOL_GEM:  (mean over hw of max(x, eps)^p)^(1/p)  (p == 3 exact cube)
 *   IMAGO_CU_POOL_SPOC: mean over hw of x
 *   IMAGO_CU_POOL_MAC:  max over hw of x
 * (the same as the CPU backend's pool_features, engine/backend_dnnl.c). */
enum { IMAGO_CU_POOL_GEM = 0, IMAGO_CU_POOL_SPOC = 1, IMAGO_CU_POOL_MAC = 2 };
int imago_cu_pool(const void *x, imago_cu_dtype t, int n, int hw, int c, int kind, float p,
                  float eps, float *out, void *stream);

/* Attention pooling of the AP-GeM and GLAP heads (engine/attpool.h), in two
 * steps.
 * imago_cu_att_weights: s is the attention value (n x hw x k, type t) and w
 * (device, n x hw x k fp32) receives the weights of each of the k maps:
 *   IMAGO_CU_ATT_NORMALIZE (AP-GeM): w = s / max(sum over hw of s, eps)
 *   IMAGO_CU_ATT_SOFTMAX (GLAP): w = softmax of s over the hw positions.
 * imago_cu_wpool: out (device, n x k x c fp32) = (sum over hw of
 *   w[i][j] max(x[i][ch], eps)^p)^(1/p) for x n x hw x c of type t (p == 3
 *   an exact cube); k <= IMAGO_CU_WPOOL_MAX_K. */
enum { IMAGO_CU_ATT_NORMALIZE = 0, IMAGO_CU_ATT_SOFTMAX = 1 };
#define IMAGO_CU_WPOOL_MAX_K 32
int imago_cu_att_weights(const void *s, imago_cu_dtype t, int n, int hw, int k, int mode,
                         float eps, float *w, void *stream);
int imago_cu_wpool(const void *x, imago_cu_dtype t, int n, int hw, int c, int k, const float *w,
                   float p, float eps, float *out, void *stream);

/* cudaGetErrorString of a launcher's return code. */
const char *imago_cu_error_string(int code);

#ifdef __cplusplus
}
#endif

#endif
