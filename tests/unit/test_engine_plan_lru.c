/* Unit tests for engine/plan_lru.c, the backends' per-shape plan cache:
 * lookup by shape, least-recently-used eviction, clear and fini free every
 * plan exactly once. */
#include "engine/plan_lru.h"
#include "tap.h"

#include <string.h>

static int freed[8];

static void free_cb(void *ctx, void *plan)
{
    is_int(*(int *)ctx, 42, "free gets the cache's context");
    freed[*(int *)plan]++;
}

int main(void)
{
    int ctx = 42;
    int ids[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    imago_plan_lru l;
    memset(freed, 0, sizeof freed);
    imago_plan_lru_init(&l, 2, free_cb, &ctx);
    ok(imago_plan_lru_find(&l, 1, 64, 64) == NULL, "empty cache: miss");
    imago_plan_lru_add(&l, 1, 64, 64, &ids[1]);
    imago_plan_lru_add(&l, 4, 64, 64, &ids[2]);
    ok(imago_plan_lru_find(&l, 1, 64, 64) == &ids[1], "hit by shape (1x64x64)");
    ok(imago_plan_lru_find(&l, 4, 64, 64) == &ids[2], "batch is part of the key");
    ok(imago_plan_lru_find(&l, 1, 64, 32) == NULL, "width is part of the key");
    ok(imago_plan_lru_find(&l, 1, 64, 64) == &ids[1], "1x64x64 is now the most recent");
    imago_plan_lru_add(&l, 1, 32, 32, &ids[3]); /* full: evicts 4x64x64 */
    is_int(freed[2], 1, "the least recently used plan is freed");
    is_int(freed[1] + freed[3], 0, "the others are kept");
    ok(imago_plan_lru_find(&l, 4, 64, 64) == NULL, "the evicted shape misses");
    ok(imago_plan_lru_find(&l, 1, 64, 64) == &ids[1] && imago_plan_lru_find(&l, 1, 32, 32) == &ids[3],
       "the kept shapes hit");
    imago_plan_lru_clear(&l);
    is_int(freed[1] + freed[3], 2, "clear frees every plan once");
    ok(imago_plan_lru_find(&l, 1, 64, 64) == NULL, "after clear: miss");
    imago_plan_lru_add(&l, 2, 8, 8, &ids[4]);
    ok(imago_plan_lru_find(&l, 2, 8, 8) == &ids[4], "usable after clear");
    imago_plan_lru_fini(&l);
    is_int(freed[4], 1, "fini frees what is left");
    imago_plan_lru_fini(&l); /* twice is harmless */
    is_int(freed[1] + freed[2] + freed[3] + freed[4], 4, "every plan freed exactly once");

    imago_plan_lru one;
    imago_plan_lru_init(&one, 0, free_cb, &ctx); /* a cap below 1 means 1 */
    imago_plan_lru_add(&one, 1, 1, 1, &ids[5]);
    imago_plan_lru_add(&one, 1, 2, 2, &ids[6]);
    is_int(freed[5], 1, "cap 1: the second plan evicts the first");
    imago_plan_lru_fini(&one);
    is_int(freed[6], 1, "cap 1: fini frees the second");
    return tap_done();
}
