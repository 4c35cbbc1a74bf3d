/* The subset of the CUDA runtime that engine/backend_cuda.c calls, on the
 * host (see fake.h). Compiled against the real cuda_runtime.h so that the
 * symbol names and types are the ones the backend links against. */
#include "fake.h"

#include <cuda_runtime.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define FAKE_ALIGN 256
/* Allocations this large (in practice only the backend's algorithm-search
 * workspace, up to 1 GiB, which nothing reads) are mmap'd: untouched pages
 * cost nothing, where the sanitizers' allocator spent ~0.3 s of system time
 * on each. Their extents are still checked by fake_cuda_check. */
#define FAKE_MMAP_MIN ((size_t)64 << 20)
#define FAKE_DEFAULT_MEM ((size_t)16 << 30)

/* ---- counters ----------------------------------------------------------- */

static imago_fake_cuda_stats g_stats;

__attribute__((visibility("default"))) imago_fake_cuda_stats *imago_fake_cuda_stats_get(void)
{
    return &g_stats;
}

void fake_count(uint64_t *counter)
{
    __atomic_fetch_add(counter, 1, __ATOMIC_RELAXED);
}

/* ---- device allocations -------------------------------------------------- */

typedef struct fake_alloc {
    char *p;
    size_t bytes;
    size_t mapped; /* > 0: mmap'd, munmap this many bytes */
} fake_alloc;

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static fake_alloc *g_allocs;
static int g_n_allocs, g_cap_allocs;
static size_t g_used;

static _Thread_local cudaError_t t_last = cudaSuccess;

static cudaError_t fail(cudaError_t e)
{
    t_last = e;
    return e;
}

static size_t mem_limit(void)
{
    const char *v = getenv("IMAGO_FAKE_CUDA_MEM");
    if (v && *v) {
        char *end;
        unsigned long long n = strtoull(v, &end, 10);
        if (end != v)
            return (size_t)n;
    }
    return FAKE_DEFAULT_MEM;
}

int fake_cuda_check(const void *p, size_t bytes)
{
    const char *c = p;
    int ok = 0;
    if (!c)
        return -1;
    pthread_mutex_lock(&g_lock);
    for (int i = 0; i < g_n_allocs && !ok; i++)
        if (c >= g_allocs[i].p && c <= g_allocs[i].p + g_allocs[i].bytes &&
            bytes <= (size_t)(g_allocs[i].p + g_allocs[i].bytes - c))
            ok = 1;
    pthread_mutex_unlock(&g_lock);
    return ok ? 0 : -1;
}

int fake_overlap(const void *a, size_t an, const void *b, size_t bn)
{
    const char *x = a, *y = b;
    return an && bn && x < y + bn && y < x + an;
}

cudaError_t cudaMalloc(void **devPtr, size_t size)
{
    if (!devPtr)
        return fail(cudaErrorInvalidValue);
    *devPtr = NULL;
    size_t limit = mem_limit();
    pthread_mutex_lock(&g_lock);
    if (size > limit || g_used > limit - size) {
        pthread_mutex_unlock(&g_lock);
        fake_count(&g_stats.malloc_failed);
        return fail(cudaErrorMemoryAllocation);
    }
    size_t rounded = (size + FAKE_ALIGN - 1) / FAKE_ALIGN * FAKE_ALIGN, mapped = 0;
    char *p;
    if (rounded >= FAKE_MMAP_MIN) {
        p = mmap(NULL, rounded, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                 -1, 0);
        if (p == MAP_FAILED)
            p = NULL;
        else
            mapped = rounded;
    } else {
        p = aligned_alloc(FAKE_ALIGN, rounded ? rounded : FAKE_ALIGN);
    }
    if (!p) {
        pthread_mutex_unlock(&g_lock);
        fake_count(&g_stats.malloc_failed);
        return fail(cudaErrorMemoryAllocation);
    }
    if (g_n_allocs == g_cap_allocs) {
        int cap = g_cap_allocs ? 2 * g_cap_allocs : 256;
        fake_alloc *a = realloc(g_allocs, (size_t)cap * sizeof *a);
        if (!a) {
            pthread_mutex_unlock(&g_lock);
            if (mapped)
                munmap(p, mapped);
            else
                free(p);
            return fail(cudaErrorMemoryAllocation);
        }
        g_allocs = a;
        g_cap_allocs = cap;
    }
    g_allocs[g_n_allocs++] = (fake_alloc){p, size, mapped};
    g_used += size;
    g_stats.bytes_in_use = g_used;
    if (g_used > g_stats.peak_bytes)
        g_stats.peak_bytes = g_used;
    g_stats.mallocs++;
    pthread_mutex_unlock(&g_lock);
    *devPtr = p;
    return cudaSuccess;
}

cudaError_t cudaFree(void *devPtr)
{
    if (!devPtr)
        return cudaSuccess;
    pthread_mutex_lock(&g_lock);
    for (int i = 0; i < g_n_allocs; i++) {
        if (g_allocs[i].p == devPtr) {
            g_used -= g_allocs[i].bytes;
            g_stats.bytes_in_use = g_used;
            g_stats.frees++;
            size_t mapped = g_allocs[i].mapped;
            g_allocs[i] = g_allocs[--g_n_allocs];
            pthread_mutex_unlock(&g_lock);
            if (mapped)
                munmap(devPtr, mapped);
            else
                free(devPtr);
            return cudaSuccess;
        }
    }
    pthread_mutex_unlock(&g_lock);
    return fail(cudaErrorInvalidValue); /* not a device allocation (or freed twice) */
}

cudaError_t cudaMemGetInfo(size_t *free_b, size_t *total)
{
    size_t limit = mem_limit();
    pthread_mutex_lock(&g_lock);
    size_t used = g_used;
    pthread_mutex_unlock(&g_lock);
    if (free_b)
        *free_b = used < limit ? limit - used : 0;
    if (total)
        *total = limit;
    return cudaSuccess;
}

/* pinned host memory: ordinary host memory, not counted against the device */
cudaError_t cudaHostAlloc(void **pHost, size_t size, unsigned int flags)
{
    (void)flags;
    if (!pHost)
        return fail(cudaErrorInvalidValue);
    *pHost = malloc(size ? size : 1);
    return *pHost ? cudaSuccess : fail(cudaErrorMemoryAllocation);
}

cudaError_t cudaFreeHost(void *ptr)
{
    free(ptr);
    return cudaSuccess;
}

/* the side a copy kind says a pointer is on must agree with the table */
static cudaError_t copy(void *dst, const void *src, size_t count, enum cudaMemcpyKind kind)
{
    if (!count)
        return cudaSuccess;
    if (!dst || !src)
        return fail(cudaErrorInvalidValue);
    int dst_dev = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
    int src_dev = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
    if (kind != cudaMemcpyDefault && kind != cudaMemcpyHostToHost) {
        if ((dst_dev && fake_cuda_check(dst, count)) || (src_dev && fake_cuda_check(src, count)))
            return fail(cudaErrorInvalidValue);
        if ((!dst_dev && fake_cuda_check(dst, 1) == 0) ||
            (!src_dev && fake_cuda_check(src, 1) == 0))
            return fail(cudaErrorInvalidValue); /* a device pointer given as host memory */
    }
    if (fake_overlap(dst, count, src, count))
        return fail(cudaErrorInvalidValue);
    memcpy(dst, src, count);
    fake_count(&g_stats.memcpys);
    return cudaSuccess;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t count, enum cudaMemcpyKind kind)
{
    return copy(dst, src, count, kind);
}

/* the stream is checked to be one of ours (or the legacy default, NULL) */
struct CUstream_st {
    unsigned magic;
    unsigned flags;
};
struct CUevent_st {
    unsigned magic;
    unsigned flags;
    int recorded;
};
#define STREAM_MAGIC 0x57AEA4u
#define EVENT_MAGIC 0xE7E47u

static int bad_stream(cudaStream_t s)
{
    return s && s->magic != STREAM_MAGIC;
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t count, enum cudaMemcpyKind kind,
                            cudaStream_t stream)
{
    if (bad_stream(stream))
        return fail(cudaErrorInvalidResourceHandle);
    return copy(dst, src, count, kind);
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *pStream, unsigned int flags)
{
    if (!pStream)
        return fail(cudaErrorInvalidValue);
    struct CUstream_st *s = calloc(1, sizeof *s);
    if (!s)
        return fail(cudaErrorMemoryAllocation);
    s->magic = STREAM_MAGIC;
    s->flags = flags;
    *pStream = s;
    return cudaSuccess;
}

cudaError_t cudaStreamDestroy(cudaStream_t stream)
{
    if (!stream || bad_stream(stream))
        return fail(cudaErrorInvalidResourceHandle);
    stream->magic = 0;
    free(stream);
    return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream)
{
    return bad_stream(stream) ? fail(cudaErrorInvalidResourceHandle) : cudaSuccess;
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t *event, unsigned int flags)
{
    if (!event)
        return fail(cudaErrorInvalidValue);
    struct CUevent_st *e = calloc(1, sizeof *e);
    if (!e)
        return fail(cudaErrorMemoryAllocation);
    e->magic = EVENT_MAGIC;
    e->flags = flags;
    *event = e;
    return cudaSuccess;
}

cudaError_t cudaEventDestroy(cudaEvent_t event)
{
    if (!event || event->magic != EVENT_MAGIC)
        return fail(cudaErrorInvalidResourceHandle);
    event->magic = 0;
    free(event);
    return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream)
{
    if (!event || event->magic != EVENT_MAGIC || bad_stream(stream))
        return fail(cudaErrorInvalidResourceHandle);
    event->recorded = 1;
    return cudaSuccess;
}

/* an event never recorded completes at once, as in CUDA */
cudaError_t cudaEventSynchronize(cudaEvent_t event)
{
    if (!event || event->magic != EVENT_MAGIC)
        return fail(cudaErrorInvalidResourceHandle);
    return cudaSuccess;
}

/* ---- device ----------------------------------------------------------------- */

cudaError_t cudaGetDeviceCount(int *count)
{
    if (!count)
        return fail(cudaErrorInvalidValue);
    *count = 1;
    return cudaSuccess;
}

cudaError_t cudaSetDevice(int device)
{
    return device == 0 ? cudaSuccess : fail(cudaErrorInvalidDevice);
}

cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp *prop, int device)
{
    if (!prop)
        return fail(cudaErrorInvalidValue);
    if (device != 0)
        return fail(cudaErrorInvalidDevice);
    memset(prop, 0, sizeof *prop);
    snprintf(prop->name, sizeof prop->name, "imago fake CUDA device (CPU)");
    prop->major = 9;
    prop->minor = 0;
    prop->totalGlobalMem = mem_limit();
    prop->multiProcessorCount = 1;
    prop->warpSize = 32;
    prop->maxThreadsPerBlock = 1024;
    return cudaSuccess;
}

cudaError_t cudaDriverGetVersion(int *driverVersion)
{
    if (!driverVersion)
        return fail(cudaErrorInvalidValue);
    *driverVersion = CUDART_VERSION;
    return cudaSuccess;
}

cudaError_t cudaGetLastError(void)
{
    cudaError_t e = t_last;
    t_last = cudaSuccess;
    return e;
}

/* ---- error strings (the runtime's wording for the codes the fake returns) -- */

const char *cudaGetErrorName(cudaError_t error)
{
    switch (error) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorIllegalAddress: return "cudaErrorIllegalAddress";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    default: return "cudaErrorUnknown";
    }
}

const char *cudaGetErrorString(cudaError_t error)
{
    switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorIllegalAddress: return "an illegal memory access was encountered";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    default: return "unknown error";
    }
}
