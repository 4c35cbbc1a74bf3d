/* server-private: the bulk-ingest jobs runner (jobs.c), the one-image ingest
 * path shared by POST /v1/images, the jobs and `imago index` and the ingest
 * confinement (ingest.c), and thumbnails (thumb.c).
 *
 * Thread safety: every imago_jobs_* function may be called from any thread
 * (HTTP handlers, the CLI); imago_jobs_free by the owner only, once.
 */
#ifndef IMAGO_SERVER_JOBS_H
#define IMAGO_SERVER_JOBS_H

#include <stddef.h>
#include <stdint.h>

#include "common/common.h"
#include "config/config.h"
#include "engine/engine.h"
#include "index/index.h"
#include "proto/proto.h"

/* ---- thumbnails (thumb.c) -------------------------------------------------- */

#define IMAGO_THUMB_MAX_SIDE 256

/* Decodes an encoded image at most max_side pixels on its longer side (EXIF
 * orientation applied, never upscaled) and encodes it as a baseline JPEG
 * (quality 85, 4:2:0) with TurboJPEG. *jpeg is malloc'ed (caller frees).
 * Errors: those of imago_image_decode, IMAGO_ERR_BACKEND (tjCompress2). */
int imago_thumb_make(const void *bytes, size_t len, const imago_decode_params *limits, int max_side,
                     void **jpeg, size_t *jpeg_len, imago_error *err);

/* ---- one image -> the index (ingest.c) ------------------------------------------------- */

typedef struct imago_ingest_one {
    const void *bytes; /* the encoded image (borrowed) */
    size_t len;
    const char *external_id;   /* NULL = "sha256:<hex of the bytes>" */
    const char *uri;           /* may be NULL */
    const char *metadata_json; /* may be NULL */
    int retry_busy;            /* 1: wait and retry while the batcher is full (jobs);
                                  0: return IMAGO_ERR_BUSY (HTTP: 503) */
    const _Atomic int *stop;   /* optional: give up a busy wait when *stop != 0 */
} imago_ingest_one;

typedef struct imago_ingest_result {
    int64_t id;
    int replaced;  /* the external_id existed with other bytes: replaced in place */
    int unchanged; /* the external_id existed with the same bytes (sha256): nothing
                      computed, the existing image kept (idempotent) */
} imago_ingest_result;

/* sha256 -> descriptor through the batcher (blocking: not for MHD threads or
 * batcher callbacks) -> thumbnail -> imago_index_add. Errors: the decode /
 * engine errors (FORMAT, TOO_LARGE, ...), IMAGO_ERR_BUSY (retry_busy == 0),
 * IMAGO_ERR_CANCELLED (stopped), the index's errors. */
int imago_ingest_image(imago_batcher *b, imago_index *ix, const imago_ingest_one *in,
                       imago_ingest_result *out, imago_error *err);

/* ---- ingest confinement (ingest.c) -------------------------------------------------------- */

/* Confines path (absolute, as sent) to roots without revealing what exists
 * outside them: the path is resolved as far as it exists (symlinks, "..";
 * the missing rest may hold no ".." and must not start at a dangling
 * symlink), then checked against the real paths of the roots. Outside the
 * roots, existing or not: IMAGO_ERR_AUTH "PATH is outside ingest.roots"
 * (PATH as given); inside them but missing: missing_code. No roots:
 * IMAGO_ERR_AUTH. On success real_out (PATH_MAX bytes) is the real path and
 * root_out (PATH_MAX) the real path of its root. Thread-safe. */
int imago_ingest_confine(const imago_config_strlist *roots, const char *path, int missing_code,
                         char *real_out, char *root_out, imago_error *err);

/* The real path of the root that holds real path p into root_out (PATH_MAX
 * bytes). Returns 0, or IMAGO_ERR_AUTH (outside every root, or no roots). */
int imago_ingest_root_of(const imago_config_strlist *roots, const char *p, char *root_out,
                         imago_error *err);

struct stat;
/* Opens real for reading without ever blocking (O_NONBLOCK, then fstat on the
 * open file: a FIFO or device is refused, not waited on); only a regular
 * file is accepted (else IMAGO_ERR_UNSUPPORTED "SHOWN is not a regular
 * file"). Returns the fd (>= 0, blocking reads from then on; the caller
 * closes it) with *st filled, or a negative code. */
int imago_ingest_open_regular(const char *shown, const char *real, struct stat *st,
                              imago_error *err);

/* ---- listing a job's source (jobs_list.c) ------------------------------------------------ */

/* Resolves a job's source path (symlinks, ..), confines it to the roots
 * (imago_ingest_confine; missing: IMAGO_ERR_UNSUPPORTED) and checks it is a
 * directory (want_dir) or a regular file. real_out and root_out: PATH_MAX. */
int imago_ingest_resolve_source(const imago_config_strlist *roots, const char *path, int want_dir,
                                char *real_out, char *root_out, imago_error *err);

/* The items of a job: sources (a path, or "PATH\nMETADATA") and external
 * ids, both owned. */
typedef struct imago_ingest_list {
    char **src, **ext;
    size_t n, cap;
} imago_ingest_list;

/* Appends the files of dir (real path, below root) to l: sorted, only
 * regular files with req's (or cfg's) extensions, into subfolders when
 * req->recursive (up to 64 deep), symlinks out of roots skipped. */
void imago_ingest_list_dir(const imago_config *cfg, const imago_config_strlist *roots,
                           const char *dir, const char *root, const imago_job_request *req,
                           imago_ingest_list *l, int depth);

/* Appends the lines of a manifest to l. Errors: those of
 * imago_ingest_open_regular, IMAGO_ERR_UNSUPPORTED (a bad or too long line). */
int imago_ingest_list_manifest(const imago_config_strlist *roots, const char *manifest,
                               const char *root, imago_ingest_list *l, imago_error *err);

void imago_ingest_list_free(imago_ingest_list *l);

/* ---- the jobs runner ---------------------------------------------------------- */

typedef struct imago_jobs imago_jobs;

/* Starts cfg->ingest.parallelism runner threads (0 = online CPUs) and
 * resumes the unfinished jobs of the store (imago_job_resume). roots are the
 * directories jobs may read (NULL = cfg->ingest.roots). cfg, roots, ix and b
 * are borrowed and must outlive the runner. */
int imago_jobs_new(const imago_config *cfg, const imago_config_strlist *roots, imago_index *ix,
                   imago_batcher *b, imago_jobs **out, imago_error *err);

/* Stops the threads: items being processed finish (their descriptors are
 * computed and stored), the rest stay pending in the store for the next
 * start. NULL is a no-op. */
void imago_jobs_free(imago_jobs *j);

/* Checks a job source against the roots (realpath of the source and of
 * every root; the source must be a root or below one) and creates an ingest
 * job. Listing the files happens on a runner thread. Errors: IMAGO_ERR_AUTH (outside the roots, or
 * no roots configured: HTTP 403 forbidden), IMAGO_ERR_UNSUPPORTED (missing, not a directory / not a
 * file: HTTP 422), store errors. */
int imago_jobs_submit_ingest(imago_jobs *j, const char *source, int is_manifest, int recursive,
                             const char *const *extensions, int n_extensions, int64_t *job_id,
                             imago_error *err);

/* Creates a reindex job (factory NULL = keep; dba -1 = keep). */
int imago_jobs_submit_reindex(imago_jobs *j, const char *factory, int dba, int64_t *job_id,
                              imago_error *err);

/* Creates a job of a collection-wide pass run by one runner thread (kind
 * "reindex", "whitening", ...; params_json may be NULL) and queues it. */
int imago_jobs_submit_pass(imago_jobs *j, const char *kind, const char *params_json,
                           int64_t *job_id, imago_error *err);

/* ---- the whitening jobs (whitening.c) ------------------------------------------ */

#define IMAGO_JOB_KIND_WHITEN "whitening"
#define IMAGO_JOB_KIND_UNWHITEN "whitening_remove"

/* Whether kind is one of the whitening job kinds above. */
int imago_whitening_job_kind(const char *kind);
/* Runs a whitening job (learn with the request in params_json, or remove):
 * a reindex of ix. Errors: those of imago_index_reindex. */
int imago_whitening_job_run(imago_index *ix, const char *kind, const char *params_json,
                            imago_error *err);

/* Progress of a job: the store's counts plus the runner's rate (items/s
 * since this process started working on it) and ETA (-1 unknown). */
typedef struct imago_jobs_progress {
    imago_job_info info; /* clear with imago_job_info_clear */
    double rate;
    double eta_s;
} imago_jobs_progress;

int imago_jobs_progress_get(imago_jobs *j, int64_t job_id, imago_jobs_progress *out,
                            imago_error *err);

/* Cancels a pending or running job (IMAGO_ERR_CONFLICT when finished,
 * IMAGO_ERR_NOT_FOUND when unknown). */
int imago_jobs_cancel(imago_jobs *j, int64_t job_id, imago_error *err);

/* Counters for /metrics. */
typedef struct imago_jobs_stats {
    uint64_t items_done, items_failed, images_indexed, busy_retries;
    uint64_t jobs_started, jobs_done, jobs_failed, jobs_cancelled;
    int jobs_active;
} imago_jobs_stats;

void imago_jobs_stats_get(imago_jobs *j, imago_jobs_stats *out);

#endif /* IMAGO_SERVER_JOBS_H */
