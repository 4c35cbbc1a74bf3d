/* engine-private: the per-shape plan cache of a backend execution context.
 *
 * Both backends (backend_dnnl*.c, backend_cuda*.c) build a plan per input
 * shape (n, h, w) and keep the most recently used `cap` of them in each
 * execution context. The cache holds opaque plan pointers; the backend
 * builds and frees them (free_fn).
 *
 * Thread safety: none; a context, and so its cache, is used by one thread
 * at a time.
 */
#ifndef IMAGO_ENGINE_PLAN_LRU_H
#define IMAGO_ENGINE_PLAN_LRU_H

#include <stdint.h>

typedef void (*imago_plan_free_fn)(void *ctx, void *plan);

typedef struct imago_plan_lru {
    struct imago_plan_lru_slot {
        int n, h, w;
        uint64_t used;
        void *plan;
    } *slots;
    int count, cap;
    uint64_t tick;
    imago_plan_free_fn free_fn;
    void *free_ctx;
} imago_plan_lru;

/* cap >= 1 plans; free_fn(free_ctx, plan) frees one. */
void imago_plan_lru_init(imago_plan_lru *l, int cap, imago_plan_free_fn free_fn, void *free_ctx);
/* The plan for n x h x w (now the most recently used), or NULL. */
void *imago_plan_lru_find(imago_plan_lru *l, int n, int h, int w);
/* Adds plan for n x h x w as the most recently used, freeing the least
 * recently used plan when the cache is full. */
void imago_plan_lru_add(imago_plan_lru *l, int n, int h, int w, void *plan);
/* Frees every plan (the cache stays usable). */
void imago_plan_lru_clear(imago_plan_lru *l);
/* Frees every plan and the cache itself. */
void imago_plan_lru_fini(imago_plan_lru *l);

#endif
