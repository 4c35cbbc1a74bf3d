/* The pooling kernels of the GPU backend (see cuda_kernels.h): the global
 * poolings (GeM / SPoC / MAC, summed in double) and the AP-GeM / GLAP
 * attention poolings (attention weights, weighted power means) of NHWC
 * maps into fp32 features.
 */
#include "cuda_kernels_int.cuh"

using namespace imago_cuk;

namespace
{

/* ---- global pooling ----------------------------------------------------- */

enum PoolKind { POOL_CUBE, POOL_POW, POOL_SPOC, POOL_MAC };

/* A block per (channel chunk, image): CT threads across the chunk's CH =
 * CT * V channels (coalesced rows of CT * 16 bytes when vectorised), ROWS =
 * 256 / CT thread rows splitting the hw positions, four positions in flight
 * per thread; the ROWS partials of each channel meet in shared memory.
 *   CUBE: sum of max(x, eps)^3, groups of four summed in fp32, then in double.
 *   POW:  any p, without overflow: each thread keeps its largest t = max(x,
 *         eps) so far, m, and s = sum (t / m)^p (rescaled when m grows);
 *         the partials meet as M * (sum s_k (m_k / M)^p / hw)^(1/p).
 *   SPOC: sum of x like CUBE. MAC: fmaxf (NaN ignored, as the CPU's `>`). */
template <typename T, int V, int CT, int K>
__global__ void __launch_bounds__(kThreads)
    pool_kernel(const T *__restrict__ x, int n, int hw, int c, float p, float eps,
                float *__restrict__ out)
{
    constexpr int ROWS = kThreads / CT;
    constexpr int CH = CT * V;
    __shared__ double s_acc[ROWS * CH];
    __shared__ float s_m[ROWS * CH];
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int tid = ty * CT + tx;
    const int ch0 = blockIdx.x * CH + tx * V;

    for (int img = blockIdx.y; img < n; img += gridDim.y) {
        double acc[V];
        float m[V];
#pragma unroll
        for (int j = 0; j < V; j++) {
            acc[j] = 0.0;
            m[j] = K == POOL_MAC ? -INFINITY : eps;
        }
        if (ch0 < c) {
            const T *base = x + (size_t)img * hw * c + ch0;
            int r = ty;
            if (K != POOL_POW) {
                for (; r + 3 * ROWS < hw; r += 4 * ROWS) {
                    float f0[V], f1[V], f2[V], f3[V];
                    load_n<T, V>(base + (size_t)r * c, f0);
                    load_n<T, V>(base + (size_t)(r + ROWS) * c, f1);
                    load_n<T, V>(base + (size_t)(r + 2 * ROWS) * c, f2);
                    load_n<T, V>(base + (size_t)(r + 3 * ROWS) * c, f3);
#pragma unroll
                    for (int j = 0; j < V; j++) {
                        if (K == POOL_MAC) {
                            m[j] = fmaxf(fmaxf(m[j], f0[j]), f1[j]);
                            m[j] = fmaxf(fmaxf(m[j], f2[j]), f3[j]);
                        } else if (K == POOL_SPOC) {
                            acc[j] += (double)((f0[j] + f1[j]) + (f2[j] + f3[j]));
                        } else {
                            const float t0 = fmaxf(f0[j], eps), t1 = fmaxf(f1[j], eps);
                            const float t2 = fmaxf(f2[j], eps), t3 = fmaxf(f3[j], eps);
                            acc[j] += (double)((t0 * t0 * t0 + t1 * t1 * t1) +
                                               (t2 * t2 * t2 + t3 * t3 * t3));
                        }
                    }
                }
            }
            for (; r < hw; r += ROWS) {
                float f[V];
                load_n<T, V>(base + (size_t)r * c, f);
#pragma unroll
                for (int j = 0; j < V; j++) {
                    if (K == POOL_MAC) {
                        m[j] = fmaxf(m[j], f[j]);
                    } else if (K == POOL_SPOC) {
                        acc[j] += (double)f[j];
                    } else if (K == POOL_CUBE) {
                        const float t = fmaxf(f[j], eps);
                        acc[j] += (double)(t * t * t);
                    } else {
                        const float t = fmaxf(f[j], eps);
                        const float q = powf(fminf(t, m[j]) / fmaxf(t, m[j]), p);
                        if (t > m[j]) {
                            acc[j] = acc[j] * (double)q + 1.0;
                            m[j] = t;
                        } else {
                            acc[j] += (double)q;
                        }
                    }
                }
            }
        }
#pragma unroll
        for (int j = 0; j < V; j++) {
            s_acc[ty * CH + tx * V + j] = acc[j];
            s_m[ty * CH + tx * V + j] = m[j];
        }
        __syncthreads();
        const int ch = blockIdx.x * CH + tid;
        if (tid < CH && ch < c) {
            double res;
            if (K == POOL_MAC) {
                float mx = s_m[tid];
                for (int k = 1; k < ROWS; k++)
                    mx = fmaxf(mx, s_m[k * CH + tid]);
                res = mx;
            } else if (K == POOL_POW) {
                float mx = s_m[tid];
                for (int k = 1; k < ROWS; k++)
                    mx = fmaxf(mx, s_m[k * CH + tid]);
                double s = 0.0;
                for (int k = 0; k < ROWS; k++)
                    s += s_acc[k * CH + tid] * (double)powf(s_m[k * CH + tid] / mx, p);
                res = (double)mx * pow(s / hw, 1.0 / (double)p);
            } else {
                double s = 0.0;
                for (int k = 0; k < ROWS; k++)
                    s += s_acc[k * CH + tid];
                res = K == POOL_SPOC ? s / hw : pow(s / hw, 1.0 / (double)p);
            }
            out[(size_t)img * c + ch] = (float)res;
        }
        __syncthreads(); /* the shared partials are reused by the next image */
    }
}

/* ---- attention pooling (AP-GeM, GLAP) ----------------------------------- */

/* One block per (map j, image): the hw logits of map j are reduced in
 * shared memory (max, then the sum of exp or of the values), then written
 * as weights. */
template <typename T>
__global__ void __launch_bounds__(kThreads)
    att_weights_kernel(const T *__restrict__ s, int hw, int k, int mode, float eps,
                       float *__restrict__ w)
{
    __shared__ float s_red[kThreads];
    const int j = blockIdx.x, img = blockIdx.y, tid = threadIdx.x;
    const T *si = s + (size_t)img * hw * k + j;
    float *wi = w + (size_t)img * hw * k + j;
    float mx = -INFINITY;
    if (mode == IMAGO_CU_ATT_SOFTMAX) {
        for (int i = tid; i < hw; i += kThreads)
            mx = fmaxf(mx, to_f(si[(size_t)i * k]));
        s_red[tid] = mx;
        __syncthreads();
        for (int st = kThreads / 2; st > 0; st >>= 1) {
            if (tid < st)
                s_red[tid] = fmaxf(s_red[tid], s_red[tid + st]);
            __syncthreads();
        }
        mx = s_red[0];
        __syncthreads();
    }
    float sum = 0.0f;
    for (int i = tid; i < hw; i += kThreads) {
        const float v = to_f(si[(size_t)i * k]);
        sum += mode == IMAGO_CU_ATT_SOFTMAX ? expf(v - mx) : v;
    }
    s_red[tid] = sum;
    __syncthreads();
    for (int st = kThreads / 2; st > 0; st >>= 1) {
        if (tid < st)
            s_red[tid] += s_red[tid + st];
        __syncthreads();
    }
    const float inv = mode == IMAGO_CU_ATT_SOFTMAX ? 1.0f / s_red[0] : 1.0f / fmaxf(s_red[0], eps);
    for (int i = tid; i < hw; i += kThreads) {
        const float v = to_f(si[(size_t)i * k]);
        wi[(size_t)i * k] = (mode == IMAGO_CU_ATT_SOFTMAX ? expf(v - mx) : v) * inv;
    }
}

/* A thread per (channel, image) over all hw positions, kThreads channels per
 * block (coalesced rows), the k weighted sums in registers. */
template <typename T>
__global__ void __launch_bounds__(kThreads)
    wpool_kernel(const T *__restrict__ x, int hw, int c, int k, const float *__restrict__ w,
                 float p, float eps, float *__restrict__ out)
{
    const int ch = blockIdx.x * kThreads + threadIdx.x, img = blockIdx.y;
    if (ch >= c)
        return;
    float acc[IMAGO_CU_WPOOL_MAX_K];
    for (int j = 0; j < k; j++)
        acc[j] = 0.0f;
    const T *xi = x + (size_t)img * hw * c + ch;
    const float *wi = w + (size_t)img * hw * k;
    const bool cube = p == 3.0f;
    for (int i = 0; i < hw; i++) {
        const float t = fmaxf(to_f(xi[(size_t)i * c]), eps);
        const float q = cube ? t * t * t : powf(t, p);
        for (int j = 0; j < k; j++)
            acc[j] = fmaf(wi[(size_t)i * k + j], q, acc[j]);
    }
    for (int j = 0; j < k; j++)
        out[((size_t)img * k + j) * c + ch] = powf(acc[j], 1.0f / p);
}

/* ---- launchers ---------------------------------------------------------- */

template <typename T, int V, int CT>
void launch_pool_v(const T *x, int n, int hw, int c, int kind, float p, float eps, float *out,
                   cudaStream_t s)
{
    constexpr int CH = CT * V;
    const dim3 block(CT, kThreads / CT);
    const dim3 grid((unsigned)((c + CH - 1) / CH), (unsigned)(n < 65535 ? n : 65535));
    if (kind == IMAGO_CU_POOL_MAC)
        pool_kernel<T, V, CT, POOL_MAC><<<grid, block, 0, s>>>(x, n, hw, c, p, eps, out);
    else if (kind == IMAGO_CU_POOL_SPOC)
        pool_kernel<T, V, CT, POOL_SPOC><<<grid, block, 0, s>>>(x, n, hw, c, p, eps, out);
    else if (p == 3.0f)
        pool_kernel<T, V, CT, POOL_CUBE><<<grid, block, 0, s>>>(x, n, hw, c, p, eps, out);
    else
        pool_kernel<T, V, CT, POOL_POW><<<grid, block, 0, s>>>(x, n, hw, c, p, eps, out);
}

template <typename T>
int launch_pool(const void *x, int n, int hw, int c, int kind, float p, float eps, float *out,
                cudaStream_t s)
{
    constexpr int V = 16 / sizeof(T);
    const T *xt = static_cast<const T *>(x);
    clear_error();
    if (c % V == 0 && aligned16(x))
        launch_pool_v<T, V, 8>(xt, n, hw, c, kind, p, eps, out, s);
    else
        launch_pool_v<T, 1, 32>(xt, n, hw, c, kind, p, eps, out, s);
    return (int)cudaGetLastError();
}

} // namespace

extern "C" {

int imago_cu_pool(const void *x, imago_cu_dtype t, int n, int hw, int c, int kind, float p,
                  float eps, float *out, void *stream)
{
    if (imago_cu_dtype_size(t) == 0 || n < 0 || hw < 0 || c < 0 ||
        (kind != IMAGO_CU_POOL_GEM && kind != IMAGO_CU_POOL_SPOC && kind != IMAGO_CU_POOL_MAC))
        return kInvalid;
    /* GeM needs a positive clamp (the running maximum divides by it) and p */
    if (kind == IMAGO_CU_POOL_GEM && !(eps > 0.0f && p > 0.0f))
        return kInvalid;
    if (n == 0 || hw == 0 || c == 0)
        return 0;
    cudaStream_t s = as_stream(stream);
    switch (t) {
    case IMAGO_CU_F32: return launch_pool<float>(x, n, hw, c, kind, p, eps, out, s);
    case IMAGO_CU_F16: return launch_pool<__half>(x, n, hw, c, kind, p, eps, out, s);
    case IMAGO_CU_BF16: return launch_pool<__nv_bfloat16>(x, n, hw, c, kind, p, eps, out, s);
    }
    return kInvalid;
}

int imago_cu_att_weights(const void *s, imago_cu_dtype t, int n, int hw, int k, int mode,
                         float eps, float *w, void *stream)
{
    if (imago_cu_dtype_size(t) == 0 || n < 0 || hw < 0 || k < 0 || n > 65535 ||
        (mode != IMAGO_CU_ATT_NORMALIZE && mode != IMAGO_CU_ATT_SOFTMAX) || !(eps > 0.0f))
        return kInvalid;
    if (n == 0 || hw == 0 || k == 0)
        return 0;
    cudaStream_t st = as_stream(stream);
    dim3 grid((unsigned)k, (unsigned)n);
    clear_error();
    switch (t) {
    case IMAGO_CU_F32:
        att_weights_kernel<float><<<grid, kThreads, 0, st>>>(static_cast<const float *>(s), hw, k,
                                                             mode, eps, w);
        break;
    case IMAGO_CU_F16:
        att_weights_kernel<__half><<<grid, kThreads, 0, st>>>(static_cast<const __half *>(s), hw,
                                                              k, mode, eps, w);
        break;
    case IMAGO_CU_BF16:
        att_weights_kernel<__nv_bfloat16><<<grid, kThreads, 0, st>>>(
            static_cast<const __nv_bfloat16 *>(s), hw, k, mode, eps, w);
        break;
    }
    return (int)cudaGetLastError();
}

int imago_cu_wpool(const void *x, imago_cu_dtype t, int n, int hw, int c, int k, const float *w,
                   float p, float eps, float *out, void *stream)
{
    if (imago_cu_dtype_size(t) == 0 || n < 0 || hw < 0 || c < 0 || k < 0 || n > 65535 ||
        k > IMAGO_CU_WPOOL_MAX_K || !(p > 0.0f) || !(eps > 0.0f))
        return kInvalid;
    if (n == 0 || hw == 0 || c == 0 || k == 0)
        return 0;
    cudaStream_t st = as_stream(stream);
    dim3 grid((unsigned)((c + kThreads - 1) / kThreads), (unsigned)n);
    clear_error();
    switch (t) {
    case IMAGO_CU_F32:
        wpool_kernel<float><<<grid, kThreads, 0, st>>>(static_cast<const float *>(x), hw, c, k, w,
                                                       p, eps, out);
        break;
    case IMAGO_CU_F16:
        wpool_kernel<__half><<<grid, kThreads, 0, st>>>(static_cast<const __half *>(x), hw, c, k,
                                                        w, p, eps, out);
        break;
    case IMAGO_CU_BF16:
        wpool_kernel<__nv_bfloat16><<<grid, kThreads, 0, st>>>(
            static_cast<const __nv_bfloat16 *>(x), hw, c, k, w, p, eps, out);
        break;
    }
    return (int)cudaGetLastError();
}

} /* extern "C" */
