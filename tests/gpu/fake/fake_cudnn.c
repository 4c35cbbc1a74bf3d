/* The subset of cuDNN that engine/backend_cuda.c calls, on the host (see
 * fake.h). Descriptors are this file's structs behind cuDNN's opaque types.
 *
 * Convolutions: NHWC tensors, KRSC filters, groups, stride, dilation,
 * symmetric padding, cross-correlation; data in FLOAT, HALF or BFLOAT16 as the
 * descriptors say, converted to fp32, accumulated in fp32 and rounded once
 * (RNE) to y's type. Arguments are validated as cuDNN does, and a little
 * more (every buffer inside one live device allocation, x / w / workspace not
 * overlapping y): a mismatch is CUDNN_STATUS_BAD_PARAM, counted in
 * stats.bad_param, so that the backend's orchestration bugs show.
 *
 * cudnnFindConvolutionForwardAlgorithmEx reports, fastest first:
 *   IMPLICIT_PRECOMP_GEMM with CUDNN_TENSOR_OP_MATH (TF32 for fp32 data: the
 *     backend must skip it at fp32), a small workspace;
 *   GEMM with CUDNN_FMA_MATH and an im2col workspace (n*oh*ow*kh*kw*cin/g
 *     elements), refused when the search workspace is smaller;
 *   IMPLICIT_GEMM with CUDNN_FMA_MATH, no workspace;
 *   FFT, status CUDNN_STATUS_NOT_SUPPORTED.
 * It poisons y (NaN bytes), as the real search leaves y overwritten; each
 * algorithm writes its workspace when it runs. */
#include "fake.h"

#include "engine/cuda_kernels.h"

#include <cudnn.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define H_MAGIC 0xD11Au
#define T_MAGIC 0x7E5Au
#define F_MAGIC 0xF117u
#define C_MAGIC 0xC0DEu
#define A_MAGIC 0xAC7Du

struct cudnnContext {
    unsigned magic;
    cudaStream_t stream;
};

struct cudnnTensorStruct {
    unsigned magic;
    int set;
    cudnnTensorFormat_t format;
    cudnnDataType_t dt;
    int n, c, h, w;
};

struct cudnnFilterStruct {
    unsigned magic;
    int set;
    cudnnTensorFormat_t format;
    cudnnDataType_t dt;
    int k, c, h, w;
};

struct cudnnConvolutionStruct {
    unsigned magic;
    int set;
    int pad_h, pad_w, u, v, dil_h, dil_w;
    cudnnConvolutionMode_t mode;
    cudnnDataType_t compute;
    int groups;
    cudnnMathType_t math;
};

struct cudnnActivationStruct {
    unsigned magic;
    int set;
    cudnnActivationMode_t mode;
    cudnnNanPropagation_t nan;
    double coef;
};

static imago_fake_cuda_stats *stats(void)
{
    return imago_fake_cuda_stats_get();
}

static cudnnStatus_t bad(void)
{
    fake_count(&stats()->bad_param);
    return CUDNN_STATUS_BAD_PARAM;
}

/* ---- handles and descriptors ------------------------------------------------ */

cudnnStatus_t cudnnCreate(cudnnHandle_t *handle)
{
    if (!handle)
        return bad();
    struct cudnnContext *h = calloc(1, sizeof *h);
    if (!h)
        return CUDNN_STATUS_ALLOC_FAILED;
    h->magic = H_MAGIC;
    *handle = h;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnDestroy(cudnnHandle_t handle)
{
    if (!handle || handle->magic != H_MAGIC)
        return bad();
    handle->magic = 0;
    free(handle);
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetStream(cudnnHandle_t handle, cudaStream_t streamId)
{
    if (!handle || handle->magic != H_MAGIC)
        return bad();
    handle->stream = streamId;
    return CUDNN_STATUS_SUCCESS;
}

#define CREATE_DESTROY(Name, type, strct, MAGIC)                                             \
    cudnnStatus_t cudnnCreate##Name(type *d)                                                 \
    {                                                                                        \
        if (!d)                                                                              \
            return bad();                                                                    \
        struct strct *p = calloc(1, sizeof *p);                                              \
        if (!p)                                                                              \
            return CUDNN_STATUS_ALLOC_FAILED;                                                \
        p->magic = MAGIC;                                                                    \
        *d = p;                                                                              \
        return CUDNN_STATUS_SUCCESS;                                                         \
    }                                                                                        \
    cudnnStatus_t cudnnDestroy##Name(type d)                                                 \
    {                                                                                        \
        if (!d)                                                                              \
            return CUDNN_STATUS_SUCCESS;                                                     \
        if (d->magic != MAGIC)                                                               \
            return bad();                                                                    \
        d->magic = 0;                                                                        \
        free(d);                                                                             \
        return CUDNN_STATUS_SUCCESS;                                                         \
    }

CREATE_DESTROY(TensorDescriptor, cudnnTensorDescriptor_t, cudnnTensorStruct, T_MAGIC)
CREATE_DESTROY(FilterDescriptor, cudnnFilterDescriptor_t, cudnnFilterStruct, F_MAGIC)
CREATE_DESTROY(ConvolutionDescriptor, cudnnConvolutionDescriptor_t, cudnnConvolutionStruct,
               C_MAGIC)
CREATE_DESTROY(ActivationDescriptor, cudnnActivationDescriptor_t, cudnnActivationStruct, A_MAGIC)

/* the storage type of a cuDNN data type, -1 when the fake does not run it */
static int dtype(cudnnDataType_t dt)
{
    return dt == CUDNN_DATA_FLOAT      ? IMAGO_CU_F32
           : dt == CUDNN_DATA_HALF     ? IMAGO_CU_F16
           : dt == CUDNN_DATA_BFLOAT16 ? IMAGO_CU_BF16
                                       : -1;
}

cudnnStatus_t cudnnSetTensor4dDescriptor(cudnnTensorDescriptor_t d, cudnnTensorFormat_t format,
                                         cudnnDataType_t dataType, int n, int c, int h, int w)
{
    if (!d || d->magic != T_MAGIC || n < 1 || c < 1 || h < 1 || w < 1 ||
        (format != CUDNN_TENSOR_NHWC && format != CUDNN_TENSOR_NCHW))
        return bad();
    if ((double)n * c * h * w >= 2147483648.0)
        return CUDNN_STATUS_NOT_SUPPORTED; /* 4-d descriptors count elements in int */
    if (dtype(dataType) < 0)
        return CUDNN_STATUS_NOT_SUPPORTED;
    *d = (struct cudnnTensorStruct){T_MAGIC, 1, format, dataType, n, c, h, w};
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetFilter4dDescriptor(cudnnFilterDescriptor_t d, cudnnDataType_t dataType,
                                         cudnnTensorFormat_t format, int k, int c, int h, int w)
{
    if (!d || d->magic != F_MAGIC || k < 1 || c < 1 || h < 1 || w < 1 ||
        (format != CUDNN_TENSOR_NHWC && format != CUDNN_TENSOR_NCHW))
        return bad();
    if (dtype(dataType) < 0)
        return CUDNN_STATUS_NOT_SUPPORTED;
    *d = (struct cudnnFilterStruct){F_MAGIC, 1, format, dataType, k, c, h, w};
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetConvolution2dDescriptor(cudnnConvolutionDescriptor_t d, int pad_h,
                                              int pad_w, int u, int v, int dilation_h,
                                              int dilation_w, cudnnConvolutionMode_t mode,
                                              cudnnDataType_t computeType)
{
    if (!d || d->magic != C_MAGIC || pad_h < 0 || pad_w < 0 || u < 1 || v < 1 ||
        dilation_h < 1 || dilation_w < 1 ||
        (mode != CUDNN_CONVOLUTION && mode != CUDNN_CROSS_CORRELATION))
        return bad();
    d->set = 1;
    d->pad_h = pad_h;
    d->pad_w = pad_w;
    d->u = u;
    d->v = v;
    d->dil_h = dilation_h;
    d->dil_w = dilation_w;
    d->mode = mode;
    d->compute = computeType;
    if (!d->groups)
        d->groups = 1;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetConvolutionGroupCount(cudnnConvolutionDescriptor_t d, int groupCount)
{
    if (!d || d->magic != C_MAGIC || groupCount < 1)
        return bad();
    d->groups = groupCount;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetConvolutionMathType(cudnnConvolutionDescriptor_t d, cudnnMathType_t mathType)
{
    if (!d || d->magic != C_MAGIC ||
        (mathType != CUDNN_DEFAULT_MATH && mathType != CUDNN_TENSOR_OP_MATH &&
         mathType != CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION && mathType != CUDNN_FMA_MATH))
        return bad();
    d->math = mathType;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetActivationDescriptor(cudnnActivationDescriptor_t d,
                                           cudnnActivationMode_t mode,
                                           cudnnNanPropagation_t reluNanOpt, double coef)
{
    if (!d || d->magic != A_MAGIC)
        return bad();
    d->set = 1;
    d->mode = mode;
    d->nan = reluNanOpt;
    d->coef = coef;
    return CUDNN_STATUS_SUCCESS;
}

static int conv_ok(cudnnConvolutionDescriptor_t c)
{
    return c && c->magic == C_MAGIC && c->set;
}
static int tensor_ok(cudnnTensorDescriptor_t t)
{
    return t && t->magic == T_MAGIC && t->set;
}
static int filter_ok(cudnnFilterDescriptor_t f)
{
    return f && f->magic == F_MAGIC && f->set;
}

static int out_size(int in, int pad, int k, int dil, int stride)
{
    int span = (k - 1) * dil + 1;
    return in + 2 * pad < span ? 0 : (in + 2 * pad - span) / stride + 1;
}

cudnnStatus_t cudnnGetConvolution2dForwardOutputDim(const cudnnConvolutionDescriptor_t convDesc,
                                                    const cudnnTensorDescriptor_t x,
                                                    const cudnnFilterDescriptor_t f, int *n,
                                                    int *c, int *h, int *w)
{
    if (!conv_ok(convDesc) || !tensor_ok(x) || !filter_ok(f) || !n || !c || !h || !w)
        return bad();
    if (x->c != f->c * convDesc->groups || f->k % convDesc->groups)
        return bad();
    int oh = out_size(x->h, convDesc->pad_h, f->h, convDesc->dil_h, convDesc->u);
    int ow = out_size(x->w, convDesc->pad_w, f->w, convDesc->dil_w, convDesc->v);
    if (oh < 1 || ow < 1)
        return bad();
    *n = x->n;
    *c = f->k;
    *h = oh;
    *w = ow;
    return CUDNN_STATUS_SUCCESS;
}

/* ---- convolution ------------------------------------------------------------- */

typedef struct conv_shape {
    int t;                   /* storage type of x, w, y */
    int n, H, W, C;          /* x */
    int K, kh, kw, cig, kg;  /* filter, per-group input / output channels */
    int groups, ph, pw, u, v, dh, dw;
    int oh, ow;
    size_t es;
    size_t x_bytes, w_bytes, y_bytes;
} conv_shape;

static size_t ws_need(cudnnConvolutionFwdAlgo_t algo, const conv_shape *s)
{
    switch (algo) {
    case CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM:
        return (size_t)s->kh * s->kw * s->oh * s->ow * sizeof(int); /* index table */
    case CUDNN_CONVOLUTION_FWD_ALGO_GEMM:
        return (size_t)s->n * s->oh * s->ow * s->kh * s->kw * s->cig * s->es; /* im2col */
    default: return 0;
    }
}

static int algo_runs(cudnnConvolutionFwdAlgo_t algo)
{
    return algo == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM ||
           algo == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM ||
           algo == CUDNN_CONVOLUTION_FWD_ALGO_GEMM;
}

/* descriptors against each other and the buffers; y is written, x and w read */
static cudnnStatus_t check_conv(cudnnHandle_t handle, cudnnTensorDescriptor_t xd, const void *x,
                                cudnnFilterDescriptor_t wd, const void *w,
                                cudnnConvolutionDescriptor_t cd, cudnnTensorDescriptor_t yd,
                                const void *y, conv_shape *s)
{
    if (!handle || handle->magic != H_MAGIC || !tensor_ok(xd) || !tensor_ok(yd) ||
        !filter_ok(wd) || !conv_ok(cd) || !x || !w || !y)
        return bad();
    if (xd->dt != wd->dt || xd->dt != yd->dt)
        return bad();
    if (xd->format != CUDNN_TENSOR_NHWC || yd->format != CUDNN_TENSOR_NHWC ||
        wd->format != CUDNN_TENSOR_NHWC || cd->mode != CUDNN_CROSS_CORRELATION)
        return CUDNN_STATUS_NOT_SUPPORTED; /* the fake runs what the backend asks for */
    if (cd->compute != CUDNN_DATA_FLOAT && !(cd->compute == CUDNN_DATA_HALF &&
                                             xd->dt == CUDNN_DATA_HALF))
        return bad();
    int n, k, oh, ow;
    cudnnStatus_t st = cudnnGetConvolution2dForwardOutputDim(cd, xd, wd, &n, &k, &oh, &ow);
    if (st != CUDNN_STATUS_SUCCESS)
        return st;
    if (yd->n != n || yd->c != k || yd->h != oh || yd->w != ow)
        return bad();
    *s = (conv_shape){.t = dtype(xd->dt), .n = xd->n, .H = xd->h, .W = xd->w, .C = xd->c,
                      .K = wd->k, .kh = wd->h, .kw = wd->w, .cig = wd->c,
                      .kg = wd->k / cd->groups, .groups = cd->groups, .ph = cd->pad_h,
                      .pw = cd->pad_w, .u = cd->u, .v = cd->v, .dh = cd->dil_h, .dw = cd->dil_w,
                      .oh = oh, .ow = ow};
    s->es = imago_cu_dtype_size((imago_cu_dtype)s->t);
    s->x_bytes = (size_t)s->n * s->H * s->W * s->C * s->es;
    s->w_bytes = (size_t)s->K * s->kh * s->kw * s->cig * s->es;
    s->y_bytes = (size_t)s->n * oh * ow * s->K * s->es;
    if (fake_cuda_check(x, s->x_bytes) || fake_cuda_check(w, s->w_bytes) ||
        fake_cuda_check(y, s->y_bytes))
        return bad();
    /* cuDNN: x and y must not overlap (nor may y overwrite the filter) */
    if (fake_overlap(x, s->x_bytes, y, s->y_bytes) || fake_overlap(w, s->w_bytes, y, s->y_bytes))
        return bad();
    return CUDNN_STATUS_SUCCESS;
}

static cudnnStatus_t check_ws(cudnnConvolutionFwdAlgo_t algo, const conv_shape *s, void *ws,
                              size_t ws_size, const void *x, const void *y)
{
    if ((int)algo < 0 || algo >= CUDNN_CONVOLUTION_FWD_ALGO_COUNT)
        return bad();
    if (!algo_runs(algo))
        return CUDNN_STATUS_NOT_SUPPORTED;
    size_t need = ws_need(algo, s);
    if (ws_size < need)
        return bad();
    if (ws_size) {
        if (!ws || fake_cuda_check(ws, ws_size))
            return bad();
        if (fake_overlap(ws, ws_size, x, s->x_bytes) || fake_overlap(ws, ws_size, y, s->y_bytes))
            return bad();
    }
    return CUDNN_STATUS_SUCCESS;
}

/* out (n x oh x ow x K fp32) = conv(x, w); xf NHWC fp32, wt fp32 [kh][kw][cig][K].
 * The hot loop of the emulation, left out of the sanitizers (ASan made the
 * test 3x slower): it reads only buffers whose extents check_conv validated
 * and the fake's own copies. Serial: OpenMP here (many small parallel
 * regions next to oneDNN's own OpenMP threads) spent most of the time
 * spin-waiting in libgomp on the shared 2-core CI machine. */
__attribute__((no_sanitize("address", "undefined"))) static void conv_compute(const conv_shape *s, const float *xf, const float *wt, float *out)
{
    const int K = s->K, cig = s->cig, kg = s->kg, G = s->groups;
    const long rows = (long)s->n * s->oh;
    for (long r = 0; r < rows; r++) {
        const int b = (int)(r / s->oh), oy = (int)(r % s->oh);
        for (int ox = 0; ox < s->ow; ox++) {
            float *restrict acc = out + ((size_t)r * s->ow + ox) * K;
            memset(acc, 0, (size_t)K * sizeof *acc);
            for (int ky = 0; ky < s->kh; ky++) {
                int iy = oy * s->u - s->ph + ky * s->dh;
                if (iy < 0 || iy >= s->H)
                    continue;
                for (int kx = 0; kx < s->kw; kx++) {
                    int ix = ox * s->v - s->pw + kx * s->dw;
                    if (ix < 0 || ix >= s->W)
                        continue;
                    const float *restrict xp = xf + (((size_t)b * s->H + iy) * s->W + ix) * s->C;
                    const float *restrict wp = wt + ((size_t)ky * s->kw + kx) * cig * K;
                    if (G == 1) {
                        int c = 0;
                        for (; c + 4 <= cig; c += 4) {
                            const float x0 = xp[c], x1 = xp[c + 1], x2 = xp[c + 2],
                                        x3 = xp[c + 3];
                            const float *restrict w0 = wp + (size_t)c * K;
                            const float *restrict w1 = w0 + K, *restrict w2 = w1 + K,
                                                  *restrict w3 = w2 + K;
                            for (int k = 0; k < K; k++)
                                acc[k] += x0 * w0[k] + x1 * w1[k] + x2 * w2[k] + x3 * w3[k];
                        }
                        for (; c < cig; c++) {
                            const float x0 = xp[c];
                            const float *restrict w0 = wp + (size_t)c * K;
                            for (int k = 0; k < K; k++)
                                acc[k] += x0 * w0[k];
                        }
                    } else if (cig == 1 && kg == 1) { /* depthwise */
                        for (int k = 0; k < K; k++)
                            acc[k] += xp[k] * wp[k];
                    } else {
                        for (int g = 0; g < G; g++)
                            for (int c = 0; c < cig; c++) {
                                const float x0 = xp[g * cig + c];
                                const float *restrict w0 = wp + (size_t)c * K + (size_t)g * kg;
                                float *restrict ag = acc + (size_t)g * kg;
                                for (int k = 0; k < kg; k++)
                                    ag[k] += x0 * w0[k];
                            }
                    }
                }
            }
        }
    }
}

/* runs the convolution into a new fp32 buffer (NULL when out of host memory) */
static float *conv_forward(const conv_shape *s, const void *x, const void *w,
                           cudnnConvolutionFwdAlgo_t algo, void *ws, size_t ws_size)
{
    size_t nx = (size_t)s->n * s->H * s->W * s->C, nw = s->w_bytes / s->es;
    size_t ny = (size_t)s->n * s->oh * s->ow * s->K;
    float *xf = s->t == IMAGO_CU_F32 ? (float *)x : malloc(nx * sizeof(float));
    float *wt = malloc(nw * sizeof(float));
    float *out = malloc((ny ? ny : 1) * sizeof(float));
    if (!xf || !wt || !out) {
        if (xf != x)
            free(xf);
        free(wt);
        free(out);
        return NULL;
    }
    if (xf != x)
        for (size_t i = 0; i < nx; i++)
            xf[i] = fake_load(x, s->t, i);
    /* KRSC -> [r][s][c][k] */
    for (int k = 0; k < s->K; k++)
        for (int r = 0; r < s->kh; r++)
            for (int q = 0; q < s->kw; q++)
                for (int c = 0; c < s->cig; c++)
                    wt[(((size_t)r * s->kw + q) * s->cig + c) * s->K + k] =
                        fake_load(w, s->t, (((size_t)k * s->kh + r) * s->kw + q) * s->cig + c);
    /* the algorithm's scratch: written, as a real one would */
    size_t need = ws_need(algo, s);
    if (need) {
        memset(ws, 0xA5, need);
        fake_count(&stats()->conv_ws_used);
    }
    (void)ws_size;
    conv_compute(s, xf, wt, out);
    if (xf != x)
        free(xf);
    free(wt);
    return out;
}

static int no_fused(void)
{
    const char *v = getenv("IMAGO_FAKE_CUDNN_NO_FUSED");
    return v && *v && strcmp(v, "0") != 0;
}

cudnnStatus_t cudnnFindConvolutionForwardAlgorithmEx(
    cudnnHandle_t handle, const cudnnTensorDescriptor_t xDesc, const void *x,
    const cudnnFilterDescriptor_t wDesc, const void *w, const cudnnConvolutionDescriptor_t convDesc,
    const cudnnTensorDescriptor_t yDesc, void *y, const int requestedAlgoCount,
    int *returnedAlgoCount, cudnnConvolutionFwdAlgoPerf_t *perfResults, void *workSpace,
    size_t workSpaceSizeInBytes)
{
    conv_shape s;
    cudnnStatus_t st = check_conv(handle, xDesc, x, wDesc, w, convDesc, yDesc, y, &s);
    if (st != CUDNN_STATUS_SUCCESS)
        return st;
    if (requestedAlgoCount < 1 || !returnedAlgoCount || !perfResults)
        return bad();
    if (workSpaceSizeInBytes &&
        (!workSpace || fake_cuda_check(workSpace, workSpaceSizeInBytes) ||
         fake_overlap(workSpace, workSpaceSizeInBytes, y, s.y_bytes)))
        return bad();
    fake_count(&stats()->find_calls);
    memset(y, 0xff, s.y_bytes); /* the trials leave y overwritten (NaN) */
    const struct {
        cudnnConvolutionFwdAlgo_t algo;
        cudnnMathType_t math;
        float ms;
    } list[] = {
        {CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM, CUDNN_TENSOR_OP_MATH, 0.05f},
        {CUDNN_CONVOLUTION_FWD_ALGO_GEMM, CUDNN_FMA_MATH, 0.2f},
        {CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, CUDNN_FMA_MATH, 0.4f},
        {CUDNN_CONVOLUTION_FWD_ALGO_FFT, CUDNN_FMA_MATH, -1.0f},
    };
    int n = (int)(sizeof list / sizeof list[0]);
    if (n > requestedAlgoCount)
        n = requestedAlgoCount;
    for (int i = 0; i < n; i++) {
        cudnnConvolutionFwdAlgoPerf_t *p = &perfResults[i];
        memset(p, 0, sizeof *p);
        p->algo = list[i].algo;
        p->mathType = list[i].math;
        p->determinism = CUDNN_DETERMINISTIC;
        p->memory = ws_need(list[i].algo, &s);
        p->time = list[i].ms;
        p->status = !algo_runs(list[i].algo)               ? CUDNN_STATUS_NOT_SUPPORTED
                    : p->memory > workSpaceSizeInBytes     ? CUDNN_STATUS_ALLOC_FAILED
                                                           : CUDNN_STATUS_SUCCESS;
        if (p->status != CUDNN_STATUS_SUCCESS)
            p->time = -1.0f;
    }
    *returnedAlgoCount = n;
    return CUDNN_STATUS_SUCCESS;
}

static void count_math(const conv_shape *s, cudnnConvolutionDescriptor_t cd)
{
    if (s->t == IMAGO_CU_F32 &&
        (cd->math == CUDNN_TENSOR_OP_MATH || cd->math == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION))
        fake_count(&stats()->f32_tensor_op);
}

cudnnStatus_t cudnnConvolutionForward(cudnnHandle_t handle, const void *alpha,
                                      const cudnnTensorDescriptor_t xDesc, const void *x,
                                      const cudnnFilterDescriptor_t wDesc, const void *w,
                                      const cudnnConvolutionDescriptor_t convDesc,
                                      cudnnConvolutionFwdAlgo_t algo, void *workSpace,
                                      size_t workSpaceSizeInBytes, const void *beta,
                                      const cudnnTensorDescriptor_t yDesc, void *y)
{
    conv_shape s;
    cudnnStatus_t st = check_conv(handle, xDesc, x, wDesc, w, convDesc, yDesc, y, &s);
    if (st != CUDNN_STATUS_SUCCESS)
        return st;
    if ((st = check_ws(algo, &s, workSpace, workSpaceSizeInBytes, x, y)) != CUDNN_STATUS_SUCCESS)
        return st;
    if (!alpha || !beta)
        return bad();
    const float a = *(const float *)alpha, bt = *(const float *)beta;
    float *out = conv_forward(&s, x, w, algo, workSpace, workSpaceSizeInBytes);
    if (!out)
        return CUDNN_STATUS_ALLOC_FAILED;
    size_t ny = s.y_bytes / s.es;
    for (size_t i = 0; i < ny; i++) {
        float v = a * out[i];
        if (bt != 0.0f) /* beta 0: y is not read (it may hold NaN) */
            v += bt * fake_load(y, s.t, i);
        fake_store(y, s.t, i, v);
    }
    free(out);
    count_math(&s, convDesc);
    fake_count(&stats()->conv_calls);
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnConvolutionBiasActivationForward(
    cudnnHandle_t handle, const void *alpha1, const cudnnTensorDescriptor_t xDesc, const void *x,
    const cudnnFilterDescriptor_t wDesc, const void *w, const cudnnConvolutionDescriptor_t convDesc,
    cudnnConvolutionFwdAlgo_t algo, void *workSpace, size_t workSpaceSizeInBytes,
    const void *alpha2, const cudnnTensorDescriptor_t zDesc, const void *z,
    const cudnnTensorDescriptor_t biasDesc, const void *bias,
    const cudnnActivationDescriptor_t activationDesc, const cudnnTensorDescriptor_t yDesc, void *y)
{
    if (no_fused()) {
        fake_count(&stats()->fused_refused);
        return CUDNN_STATUS_NOT_SUPPORTED;
    }
    conv_shape s;
    cudnnStatus_t st = check_conv(handle, xDesc, x, wDesc, w, convDesc, yDesc, y, &s);
    if (st != CUDNN_STATUS_SUCCESS)
        return st;
    if ((st = check_ws(algo, &s, workSpace, workSpaceSizeInBytes, x, y)) != CUDNN_STATUS_SUCCESS)
        return st;
    if (!alpha1 || !alpha2 || !tensor_ok(zDesc) || !z || !tensor_ok(biasDesc) || !bias ||
        !activationDesc || activationDesc->magic != A_MAGIC || !activationDesc->set)
        return bad();
    /* z: y's shape and type; bias: 1 x K x 1 x 1 in y's type */
    if (zDesc->dt != yDesc->dt || zDesc->n != yDesc->n || zDesc->c != yDesc->c ||
        zDesc->h != yDesc->h || zDesc->w != yDesc->w || zDesc->format != yDesc->format)
        return bad();
    if (biasDesc->dt != yDesc->dt || biasDesc->n != 1 || biasDesc->c != s.K || biasDesc->h != 1 ||
        biasDesc->w != 1)
        return bad();
    /* cuDNN: RELU, or IDENTITY with IMPLICIT_PRECOMP_GEMM only */
    if (activationDesc->mode != CUDNN_ACTIVATION_RELU &&
        !(activationDesc->mode == CUDNN_ACTIVATION_IDENTITY &&
          algo == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM))
        return bad();
    if (fake_cuda_check(z, s.y_bytes) || fake_cuda_check(bias, (size_t)s.K * s.es))
        return bad();
    /* z may be y (in place) but not share part of it */
    if (z != y && fake_overlap(z, s.y_bytes, y, s.y_bytes))
        return bad();
    const float a1 = *(const float *)alpha1, a2 = *(const float *)alpha2;
    float *out = conv_forward(&s, x, w, algo, workSpace, workSpaceSizeInBytes);
    if (!out)
        return CUDNN_STATUS_ALLOC_FAILED;
    size_t ny = s.y_bytes / s.es;
    int relu = activationDesc->mode == CUDNN_ACTIVATION_RELU;
    for (size_t i = 0; i < ny; i++) {
        float v = a1 * out[i];
        if (a2 != 0.0f)
            v += a2 * fake_load(z, s.t, i);
        v += fake_load(bias, s.t, i % (size_t)s.K);
        if (relu)
            v = fmaxf(v, 0.0f);
        fake_store(y, s.t, i, v);
    }
    free(out);
    count_math(&s, convDesc);
    fake_count(&stats()->fused_calls);
    if (a2 != 0.0f)
        fake_count(&stats()->fused_sum_calls);
    return CUDNN_STATUS_SUCCESS;
}

/* ---- version and errors -------------------------------------------------------- */

size_t cudnnGetVersion(void)
{
    return CUDNN_VERSION;
}

const char *cudnnGetErrorString(cudnnStatus_t status)
{
    switch (status) {
    case CUDNN_STATUS_SUCCESS: return "CUDNN_STATUS_SUCCESS";
    case CUDNN_STATUS_NOT_INITIALIZED: return "CUDNN_STATUS_NOT_INITIALIZED";
    case CUDNN_STATUS_BAD_PARAM: return "CUDNN_STATUS_BAD_PARAM";
    case CUDNN_STATUS_NOT_SUPPORTED: return "CUDNN_STATUS_NOT_SUPPORTED";
    case CUDNN_STATUS_INTERNAL_ERROR: return "CUDNN_STATUS_INTERNAL_ERROR";
    case CUDNN_STATUS_EXECUTION_FAILED: return "CUDNN_STATUS_EXECUTION_FAILED";
    default:
        if (status == CUDNN_STATUS_ALLOC_FAILED)
            return "CUDNN_STATUS_ALLOC_FAILED";
        return "CUDNN_STATUS_UNKNOWN (fake)";
    }
}
