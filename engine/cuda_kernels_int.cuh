/* engine-private: what the CUDA kernel files share (cuda_kernels.cu:
 * conversion, binaries and the epilogue; cuda_kernels_spatial.cu: padding and
 * max pooling; cuda_kernels_pool.cu: the global and attention poolings):
 * element access in fp32 with 16-byte vectors, and the launch helpers.
 * Device code, C++ only; the C interface is cuda_kernels.h.
 */
#ifndef IMAGO_ENGINE_CUDA_KERNELS_INT_CUH
#define IMAGO_ENGINE_CUDA_KERNELS_INT_CUH

#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>

#include <stdint.h>

#include "cuda_kernels.h"

namespace imago_cuk
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

/* ---- launch helpers ----------------------------------------------------- */

/* Launch errors only: a failed call earlier on this thread (a cudaMalloc the
 * caller handled) must not be reported as ours, so clear it first. */
inline void clear_error()
{
    (void)cudaGetLastError();
}

/* blocks for `work` items of one thread each, capped at 32 blocks of 256 per
 * SM (several waves: the grid-stride loops take the rest) */
inline cudaError_t grid_for(size_t work, unsigned *blocks)
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

inline bool aligned16(const void *p)
{
    return ((uintptr_t)p & 15) == 0;
}

inline cudaStream_t as_stream(void *stream)
{
    return static_cast<cudaStream_t>(stream);
}

constexpr int kInvalid = (int)cudaErrorInvalidValue;

} // namespace imago_cuk

#endif /* IMAGO_ENGINE_CUDA_KERNELS_INT_CUH */
