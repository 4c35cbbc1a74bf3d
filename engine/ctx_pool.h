/* engine-private: the pool of idle execution contexts of a backend.
 *
 * Both backends (backend_dnnl.c, backend_cuda.c) give each concurrent run()
 * its own execution context and keep the idle ones for the next caller. The
 * pool holds opaque context pointers; the backend creates and frees them.
 *
 * Thread safety: take and give may be called from any thread at once;
 * init and fini by the owner only.
 */
#ifndef IMAGO_ENGINE_CTX_POOL_H
#define IMAGO_ENGINE_CTX_POOL_H

#include <pthread.h>

typedef struct imago_ctx_pool {
    pthread_mutex_t lock;
    void **idle;
    int count, cap;
} imago_ctx_pool;

void imago_ctx_pool_init(imago_ctx_pool *p);
/* An idle context (the most recently given back, whose plans are warmest),
 * or NULL: the caller then creates one. */
void *imago_ctx_pool_take(imago_ctx_pool *p);
/* Gives ctx back for the next caller. */
void imago_ctx_pool_give(imago_ctx_pool *p, void *ctx);
/* free_fn(ctx) on every idle context (free_fn may be NULL for a pool that
 * never held one), then the pool's own memory. Every context must have been
 * given back. */
void imago_ctx_pool_fini(imago_ctx_pool *p, void (*free_fn)(void *ctx));

#endif
