/* index module internals: struct imago_index and the helpers its files
 * share (index_build.c), the store layer (store.c, store_images.c,
 * store_jobs.c), the whitening internals (whiten.c), the dense kernels
 * (flat.c). The top-k heap is in topk.h / topk.c, the in-memory search core
 * in core.h. Not for other modules.
 */
#ifndef IMAGO_INDEX_INT_H
#define IMAGO_INDEX_INT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "index.h"
#include "topk.h"

/* ---- store (SQLite: store*.c) ---------------------------------------------- */

typedef struct ix_store ix_store;
typedef struct ix_conn ix_conn; /* one SQLite connection + its prepared statements */

#define IX_SCHEMA_VERSION 2

/* Opens/creates data_dir/imago.db, migrates, sets WAL + synchronous
 * (durability "normal" or "full"). The fingerprint, dim and collection
 * settings are recorded in meta by imago_index_open, not here. */
int ix_store_open(const char *data_dir, const char *durability, ix_store **out, imago_error *err);
void ix_store_free(ix_store *st);

/* meta key/value (text). get: *out malloc'ed or NULL when absent. */
int ix_store_meta_get(ix_store *st, const char *key, char **out, imago_error *err);
int ix_store_meta_set(ix_store *st, const char *key, const char *value, imago_error *err);

/* The writer connection (caller holds the index writer mutex). */
ix_conn *ix_store_writer(ix_store *st);
/* A reader connection from the pool; give it back with ix_store_release. */
int ix_store_acquire(ix_store *st, ix_conn **out, imago_error *err);
void ix_store_release(ix_store *st, ix_conn *c);

int ix_conn_begin(ix_conn *c, int write, imago_error *err);
int ix_conn_commit(ix_conn *c, imago_error *err);
void ix_conn_rollback(ix_conn *c);

/* Current sequence stored in meta (writer). */
int ix_store_seq(ix_conn *c, int64_t *seq, imago_error *err);
int ix_store_set_seq(ix_conn *c, int64_t seq, imago_error *err);

/* Inside a write transaction: insert or replace (same external_id keeps the
 * id) an image with its descriptor, stamped with seq. *id = image id;
 * *replaced = whether the id existed (live or tombstoned). */
int ix_store_put_image(ix_conn *c, const imago_index_item *it, const char *model, int dim,
                       int64_t seq, int64_t *id, int *replaced, imago_error *err);
/* Inside a write transaction: tombstone; IMAGO_ERR_NOT_FOUND if absent/deleted. */
int ix_store_delete_image(ix_conn *c, int64_t id, int64_t seq, imago_error *err);
/* Physically removes tombstoned rows (compaction). */
int ix_store_purge_deleted(ix_conn *c, int64_t *n_purged, imago_error *err);

int ix_store_get_info(ix_conn *c, int64_t id, const char *external_id, imago_image_info **out,
                      imago_error *err);
int ix_store_get_thumbnail(ix_conn *c, int64_t id, void **data, size_t *len, imago_error *err);
int ix_store_get_metadata(ix_conn *c, int64_t id, char **json, int *found, imago_error *err);
/* Raw vector of a live image into out (dim floats). */
int ix_store_get_vector(ix_conn *c, int64_t id, int dim, float *out, imago_error *err);

/* All live descriptors (ordered by id): *ids (malloc) and *vecs (aligned,
 * n x dim fp32; imago_free_aligned); also the sequence the read covers
 * (consistent: one read transaction). */
int ix_store_load_all(ix_conn *c, int dim, int64_t **ids, float **vecs, size_t *n, int64_t *seq,
                      imago_error *err);
/* Counts of live and tombstoned images. */
int ix_store_counts(ix_conn *c, int64_t *live, int64_t *deleted, imago_error *err);

/* Changes after seq, in sequence order: callback per row (id, deleted). */
typedef int (*ix_change_fn)(void *user, int64_t id, int deleted, int64_t seq, imago_error *err);
int ix_store_changes(ix_conn *c, int64_t after_seq, ix_change_fn fn, void *user, imago_error *err);

/* whitening (store_whiten.c): the active row or *out = NULL; put deactivates the
 * previous one and inserts w as active (inside the caller's write
 * transaction), *version = its row id; clear deactivates. */
int ix_store_whiten_get(ix_conn *c, imago_whiten **out, imago_error *err);
int ix_store_whiten_put(ix_conn *c, const imago_whiten *w, int64_t *version, imago_error *err);
int ix_store_whiten_clear(ix_conn *c, imago_error *err);

/* jobs (store_jobs.c) */
int ix_job_create(ix_conn *c, const char *kind, const char *params, int64_t *id, imago_error *err);
int ix_job_add_items(ix_conn *c, int64_t job_id, const char *const *sources,
                     const char *const *external_ids, size_t n, imago_error *err);
int ix_job_set_state(ix_conn *c, int64_t job_id, imago_job_state st, const char *error,
                     imago_error *err);
int ix_job_claim(ix_conn *c, int64_t job_id, size_t max, imago_job_item **items, size_t *n,
                 imago_error *err);
int ix_job_item_finish(ix_conn *c, int64_t item_id, int ok_, int64_t image_id, int code,
                       const char *msg, imago_error *err);
int ix_job_get(ix_conn *c, int64_t job_id, imago_job_info *out, imago_error *err);
int ix_job_list(ix_conn *c, int64_t *ids, size_t max, size_t *n, imago_error *err);
int ix_job_errors(ix_conn *c, int64_t job_id, size_t max, imago_job_item **items, size_t *n,
                  imago_error *err);
int ix_job_resume(ix_conn *c, int64_t **ids, size_t *n, imago_error *err);

/* ---- the index object (index*.c) ---------------------------------------- */

/* DESIGN (threads): `wmu` serialises every writer (store writes, core
 * mutation, snapshot, swap). The core is only mutated by a thread holding
 * wmu, so a writer may read it without the rwlock; it takes the write side
 * of `rw` only around the mutation itself. Searches hold the read side for
 * the whole search (core pointer and contents stay valid). The rwlock
 * prefers writers so a steady search load cannot starve ingest.
 * A reindex builds the new core outside wmu from one read transaction at
 * sequence S, then takes wmu, replays the rows changed after S, and swaps.
 */
struct ix_core;
struct ix_snap_meta;

struct imago_index {
    char *data_dir, *fingerprint, *snap_path;
    char factory[64];
    int dim, prec;
    int dba, dba_k;
    double dba_beta;
    int qe, qe_n;
    double qe_alpha;
    int nprobe, ef;
    long snapshot_interval;
    int snapshot_on_close;
    ix_store *st;
    pthread_mutex_t wmu;
    pthread_mutex_t reindex_mu; /* one reindex at a time (each reads the current whitening) */
    pthread_rwlock_t rw;
    struct ix_core *cur;
    int64_t store_seq;    /* last committed sequence (writer) */
    int64_t purge_seq;    /* snapshots older than this are invalid */
    int64_t snapshot_seq; /* last snapshot written/loaded (-1 none) */
    long changes_since_snap;
};

/* Runs body (an int expression using the reader connection c) on a pooled
 * reader connection and returns its result from the enclosing function. */
#define IX_WITH_READER(ix, c, err, body)                                                           \
    do {                                                                                           \
        ix_conn *c = NULL;                                                                         \
        int rc_ = ix_store_acquire((ix)->st, &c, err);                                             \
        if (rc_)                                                                                   \
            return rc_;                                                                            \
        rc_ = (body);                                                                              \
        ix_store_release((ix)->st, c);                                                             \
        return rc_;                                                                                \
    } while (0)

/* Records the collection settings (factory, precision, DBA) in meta. */
int ix_index_put_settings(imago_index *ix, imago_error *err);

/* index_build.c */

/* The snapshot settings of an index holding vectors through whitening wh
 * (NULL: raw): its dim, and a fingerprint naming the model and the whitening
 * (fp_buf, 72 bytes), so that a snapshot written under another whitening is
 * never loaded. */
struct ix_snap_meta ix_index_snap_meta(const imago_index *ix, const imago_whiten *wh, char *fp_buf);
/* The vectors the index holds for raw descriptors: whitened through wh, or
 * the raw ones (out = raw, nothing copied) without one. *out is raw or
 * malloc'ed (free when != raw). */
int ix_index_vectors(const imago_whiten *wh, const float *raw, size_t n, float **out,
                     imago_error *err);
/* Builds a core from one read of the store. The vectors go through *wh
 * (NULL: raw); when learn is set, a whitening is first learned from the
 * rows read and returned in *wh (owned by the caller; the core holds its
 * own reference). */
int ix_index_build(imago_index *ix, ix_conn *conn, const imago_whiten_params *learn,
                   imago_whiten **wh, struct ix_core **out, imago_error *err);
/* Adds one stored row to core c (whitening, online DBA). raw: the stored
 * descriptor (ix->dim); wbuf, aug: scratch of ix->dim floats. lock: take
 * the write side of ix->rw around the mutation (c is the live core). */
int ix_index_apply_add(imago_index *ix, struct ix_core *c, ix_conn *conn, int lock, int64_t id,
                       const float *raw, float *wbuf, float *aug, int64_t seq, imago_error *err);
/* Applies the store's changes after c->seq to c; *n_applied may be NULL. */
int ix_index_replay(imago_index *ix, struct ix_core *c, ix_conn *conn, int lock, size_t *n_applied,
                    imago_error *err);
/* Writes the snapshot of ix->cur (caller holds wmu, or is the only thread). */
int ix_index_write_snapshot(imago_index *ix, imago_error *err);

/* ---- whitening (whiten.c) ------------------------------------------------ */

/* Rebuilds a stored whitening; its fingerprint is checked (IMAGO_ERR_FORMAT). */
int ix_whiten_from_parts(const imago_whiten_info *info, const double *mean, const double *P,
                         const double *lambda, imago_whiten **out, imago_error *err);
/* Records the store row of a whitening not yet shared with other threads. */
void ix_whiten_set_version(imago_whiten *w, int64_t version);
/* Takes a reference (returns w; NULL stays NULL). */
imago_whiten *ix_whiten_ref(imago_whiten *w);

/* ---- dense kernels (flat.c) -------------------------------------------- */

enum { IX_FP32 = 0, IX_FP16 = 1, IX_BF16 = 2 };

int ix_prec_parse(const char *s, int *out);
const char *ix_prec_name(int p);
size_t ix_prec_size(int p);

/* scores[i] = <rows[i], q> for n rows of dim d stored in precision prec. */
void ix_scores(const void *rows, int prec, size_t n, int d, const float *q, float *scores);
/* scores (n x nq, row-major: scores[i*nq + j]) for nq queries (nq x d). */
void ix_scores_batch(const void *rows, int prec, size_t n, int d, const float *q, size_t nq,
                     float *scores);
/* Converts n*d floats to/from the storage precision. */
void ix_to_prec(const float *src, int prec, size_t count, void *dst);
void ix_from_prec(const void *src, int prec, size_t count, float *dst);

/* L2-normalises v (d floats); returns the original norm. */
double ix_normalize(float *v, int d);

/* Exact k nearest neighbours (by inner product) of every row of X among the
 * rows of X, excluding the row itself: nb (n x k) receives row indices (-1
 * when fewer), sim the scores. sgemm over the upper block triangle of
 * X X^T (2048 x 2048 tiles), memory O(tile^2 + n). */
int ix_knn_self_exact(const float *X, size_t n, int d, int k, int64_t *nb, float *sim,
                      imago_error *err);

/* DBA of the rows of X given neighbour lists: out_i = normalize(x_i + sum_j
 * w(x_i . x_j) x_j), w(s) = max(s, 0)^beta. */
void ix_dba_apply(const float *X, size_t n, int d, const int64_t *nb, const float *sim, int k,
                  double beta, float *out);
/* q' = normalize(q + sum_j max(q . x_j, 0)^alpha x_j) over m neighbour rows. */
void ix_qe_apply(const float *q, int d, const float *nbrs, const float *sims, int m, double alpha,
                 float *out);

#endif
