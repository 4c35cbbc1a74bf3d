/* The backends' pool of idle execution contexts (see ctx_pool.h). */
#include "ctx_pool.h"

#include <stdlib.h>

#include "common/common.h"

void imago_ctx_pool_init(imago_ctx_pool *p)
{
    pthread_mutex_init(&p->lock, NULL);
    p->idle = NULL;
    p->count = p->cap = 0;
}

void *imago_ctx_pool_take(imago_ctx_pool *p)
{
    void *c = NULL;
    pthread_mutex_lock(&p->lock);
    if (p->count > 0)
        c = p->idle[--p->count];
    pthread_mutex_unlock(&p->lock);
    return c;
}

void imago_ctx_pool_give(imago_ctx_pool *p, void *ctx)
{
    pthread_mutex_lock(&p->lock);
    if (p->count == p->cap) {
        p->cap = p->cap ? 2 * p->cap : 8;
        p->idle = imago_xrealloc(p->idle, (size_t)p->cap * sizeof *p->idle);
    }
    p->idle[p->count++] = ctx;
    pthread_mutex_unlock(&p->lock);
}

void imago_ctx_pool_fini(imago_ctx_pool *p, void (*free_fn)(void *ctx))
{
    for (int i = 0; free_fn && i < p->count; i++)
        free_fn(p->idle[i]);
    free(p->idle);
    p->idle = NULL;
    p->count = p->cap = 0;
    pthread_mutex_destroy(&p->lock);
}
