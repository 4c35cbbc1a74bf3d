/* imago index: the SQLite store (source of truth: images, raw descriptors,
 * jobs), the in-memory search index (imago's own BLAS exact search for
 * "Flat", FAISS for IVF / PQ / HNSW), database-side augmentation (DBA),
 * alpha query expansion, snapshots with crash recovery, and the revisited
 * Oxford/Paris evaluation (mAP, mP@k).
 *
 * This is the only header other modules include from index/. SQLite and
 * FAISS types never appear here.
 *
 * Thread safety: one imago_index may be used from many threads.
 *  - Searches, metadata/thumbnail reads and stats run concurrently with each
 *    other (a reader-writer lock over the in-memory index; each read takes a
 *    SQLite read connection from a pool that grows on demand).
 *  - Writes (add, delete, job updates, snapshot, reindex) are serialised by
 *    one writer mutex; an add or delete holds the index write lock only for
 *    the in-memory update after its transaction committed.
 *  - A reindex (DBA pass / compaction / type change) builds the new index
 *    from a consistent read of the store without blocking searches or
 *    writers, then takes the writer mutex, replays the changes committed
 *    meanwhile, and swaps the new index in under the write lock.
 */
#ifndef IMAGO_INDEX_H
#define IMAGO_INDEX_H

#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

/* ======================================================================
 * Opening a collection
 * ====================================================================== */

typedef struct imago_index imago_index;

typedef struct imago_index_params {
    const char *data_dir;          /* directory holding imago.db and index.snap (created) */
    const char *model_fingerprint; /* hex SHA-256 of the model file (required) */
    int dim;                       /* descriptor dimension (required, 1..65536) */
    const char *factory; /* "Flat" (default), "IVF{n},Flat", "IVF{n},PQ{m}", "HNSW{M}", ...;
                            used when the collection is created; an existing collection keeps
                            its own unless force_factory is set (then it is rebuilt) */
    int force_factory;
    const char *precision;  /* Flat storage: "fp32" (default) | "fp16" | "bf16" */
    const char *durability; /* "normal" (default; synchronous=NORMAL) | "full" */
    int dba;                /* database-side augmentation on (1) / off (0, default) */
    int dba_k;              /* neighbours for DBA (default 2) */
    double dba_beta;        /* weight exponent for DBA (default 1) */
    int qe;                 /* alpha-QE on by default for searches (default 0) */
    int qe_n;               /* QE neighbours (default 2) */
    double qe_alpha;        /* QE weight exponent (default 0 = average QE) */
    int nprobe;             /* IVF default nprobe (default 32) */
    int ef_search;          /* HNSW default efSearch (default 128) */
    long snapshot_interval; /* auto-snapshot after this many changes (0 = only explicit/close;
                               default 10000) */
    int snapshot_on_close;  /* write a snapshot in imago_index_free when dirty (default 1) */
} imago_index_params;

imago_index_params imago_index_params_default(void);

/* Opens (creating when absent) the collection in params->data_dir: opens the
 * store (schema migrations), checks the model fingerprint and dimension,
 * loads the snapshot and replays newer store rows, or rebuilds the index
 * from the store (logged) when the snapshot is missing, truncated, corrupt
 * or does not match. Errors: IMAGO_ERR_INVALID (params), IMAGO_ERR_CONFLICT
 * (the store was built with another model: the message names the reindex
 * path), IMAGO_ERR_IO, IMAGO_ERR_BACKEND (SQLite / FAISS), IMAGO_ERR_NOMEM.
 * *out is owned by the caller (imago_index_free). */
int imago_index_open(const imago_index_params *params, imago_index **out, imago_error *err);

/* Closes the collection (snapshot first when snapshot_on_close and dirty;
 * failures are logged). Accepts NULL. Not concurrent with other calls. */
void imago_index_free(imago_index *ix);

/* ======================================================================
 * Images
 * ====================================================================== */

typedef struct imago_index_item {
    const char *external_id;   /* required, unique; an existing one is replaced (same id) */
    const char *sha256;        /* optional hex digest of the source bytes */
    const char *uri;           /* optional */
    int width, height;         /* optional (0) */
    const char *metadata_json; /* optional JSON object text (validated) */
    const void *thumbnail;     /* optional JPEG bytes (copied) */
    size_t thumbnail_len;
    const float *vector; /* required: dim floats (copied; stored raw) */
} imago_index_item;

/* Adds n items in one transaction and returns after it committed; the items
 * are searchable when the call returns. ids (may be NULL) receives the n
 * image ids. A vector that is not finite or zero is IMAGO_ERR_INVALID; a
 * duplicated external_id within the batch is IMAGO_ERR_CONFLICT. On error
 * nothing was added. Thread-safe (serialised with other writers). */
int imago_index_add(imago_index *ix, const imago_index_item *items, size_t n, int64_t *ids,
                    imago_error *err);

/* Tombstones image id: removed from results at once, purged from the index
 * at the next compaction. IMAGO_ERR_NOT_FOUND when absent or deleted. */
int imago_index_delete(imago_index *ix, int64_t id, imago_error *err);

typedef struct imago_image_info {
    int64_t id;
    char *external_id; /* owned by the info */
    char *sha256;      /* may be NULL */
    char *uri;         /* may be NULL */
    int width, height;
    char *metadata_json; /* may be NULL */
    int64_t created_at;  /* unix seconds */
    int64_t seq;         /* change sequence of the last write to this image */
    int has_thumbnail;
} imago_image_info;

/* Metadata of a live image (by id, or by external id). *out is owned by the
 * caller (imago_image_info_free). IMAGO_ERR_NOT_FOUND when absent/deleted. */
int imago_index_get(imago_index *ix, int64_t id, imago_image_info **out, imago_error *err);
int imago_index_get_by_external(imago_index *ix, const char *external_id, imago_image_info **out,
                                imago_error *err);
void imago_image_info_free(imago_image_info *info);

/* Thumbnail bytes of a live image; *data is malloc'ed and owned by the caller.
 * IMAGO_ERR_NOT_FOUND when the image or its thumbnail is absent. */
int imago_index_thumbnail(imago_index *ix, int64_t id, void **data, size_t *len, imago_error *err);

/* The raw (un-augmented) stored descriptor of an image into out (dim floats). */
int imago_index_get_vector(imago_index *ix, int64_t id, float *out, imago_error *err);

/* The vector the index holds for a live image (whitened when the collection
 * has a learned whitening, DBA-augmented when DBA is on; an approximation
 * for PQ), into out (imago_index_stats.index_dim floats). */
int imago_index_get_indexed_vector(imago_index *ix, int64_t id, float *out, imago_error *err);

/* ======================================================================
 * Search
 * ====================================================================== */

typedef struct imago_index_hit {
    int64_t id;
    float score; /* inner product with the (expanded) query */
} imago_index_hit;

/* Called for each candidate id at scoring time; return nonzero to keep it.
 * Must be thread-safe and fast (it runs in the hot loop). */
typedef int (*imago_index_id_filter)(int64_t id, void *user);
/* Called with a candidate's metadata JSON (NULL when none); return nonzero to
 * keep it. Runs after scoring on over-fetched candidates. */
typedef int (*imago_index_meta_filter)(int64_t id, const char *metadata_json, void *user);

typedef struct imago_index_search_params {
    int k;                    /* hits wanted (default 10, 1..IMAGO_SEARCH_K_MAX) */
    int qe;                   /* -1 = collection default, 0 = off, 1 = on */
    int qe_n;                 /* <= 0: collection default */
    double qe_alpha;          /* < 0: collection default */
    int nprobe;               /* <= 0: collection default (IVF) */
    int ef_search;            /* <= 0: collection default (HNSW) */
    const int64_t *allow_ids; /* optional: only these ids (borrowed, any order) */
    size_t n_allow_ids;
    imago_index_id_filter id_filter;     /* optional */
    imago_index_meta_filter meta_filter; /* optional */
    void *filter_user;
} imago_index_search_params;

imago_index_search_params imago_index_search_params_default(void);

/* Searches n_queries queries (row-major, n_queries x dim raw model
 * descriptors, L2-normalised by the caller; the index applies the
 * collection's learned whitening itself) and writes up to k hits per query, best first, into hits
 * (n_queries x k; unused slots get id -1) and the count per query into
 * n_hits (may be NULL). *seq (may be NULL) receives the store sequence the
 * index covered. Several queries are scored with one sgemm on Flat.
 * Thread-safe (concurrent with other searches and with writers). */
int imago_index_search(imago_index *ix, const float *queries, size_t n_queries,
                       const imago_index_search_params *sp, imago_index_hit *hits, int *n_hits,
                       int64_t *seq, imago_error *err);

/* ======================================================================
 * Maintenance
 * ====================================================================== */

typedef struct imago_whiten_params imago_whiten_params;

typedef struct imago_index_reindex_params {
    const char *factory; /* NULL = keep the current index type */
    int dba;             /* -1 keep, 0 off, 1 on */
    int dba_k;           /* <= 0 keep */
    double dba_beta;     /* < 0 keep */
    int whiten;          /* -1 keep the collection's whitening, 0 remove it, 1 learn a new
                            one from the stored descriptors with *whiten_params */
    const imago_whiten_params *whiten_params; /* borrowed; NULL = defaults */
} imago_index_reindex_params;

imago_index_reindex_params imago_index_reindex_params_default(void);

/* Rebuilds the index from the store: purges tombstones (compaction), learns
 * or removes the collection's whitening when asked, trains IVF/PQ from the
 * stored vectors, runs the full DBA pass when on, swaps the new index in
 * atomically and writes a snapshot. Searches keep running on the old index
 * meanwhile; writes committed during the build are replayed before the
 * swap. A new or removed whitening is committed in the same transaction as
 * the compaction, and searches switch to it with the swap: they see the old
 * whitening with the old vectors or the new with the new, never a mix (a
 * crash after the commit rebuilds the index under the new one at open).
 * Reindexes run one at a time. Errors: those of imago_index_open and of
 * imago_whiten_learn. */
int imago_index_reindex(imago_index *ix, const imago_index_reindex_params *rp, imago_error *err);

/* Writes the snapshot now (atomic: temp file, fsync, rename, fsync dir). */
int imago_index_snapshot(imago_index *ix, imago_error *err);

typedef struct imago_index_stats {
    int64_t count;        /* live images */
    int64_t deleted;      /* dead index positions (deleted or replaced) until compaction */
    int64_t seq;          /* store sequence covered by the in-memory index */
    int64_t snapshot_seq; /* sequence of the last snapshot written or loaded (-1 none) */
    int dim;
    int dba;           /* whether the index holds augmented vectors */
    char type[80];     /* factory string (+ " (untrained)") */
    char precision[8]; /* Flat storage precision */
    char fingerprint[72];
    int index_dim;     /* dim of the indexed vectors: dim, or the whitening's output dim */
    int has_whitening; /* the collection's learned whitening is applied (whitening below) */
    struct {
        int dim_in, dim, rank;
        double power, eps;
        int64_t n_trained, n_rows, created_at, version;
        char fingerprint[40];
    } whitening;
} imago_index_stats;

int imago_index_stats_get(imago_index *ix, imago_index_stats *out, imago_error *err);

/* Checks that the in-memory index agrees with the store (same live ids, and
 * for un-augmented Flat the same vectors). Returns 0 or IMAGO_ERR_INTERNAL
 * with the first difference in err. A consistency check for the unit tests
 * (after crashes, restarts, compaction, whitening); no command calls it. It
 * holds the writer mutex and loads every stored descriptor: O(n * dim). */
int imago_index_verify(imago_index *ix, imago_error *err);

/* Path of the snapshot file of a data dir into buf (for tools and tests). */
int imago_index_snapshot_path(const char *data_dir, char *buf, size_t len, imago_error *err);

/* ======================================================================
 * Whitening learned from the collection (PCA whitening of the raw
 * descriptors: y = L2N(P (x - m)), P = diag((lambda_j + eps)^-power) U_d^T)
 * ====================================================================== */

/* A learned whitening: immutable, reference counted (the index and its
 * snapshots of the in-memory state share it). Thread-safe to read. */
typedef struct imago_whiten imago_whiten;

typedef struct imago_whiten_params {
    int dim;       /* components kept; 0 = min(D, rows - 1, rank of the data) */
    double power;  /* eigenvalue exponent in [0, 1] (default 0.25; 0.5 = full whitening,
                      0 = plain PCA rotation) */
    long sample;   /* learn from at most this many rows, a uniform sample (default
                      200000); 0 = all rows */
    int force;     /* learn even from fewer than 2 x dim rows or past the data's rank */
    double eps;    /* added to the eigenvalues; < 0 (default): 1e-6 x the largest */
    uint64_t seed; /* of the sample */
    /* optional progress: stage "covariance" (frac of rows) or
     * "eigendecomposition"; called on the learning thread */
    void (*progress)(void *user, const char *stage, double frac);
    void *progress_user;
} imago_whiten_params;

imago_whiten_params imago_whiten_params_default(void);

typedef struct imago_whiten_info {
    int dim_in;           /* D: the model's descriptor dim */
    int dim;              /* d: the whitened dim */
    int rank;             /* numerical rank of the training sample */
    double power, eps;    /* eps as used (absolute) */
    int64_t n_trained;    /* rows the mean and covariance were computed on */
    int64_t n_rows;       /* rows of the collection when it was learned */
    int64_t created_at;   /* unix seconds */
    int64_t version;      /* the store row (0 when not stored) */
    char fingerprint[40]; /* hex; identifies the learned matrix and mean */
} imago_whiten_info;

/* Learns a whitening from n rows of X (n x D, row-major, the raw
 * descriptors): float64 mean and covariance (over a uniform sample when
 * p->sample < n), LAPACK dsyevr, top d eigenvectors (sign: the largest
 * component positive). Errors: IMAGO_ERR_INVALID (parameters),
 * IMAGO_ERR_FORMAT (a value is NaN or infinite), IMAGO_ERR_UNSUPPORTED
 * (zero variance; dim past the data's rank without force; D > 16384),
 * IMAGO_ERR_CONFLICT (fewer than 2 rows, or fewer than 2 x d rows without
 * force), IMAGO_ERR_BACKEND (LAPACK), IMAGO_ERR_NOMEM. *out is owned by
 * the caller (imago_whiten_free). Thread-safe (no shared state). */
int imago_whiten_learn(const float *X, size_t n, int D, const imago_whiten_params *p,
                       imago_whiten **out, imago_error *err);
/* Drops a reference (the last one frees). Accepts NULL. */
void imago_whiten_free(imago_whiten *w);
void imago_whiten_get_info(const imago_whiten *w, imago_whiten_info *out);
/* Borrowed views: the mean (D), P (d x D, row-major), the d eigenvalues
 * (descending), valid while w is. */
const double *imago_whiten_mean(const imago_whiten *w);
const double *imago_whiten_projection(const imago_whiten *w);
const double *imago_whiten_eigenvalues(const imago_whiten *w);
/* Y (n x d) = L2N(P (x_i - m)) for the n rows of X (n x D). Thread-safe. */
int imago_whiten_apply(const imago_whiten *w, const float *X, size_t n, float *Y, imago_error *err);

/* ======================================================================
 * Jobs (bulk ingest bookkeeping; the server's jobs runner drives them)
 * ====================================================================== */

typedef enum imago_job_state {
    IMAGO_JOB_PENDING = 0,
    IMAGO_JOB_RUNNING = 1,
    IMAGO_JOB_DONE = 2,
    IMAGO_JOB_FAILED = 3,
    IMAGO_JOB_CANCELLED = 4
} imago_job_state;

typedef enum imago_job_item_state {
    IMAGO_ITEM_PENDING = 0,
    IMAGO_ITEM_RUNNING = 1,
    IMAGO_ITEM_DONE = 2,
    IMAGO_ITEM_FAILED = 3
} imago_job_item_state;

const char *imago_job_state_name(imago_job_state s);

typedef struct imago_job_info {
    int64_t id;
    char kind[32]; /* "ingest", "reindex", ... */
    imago_job_state state;
    int64_t total, done, failed, pending, running;
    int64_t created_at, updated_at; /* unix seconds */
    char *params_json;              /* owned by the caller (free) */
    char *error; /* job-level error message or NULL; owned by the caller (free) */
} imago_job_info;

typedef struct imago_job_item {
    int64_t id;
    int64_t job_id;
    char *source;      /* path or URI (owned by the array) */
    char *external_id; /* may be NULL (owned by the array) */
    int attempts;
    imago_job_item_state state;
    int error_code;   /* IMAGO_ERR_* of the failure */
    char *error;      /* message (may be NULL) */
    int64_t image_id; /* when done */
} imago_job_item;

/* Creates a job in state pending; params_json may be NULL. */
int imago_job_create(imago_index *ix, const char *kind, const char *params_json, int64_t *job_id,
                     imago_error *err);
/* Adds n items (sources[i], external_ids[i] or NULL) in one transaction. */
int imago_job_add_items(imago_index *ix, int64_t job_id, const char *const *sources,
                        const char *const *external_ids, size_t n, imago_error *err);
/* Moves the job to state (checked transitions: pending->running|cancelled,
 * running->done|failed|cancelled|pending; done/failed/cancelled are final).
 * error may be NULL. IMAGO_ERR_CONFLICT for a forbidden transition. */
int imago_job_set_state(imago_index *ix, int64_t job_id, imago_job_state state, const char *error,
                        imago_error *err);
/* Claims up to max pending items of a running job (marks them running) into
 * *items (owned by the caller: imago_job_items_free). *n may be 0. */
int imago_job_claim(imago_index *ix, int64_t job_id, size_t max, imago_job_item **items, size_t *n,
                    imago_error *err);
void imago_job_items_free(imago_job_item *items, size_t n);
/* Marks a running item done (with the image it produced) or failed. */
int imago_job_item_done(imago_index *ix, int64_t item_id, int64_t image_id, imago_error *err);
int imago_job_item_failed(imago_index *ix, int64_t item_id, int error_code, const char *message,
                          imago_error *err);
int imago_job_get(imago_index *ix, int64_t job_id, imago_job_info *out, imago_error *err);
void imago_job_info_clear(imago_job_info *info);
/* Lists job ids, newest first (at most max) into ids; *n = count written. */
int imago_job_list(imago_index *ix, int64_t *ids, size_t max, size_t *n, imago_error *err);
/* First max failed items of a job (errors), like imago_job_claim's output. */
int imago_job_errors(imago_index *ix, int64_t job_id, size_t max, imago_job_item **items, size_t *n,
                     imago_error *err);
/* After a restart: items left running go back to pending, and the ids of
 * unfinished (pending or running) jobs are returned, oldest first
 * (*ids malloc'ed, owned by the caller). */
int imago_job_resume(imago_index *ix, int64_t **ids, size_t *n, imago_error *err);

/* ======================================================================
 * Evaluation: the revisited Oxford/Paris protocol (revisitop compute_map)
 * ====================================================================== */

typedef enum imago_eval_protocol {
    IMAGO_EVAL_EASY = 0,   /* positives easy; junk = junk + hard */
    IMAGO_EVAL_MEDIUM = 1, /* positives easy + hard; junk = junk */
    IMAGO_EVAL_HARD = 2    /* positives hard; junk = junk + easy */
} imago_eval_protocol;

typedef struct imago_gnd imago_gnd;

/* Loads a ground truth JSON as written by tools/gnd_to_json.py:
 * {"imlist": [...], "qimlist": [...], "gnd": [{"easy": [..], "hard": [..],
 * "junk": [..], "bbx": [..]}, ...]} (indices into imlist). */
int imago_gnd_load(const char *path, imago_gnd **out, imago_error *err);
int imago_gnd_parse(const char *json_text, size_t len, imago_gnd **out, imago_error *err);
void imago_gnd_free(imago_gnd *g);
size_t imago_gnd_n_images(const imago_gnd *g);
size_t imago_gnd_n_queries(const imago_gnd *g);
const char *imago_gnd_image_name(const imago_gnd *g, size_t i);
const char *imago_gnd_query_name(const imago_gnd *g, size_t q);
/* Query box (x1, y1, x2, y2) of query q; returns 0 or IMAGO_ERR_NOT_FOUND. */
int imago_gnd_query_bbox(const imago_gnd *g, size_t q, double bbox[4]);

typedef struct imago_eval_result {
    double map;      /* mean AP over queries with positives (0..1) */
    double mp[3];    /* mean precision at 1, 5, 10 */
    int n_evaluated; /* queries with at least one positive */
} imago_eval_result;

/* Average precision of one query, exactly revisitop's compute_ap: pos and
 * junk are the ranks (0-based positions in the full ranking) of the positive
 * and junk images; positions are shifted down by the junk ranked before them.
 * npos = number of positives. */
double imago_eval_ap(const int64_t *pos_ranks, size_t n_pos, size_t npos);

/* mAP and mP@{1,5,10} of a ranking: ranks is n_queries x n_ranked, row q the
 * database indices (into imlist) of query q best first. Queries without
 * positives under the protocol are skipped in the means (as revisitop). */
int imago_eval_compute(const imago_gnd *g, imago_eval_protocol protocol, const int64_t *ranks,
                       size_t n_queries, size_t n_ranked, imago_eval_result *out, imago_error *err);

typedef struct imago_eval_rank_params {
    int dba;         /* augment the database first (DBA, as the index does) */
    int dba_k;       /* default 2 */
    double dba_beta; /* default 1 */
    int qe;          /* alpha-QE on the queries */
    int qe_n;        /* default 2 */
    double qe_alpha; /* default 0 */
} imago_eval_rank_params;

imago_eval_rank_params imago_eval_rank_params_default(void);

/* Ranks the n database vectors db (n x d) for each of the nq queries
 * (nq x d) by inner product with the exact BLAS path, optionally with DBA
 * and alpha-QE, into ranks (nq x k, best first; k <= n). For `imago eval`
 * on descriptors (e.g. from `imago extract --out x.npy`). Thread-safe. */
int imago_eval_rank(const float *db, size_t n, const float *queries, size_t nq, int d, size_t k,
                    const imago_eval_rank_params *p, int64_t *ranks, imago_error *err);

#endif /* IMAGO_INDEX_H */
