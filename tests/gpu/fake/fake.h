/* tests/gpu/fake: a host-side stand-in for the CUDA runtime, cuDNN and the
 * kernel launchers of engine/cuda_kernels.h, so that engine/backend_cuda.c
 * (the real GPU backend) runs on the CPU in CI (tests/gpu/test_cuda_emulated.c).
 * "Device" memory is host memory from cudaMalloc's table; every launcher and
 * cuDNN call checks that the bytes it touches lie inside one live device
 * allocation, so that arena and descriptor bugs of the backend fail loudly.
 *
 * Environment (read at each call):
 *   IMAGO_FAKE_CUDA_MEM=BYTES       device memory size (default 16 GiB): an
 *                                   allocation beyond it is cudaErrorMemoryAllocation
 *   IMAGO_FAKE_CUDNN_NO_FUSED=1     cudnnConvolutionBiasActivationForward returns
 *                                   CUDNN_STATUS_NOT_SUPPORTED
 *
 * Thread safety: the allocation table and the counters are locked / atomic;
 * everything runs synchronously on the calling thread (streams and events
 * are bookkeeping only).
 */
#ifndef IMAGO_TESTS_FAKE_CUDA_H
#define IMAGO_TESTS_FAKE_CUDA_H

#include <stddef.h>
#include <stdint.h>

/* Call counters, read by the test through dlsym(IMAGO_FAKE_STATS_SYMBOL). */
typedef struct imago_fake_cuda_stats {
    uint64_t mallocs, malloc_failed, frees;
    uint64_t bytes_in_use, peak_bytes;
    uint64_t memcpys;
    uint64_t find_calls;
    uint64_t conv_calls;        /* cudnnConvolutionForward that ran */
    uint64_t fused_calls;       /* cudnnConvolutionBiasActivationForward that ran */
    uint64_t fused_sum_calls;   /* ... of which with alpha2 != 0 (residual z) */
    uint64_t fused_refused;     /* NOT_SUPPORTED because of IMAGO_FAKE_CUDNN_NO_FUSED */
    uint64_t bad_param;         /* cuDNN calls that failed validation */
    uint64_t f32_tensor_op;     /* fp32 convolutions run with CUDNN_TENSOR_OP_MATH (TF32) */
    uint64_t conv_ws_used;      /* convolutions that ran with a workspace > 0 */
    uint64_t kernel_calls, kernel_bad; /* launchers run / refused (bad pointer or size) */
    uint64_t pad_calls, epilogue_calls, maxpool_calls, binary_calls, pool_calls;
    uint64_t att_weights_calls, wpool_calls; /* AP-GeM / GLAP attention pooling */
    uint64_t convert_calls;
} imago_fake_cuda_stats;

#define IMAGO_FAKE_STATS_SYMBOL "imago_fake_cuda_stats_get"
typedef imago_fake_cuda_stats *(*imago_fake_stats_fn)(void);

/* ---- shared inside the fake module ---- */
imago_fake_cuda_stats *imago_fake_cuda_stats_get(void);
/* 0 when [p, p + bytes) lies inside one live cudaMalloc allocation */
int fake_cuda_check(const void *p, size_t bytes);
/* 1 when the two byte ranges overlap */
int fake_overlap(const void *a, size_t an, const void *b, size_t bn);
void fake_count(uint64_t *counter);

float fake_f16_to_f32(uint16_t h);
float fake_bf16_to_f32(uint16_t h);
/* element e of a buffer of type t (0 f32, 1 f16, 2 bf16) as float / stored */
float fake_load(const void *p, int t, size_t e);
void fake_store(void *p, int t, size_t e, float v);

#endif
