/* The per-shape plan cache of the backends (see plan_lru.h). */
#include "plan_lru.h"

#include <stdlib.h>

#include "common/common.h"

void imago_plan_lru_init(imago_plan_lru *l, int cap, imago_plan_free_fn free_fn, void *free_ctx)
{
    l->cap = cap > 0 ? cap : 1;
    l->slots = imago_xcalloc((size_t)l->cap, sizeof *l->slots);
    l->count = 0;
    l->tick = 0;
    l->free_fn = free_fn;
    l->free_ctx = free_ctx;
}

void *imago_plan_lru_find(imago_plan_lru *l, int n, int h, int w)
{
    for (int i = 0; i < l->count; i++) {
        struct imago_plan_lru_slot *s = &l->slots[i];
        if (s->n == n && s->h == h && s->w == w) {
            s->used = ++l->tick;
            return s->plan;
        }
    }
    return NULL;
}

void imago_plan_lru_add(imago_plan_lru *l, int n, int h, int w, void *plan)
{
    int i = l->count;
    if (l->count == l->cap) {
        i = 0;
        for (int j = 1; j < l->count; j++)
            if (l->slots[j].used < l->slots[i].used)
                i = j;
        l->free_fn(l->free_ctx, l->slots[i].plan);
    } else {
        l->count++;
    }
    l->slots[i] = (struct imago_plan_lru_slot){.n = n, .h = h, .w = w, .used = ++l->tick,
                                               .plan = plan};
}

void imago_plan_lru_clear(imago_plan_lru *l)
{
    for (int i = 0; i < l->count; i++)
        l->free_fn(l->free_ctx, l->slots[i].plan);
    l->count = 0;
}

void imago_plan_lru_fini(imago_plan_lru *l)
{
    if (!l->slots)
        return;
    imago_plan_lru_clear(l);
    free(l->slots);
    l->slots = NULL;
}
