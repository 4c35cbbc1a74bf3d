/* The CUDA kernels of engine/cuda_kernels.h on a device, each against a
 * plain-C reference on random data: conversions, padding, the epilogue, max
 * pooling, binaries and the global pooling, in fp32 / fp16 / bf16, on shapes
 * that take both the 16-byte and the scalar paths (odd c, c not a multiple
 * of 8, misaligned pointers, counts not a multiple of the vector) and, when
 * the device has the memory, a count above 2^31.
 *
 * fp16 / bf16 references round inputs and outputs round-to-nearest-even as
 * the device does (host helpers below), so conversions, padding, max pooling
 * and binaries must match bit for bit; the epilogue too, except one ulp of
 * the output type (4 for fp32) after a sigmoid (expf differs); the global
 * pooling within 1e-5 relative of a double-precision reference (MAC exact).
 *
 * Exit status: 0 all passed, 1 a failure, 77 no CUDA device (the reason is
 * printed).
 */
#include <cuda_runtime.h>

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/cuda_kernels.h"

static int n_checks, n_failed;
static cudaStream_t g_stream; /* NULL or a created stream, alternating */

#define CK(call)                                                                                   \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess) {                                                                   \
            printf("FAIL %s:%d %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_));      \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

static void report(int ok, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("%s ", ok ? "ok  " : "FAIL");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    n_checks++;
    if (!ok)
        n_failed++;
    fflush(stdout);
}

/* ---- host rounding, the same as the device's (RN-even) ------------------ */

static uint32_t fbits(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    return x;
}

static float bitsf(uint32_t x)
{
    float f;
    memcpy(&f, &x, 4);
    return f;
}

static uint16_t f2h(float f)
{
    uint32_t x = fbits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u)
        return sign | 0x7e00u; /* NaN */
    if (ax >= 0x477ff000u)
        return sign | 0x7c00u; /* >= 65520 rounds to infinity */
    if (ax < 0x38800000u)      /* below 2^-14: multiples of 2^-24, ties to even */
        return sign | (uint16_t)nearbyintf(bitsf(ax) * 16777216.0f);
    ax += 0xfffu + ((ax >> 13) & 1u);
    return sign | (uint16_t)((ax >> 13) - (112u << 10));
}

static float h2f(uint16_t h)
{
    uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    float f;
    if (e == 0)
        f = ldexpf((float)m, -24);
    else if (e == 31)
        f = m ? NAN : INFINITY;
    else
        f = ldexpf((float)(m | 0x400u), (int)e - 25);
    return (h & 0x8000u) ? -f : f;
}

static uint16_t f2b(float f)
{
    uint32_t x = fbits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((x >> 16) | 0x40u);
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}

static float b2f(uint16_t b)
{
    return bitsf((uint32_t)b << 16);
}

static const imago_cu_dtype types[3] = {IMAGO_CU_F32, IMAGO_CU_F16, IMAGO_CU_BF16};
static const char *tname(imago_cu_dtype t)
{
    return t == IMAGO_CU_F32 ? "f32" : t == IMAGO_CU_F16 ? "f16" : "bf16";
}

static size_t esize(imago_cu_dtype t)
{
    return t == IMAGO_CU_F32 ? 4 : 2;
}

/* v rounded to t and back */
static float rnd(imago_cu_dtype t, float v)
{
    return t == IMAGO_CU_F32 ? v : t == IMAGO_CU_F16 ? h2f(f2h(v)) : b2f(f2b(v));
}

static void enc(imago_cu_dtype t, void *buf, size_t i, float v)
{
    if (t == IMAGO_CU_F32) {
        ((float *)buf)[i] = v;
    } else {
        ((uint16_t *)buf)[i] = t == IMAGO_CU_F16 ? f2h(v) : f2b(v);
    }
}

static float dec(imago_cu_dtype t, const void *buf, size_t i)
{
    if (t == IMAGO_CU_F32)
        return ((const float *)buf)[i];
    uint16_t h = ((const uint16_t *)buf)[i];
    return t == IMAGO_CU_F16 ? h2f(h) : b2f(h);
}

/* distance in ulps of t between two values representable in t (+0 == -0;
 * two NaNs are equal, a NaN and a number are far apart) */
static long long ulps(imago_cu_dtype t, float a, float b)
{
    if (isnan(a) || isnan(b))
        return isnan(a) && isnan(b) ? 0 : 1LL << 40;
    long long ka, kb;
    if (t == IMAGO_CU_F32) {
        uint32_t x = fbits(a), y = fbits(b);
        ka = (x & 0x80000000u) ? -(long long)(x & 0x7fffffffu) : (long long)x;
        kb = (y & 0x80000000u) ? -(long long)(y & 0x7fffffffu) : (long long)y;
    } else {
        uint16_t x = t == IMAGO_CU_F16 ? f2h(a) : f2b(a);
        uint16_t y = t == IMAGO_CU_F16 ? f2h(b) : f2b(b);
        ka = (x & 0x8000u) ? -(long long)(x & 0x7fffu) : (long long)x;
        kb = (y & 0x8000u) ? -(long long)(y & 0x7fffu) : (long long)y;
    }
    return ka > kb ? ka - kb : kb - ka;
}

/* ---- random data -------------------------------------------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rnd64(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static float unif(float lo, float hi)
{
    return lo + (hi - lo) * (float)((rnd64() >> 40) * (1.0 / 16777216.0));
}

static float gauss(void)
{
    double u1 = ((rnd64() >> 11) + 1.0) * (1.0 / 9007199254740993.0);
    double u2 = (rnd64() >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

/* a host buffer of count elements of t, each unif(lo, hi) rounded to t */
static void *rand_buf(imago_cu_dtype t, size_t count, float lo, float hi)
{
    void *b = malloc(count * esize(t) + 16);
    if (!b)
        abort();
    for (size_t i = 0; i < count; i++)
        enc(t, b, i, unif(lo, hi));
    return b;
}

/* ---- device helpers ----------------------------------------------------- */

static void *dalloc(size_t bytes)
{
    void *p = NULL;
    CK(cudaMalloc(&p, bytes ? bytes : 1));
    return p;
}

static void upload(void *dst, const void *src, size_t bytes)
{
    CK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
}

static void download(void *dst, const void *src, size_t bytes)
{
    CK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
}

/* the launcher's return code, then the kernel's own errors at the sync (a
 * fault there poisons the context: stop) */
static int launched(int rc, const char *what)
{
    if (rc != 0) {
        report(0, "%s: launcher returned %d (%s)", what, rc, imago_cu_error_string(rc));
        return 0;
    }
    cudaError_t e = cudaStreamSynchronize(g_stream);
    if (e != cudaSuccess) {
        report(0, "%s: kernel failed: %s", what, cudaGetErrorString(e));
        printf("%d checks, %d failed\n", n_checks, n_failed);
        exit(1);
    }
    return 1;
}

static void *stream(void)
{
    return (void *)g_stream;
}

/* Outputs sit in buffers filled with 0xa5 bytes first: the bytes [from, to)
 * outside the output still hold them (nothing wrote out of bounds). */
#define GUARD 32
static int guard_ok(const char *d, size_t from, size_t to)
{
    if (to <= from)
        return 1;
    unsigned char *h = malloc(to - from);
    if (!h)
        abort();
    download(h, d + from, to - from);
    int ok = 1;
    for (size_t i = 0; i < to - from; i++)
        ok &= h[i] == 0xa5;
    free(h);
    return ok;
}

/* ---- conversions -------------------------------------------------------- */

static void conv_inputs(float *f, size_t n)
{
    static const float special[] = {
        0.0f,          -0.0f,          INFINITY,      -INFINITY,   NAN,
        65504.0f,      65519.99f,      65520.0f,      -65520.0f,   5.9604645e-8f,
        2.9802322e-8f, 4.4703484e-8f,  3.4028235e38f, 1.4e-45f,    1.00048828125f,
        1.0009765625f, 1.00146484375f, 1.00390625f,   1.01171875f, -3.0e38f};
    for (size_t i = 0; i < n; i++) {
        uint64_t r = rnd64();
        if (i < sizeof special / sizeof special[0]) {
            f[i] = special[i];
            continue;
        }
        switch (i % 4) {
        case 0: f[i] = bitsf((uint32_t)r); break; /* anything, NaNs included */
        case 1: f[i] = ldexpf(gauss(), (int)(r % 51) - 30); break;
        case 2: /* ties of fp16, normal and subnormal */
            f[i] = ldexpf(1.0f + (float)(2 * (r % 512) + 1) / 2048.0f, (int)((r >> 10) % 30) - 15);
            if (r & (1ULL << 40))
                f[i] = ldexpf((float)(2 * ((r >> 20) % 1024) + 1), -25);
            break;
        default: /* ties of bf16 */
            f[i] = ldexpf(1.0f + (float)(2 * (r % 64) + 1) / 256.0f, (int)((r >> 10) % 200) - 100);
            break;
        }
        if (r & (1ULL << 63))
            f[i] = -f[i];
    }
}

static void test_convert(void)
{
    static const size_t counts[] = {1, 7, 8, 4099, 1000003};
    static const int offs[][2] = {{0, 0}, {1, 0}, {0, 3}};
    const size_t max = 1000003 + 8;
    float *in = malloc(max * 4), *back = malloc(max * 4);
    void *out = malloc(max * 4);
    if (!in || !back || !out)
        abort();
    conv_inputs(in, max);
    float *d_f = dalloc(max * 4);
    void *d_t = dalloc(max * 4);
    for (int ti = 0; ti < 3; ti++) {
        imago_cu_dtype t = types[ti];
        size_t es = esize(t);
        for (size_t ci = 0; ci < sizeof counts / sizeof counts[0]; ci++) {
            for (size_t oi = 0; oi < sizeof offs / sizeof offs[0]; oi++) {
                size_t n = counts[ci];
                int so = offs[oi][0], dof = offs[oi][1];
                char what[160];
                /* fp32 -> t */
                snprintf(what, sizeof what, "from_f32 %s count=%zu src+%d dst+%d", tname(t), n, so,
                         dof);
                upload(d_f + so, in, n * 4);
                CK(cudaMemset(d_t, 0xa5, (n + 8) * es));
                if (launched(imago_cu_from_f32(d_f + so, (char *)d_t + dof * es, t, n, stream()),
                             what)) {
                    download(out, (char *)d_t + dof * es, n * es);
                    size_t bad = n;
                    for (size_t i = 0; i < n && bad == n; i++) {
                        /* bit for bit (the sign of zeros too); NaN: any NaN */
                        uint16_t want = t == IMAGO_CU_F16 ? f2h(in[i]) : f2b(in[i]);
                        if (t == IMAGO_CU_F32 ? memcmp((float *)out + i, in + i, 4) != 0
                            : isnan(in[i])    ? !isnan(dec(t, out, i))
                                              : ((uint16_t *)out)[i] != want)
                            bad = i;
                    }
                    if (bad < n)
                        report(0, "%s: [%zu] %a -> %a, want %a", what, bad, (double)in[bad],
                               (double)dec(t, out, bad), (double)rnd(t, in[bad]));
                    else
                        report(guard_ok(d_t, 0, dof * es) &&
                                   guard_ok(d_t, (dof + n) * es, (n + 8) * es),
                               "%s (and nothing written around it)", what);
                }
                /* t -> fp32: every fp16 / bf16 bit pattern, random fp32 bits */
                for (size_t i = 0; i < n; i++) {
                    if (t == IMAGO_CU_F32)
                        ((float *)out)[i] = bitsf((uint32_t)rnd64());
                    else
                        ((uint16_t *)out)[i] = (uint16_t)(i * 40503u + 17u);
                }
                snprintf(what, sizeof what, "to_f32 %s count=%zu src+%d dst+%d", tname(t), n, dof,
                         so);
                upload((char *)d_t + dof * es, out, n * es);
                CK(cudaMemset(d_f, 0xa5, (n + 8) * 4));
                if (launched(imago_cu_to_f32((char *)d_t + dof * es, t, d_f + so, n, stream()),
                             what)) {
                    download(back, d_f + so, n * 4);
                    size_t bad = n;
                    for (size_t i = 0; i < n && bad == n; i++) {
                        float want = dec(t, out, i);
                        int same =
                            t == IMAGO_CU_F32
                                ? memcmp(back + i, &want, 4) == 0
                                : (isnan(want) ? isnan(back[i]) : fbits(back[i]) == fbits(want));
                        if (!same)
                            bad = i;
                    }
                    if (bad < n)
                        report(0, "%s: [%zu] got %a want %a", what, bad, (double)back[bad],
                               (double)dec(t, out, bad));
                    else
                        report(guard_ok((char *)d_f, 0, so * 4) &&
                                   guard_ok((char *)d_f, (so + n) * 4, (n + 8) * 4),
                               "%s (and nothing written around it)", what);
                }
            }
        }
    }
    /* all 65536 patterns went through at count 1000003 (40503 is odd); the
     * 0 count touches nothing and returns 0, even with NULL pointers */
    report(imago_cu_from_f32(NULL, NULL, IMAGO_CU_F16, 0, stream()) == 0 &&
               imago_cu_to_f32(NULL, IMAGO_CU_BF16, NULL, 0, stream()) == 0,
           "conversions of 0 elements return 0");
    report(imago_cu_from_f32(d_f, d_t, (imago_cu_dtype)7, 4, stream()) == cudaErrorInvalidValue,
           "conversion to an unknown dtype is cudaErrorInvalidValue");
    CK(cudaFree(d_f));
    CK(cudaFree(d_t));
    free(in);
    free(back);
    free(out);
}

/* ---- padding ------------------------------------------------------------ */

static void test_pad(void)
{
    static const int shapes[][9] = {
        /* n, h, w, c, pt, pb, pl, pr, src offset (elements) */
        {2, 5, 7, 3, 1, 2, 0, 3, 0},
        {1, 9, 9, 8, 1, 1, 1, 1, 0},
        {3, 4, 6, 64, 0, 1, 0, 1, 0},
        {1, 3, 3, 5, 2, 0, 2, 0, 0},
        {2, 16, 12, 2048, 1, 1, 1, 1, 0},
        {1, 1, 1, 1, 3, 3, 3, 3, 0},
        {2, 6, 5, 12, 0, 0, 0, 0, 0},
        {2, 5, 7, 3, 1, 2, 0, 3, 1},
        {3, 4, 6, 64, 0, 1, 0, 1, 1},
        {2, 8, 8, 16, 1, 1, 1, 1, 4},
        {1, 7, 5, 6, 3, 2, 1, 4, 2},
        {64, 100, 8, 3, 1, 1, 1, 1, 0}}; /* 6528 rows: blocks take several */
    for (int ti = 0; ti < 3; ti++) {
        imago_cu_dtype t = types[ti];
        size_t es = esize(t);
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
            const int *s = shapes[si];
            int n = s[0], h = s[1], w = s[2], c = s[3], pt = s[4], pb = s[5], pl = s[6], pr = s[7],
                off = s[8];
            int H = h + pt + pb, W = w + pl + pr;
            size_t nin = (size_t)n * h * w * c, nout = (size_t)n * H * W * c;
            void *in = rand_buf(t, nin, -3.0f, 3.0f);
            unsigned char *out = malloc(nout * es), *want = calloc(nout, es);
            if (!out || !want)
                abort();
            for (int b = 0; b < n; b++)
                for (int y = 0; y < h; y++)
                    for (int x = 0; x < w; x++)
                        memcpy(want + ((((size_t)b * H + y + pt) * W + x + pl) * c) * es,
                               (char *)in + ((((size_t)b * h + y) * w + x) * c) * es,
                               (size_t)c * es);
            char *d_in = dalloc(nin * es + 16), *d_out = dalloc(nout * es + GUARD);
            upload(d_in + off * es, in, nin * es);
            CK(cudaMemset(d_out, 0xa5, nout * es + GUARD));
            char what[160];
            snprintf(what, sizeof what, "pad %s n=%d h=%d w=%d c=%d t=%d b=%d l=%d r=%d src+%d",
                     tname(t), n, h, w, c, pt, pb, pl, pr, off);
            if (launched(
                    imago_cu_pad(d_in + off * es, d_out, t, n, h, w, c, pt, pb, pl, pr, stream()),
                    what)) {
                download(out, d_out, nout * es);
                size_t bad = nout;
                for (size_t i = 0; i < nout && bad == nout; i++)
                    if (memcmp(out + i * es, want + i * es, es) != 0)
                        bad = i;
                if (bad < nout)
                    report(0, "%s: element %zu is %a, want %a", what, bad, (double)dec(t, out, bad),
                           (double)dec(t, want, bad));
                else
                    report(guard_ok(d_out, nout * es, nout * es + GUARD), "%s", what);
            }
            CK(cudaFree(d_in));
            CK(cudaFree(d_out));
            free(in);
            free(out);
            free(want);
        }
    }
    report(imago_cu_pad(NULL, NULL, IMAGO_CU_F32, 0, 3, 3, 3, 1, 1, 1, 1, stream()) == 0,
           "pad of 0 images returns 0");
}

/* ---- epilogue ----------------------------------------------------------- */

static float ref_act(int act, float v, float alpha, float beta)
{
    switch (act) {
    case IMAGO_CU_ACT_RELU: return v > 0.0f ? v : 0.0f;
    case IMAGO_CU_ACT_RELU6: return v > 6.0f ? 6.0f : v > 0.0f ? v : 0.0f;
    case IMAGO_CU_ACT_SIGMOID: return 1.0f / (1.0f + expf(-v));
    default: return fmaf(alpha, v, beta);
    }
}

typedef struct epi_case {
    const char *name;
    int bias, n_post;
    int kind[4], act[4]; /* value tensors: 0 or 1 by position (kind != ACT) */
} epi_case;

static void test_epilogue(void)
{
    static const epi_case cases[] = {
        {"bias", 1, 0, {0}, {0}},
        {"bias+relu", 1, 1, {IMAGO_CU_POST_ACT}, {IMAGO_CU_ACT_RELU}},
        {"bias+sum+relu", 1, 2, {IMAGO_CU_POST_SUM, IMAGO_CU_POST_ACT}, {0, IMAGO_CU_ACT_RELU}},
        {"mul", 0, 1, {IMAGO_CU_POST_MUL}, {0}},
        {"bias+sigmoid+mul",
         1,
         2,
         {IMAGO_CU_POST_ACT, IMAGO_CU_POST_MUL},
         {IMAGO_CU_ACT_SIGMOID, 0}},
        {"bias+linear+add+relu6+mul",
         1,
         4,
         {IMAGO_CU_POST_ACT, IMAGO_CU_POST_ADD, IMAGO_CU_POST_ACT, IMAGO_CU_POST_MUL},
         {IMAGO_CU_ACT_LINEAR, 0, IMAGO_CU_ACT_RELU6, 0}},
        {"relu6", 0, 1, {IMAGO_CU_POST_ACT}, {IMAGO_CU_ACT_RELU6}},
    };
    /* count, c, offset of y and the values (elements) */
    static const size_t shapes[][3] = {{3 * 1001, 3, 0},
                                       {13 * 77, 13, 0},
                                       {64 * 515, 64, 0},
                                       {2048 * 9, 2048, 0},
                                       {1000, 1, 0},
                                       {5 * 3 + 2, 5, 0},
                                       {64 * 37 + 3, 64, 0},
                                       {8 * 100, 8, 1},
                                       {24 * 50, 24, 2},
                                       /* several grid-stride steps per thread (the channel
                                        * counter wraps) on any GPU of today */
                                       {2048 * 10000, 2048, 0},
                                       {3 * 7000001, 3, 0}};
    for (int ti = 0; ti < 3; ti++) {
        imago_cu_dtype t = types[ti];
        size_t es = esize(t);
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
            size_t count = shapes[si][0], off = shapes[si][2];
            int c = (int)shapes[si][1];
            void *y = rand_buf(t, count, -8.0f, 8.0f);
            void *v[2] = {rand_buf(t, count, -2.0f, 2.0f), rand_buf(t, count, -2.0f, 2.0f)};
            float *bias = malloc((size_t)c * 4);
            void *got = malloc(count * es);
            if (!bias || !got)
                abort();
            for (int k = 0; k < c; k++)
                bias[k] = unif(-1.0f, 1.0f);
            const size_t ybytes = (count + off) * es + GUARD;
            char *d_y = dalloc(ybytes), *d_v[2];
            float *d_bias = dalloc((size_t)c * 4);
            for (int k = 0; k < 2; k++) {
                d_v[k] = dalloc(count * es + 16);
                upload(d_v[k] + off * es, v[k], count * es);
            }
            upload(d_bias, bias, (size_t)c * 4);
            for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
                const epi_case *ec = &cases[ci];
                imago_cu_post posts[IMAGO_CU_MAX_POST];
                int which = 0, sigmoid = 0;
                for (int q = 0; q < ec->n_post; q++) {
                    posts[q].kind = ec->kind[q];
                    posts[q].act = ec->act[q];
                    posts[q].alpha = 1.5f;
                    posts[q].beta = -0.25f;
                    posts[q].value = NULL;
                    if (ec->kind[q] != IMAGO_CU_POST_ACT)
                        posts[q].value = d_v[which++ & 1] + off * es;
                    sigmoid |=
                        ec->kind[q] == IMAGO_CU_POST_ACT && ec->act[q] == IMAGO_CU_ACT_SIGMOID;
                }
                CK(cudaMemset(d_y, 0xa5, ybytes));
                upload(d_y + off * es, y, count * es);
                char what[200];
                snprintf(what, sizeof what, "epilogue %s %s count=%zu c=%d y+%zu", tname(t),
                         ec->name, count, c, off);
                if (!launched(imago_cu_epilogue(d_y + off * es, t, count, c,
                                                ec->bias ? d_bias : NULL, posts, ec->n_post,
                                                stream()),
                              what))
                    continue;
                download(got, d_y + off * es, count * es);
                long long tol = sigmoid ? (t == IMAGO_CU_F32 ? 4 : 1) : 0, worst = 0;
                size_t bad = count;
                float want_bad = 0.0f;
                for (size_t i = 0; i < count; i++) {
                    float a = dec(t, y, i);
                    if (ec->bias)
                        a = a + bias[i % (size_t)c];
                    int vi = 0;
                    for (int q = 0; q < ec->n_post; q++) {
                        if (ec->kind[q] == IMAGO_CU_POST_ACT) {
                            a = ref_act(ec->act[q], a, 1.5f, -0.25f);
                        } else {
                            float w = dec(t, v[vi++ & 1], i);
                            a = ec->kind[q] == IMAGO_CU_POST_MUL ? a * w : a + w;
                        }
                    }
                    a = rnd(t, a);
                    long long d = ulps(t, dec(t, got, i), a);
                    if (d > worst)
                        worst = d;
                    if (d > tol && bad == count) {
                        bad = i;
                        want_bad = a;
                    }
                }
                if (bad < count)
                    report(0, "%s: [%zu] got %a want %a (tolerance %lld ulp)", what, bad,
                           (double)dec(t, got, bad), (double)want_bad, tol);
                else
                    report(guard_ok(d_y, 0, off * es) && guard_ok(d_y, (off + count) * es, ybytes),
                           "%s (max %lld ulp)", what, worst);
            }
            for (int k = 0; k < 2; k++) {
                CK(cudaFree(d_v[k]));
                free(v[k]);
            }
            CK(cudaFree(d_y));
            CK(cudaFree(d_bias));
            free(y);
            free(bias);
            free(got);
        }
    }
    imago_cu_post bad_post = {IMAGO_CU_POST_SUM, 0, 0.0f, 0.0f, NULL};
    report(imago_cu_epilogue(NULL, IMAGO_CU_F32, 16, 4, NULL, &bad_post, 1, stream()) ==
                   cudaErrorInvalidValue &&
               imago_cu_epilogue(NULL, IMAGO_CU_F32, 16, 4, NULL, NULL, IMAGO_CU_MAX_POST + 1,
                                 stream()) == cudaErrorInvalidValue,
           "epilogue: a SUM without a value, too many posts: cudaErrorInvalidValue");
}

/* ---- max pooling -------------------------------------------------------- */

static void test_maxpool(void)
{
    static const int shapes[][11] = {
        /* n, h, w, c, k, stride, pad_t, pad_l, oh, ow, x/y offset (elements) */
        {2, 7, 9, 3, 3, 2, 1, 1, 4, 5, 0},      {1, 8, 8, 16, 2, 2, 0, 0, 4, 4, 0},
        {2, 56, 48, 64, 3, 2, 1, 1, 28, 24, 0}, {1, 5, 5, 13, 3, 1, 1, 1, 5, 5, 0},
        {1, 6, 6, 8, 3, 2, 0, 0, 3, 3, 0},      {1, 4, 4, 5, 3, 2, 1, 0, 2, 2, 0},
        {3, 9, 9, 24, 5, 3, 2, 2, 3, 3, 0},     {2, 10, 10, 16, 3, 2, 1, 1, 5, 5, 1},
        {1, 7, 7, 32, 7, 7, 0, 0, 1, 1, 0},     {2, 5, 6, 12, 1, 1, 0, 0, 5, 6, 4},
        {64, 224, 6, 8, 3, 2, 1, 1, 112, 3, 0}}; /* 7168 rows: blocks take several */
    for (int ti = 0; ti < 3; ti++) {
        imago_cu_dtype t = types[ti];
        size_t es = esize(t);
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
            const int *s = shapes[si];
            int n = s[0], h = s[1], w = s[2], c = s[3], k = s[4], st = s[5], pt = s[6], pl = s[7],
                oh = s[8], ow = s[9], off = s[10];
            size_t nin = (size_t)n * h * w * c, nout = (size_t)n * oh * ow * c;
            void *in = rand_buf(t, nin, -5.0f, 5.0f);
            if (si == 0) /* NaNs propagate, as in torch */
                for (size_t i = 5; i < nin; i += 41)
                    enc(t, in, i, NAN);
            void *got = malloc(nout * es);
            if (!got)
                abort();
            const size_t obytes = (nout + off) * es + GUARD;
            char *d_in = dalloc(nin * es + 16), *d_out = dalloc(obytes);
            upload(d_in + off * es, in, nin * es);
            CK(cudaMemset(d_out, 0xa5, obytes));
            char what[200];
            snprintf(what, sizeof what,
                     "maxpool %s n=%d %dx%dx%d k=%d s=%d pad=%d,%d -> %dx%d x,y+%d", tname(t), n, h,
                     w, c, k, st, pt, pl, oh, ow, off);
            if (launched(imago_cu_maxpool(d_in + off * es, d_out + off * es, t, n, h, w, c, k, st,
                                          pt, pl, oh, ow, stream()),
                         what)) {
                download(got, d_out + off * es, nout * es);
                size_t bad = nout, nnan = 0;
                float want_bad = 0.0f;
                for (int b = 0; b < n; b++)
                    for (int oy = 0; oy < oh; oy++)
                        for (int ox = 0; ox < ow; ox++)
                            for (int ch = 0; ch < c; ch++) {
                                float m = -INFINITY;
                                for (int ky = 0; ky < k; ky++)
                                    for (int kx = 0; kx < k; kx++) {
                                        int iy = oy * st - pt + ky, ix = ox * st - pl + kx;
                                        if (iy < 0 || iy >= h || ix < 0 || ix >= w)
                                            continue;
                                        float v =
                                            dec(t, in, (((size_t)b * h + iy) * w + ix) * c + ch);
                                        if (v > m || isnan(v))
                                            m = v;
                                    }
                                size_t o = (((size_t)b * oh + oy) * ow + ox) * c + ch;
                                nnan += isnan(m) != 0;
                                if (ulps(t, dec(t, got, o), m) != 0 && bad == nout) {
                                    bad = o;
                                    want_bad = m;
                                }
                            }
                if (bad < nout)
                    report(0, "%s: [%zu] got %a want %a", what, bad, (double)dec(t, got, bad),
                           (double)want_bad);
                else
                    report(guard_ok(d_out, 0, off * es) &&
                               guard_ok(d_out, (off + nout) * es, obytes),
                           "%s (%zu NaN outputs)", what, nnan);
            }
            CK(cudaFree(d_in));
            CK(cudaFree(d_out));
            free(in);
            free(got);
        }
    }
}

/* ---- binaries ----------------------------------------------------------- */

static void test_binary(void)
{
    static const size_t counts[] = {1, 7, 8, 9, 1000, (1u << 20) + 3};
    static const char *modes[] = {"y", "y=a", "y=b"};
    for (int ti = 0; ti < 3; ti++) {
        imago_cu_dtype t = types[ti];
        size_t es = esize(t);
        for (size_t ci = 0; ci < sizeof counts / sizeof counts[0]; ci++) {
            size_t n = counts[ci];
            void *a = rand_buf(t, n, -10.0f, 10.0f), *b = rand_buf(t, n, -10.0f, 10.0f);
            void *got = malloc(n * es);
            if (!got)
                abort();
            const size_t bytes = (n + 1) * es + GUARD;
            char *d_a = dalloc(bytes), *d_b = dalloc(bytes), *d_y = dalloc(bytes);
            for (int mul = 0; mul < 2; mul++)
                for (int mode = 0; mode < 3; mode++)
                    for (int off = 0; off < 2; off++) {
                        /* offset 1: a and y misaligned (the scalar path) */
                        char *pa = d_a + off * es, *pb = d_b, *py = d_y + off * es;
                        CK(cudaMemset(d_a, 0xa5, bytes));
                        CK(cudaMemset(d_b, 0xa5, bytes));
                        CK(cudaMemset(d_y, 0xa5, bytes));
                        upload(pa, a, n * es);
                        upload(pb, b, n * es);
                        if (mode == 1)
                            py = pa;
                        else if (mode == 2)
                            py = pb;
                        char what[160];
                        snprintf(what, sizeof what, "binary %s %s count=%zu %s a+%d", tname(t),
                                 mul ? "mul" : "add", n, modes[mode], off);
                        if (!launched(imago_cu_binary(pa, pb, py, t, n, mul, stream()), what))
                            continue;
                        download(got, py, n * es);
                        size_t bad = n;
                        for (size_t i = 0; i < n && bad == n; i++) {
                            float x = dec(t, a, i), z = dec(t, b, i);
                            if (ulps(t, dec(t, got, i), rnd(t, mul ? x * z : x + z)) != 0)
                                bad = i;
                        }
                        if (bad < n) {
                            float x = dec(t, a, bad), z = dec(t, b, bad);
                            report(0, "%s: [%zu] got %a want %a", what, bad,
                                   (double)dec(t, got, bad), (double)rnd(t, mul ? x * z : x + z));
                        } else {
                            char *yb = mode == 1 ? d_a : mode == 2 ? d_b : d_y;
                            size_t yo = (size_t)(py - yb);
                            report(guard_ok(yb, 0, yo) && guard_ok(yb, yo + n * es, bytes), "%s",
                                   what);
                        }
                    }
            CK(cudaFree(d_a));
            CK(cudaFree(d_b));
            CK(cudaFree(d_y));
            free(a);
            free(b);
            free(got);
        }
    }
}

/* ---- global pooling ----------------------------------------------------- */

/* engine/backend_dnnl.c pool_features, in double, on the values of x */
static void ref_pool(imago_cu_dtype t, const void *x, int n, int hw, int c, int kind, float p,
                     float eps, double *out)
{
    double pd = p;
    int cube = pd == 3.0;
    for (int b = 0; b < n; b++)
        for (int ch = 0; ch < c; ch++) {
            double acc = kind == IMAGO_CU_POOL_MAC ? -INFINITY : 0.0;
            for (int i = 0; i < hw; i++) {
                float v = dec(t, x, ((size_t)b * hw + i) * c + ch);
                if (kind == IMAGO_CU_POOL_MAC) {
                    if (v > acc)
                        acc = v;
                } else if (kind == IMAGO_CU_POOL_SPOC) {
                    acc += v;
                } else {
                    double s = v > eps ? v : (double)eps;
                    acc += cube ? s * s * s : pow(s, pd);
                }
            }
            if (kind == IMAGO_CU_POOL_GEM)
                acc = pow(acc / hw, 1.0 / pd);
            else if (kind == IMAGO_CU_POOL_SPOC)
                acc /= hw;
            out[(size_t)b * c + ch] = acc;
        }
}

typedef struct pool_case {
    const char *name;
    int kind;
    float p;
} pool_case;

static void pool_check(imago_cu_dtype t, const void *x, char *d_x, int n, int hw, int c, int off,
                       const pool_case *pc, float *d_out, float *got, double *want)
{
    const float eps = 1e-6f;
    size_t es = esize(t), nout = (size_t)n * c;
    char what[200];
    snprintf(what, sizeof what, "pool %s %s n=%d hw=%d c=%d x+%d", tname(t), pc->name, n, hw, c,
             off);
    CK(cudaMemset(d_out, 0xa5, nout * 4 + GUARD));
    if (!launched(imago_cu_pool(d_x + off * es, t, n, hw, c, pc->kind, pc->p, eps, d_out, stream()),
                  what))
        return;
    download(got, d_out, nout * 4);
    ref_pool(t, x, n, hw, c, pc->kind, pc->p, eps, want);
    double mean_abs = 0.0, worst = 0.0;
    size_t total = (size_t)n * hw * c;
    for (size_t i = 0; i < total; i++)
        mean_abs += fabs(dec(t, x, i));
    mean_abs /= (double)total;
    size_t bad = nout;
    for (size_t i = 0; i < nout; i++) {
        double w = want[i], g = got[i], d = fabs(g - w);
        double tol = pc->kind == IMAGO_CU_POOL_MAC    ? 0.0
                     : pc->kind == IMAGO_CU_POOL_SPOC ? 1e-5 * (fabs(w) + mean_abs)
                                                      : 1e-5 * fabs(w);
        if (pc->kind == IMAGO_CU_POOL_MAC)
            d = (float)w == got[i] ? 0.0 : INFINITY;
        double rel = d / (fabs(w) + 1e-30);
        if (rel > worst)
            worst = rel;
        if (!(d <= tol) && bad == nout)
            bad = i;
    }
    if (bad < nout)
        report(0, "%s: [image %zu, channel %zu] got %.9g want %.9g", what, bad / (size_t)c,
               bad % (size_t)c, (double)got[bad], want[bad]);
    else
        report(guard_ok((char *)d_out, nout * 4, nout * 4 + GUARD), "%s (max rel %.2g)", what,
               worst);
}

static void test_pool(void)
{
    static const pool_case cases[] = {{"gem p=3", IMAGO_CU_POOL_GEM, 3.0f},
                                      {"gem p=3.5", IMAGO_CU_POOL_GEM, 3.5f},
                                      {"gem p=1", IMAGO_CU_POOL_GEM, 1.0f},
                                      {"spoc", IMAGO_CU_POOL_SPOC, 1.0f},
                                      {"mac", IMAGO_CU_POOL_MAC, 1.0f}};
    /* n, hw, c, offset of x (elements) */
    static const int shapes[][4] = {{2, 5, 3, 0},      {3, 17, 13, 0},  {2, 49, 64, 0},
                                    {4, 768, 2048, 0}, {1, 1, 8, 0},    {2, 3, 1001, 0},
                                    {2, 300, 36, 0},   {2, 150, 64, 1}, {3, 1000, 24, 8}};
    for (int ti = 0; ti < 3; ti++) {
        imago_cu_dtype t = types[ti];
        size_t es = esize(t);
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
            int n = shapes[si][0], hw = shapes[si][1], c = shapes[si][2], off = shapes[si][3];
            size_t total = (size_t)n * hw * c, nout = (size_t)n * c;
            void *x = malloc(total * es);
            float *got = malloc(nout * 4);
            double *want = malloc(nout * 8);
            if (!x || !got || !want)
                abort();
            char *d_x = dalloc((total + (size_t)off) * es);
            float *d_out = dalloc(nout * 4 + GUARD);
            /* post-ReLU features (zeros clamp at eps) for GeM, signed for SPoC / MAC */
            for (int signed_data = 0; signed_data < 2; signed_data++) {
                for (size_t i = 0; i < total; i++) {
                    float g = gauss();
                    enc(t, x, i, signed_data ? 2.0f * g : (g > -0.3f ? g + 0.3f : 0.0f));
                }
                upload(d_x + off * es, x, total * es);
                for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++)
                    if ((cases[ci].kind == IMAGO_CU_POOL_GEM) == !signed_data)
                        pool_check(t, x, d_x, n, hw, c, off, &cases[ci], d_out, got, want);
            }
            CK(cudaFree(d_x));
            CK(cudaFree(d_out));
            free(x);
            free(got);
            free(want);
        }
    }
    /* a large p on large fp32 activations: max^8 = 1e48 does not fit a float */
    {
        int n = 2, hw = 97, c = 40;
        size_t total = (size_t)n * hw * c;
        float *x = malloc(total * 4), *got = malloc((size_t)n * c * 4);
        double *want = malloc((size_t)n * c * 8);
        if (!x || !got || !want)
            abort();
        for (size_t i = 0; i < total; i++)
            x[i] = unif(0.0f, 1e6f);
        char *d_x = dalloc(total * 4);
        float *d_out = dalloc((size_t)n * c * 4 + GUARD);
        upload(d_x, x, total * 4);
        const pool_case big = {"gem p=8 (values to 1e6)", IMAGO_CU_POOL_GEM, 8.0f};
        pool_check(IMAGO_CU_F32, x, d_x, n, hw, c, 0, &big, d_out, got, want);
        CK(cudaFree(d_x));
        CK(cudaFree(d_out));
        free(x);
        free(got);
        free(want);
    }
    report(imago_cu_pool(NULL, IMAGO_CU_F32, 1, 1, 1, 9, 3.0f, 1e-6f, NULL, stream()) ==
                   cudaErrorInvalidValue &&
               imago_cu_pool(NULL, IMAGO_CU_F32, 1, 1, 1, IMAGO_CU_POOL_GEM, 3.0f, 0.0f, NULL,
                             stream()) == cudaErrorInvalidValue,
           "pool: unknown kind, GeM with eps 0: cudaErrorInvalidValue");
}

/* ---- more than 2^31 elements -------------------------------------------- */

/* fill count elements with a period-P pattern: upload P, then double by
 * device copies (every copied length is a multiple of P) */
static void fill_periodic(char *d, const void *pattern, size_t period, size_t count, size_t es)
{
    upload(d, pattern, period * es);
    size_t have = period;
    while (have < count) {
        size_t m = have < count - have ? have : count - have;
        CK(cudaMemcpy(d + have * es, d, m * es, cudaMemcpyDeviceToDevice));
        have += m;
    }
}

static void test_large(void)
{
    const size_t count = (1ULL << 31) + 37, pa = 1000003, pb = 999983, win = 1u << 20;
    const imago_cu_dtype t = IMAGO_CU_F16;
    size_t free_b = 0, total_b = 0;
    CK(cudaMemGetInfo(&free_b, &total_b));
    if (total_b < (8ULL << 30) || free_b < 2 * count * 2 + (1ULL << 30)) {
        printf("skip large count (%zu MiB free of %zu): needs 9 GiB\n", free_b >> 20,
               total_b >> 20);
        return;
    }
    uint16_t *a = malloc(pa * 2), *b = malloc(pb * 2), *got = malloc(win * 2);
    if (!a || !b || !got)
        abort();
    for (size_t i = 0; i < pa; i++)
        a[i] = f2h((float)i * (100.0f / (float)pa) - 50.0f);
    for (size_t i = 0; i < pb; i++)
        b[i] = f2h((float)i * (60.0f / (float)pb) - 30.0f);
    char *d_a = dalloc(count * 2), *d_b = dalloc(count * 2);
    fill_periodic(d_a, a, pa, count, 2);
    fill_periodic(d_b, b, pb, count, 2);
    char what[160];
    snprintf(what, sizeof what, "binary f16 add count=2^31+37 in place");
    if (launched(imago_cu_binary(d_a, d_b, d_a, t, count, 0, stream()), what)) {
        /* the first window, the one across 2^31 and the last elements */
        const size_t starts[] = {0, (1ULL << 31) - win / 2, count - win};
        size_t bad = count;
        for (int k = 0; k < 3 && bad == count; k++) {
            download(got, d_a + starts[k] * 2, win * 2);
            for (size_t j = 0; j < win && bad == count; j++) {
                size_t i = starts[k] + j;
                float want = rnd(t, h2f(a[i % pa]) + h2f(b[i % pb]));
                if (ulps(t, h2f(got[j]), want) != 0)
                    bad = i;
            }
        }
        if (bad < count)
            report(0, "%s: element %zu wrong", what, bad);
        else
            report(1, "%s (3 windows of 2^20 checked)", what);
    }
    CK(cudaFree(d_a));
    CK(cudaFree(d_b));
    free(a);
    free(b);
    free(got);
}

int main(void)
{
    int ndev = 0;
    cudaError_t e = cudaGetDeviceCount(&ndev);
    if (e != cudaSuccess || ndev == 0) {
        printf("SKIP: no CUDA device (%s)\n",
               cudaGetErrorString(e != cudaSuccess ? e : cudaErrorNoDevice));
        return 77;
    }
    struct cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    printf("device 0: %s, sm_%d%d, %zu MiB\n", prop.name, prop.major, prop.minor,
           prop.totalGlobalMem >> 20);
    cudaStream_t s;
    CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));

    report(imago_cu_dtype_size(IMAGO_CU_F32) == 4 && imago_cu_dtype_size(IMAGO_CU_F16) == 2 &&
               imago_cu_dtype_size(IMAGO_CU_BF16) == 2,
           "dtype sizes 4, 2, 2");
    report(strcmp(imago_cu_error_string(cudaErrorInvalidValue),
                  cudaGetErrorString(cudaErrorInvalidValue)) == 0,
           "error string is cudaGetErrorString's");

    g_stream = NULL;
    test_convert();
    g_stream = s;
    test_pad();
    g_stream = NULL;
    test_epilogue();
    g_stream = s;
    test_maxpool();
    g_stream = NULL;
    test_binary();
    g_stream = s;
    test_pool();
    g_stream = NULL;
    test_large();

    CK(cudaStreamDestroy(s));
    printf("%d checks, %d failed\n", n_checks, n_failed);
    return n_failed ? 1 : 0;
}
