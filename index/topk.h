/* index/topk.h: top-k selection (topk.c), private to index/. Depends on
 * nothing else in the module: index_int.h includes it for core.c and flat.c.
 * Not thread-safe: one heap per thread.
 */
#ifndef IMAGO_INDEX_TOPK_H
#define IMAGO_INDEX_TOPK_H

#include <stdint.h>

/* A bounded min-heap of (score, key) keeping the k best scores. The
 * buffers (k entries each) are the caller's. */
typedef struct ix_topk {
    int k, n;
    float *score;
    int64_t *key;
} ix_topk;

void ix_topk_init(ix_topk *t, int k, float *score_buf, int64_t *key_buf);
/* Sorts the kept entries best first (ties: smaller key first). */
void ix_topk_sort(ix_topk *t);

/* Inserts (s, key) when it beats the worst kept entry; the push below does
 * the cheap rejection inline. */
void ix_topk_sift_(ix_topk *t, float s, int64_t key);
static inline void ix_topk_push(ix_topk *t, float s, int64_t key)
{
    if (t->n == t->k && !(s > t->score[0]))
        return;
    ix_topk_sift_(t, s, key);
}

#endif
