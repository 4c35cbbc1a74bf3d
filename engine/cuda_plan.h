/* engine-private: the memory plan of the GPU backend for one input shape.
 *
 * For an n x h x w input the planner computes every value's shape, the
 * padding each convolution / max pooling applies (explicit and asymmetric
 * for TensorFlow SAME), and places every tensor the network needs at once
 * (values, plus the padded copy of an input that cuDNN's symmetric padding
 * cannot express) in one device arena. Two tensors share bytes only when
 * their lifetimes (from the op that writes them to the last op that reads
 * them, inclusive) do not overlap, so an op never reads and writes the same
 * bytes; the network output lives to the end. A ResNet-101 at batch 32 needs
 * a few of its largest activations at once, not the sum of all of them.
 *
 * It also holds the backend's host-side fp16/bf16 conversions. Plain C with
 * no CUDA dependency: the CUDA backend (engine/backend_cuda*.c) uses it,
 * tests/unit/test_engine_cuda_plan.c checks it everywhere.
 * Thread safety: a plan is immutable once built.
 */
#ifndef IMAGO_ENGINE_CUDA_PLAN_H
#define IMAGO_ENGINE_CUDA_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "common/common.h"
#include "net.h"

typedef struct imago_cuda_tensor {
    int h, w, c;       /* NHWC with the plan's n */
    size_t bytes;      /* 0: the tensor does not exist (a value no op writes) */
    size_t offset;     /* in the arena; a multiple of the plan's alignment */
    int first, last;   /* lifetime in op indices (-1: before op 0; n_ops: after the last) */
} imago_cuda_tensor;

typedef struct imago_cuda_op_plan {
    /* padding of the op's window (conv / maxpool): top, bottom, left, right */
    int pt, pb, pl, pr;
    /* 1 when pt != pb or pl != pr on a convolution: the input is copied,
     * zero-padded, into `padded` and the convolution runs with no padding */
    int explicit_pad;
    imago_cuda_tensor padded;
} imago_cuda_op_plan;

typedef struct imago_cuda_plan {
    int n, h, w;
    size_t elt;                 /* bytes per element */
    size_t align;               /* arena offsets are multiples of this */
    int n_values, n_ops;
    imago_cuda_tensor *values;  /* per value id */
    imago_cuda_op_plan *ops;    /* per op */
    size_t arena_bytes;         /* the arena to allocate */
    size_t sum_bytes;           /* what one buffer per tensor would take */
} imago_cuda_plan;

/* Plans net for an n x h x w input with elt-byte elements and arena offsets
 * aligned to align (a power of two). IMAGO_ERR_INVALID when the input is
 * too small for the network or n/h/w < 1, IMAGO_ERR_TOO_LARGE when a tensor
 * or the arena overflows size_t or a tensor has 2^31 elements or more (the
 * limit of cuDNN's 4-d descriptors), IMAGO_ERR_INTERNAL when the op list
 * writes a value twice or reads one no op wrote. *out is owned by the
 * caller (imago_cuda_plan_free). */
int imago_cuda_plan_build(const imago_net *net, int n, int h, int w, size_t elt, size_t align,
                          imago_cuda_plan **out, imago_error *err);
void imago_cuda_plan_free(imago_cuda_plan *p);

/* fp32 -> IEEE half / bfloat16 bits, round to nearest even (overflow to
 * Inf, subnormal halves, NaN kept quiet): how the backend converts weights. */
uint16_t imago_cuda_f32_to_f16(float f);
uint16_t imago_cuda_f32_to_bf16(float f);

#endif
