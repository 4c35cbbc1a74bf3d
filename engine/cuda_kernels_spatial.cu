/* The spatial kernels of the GPU backend (see cuda_kernels.h): explicit
 * (TensorFlow SAME) zero padding and max pooling on NHWC tensors, a block
 * per output row so that no integer division runs per element.
 */
#include "cuda_kernels_int.cuh"

using namespace imago_cuk;

namespace
{

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

/* ---- launchers ---------------------------------------------------------- */

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

} // namespace

extern "C" {

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

} /* extern "C" */
