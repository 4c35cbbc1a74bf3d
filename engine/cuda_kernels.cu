/* The CUDA kernels of the GPU backend (see cuda_kernels.h): dtype conversion,
 * padding, the fused bias + post-op epilogue, max pooling, element-wise
 * binaries, the global and the attention poolings, on NHWC tensors in fp32 /
 * fp16 / bf16.
 * This file holds the element-wise kernels (conversion, binaries, the
 * epilogue); padding and max pooling are in cuda_kernels_spatial.cu, the
 * global and attention poolings in cuda_kernels_pool.cu.
 *
 * All kernels are memory bound: they move 16 bytes per load/store where the
 * pointers are 16-byte aligned and the shape allows it (a scalar variant
 * otherwise), index with 64-bit offsets, and keep integer divisions out of
 * the per-element path (a block per output row for pad and maxpool; a
 * running channel counter for the epilogue). Arithmetic is fp32 (the global
 * pooling sums in double), rounded once to the tensor's type.
 */
#include "cuda_kernels_int.cuh"

using namespace imago_cuk;

namespace
{

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

/* ---- launchers ---------------------------------------------------------- */

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

const char *imago_cu_error_string(int code)
{
    return cudaGetErrorString((cudaError_t)code);
}

} /* extern "C" */
