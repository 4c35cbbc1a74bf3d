/* index/core.h: the in-memory search index (see core.c). Private to index/.
 * Mutated only by the index writer; readers use it under the index
 * read lock (the DESIGN note on struct imago_index, index_int.h).
 */
#ifndef IMAGO_INDEX_CORE_H
#define IMAGO_INDEX_CORE_H

#include <faiss/c_api/Index_c.h>

#include "index_int.h"

enum { IX_CORE_FLAT = 0, IX_CORE_FAISS = 1 };

typedef struct ix_core {
    int kind;      /* IX_CORE_FLAT or IX_CORE_FAISS */
    int untrained; /* factory needs training that could not be done yet (exact search) */
    int family;    /* FAISS: 1 HNSW, 2 IVF, 0 other */
    int dim, prec;
    char factory[64]; /* the collection's factory string */
    size_t n, cap;    /* positions */
    void *vecs;       /* Flat: cap x dim in prec (aligned) */
    int64_t *ids;     /* position -> image id */
    uint8_t *dead;    /* tombstone bitmap over positions */
    size_t n_dead;
    FaissIndex *fidx; /* FAISS: labels are positions */
    int64_t *pos_of;  /* image id -> live position or -1 */
    size_t pos_cap;
    int64_t seq; /* store sequence covered */
    /* The whitening its vectors went through (a reference, NULL = raw model
     * descriptors): dim is its output dim. Searches whiten their queries
     * with the core's own, so a swap never pairs one whitening with another's
     * vectors. */
    imago_whiten *wh;
    /* HNSW efSearch lives in the index (see faiss_ext.h): searches with the
     * default hold ef_lock shared, a per-request value holds it exclusive
     * while it is set. */
    pthread_rwlock_t ef_lock;
    int ef_default;
} ix_core;

typedef struct ix_filter {
    const int64_t *allow; /* sorted, or NULL */
    size_t n_allow;
    imago_index_id_filter fn;
    void *user;
    int64_t exclude_id; /* -1 = none */
} ix_filter;

typedef struct ix_snap_meta {
    int dim, prec, dba, dba_k;
    double dba_beta;
    const char *factory;
    const char *fingerprint;
} ix_snap_meta;

ix_core *ix_core_new(int dim, int prec, const char *factory);
void ix_core_free(ix_core *c);
/* Sets the default IVF nprobe / HNSW efSearch stored in the FAISS index. */
int ix_core_set_defaults(ix_core *c, int nprobe, int ef, imago_error *err);
int ix_factory_is_flat(const char *factory);
/* Builds a core over n vectors X (ids[i] for row i): trains IVF/PQ from X. */
int ix_core_build(int dim, int prec, const char *factory, const int64_t *ids, const float *X,
                  size_t n, int nprobe, ix_core **out, imago_error *err);
/* Appends vectors (an id already present is tombstoned first). */
int ix_core_append(ix_core *c, const int64_t *ids, const float *vecs, size_t n, imago_error *err);
void ix_core_tombstone(ix_core *c, int64_t id);
int64_t ix_core_pos(const ix_core *c, int64_t id);
static inline size_t ix_core_live(const ix_core *c)
{
    return c->n - c->n_dead;
}
/* The stored (possibly augmented, possibly approximate) vector at pos. */
int ix_core_vector(const ix_core *c, int64_t pos, float *out, imago_error *err);
int ix_filter_active(const ix_filter *f);
/* Top k per query (nq x dim queries): hits nq x k, counts[nq]. */
int ix_core_search(const ix_core *c, const float *q, size_t nq, int k, const ix_filter *f,
                   int nprobe, int ef, imago_index_hit *hits, int *counts, imago_error *err);

int ix_snapshot_write(const ix_core *c, const ix_snap_meta *m, const char *path, imago_error *err);
/* IMAGO_ERR_NOT_FOUND (missing), IMAGO_ERR_FORMAT (truncated/corrupt),
 * IMAGO_ERR_CONFLICT (other settings), IMAGO_ERR_IO. */
int ix_snapshot_read(const char *path, const ix_snap_meta *want, int nprobe, ix_core **out,
                     imago_error *err);

#endif
