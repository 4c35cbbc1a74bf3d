/* index/topk.c: top-k selection: a bounded min-heap of (score, key) that
 * keeps the k best scores, and its heap sort (best first, ties by the
 * smaller key). Used by the exact search (core.c), and by the DBA self-kNN
 * and the evaluation ranking (flat.c).
 */
#include "topk.h"

void ix_topk_init(ix_topk *t, int k, float *score_buf, int64_t *key_buf)
{
    t->k = k;
    t->n = 0;
    t->score = score_buf;
    t->key = key_buf;
}

/* "a is worse than b": lower score, or equal score and larger key. */
static inline int worse(float sa, int64_t ka, float sb, int64_t kb)
{
    return sa < sb || (sa == sb && ka > kb);
}

/* Places (s, key) at the root of the min-heap of the current n entries and
 * sifts it down to its place. */
static void sift_down(ix_topk *t, float s, int64_t key)
{
    int i = 0;
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        float ms = s;
        int64_t mk = key;
        if (l < t->n && worse(t->score[l], t->key[l], ms, mk)) {
            m = l;
            ms = t->score[l];
            mk = t->key[l];
        }
        if (r < t->n && worse(t->score[r], t->key[r], ms, mk))
            m = r;
        if (m == i)
            break;
        t->score[i] = t->score[m];
        t->key[i] = t->key[m];
        i = m;
    }
    t->score[i] = s;
    t->key[i] = key;
}

void ix_topk_sift_(ix_topk *t, float s, int64_t key)
{
    int i;
    if (t->n < t->k) {
        /* sift up */
        i = t->n++;
        while (i > 0) {
            int p = (i - 1) / 2;
            if (!worse(s, key, t->score[p], t->key[p]))
                break;
            t->score[i] = t->score[p];
            t->key[i] = t->key[p];
            i = p;
        }
        t->score[i] = s;
        t->key[i] = key;
        return;
    }
    if (!worse(t->score[0], t->key[0], s, key))
        return;
    sift_down(t, s, key); /* replace the root */
}

void ix_topk_sort(ix_topk *t)
{
    /* heap sort: pop the worst to the end */
    int n = t->n;
    while (t->n > 1) {
        int last = t->n - 1;
        float s0 = t->score[0];
        int64_t k0 = t->key[0];
        float s = t->score[last];
        int64_t key = t->key[last];
        t->n = last;
        sift_down(t, s, key); /* re-insert last at the root */
        t->score[last] = s0;
        t->key[last] = k0;
    }
    t->n = n;
}
