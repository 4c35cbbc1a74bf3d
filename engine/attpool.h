/* engine-private: the pooling of the AP-GeM and GLAP heads (engine/attpool.c)
 * on fp32 NHWC maps, shared by the backends. The attention maps themselves
 * are convolutions of the op list (engine/net.c: build_apgem, build_glap),
 * run by the backend with the backbone; these functions take the backbone map
 * F and the attention value and write the "pooled" vectors of the backend
 * contract (engine/backend.h).
 *
 * AP-GeM: g_c = (sum_i a_i max(F_ic, 1e-6)^p / max(sum_i a_i, 1e-6))^(1/p),
 *   a the sigmoid map (one weight per location); a = 1 is plain GeM.
 * GLAP: A_k = softmax over the locations of the logits S_k;
 *   v_kc = (sum_i A_ki max(F_ic, 1e-6)^p)^(1/p); v = sum_k L2N(v_k); then the
 *   optional embedding e = W v + b.
 *
 * Thread safety: pure functions of their arguments; any number of threads.
 */
#ifndef IMAGO_ENGINE_ATTPOOL_H
#define IMAGO_ENGINE_ATTPOOL_H

#include "common/common.h"

/* n images: x is n x hw x c, a is n x hw (borrowed); out receives n x c.
 * threads bounds the OpenMP team (0 = all cores). */
void imago_apgem_pool(const float *x, const float *a, int n, int hw, int c, float p, int threads,
                      float *out);

/* n images: x is n x hw x c, s is n x hw x k (the logits; borrowed). With
 * fc_w (fc_out x c, row-major) and fc_b (fc_out) out receives n x fc_out
 * values W v + b; with fc_w NULL, n x c values v. vk, when not NULL,
 * receives the per-map means v_k (n x k x c, before their L2N), for tests.
 * IMAGO_ERR_INVALID (empty map), IMAGO_ERR_TOO_LARGE / IMAGO_ERR_NOMEM
 * (work buffers: hw x (c + k) floats per image). */
int imago_glap_pool(const float *x, const float *s, int n, int hw, int c, int k, float p,
                    const float *fc_w, const float *fc_b, int fc_out, int threads, float *out,
                    float *vk, imago_error *err);

/* GLAP after the per-map means: vk (n x k x c, v_k as above; borrowed) ->
 * out as imago_glap_pool's (sum_k L2N(v_k), then W v + b when fc_w). The CUDA
 * backend computes vk on the device. */
void imago_glap_finish(const float *vk, int n, int k, int c, const float *fc_w, const float *fc_b,
                       int fc_out, float *out);

#endif
