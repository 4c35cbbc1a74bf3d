/* Host implementations of the launchers of engine/cuda_kernels.h, with the
 * semantics that header gives (fp32 arithmetic, one round-to-nearest-even
 * rounding to the storage type at the end; GeM / SPoC / MAC as the CPU
 * backend's pool_features). Each launcher first checks that every tensor it
 * touches lies inside one live device allocation and that its output does not
 * overlap an input it must not alias; a violation returns
 * cudaErrorIllegalAddress / cudaErrorInvalidValue instead of corrupting
 * memory, as a sanitizer on the GPU would report it (see fake.h). */
#include "fake.h"

#include "engine/cuda_kernels.h"
#include "engine/cuda_plan.h"

#include <cuda_runtime.h>

#include <math.h>
#include <string.h>

float fake_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13); /* Inf / NaN */
    } else if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do {
                man <<= 1;
                e++;
            } while (!(man & 0x400u));
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ffu) << 13);
        }
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

float fake_bf16_to_f32(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

float fake_load(const void *p, int t, size_t e)
{
    if (t == IMAGO_CU_F32)
        return ((const float *)p)[e];
    uint16_t h = ((const uint16_t *)p)[e];
    return t == IMAGO_CU_F16 ? fake_f16_to_f32(h) : fake_bf16_to_f32(h);
}

void fake_store(void *p, int t, size_t e, float v)
{
    if (t == IMAGO_CU_F32)
        ((float *)p)[e] = v;
    else
        ((uint16_t *)p)[e] = t == IMAGO_CU_F16 ? imago_cuda_f32_to_f16(v)
                                               : imago_cuda_f32_to_bf16(v);
}

size_t imago_cu_dtype_size(imago_cu_dtype t)
{
    return t == IMAGO_CU_F32 ? 4 : 2;
}

static int bad_type(imago_cu_dtype t)
{
    return t != IMAGO_CU_F32 && t != IMAGO_CU_F16 && t != IMAGO_CU_BF16;
}

/* every launcher: counted, then refused with the error a launch would give */
static int refuse(int e)
{
    fake_count(&imago_fake_cuda_stats_get()->kernel_bad);
    return e;
}

#define DEV(p, bytes)                                                                      \
    do {                                                                                   \
        if (fake_cuda_check((p), (bytes)))                                                 \
            return refuse(cudaErrorIllegalAddress);                                        \
    } while (0)

static void counted(uint64_t *which)
{
    fake_count(&imago_fake_cuda_stats_get()->kernel_calls);
    fake_count(which);
}

int imago_cu_from_f32(const float *src, void *dst, imago_cu_dtype t, size_t count, void *stream)
{
    (void)stream;
    if (bad_type(t))
        return refuse(cudaErrorInvalidValue);
    if (!count)
        return 0;
    DEV(src, count * 4);
    DEV(dst, count * imago_cu_dtype_size(t));
    if (fake_overlap(src, count * 4, dst, count * imago_cu_dtype_size(t)))
        return refuse(cudaErrorInvalidValue);
    counted(&imago_fake_cuda_stats_get()->convert_calls);
    for (size_t i = 0; i < count; i++)
        fake_store(dst, t, i, src[i]);
    return 0;
}

int imago_cu_to_f32(const void *src, imago_cu_dtype t, float *dst, size_t count, void *stream)
{
    (void)stream;
    if (bad_type(t))
        return refuse(cudaErrorInvalidValue);
    if (!count)
        return 0;
    DEV(src, count * imago_cu_dtype_size(t));
    DEV(dst, count * 4);
    if (fake_overlap(src, count * imago_cu_dtype_size(t), dst, count * 4))
        return refuse(cudaErrorInvalidValue);
    counted(&imago_fake_cuda_stats_get()->convert_calls);
    for (size_t i = 0; i < count; i++)
        dst[i] = fake_load(src, t, i);
    return 0;
}

int imago_cu_pad(const void *src, void *dst, imago_cu_dtype t, int n, int h, int w, int c, int pt,
                 int pb, int pl, int pr, void *stream)
{
    (void)stream;
    if (bad_type(t) || n < 0 || h < 0 || w < 0 || c < 0 || pt < 0 || pb < 0 || pl < 0 || pr < 0)
        return refuse(cudaErrorInvalidValue);
    size_t es = imago_cu_dtype_size(t);
    int H = h + pt + pb, W = w + pl + pr;
    size_t in_b = (size_t)n * h * w * c * es, out_b = (size_t)n * H * W * c * es;
    if (!out_b)
        return 0;
    DEV(dst, out_b);
    if (in_b) {
        DEV(src, in_b);
        if (fake_overlap(src, in_b, dst, out_b))
            return refuse(cudaErrorInvalidValue);
    }
    counted(&imago_fake_cuda_stats_get()->pad_calls);
    memset(dst, 0, out_b);
    size_t row = (size_t)w * c * es;
    for (int b = 0; b < n; b++)
        for (int y = 0; y < h; y++)
            memcpy((char *)dst + ((((size_t)b * H + y + pt) * W + pl) * c) * es,
                   (const char *)src + (((size_t)b * h + y) * w * c) * es, row);
    return 0;
}

static float act(int a, float v, float alpha, float beta)
{
    switch (a) {
    case IMAGO_CU_ACT_RELU: return fmaxf(v, 0.0f);
    case IMAGO_CU_ACT_RELU6: return fminf(fmaxf(v, 0.0f), 6.0f);
    case IMAGO_CU_ACT_SIGMOID: return 1.0f / (1.0f + expf(-v));
    default: return fmaf(alpha, v, beta);
    }
}

int imago_cu_epilogue(void *y, imago_cu_dtype t, size_t count, int c, const float *bias,
                      const imago_cu_post *posts, int n_post, void *stream)
{
    (void)stream;
    if (bad_type(t) || c < 1 || n_post < 0 || n_post > IMAGO_CU_MAX_POST || (n_post && !posts) ||
        count % (size_t)c)
        return refuse(cudaErrorInvalidValue);
    if (!count)
        return 0;
    size_t bytes = count * imago_cu_dtype_size(t);
    DEV(y, bytes);
    if (bias)
        DEV(bias, (size_t)c * sizeof(float));
    for (int q = 0; q < n_post; q++) {
        const imago_cu_post *P = &posts[q];
        if (P->kind < IMAGO_CU_POST_ACT || P->kind > IMAGO_CU_POST_ADD)
            return refuse(cudaErrorInvalidValue);
        if (P->kind == IMAGO_CU_POST_ACT) {
            if (P->act < IMAGO_CU_ACT_RELU || P->act > IMAGO_CU_ACT_LINEAR)
                return refuse(cudaErrorInvalidValue);
            continue;
        }
        DEV(P->value, bytes);
        /* the operand is another live value: sharing bytes with y is a plan bug */
        if (fake_overlap(P->value, bytes, y, bytes))
            return refuse(cudaErrorInvalidValue);
    }
    counted(&imago_fake_cuda_stats_get()->epilogue_calls);
    for (size_t i = 0; i < count; i++) {
        float v = fake_load(y, t, i);
        if (bias)
            v += bias[i % (size_t)c];
        for (int q = 0; q < n_post; q++) {
            const imago_cu_post *P = &posts[q];
            if (P->kind == IMAGO_CU_POST_ACT) {
                v = act(P->act, v, P->alpha, P->beta);
            } else {
                float o = fake_load(P->value, t, i);
                v = P->kind == IMAGO_CU_POST_MUL ? v * o : v + o;
            }
        }
        fake_store(y, t, i, v);
    }
    return 0;
}

int imago_cu_maxpool(const void *x, void *y, imago_cu_dtype t, int n, int h, int w, int c, int k,
                     int stride, int pad_t, int pad_l, int oh, int ow, void *stream)
{
    (void)stream;
    if (bad_type(t) || n < 0 || h < 0 || w < 0 || c < 0 || k < 1 || stride < 1 || oh < 0 ||
        ow < 0)
        return refuse(cudaErrorInvalidValue);
    size_t es = imago_cu_dtype_size(t);
    size_t in_b = (size_t)n * h * w * c * es, out_b = (size_t)n * oh * ow * c * es;
    if (!out_b)
        return 0;
    DEV(x, in_b);
    DEV(y, out_b);
    if (fake_overlap(x, in_b, y, out_b))
        return refuse(cudaErrorInvalidValue);
    counted(&imago_fake_cuda_stats_get()->maxpool_calls);
    for (int b = 0; b < n; b++)
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++) {
                int iy0 = oy * stride - pad_t, ix0 = ox * stride - pad_l;
                for (int ch = 0; ch < c; ch++) {
                    float m = -INFINITY;
                    for (int iy = iy0 < 0 ? 0 : iy0; iy < iy0 + k && iy < h; iy++)
                        for (int ix = ix0 < 0 ? 0 : ix0; ix < ix0 + k && ix < w; ix++) {
                            float f = fake_load(x, t, (((size_t)b * h + iy) * w + ix) * c + ch);
                            if (f > m || isnan(f))
                                m = f;
                        }
                    fake_store(y, t, (((size_t)b * oh + oy) * ow + ox) * c + ch, m);
                }
            }
    return 0;
}

int imago_cu_binary(const void *a, const void *b, void *y, imago_cu_dtype t, size_t count, int mul,
                    void *stream)
{
    (void)stream;
    if (bad_type(t))
        return refuse(cudaErrorInvalidValue);
    if (!count)
        return 0;
    size_t bytes = count * imago_cu_dtype_size(t);
    DEV(a, bytes);
    DEV(b, bytes);
    DEV(y, bytes);
    /* y may be a or b, but not share part of one */
    if ((y != a && fake_overlap(y, bytes, a, bytes)) || (y != b && fake_overlap(y, bytes, b, bytes)))
        return refuse(cudaErrorInvalidValue);
    counted(&imago_fake_cuda_stats_get()->binary_calls);
    for (size_t i = 0; i < count; i++) {
        float fa = fake_load(a, t, i), fb = fake_load(b, t, i);
        fake_store(y, t, i, mul ? fa * fb : fa + fb);
    }
    return 0;
}

int imago_cu_pool(const void *x, imago_cu_dtype t, int n, int hw, int c, int kind, float p,
                  float eps, float *out, void *stream)
{
    (void)stream;
    if (bad_type(t) || n < 0 || hw < 0 || c < 0 || kind < IMAGO_CU_POOL_GEM ||
        kind > IMAGO_CU_POOL_MAC || (kind == IMAGO_CU_POOL_GEM && !(p > 0)))
        return refuse(cudaErrorInvalidValue);
    if (!n || !c)
        return 0;
    if (!hw)
        return refuse(cudaErrorInvalidValue);
    size_t in_b = (size_t)n * hw * c * imago_cu_dtype_size(t);
    DEV(x, in_b);
    DEV(out, (size_t)n * c * sizeof(float));
    if (fake_overlap(x, in_b, out, (size_t)n * c * sizeof(float)))
        return refuse(cudaErrorInvalidValue);
    counted(&imago_fake_cuda_stats_get()->pool_calls);
    int cube = p == 3.0f;
    for (int img = 0; img < n; img++)
        for (int ch = 0; ch < c; ch++) {
            double acc = kind == IMAGO_CU_POOL_MAC ? -INFINITY : 0.0;
            for (int i = 0; i < hw; i++) {
                float v = fake_load(x, t, ((size_t)img * hw + i) * c + ch);
                if (kind == IMAGO_CU_POOL_MAC) {
                    if (v > acc)
                        acc = v;
                } else if (kind == IMAGO_CU_POOL_SPOC) {
                    acc += v;
                } else {
                    double q = v > eps ? v : eps;
                    acc += cube ? q * q * q : pow(q, p);
                }
            }
            if (kind == IMAGO_CU_POOL_GEM)
                acc = pow(acc / hw, 1.0 / p);
            else if (kind == IMAGO_CU_POOL_SPOC)
                acc /= hw;
            out[(size_t)img * c + ch] = (float)acc;
        }
    return 0;
}

const char *imago_cu_error_string(int code)
{
    return cudaGetErrorString((cudaError_t)code);
}

int imago_cu_att_weights(const void *s, imago_cu_dtype t, int n, int hw, int k, int mode,
                         float eps, float *w, void *stream)
{
    (void)stream;
    if (bad_type(t) || n < 0 || hw < 0 || k < 0 || !(eps > 0) ||
        (mode != IMAGO_CU_ATT_NORMALIZE && mode != IMAGO_CU_ATT_SOFTMAX))
        return refuse(cudaErrorInvalidValue);
    if (!n || !hw || !k)
        return 0;
    size_t cnt = (size_t)n * hw * k;
    DEV(s, cnt * imago_cu_dtype_size(t));
    DEV(w, cnt * sizeof(float));
    if (fake_overlap(s, cnt * imago_cu_dtype_size(t), w, cnt * sizeof(float)))
        return refuse(cudaErrorInvalidValue);
    counted(&imago_fake_cuda_stats_get()->att_weights_calls);
    for (int img = 0; img < n; img++)
        for (int j = 0; j < k; j++) {
            size_t base = (size_t)img * hw * k + j;
            float mx = -INFINITY;
            for (int i = 0; i < hw; i++)
                mx = fmaxf(mx, fake_load(s, t, base + (size_t)i * k));
            float sum = 0.0f; /* fp32, as the device */
            for (int i = 0; i < hw; i++) {
                float v = fake_load(s, t, base + (size_t)i * k);
                sum += mode == IMAGO_CU_ATT_SOFTMAX ? expf(v - mx) : v;
            }
            float inv = mode == IMAGO_CU_ATT_SOFTMAX ? 1.0f / sum : 1.0f / fmaxf(sum, eps);
            for (int i = 0; i < hw; i++) {
                float v = fake_load(s, t, base + (size_t)i * k);
                w[base + (size_t)i * k] = (mode == IMAGO_CU_ATT_SOFTMAX ? expf(v - mx) : v) * inv;
            }
        }
    return 0;
}

int imago_cu_wpool(const void *x, imago_cu_dtype t, int n, int hw, int c, int k, const float *w,
                   float p, float eps, float *out, void *stream)
{
    (void)stream;
    if (bad_type(t) || n < 0 || hw < 0 || c < 0 || k < 0 || k > IMAGO_CU_WPOOL_MAX_K ||
        !(p > 0) || !(eps > 0))
        return refuse(cudaErrorInvalidValue);
    if (!n || !hw || !c || !k)
        return 0;
    size_t xb = (size_t)n * hw * c * imago_cu_dtype_size(t), wb = (size_t)n * hw * k * 4;
    size_t ob = (size_t)n * k * c * sizeof(float);
    DEV(x, xb);
    DEV(w, wb);
    DEV(out, ob);
    if (fake_overlap(x, xb, out, ob) || fake_overlap(w, wb, out, ob))
        return refuse(cudaErrorInvalidValue);
    counted(&imago_fake_cuda_stats_get()->wpool_calls);
    int cube = p == 3.0f;
    for (int img = 0; img < n; img++)
        for (int ch = 0; ch < c; ch++) {
            float acc[IMAGO_CU_WPOOL_MAX_K] = {0};
            for (int i = 0; i < hw; i++) {
                float v = fake_load(x, t, ((size_t)img * hw + i) * c + ch);
                float q = v > eps ? v : eps;
                q = cube ? q * q * q : powf(q, p);
                for (int j = 0; j < k; j++)
                    acc[j] = fmaf(w[((size_t)img * hw + i) * k + j], q, acc[j]);
            }
            for (int j = 0; j < k; j++)
                out[((size_t)img * k + j) * c + ch] = powf(acc[j], 1.0f / p);
        }
    return 0;
}
