/* The CUDA kernels of the GPU backend (see cuda_kernels.h): dtype conversion,
 * padding, the fused bias + post-op epilogue, max pooling, element-wise
 * binaries and the global pooling, on NHWC tensors in fp32 / fp16 / bf16.
 *
 * All kernels are memory bound: they move 16 bytes per load/store where the
 * pointers are 16-byte aligned and the shape allows it (a scalar variant
 * otherwise), index with 64-bit offsets, and keep integer divisions out of
 * the per-element path (a block per output row for pad and maxpool; a
 * running channel counter for the epilogue). Arithmetic is fp32 (the global
 * pooling sums in double), rounded once to the tensor's type.
 */
#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>

#include <stdint.h>

#include "cuda_kernels.h"

namespace
{

constexpr int kThreads = 256;

/* ---- element access ---------------------------------------------------- */

__device__ __forceinline__ float to_f(float v)
{
    return v;
}
__device__ __forceinline__ float to_f(__half v)
{
    return __half2float(v);
}
__device__ __forceinline__ float to_f(__nv_bfloat16 v)
{
    return __bfloat162float(v);
}

template <typename T> __device__ __forceinline__ T from_f(float v);
template <> __device__ __forceinline__ float from_f<float>(float v)
{
    return v;
}
template <> __device__ __forceinline__ __half from_f<__half>(float v)
{
    return __float2half_rn(v);
}
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float v)
{
    return __float2bfloat16_rn(v);
}

/* 16 bytes of T, aligned so that a copy is one 128-bit access */
template <typename T> struct alignas(16) Vec16 {
    T v[16 / sizeof(T)];
};

/* N consecutive elements at p into fp32: one 16-byte load per 16 bytes when
 * N > 1 (then p is 16-byte aligned), a scalar load when N == 1. */
template <typename T, int N> __device__ __forceinline__ void load_n(const T *p, float (&f)[N])
{
    if constexpr (N == 1) {
        f[0] = to_f(p[0]);
    } else {
        constexpr int E = 16 / sizeof(T);
        static_assert(N % E == 0, "vector width must be a multiple of 16 bytes");
#pragma unroll
        for (int k = 0; k < N / E; k++) {
            Vec16<T> a = reinterpret_cast<const Vec16<T> *>(p)[k];
#pragma unroll
            for (int j = 0; j < E; j++)
                f[k * E + j] = to_f(a.v[j]);
        }
    }
}

template <typename T, int N> __device__ __forceinline__ void store_n(T *p, const float (&f)[N])
{
    if constexpr (N == 1) {
        p[0] = from_f<T>(f[0]);
    } else {
        constexpr int E = 16 / sizeof(T);
        static_assert(N % E == 0, "vector width must be a multiple of 16 bytes");
#pragma unroll
        for (int k = 0; k < N / E; k++) {
            Vec16<T> a;
#pragma unroll
            for (int j = 0; j < E; j++)
                a.v[j] = from_f<T>(f[k * E + j]);
            reinterpret_cast<Vec16<T> *>(p)[k] = a;
        }
    }
}

/* ---- element-wise kernels ---------------------------------------------- */

/* Grid-stride over count elements in vectors of V (16 bytes of the narrowest
 * type involved; V == 1 is the unaligned fallback); the count % V elements
 * left over go to the first threads of the grid, one each. The op stays in
 * the parameter space (const, indices known at compile time: no local
 * memory); what changes per step is its State. */
template <int V, typename Op>
__global__ void __launch_bounds__(kThreads) ew_kernel(size_t count, const Op op)
{
    const size_t gid = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    const size_t nvec = count / V;
    typename Op::State st = op.start(gid * V, stride * V);
    for (size_t i = gid; i < nvec; i += stride)
        op.template apply<V>(i * V, st);
    if (V > 1) {
        const size_t t = nvec * V + gid;
        if (t < count) {
            st = op.start(t, 0);
            op.template apply<1>(t, st);
        }
    }
}

struct NoState {
};

template <typename S, typename D> struct CvtOp {
    const S *src;
    D *dst;
    using State = NoState;
    __device__ State start(size_t, size_t) const
    {
        return State{};
    }
    template <int N> __device__ void apply(size_t i, State &) const
    {
        float f[N];
        load_n<S, N>(src + i, f);
        store_n<D, N>(dst + i, f);
    }
};

/* y may alias a or b: each element is read before it is written, by the same
 * thread, so plain (coherent) loads suffice. */
template <typename T> struct BinaryOp {
    const T *a;
    const T *b;
    T *y;
    int mul;
    using State = NoState;
    __device__ State start(size_t, size_t) const
    {
        return State{};
    }
    template <int N> __device__ void apply(size_t i, State &) const
    {
        float fa[N], fb[N];
        load_n<T, N>(a + i, fa);
        load_n<T, N>(b + i, fb);
#pragma unroll
        for (int j = 0; j < N; j++)
            fa[j] = mul ? __fmul_rn(fa[j], fb[j]) : __fadd_rn(fa[j], fb[j]);
        store_n<T, N>(y + i, fa);
    }
};

struct PostDev {
    int kind, act;
    float alpha, beta;
    const void *value;
};

/* The epilogue keeps the channel of its next element in State::ch and
 * advances it by the grid stride modulo c, so that the only 64-bit division
 * is the one in start(). The __f*_rn intrinsics keep nvcc from contracting a
 * post-op pair into an FMA: the result is the one of the ops in order. */
template <typename T> struct EpilogueOp {
    T *y;
    unsigned c;
    const float *bias;
    int n_post;
    PostDev post[IMAGO_CU_MAX_POST];
    struct State {
        unsigned ch, step;
    };

    __device__ State start(size_t first, size_t stride) const
    {
        return State{(unsigned)(first % c), (unsigned)(stride % c)};
    }
    __device__ static float act(int a, float v, float alpha, float beta)
    {
        switch (a) {
        case IMAGO_CU_ACT_RELU: return fmaxf(v, 0.0f);
        case IMAGO_CU_ACT_RELU6: return fminf(fmaxf(v, 0.0f), 6.0f);
        case IMAGO_CU_ACT_SIGMOID: return 1.0f / (1.0f + expf(-v));
        default: return fmaf(alpha, v, beta); /* LINEAR */
        }
    }
    template <int N> __device__ void apply(size_t i, State &st) const
    {
        float v[N];
        load_n<T, N>(y + i, v);
        if (bias) {
            unsigned k = st.ch;
#pragma unroll
            for (int j = 0; j < N; j++) {
                v[j] = __fadd_rn(v[j], __ldg(bias + k));
                if (++k == c)
                    k = 0;
            }
        }
#pragma unroll
        for (int q = 0; q < IMAGO_CU_MAX_POST; q++) {
            if (q >= n_post)
                break;
            const PostDev &P = post[q];
            if (P.kind == IMAGO_CU_POST_ACT) {
#pragma unroll
                for (int j = 0; j < N; j++)
                    v[j] = act(P.act, v[j], P.alpha, P.beta);
            } else {
                float w[N];
                load_n<T, N>(static_cast<const T *>(P.value) + i, w);
#pragma unroll
                for (int j = 0; j < N; j++)
                    v[j] =
                        P.kind == IMAGO_CU_POST_MUL ? __fmul_rn(v[j], w[j]) : __fadd_rn(v[j], w[j]);
            }
        }
        store_n<T, N>(y + i, v);
        st.ch += st.step;
        if (st.ch >= c)
            st.ch -= c;
    }
};

/* ---- padding ------------------------------------------------------------ */

/* A block per destination row (image, y): the row is pl * cu zero units,
 * then the w * cu units of source row y - pt (or zeros above/below), then
 * pr * cu zeros. U is the widest unit (16 / 8 / 4 / 2 bytes) that divides a
 * pixel's bytes and both pointers, so the kernel does not care about the
 * dtype: zero is all-zero bits in all three. */
template <typename U>
__global__ void __launch_bounds__(kThreads)
    pad_kernel(const U *__restrict__ src, U *__restrict__ dst, int n, int h, int w, size_t cu,
               int pt, int pl, int H, int W)
{
    const long long rows = (long long)n * H;
    const size_t row_units = (size_t)W * cu;
    const size_t lo = (size_t)pl * cu, hi = (size_t)(pl + w) * cu;
    const U zero{};
    for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
        const int img = (int)(r / H);
        const int sy = (int)(r - (long long)img * H) - pt;
        U *d = dst + (size_t)r * row_units;
        if (sy < 0 || sy >= h) {
            for (size_t u = threadIdx.x; u < row_units; u += blockDim.x)
                d[u] = zero;
        } else {
            const U *s = src + ((size_t)img * h + sy) * (size_t)w * cu;
            for (size_t u = threadIdx.x; u < row_units; u += blockDim.x)
                d[u] = (u >= lo && u < hi) ? s[u - lo] : zero;
        }
    }
}

/* ---- max pooling -------------------------------------------------------- */

/* A block per output row (image, oy); its threads cover ow x c/V units of V
 * channels. -inf start, NaN propagates (as torch's max_pool2d). */
template <typename T, int V>
__global__ void __launch_bounds__(kThreads)
    maxpool_kernel(const T *__restrict__ x, T *__restrict__ y, int n, int h, int w, int c, int k,
                   int stride, int pad_t, int pad_l, int oh, int ow)
{
    const int cu = c / V;
    const int units = ow * cu; /* checked to fit on the host */
    const long long rows = (long long)n * oh;
    for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
        const int img = (int)(r / oh);
        const int oy = (int)(r - (long long)img * oh);
        const int iy0 = oy * stride - pad_t;
        const int y0 = max(iy0, 0), y1 = min(iy0 + k, h);
        const T *xi = x + (size_t)img * h * w * c;
        T *yr = y + (size_t)r * ow * c;
        for (int u = threadIdx.x; u < units; u += blockDim.x) {
            const int ox = u / cu;
            const int cc = (u - ox * cu) * V;
            const int ix0 = ox * stride - pad_l;
            const int x0 = max(ix0, 0), x1 = min(ix0 + k, w);
            float m[V];
#pragma unroll
            for (int j = 0; j < V; j++)
                m[j] = -INFINITY;
            for (int iy = y0; iy < y1; iy++) {
                const T *row = xi + (size_t)iy * w * c + cc;
                for (int ix = x0; ix < x1; ix++) {
                    float f[V];
                    load_n<T, V>(row + (size_t)ix * c, f);
#pragma unroll
                    for (int j = 0; j < V; j++)
                        if (f[j] > m[j] || isnan(f[j]))
                            m[j] = f[j];
                }
            }
            store_n<T, V>(yr + (size_t)ox * c + cc, m);
        }
    }
}

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

/* ---- launch helpers ----------------------------------------------------- */

/* Launch errors only: a failed call earlier on this thread (a cudaMalloc the
 * caller handled) must not be reported as ours, so clear it first. */
inline void clear_error()
{
    (void)cudaGetLastError();
}

/* blocks for `work` items of one thread each, capped at 32 blocks of 256 per
 * SM (several waves: the grid-stride loops take the rest) */
cudaError_t grid_for(size_t work, unsigned *blocks)
{
    int dev = 0, sms = 0;
    cudaError_t e = cudaGetDevice(&dev);
    if (e == cudaSuccess)
        e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
    if (e != cudaSuccess)
        return e;
    size_t cap = (size_t)(sms > 0 ? sms : 1) * 32;
    size_t b = (work + kThreads - 1) / kThreads;
    *blocks = (unsigned)(b < cap ? b : cap);
    if (*blocks == 0)
        *blocks = 1;
    return cudaSuccess;
}

bool aligned16(const void *p)
{
    return ((uintptr_t)p & 15) == 0;
}

template <int V, typename Op> int launch_ew(size_t count, const Op &op, cudaStream_t s)
{
    unsigned blocks;
    cudaError_t e = grid_for((count + V - 1) / V, &blocks);
    if (e != cudaSuccess)
        return (int)e;
    clear_error();
    ew_kernel<V, Op><<<blocks, kThreads, 0, s>>>(count, op);
    return (int)cudaGetLastError();
}

template <typename T> int launch_from_f32(const float *src, void *dst, size_t count, cudaStream_t s)
{
    CvtOp<float, T> op{src, static_cast<T *>(dst)};
    if (aligned16(src) && aligned16(dst))
        return launch_ew<16 / sizeof(T)>(count, op, s);
    return launch_ew<1>(count, op, s);
}

template <typename T> int launch_to_f32(const void *src, float *dst, size_t count, cudaStream_t s)
{
    CvtOp<T, float> op{static_cast<const T *>(src), dst};
    if (aligned16(src) && aligned16(dst))
        return launch_ew<16 / sizeof(T)>(count, op, s);
    return launch_ew<1>(count, op, s);
}

template <typename T>
int launch_binary(const void *a, const void *b, void *y, size_t count, int mul, cudaStream_t s)
{
    BinaryOp<T> op{static_cast<const T *>(a), static_cast<const T *>(b), static_cast<T *>(y),
                   mul != 0};
    if (aligned16(a) && aligned16(b) && aligned16(y))
        return launch_ew<16 / sizeof(T)>(count, op, s);
    return launch_ew<1>(count, op, s);
}

template <typename T>
int launch_epilogue(void *y, size_t count, int c, const float *bias, const imago_cu_post *posts,
                    int n_post, cudaStream_t s)
{
    EpilogueOp<T> op{};
    op.y = static_cast<T *>(y);
    op.c = (unsigned)c;
    op.bias = bias;
    op.n_post = n_post;
    bool vec = aligned16(y);
    for (int q = 0; q < n_post; q++) {
        op.post[q].kind = posts[q].kind;
        op.post[q].act = posts[q].act;
        op.post[q].alpha = posts[q].alpha;
        op.post[q].beta = posts[q].beta;
        op.post[q].value = posts[q].value;
        if (posts[q].kind != IMAGO_CU_POST_ACT && !aligned16(posts[q].value))
            vec = false;
    }
    if (vec)
        return launch_ew<16 / sizeof(T)>(count, op, s);
    return launch_ew<1>(count, op, s);
}

template <typename U>
int launch_pad(const void *src, void *dst, int n, int h, int w, size_t cu, int pt, int pl, int H,
               int W, cudaStream_t s)
{
    unsigned blocks;
    cudaError_t e = grid_for((size_t)n * H * kThreads, &blocks);
    if (e != cudaSuccess)
        return (int)e;
    clear_error();
    pad_kernel<U><<<blocks, kThreads, 0, s>>>(static_cast<const U *>(src), static_cast<U *>(dst), n,
                                              h, w, cu, pt, pl, H, W);
    return (int)cudaGetLastError();
}

template <typename T>
int launch_maxpool(const void *x, void *y, int n, int h, int w, int c, int k, int stride, int pt,
                   int pl, int oh, int ow, cudaStream_t s)
{
    constexpr int V = 16 / sizeof(T);
    unsigned blocks;
    cudaError_t e = grid_for((size_t)n * oh * kThreads, &blocks);
    if (e != cudaSuccess)
        return (int)e;
    const T *xt = static_cast<const T *>(x);
    T *yt = static_cast<T *>(y);
    clear_error();
    if (c % V == 0 && aligned16(x) && aligned16(y))
        maxpool_kernel<T, V>
            <<<blocks, kThreads, 0, s>>>(xt, yt, n, h, w, c, k, stride, pt, pl, oh, ow);
    else
        maxpool_kernel<T, 1>
            <<<blocks, kThreads, 0, s>>>(xt, yt, n, h, w, c, k, stride, pt, pl, oh, ow);
    return (int)cudaGetLastError();
}

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

inline cudaStream_t as_stream(void *stream)
{
    return static_cast<cudaStream_t>(stream);
}

const int kInvalid = (int)cudaErrorInvalidValue;

} // namespace

extern "C" {

size_t imago_cu_dtype_size(imago_cu_dtype t)
{
    switch (t) {
    case IMAGO_CU_F32: return 4;
    case IMAGO_CU_F16:
    case IMAGO_CU_BF16: return 2;
    }
    return 0;
}

int imago_cu_from_f32(const float *src, void *dst, imago_cu_dtype t, size_t count, void *stream)
{
    if (count == 0)
        return 0;
    switch (t) {
    case IMAGO_CU_F32:
        if ((const void *)src == dst)
            return 0;
        clear_error();
        return (int)cudaMemcpyAsync(dst, src, count * sizeof(float), cudaMemcpyDeviceToDevice,
                                    as_stream(stream));
    case IMAGO_CU_F16: return launch_from_f32<__half>(src, dst, count, as_stream(stream));
    case IMAGO_CU_BF16: return launch_from_f32<__nv_bfloat16>(src, dst, count, as_stream(stream));
    }
    return kInvalid;
}

int imago_cu_to_f32(const void *src, imago_cu_dtype t, float *dst, size_t count, void *stream)
{
    if (count == 0)
        return 0;
    switch (t) {
    case IMAGO_CU_F32:
        if (src == (const void *)dst)
            return 0;
        clear_error();
        return (int)cudaMemcpyAsync(dst, src, count * sizeof(float), cudaMemcpyDeviceToDevice,
                                    as_stream(stream));
    case IMAGO_CU_F16: return launch_to_f32<__half>(src, dst, count, as_stream(stream));
    case IMAGO_CU_BF16: return launch_to_f32<__nv_bfloat16>(src, dst, count, as_stream(stream));
    }
    return kInvalid;
}

int imago_cu_pad(const void *src, void *dst, imago_cu_dtype t, int n, int h, int w, int c, int pt,
                 int pb, int pl, int pr, void *stream)
{
    const size_t es = imago_cu_dtype_size(t);
    if (es == 0 || n < 0 || h < 0 || w < 0 || c < 0 || pt < 0 || pb < 0 || pl < 0 || pr < 0)
        return kInvalid;
    const int H = h + pt + pb, W = w + pl + pr;
    if (n == 0 || c == 0 || H == 0 || W == 0)
        return 0;
    /* the widest unit that divides a pixel and both addresses */
    const size_t px = (size_t)c * es;
    const uintptr_t bits = (uintptr_t)src | (uintptr_t)dst | (uintptr_t)px;
    cudaStream_t s = as_stream(stream);
    if ((bits & 15) == 0)
        return launch_pad<uint4>(src, dst, n, h, w, px / 16, pt, pl, H, W, s);
    if ((bits & 7) == 0)
        return launch_pad<uint2>(src, dst, n, h, w, px / 8, pt, pl, H, W, s);
    if ((bits & 3) == 0)
        return launch_pad<unsigned>(src, dst, n, h, w, px / 4, pt, pl, H, W, s);
    if ((bits & 1) == 0)
        return launch_pad<unsigned short>(src, dst, n, h, w, px / 2, pt, pl, H, W, s);
    return kInvalid; /* not even aligned to its element */
}

int imago_cu_epilogue(void *y, imago_cu_dtype t, size_t count, int c, const float *bias,
                      const imago_cu_post *posts, int n_post, void *stream)
{
    if (n_post < 0 || n_post > IMAGO_CU_MAX_POST || (n_post > 0 && !posts))
        return kInvalid;
    for (int q = 0; q < n_post; q++) {
        const imago_cu_post *P = &posts[q];
        if (P->kind < IMAGO_CU_POST_ACT || P->kind > IMAGO_CU_POST_ADD)
            return kInvalid;
        if (P->kind == IMAGO_CU_POST_ACT &&
            (P->act < IMAGO_CU_ACT_RELU || P->act > IMAGO_CU_ACT_LINEAR))
            return kInvalid;
        if (P->kind != IMAGO_CU_POST_ACT && !P->value)
            return kInvalid;
    }
    if (count == 0)
        return 0;
    if (c <= 0)
        return kInvalid;
    if (!bias && n_post == 0)
        return 0; /* v = y, rounded back to y: nothing to do */
    cudaStream_t s = as_stream(stream);
    switch (t) {
    case IMAGO_CU_F32: return launch_epilogue<float>(y, count, c, bias, posts, n_post, s);
    case IMAGO_CU_F16: return launch_epilogue<__half>(y, count, c, bias, posts, n_post, s);
    case IMAGO_CU_BF16: return launch_epilogue<__nv_bfloat16>(y, count, c, bias, posts, n_post, s);
    }
    return kInvalid;
}

int imago_cu_maxpool(const void *x, void *y, imago_cu_dtype t, int n, int h, int w, int c, int k,
                     int stride, int pad_t, int pad_l, int oh, int ow, void *stream)
{
    if (imago_cu_dtype_size(t) == 0 || n < 0 || h < 0 || w < 0 || c < 0 || oh < 0 || ow < 0 ||
        k < 1 || stride < 1 || pad_t < 0 || pad_l < 0)
        return kInvalid;
    if (n == 0 || c == 0 || oh == 0 || ow == 0)
        return 0;
    /* a block's row and the window offsets are int arithmetic */
    if ((long long)ow * c > 0x7fffffffLL || (long long)(oh - 1) * stride + k > 0x7fffffffLL ||
        (long long)(ow - 1) * stride + k > 0x7fffffffLL)
        return kInvalid;
    cudaStream_t s = as_stream(stream);
    switch (t) {
    case IMAGO_CU_F32:
        return launch_maxpool<float>(x, y, n, h, w, c, k, stride, pad_t, pad_l, oh, ow, s);
    case IMAGO_CU_F16:
        return launch_maxpool<__half>(x, y, n, h, w, c, k, stride, pad_t, pad_l, oh, ow, s);
    case IMAGO_CU_BF16:
        return launch_maxpool<__nv_bfloat16>(x, y, n, h, w, c, k, stride, pad_t, pad_l, oh, ow, s);
    }
    return kInvalid;
}

int imago_cu_binary(const void *a, const void *b, void *y, imago_cu_dtype t, size_t count, int mul,
                    void *stream)
{
    if (count == 0)
        return imago_cu_dtype_size(t) ? 0 : kInvalid;
    cudaStream_t s = as_stream(stream);
    switch (t) {
    case IMAGO_CU_F32: return launch_binary<float>(a, b, y, count, mul, s);
    case IMAGO_CU_F16: return launch_binary<__half>(a, b, y, count, mul, s);
    case IMAGO_CU_BF16: return launch_binary<__nv_bfloat16>(a, b, y, count, mul, s);
    }
    return kInvalid;
}

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

const char *imago_cu_error_string(int code)
{
    return cudaGetErrorString((cudaError_t)code);
}

} /* extern "C" */
