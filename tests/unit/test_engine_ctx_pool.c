/* Unit tests for engine/ctx_pool.c, the backends' pool of idle execution
 * contexts: an empty pool gives NULL, contexts come back last-in first-out,
 * concurrent take/give lose and duplicate nothing, and fini frees every
 * idle context exactly once. */
#include "engine/ctx_pool.h"
#include "tap.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define THREADS 4
#define ROUNDS 20000
#define CTXS 64

static int freed[CTXS];
static int ids[CTXS];
static imago_ctx_pool shared;
static int in_use[CTXS]; /* set while a thread holds the context */
static int misuse;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static void free_cb(void *c)
{
    freed[*(int *)c]++;
}

static void *worker(void *arg)
{
    (void)arg;
    for (int r = 0; r < ROUNDS; r++) {
        int *c = imago_ctx_pool_take(&shared);
        if (!c)
            continue;
        pthread_mutex_lock(&mu);
        misuse += in_use[*c]++ != 0; /* two holders of one context */
        pthread_mutex_unlock(&mu);
        pthread_mutex_lock(&mu);
        in_use[*c]--;
        pthread_mutex_unlock(&mu);
        imago_ctx_pool_give(&shared, c);
    }
    return NULL;
}

int main(void)
{
    for (int i = 0; i < CTXS; i++)
        ids[i] = i;
    imago_ctx_pool p;
    imago_ctx_pool_init(&p);
    ok(imago_ctx_pool_take(&p) == NULL, "an empty pool gives NULL");
    imago_ctx_pool_give(&p, &ids[1]);
    imago_ctx_pool_give(&p, &ids[2]);
    ok(imago_ctx_pool_take(&p) == &ids[2], "the last context given back comes first");
    ok(imago_ctx_pool_take(&p) == &ids[1], "then the one before");
    ok(imago_ctx_pool_take(&p) == NULL, "then none");
    for (int i = 0; i < 20; i++) /* grows past its first capacity */
        imago_ctx_pool_give(&p, &ids[i]);
    memset(freed, 0, sizeof freed);
    imago_ctx_pool_fini(&p, free_cb);
    int once = 1;
    for (int i = 0; i < CTXS; i++)
        once &= freed[i] == (i < 20);
    ok(once, "fini frees every idle context exactly once");
    imago_ctx_pool empty;
    imago_ctx_pool_init(&empty);
    memset(freed, 0, sizeof freed);
    imago_ctx_pool_fini(&empty, free_cb);
    int none = 1;
    for (int i = 0; i < CTXS; i++)
        none &= freed[i] == 0;
    ok(none, "fini of an empty pool calls no free function");
    imago_ctx_pool_init(&empty);
    imago_ctx_pool_give(&empty, &ids[0]);
    ok(imago_ctx_pool_take(&empty) == &ids[0], "a pool gives back what it was given");
    imago_ctx_pool_fini(&empty, NULL);
    ok(empty.idle == NULL && empty.count == 0 && empty.cap == 0,
       "fini without a free function (nothing idle) leaves the pool empty");

    imago_ctx_pool_init(&shared);
    for (int i = 0; i < 8; i++)
        imago_ctx_pool_give(&shared, &ids[i]);
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        pthread_create(&t[i], NULL, worker, NULL);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    is_int(misuse, 0, "%d threads x %d rounds: no context held twice", THREADS, ROUNDS);
    memset(freed, 0, sizeof freed);
    imago_ctx_pool_fini(&shared, free_cb);
    once = 1;
    for (int i = 0; i < CTXS; i++)
        once &= freed[i] == (i < 8);
    ok(once, "after the threads: the 8 contexts are all back, each once");
    return tap_done();
}
