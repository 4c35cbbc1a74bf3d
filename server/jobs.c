/* The bulk-ingest jobs runner (the one-image ingest path and the
 * confinement of paths it uses are ingest.c).
 *
 * DESIGN: a job lives in the store (jobs + job_items rows: the source of
 * truth, so a crash loses nothing); this runner only drives it. A job goes
 * pending -> (listing: files of the source dir / lines of the manifest
 * stored as items in ONE transaction) -> running -> done | failed |
 * cancelled. N runner threads (ingest.parallelism) share a list of active
 * jobs: for the oldest one, the first free thread lists it (or runs the
 * reindex), then every thread claims one item at a time, reads the file,
 * streams it through the shared engine batcher with imago_ingest_image
 * (which waits and retries while the batcher is full: backpressure, nothing
 * dropped), and marks the item done or failed with a typed error. Threads
 * blocked in the batcher are what form batches: N threads keep up to N images
 * in flight. The thread that finds no item left while no other thread works
 * on the job finishes it (DBA pass first when index.dba is on). On start,
 * imago_job_resume puts items left running by a crash back to pending and
 * the unfinished jobs are re-queued. Stopping lets items in flight finish;
 * the rest stay pending in the store.
 *
 * Idempotency: an item's external id is its path relative to its ingest root
 * (or the manifest's external_id); imago_ingest_image skips the work when
 * the same external id already holds the same bytes (sha256), and replaces
 * the image in place when the bytes differ.
 */
#include "jobs.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "proto/proto.h"

#define MAX_FILE_BYTES_DEFAULT (64u << 20)

/* ---- the runner ------------------------------------------------------------------- */

typedef struct job_rt {
    int64_t id;
    int is_reindex;
    int prepared; /* listed (ingest) or rebuilt (reindex) */
    int preparing;
    int active; /* threads working on an item of this job */
    int finishing;
    int64_t t0_us;      /* when this process started on it */
    int64_t base_count; /* done + failed at t0 */
    struct job_rt *next;
} job_rt;

struct imago_jobs {
    const imago_config *cfg;
    const imago_config_strlist *roots;
    imago_index *ix;
    imago_batcher *b;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    job_rt *jobs; /* FIFO: oldest first */
    _Atomic int stop;
    int n_threads;
    pthread_t *threads;
    imago_jobs_stats stats; /* under mu */
};

static job_rt *find_rt(imago_jobs *j, int64_t id)
{
    for (job_rt *r = j->jobs; r; r = r->next)
        if (r->id == id)
            return r;
    return NULL;
}

/* Appends a job to the active list (mu held). */
static void enqueue(imago_jobs *j, int64_t id, int is_reindex)
{
    if (find_rt(j, id))
        return;
    job_rt *r = imago_xcalloc(1, sizeof *r);
    r->id = id;
    r->is_reindex = is_reindex;
    r->base_count = -1;
    job_rt **p = &j->jobs;
    while (*p)
        p = &(*p)->next;
    *p = r;
    j->stats.jobs_active++;
    pthread_cond_broadcast(&j->cv);
}

static void dequeue(imago_jobs *j, job_rt *r)
{
    for (job_rt **p = &j->jobs; *p; p = &(*p)->next) {
        if (*p == r) {
            *p = r->next;
            free(r);
            j->stats.jobs_active--;
            return;
        }
    }
}

/* Reads exactly n bytes; 0 or -1. */
static int read_all(int fd, uint8_t *buf, size_t n)
{
    while (n > 0) {
        ssize_t got = read(fd, buf, n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return -1;
        buf += got;
        n -= (size_t)got;
    }
    return 0;
}

/* JSON string literal of s (quotes included) appended to buf. */
static void json_str(char **buf, size_t *len, size_t *cap, const char *s)
{
    size_t need = *len + strlen(s) * 6 + 3;
    if (need > *cap) {
        *cap = need * 2;
        *buf = imago_xrealloc(*buf, *cap);
    }
    char *o = *buf + *len;
    *o++ = '"';
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\') {
            *o++ = '\\';
            *o++ = (char)*c;
        } else if (*c < 0x20) {
            o += sprintf(o, "\\u%04x", *c);
        } else {
            *o++ = (char)*c;
        }
    }
    *o++ = '"';
    *o = '\0';
    *len = (size_t)(o - *buf);
}

static void append(char **buf, size_t *len, size_t *cap, const char *s)
{
    size_t n = strlen(s);
    if (*len + n + 1 > *cap) {
        *cap = (*len + n + 1) * 2;
        *buf = imago_xrealloc(*buf, *cap);
    }
    memcpy(*buf + *len, s, n + 1);
    *len += n;
}

int imago_jobs_submit_ingest(imago_jobs *j, const char *source, int is_manifest, int recursive,
                             const char *const *extensions, int n_extensions, int64_t *job_id,
                             imago_error *err)
{
    char real[PATH_MAX], root[PATH_MAX];
    int rc = imago_ingest_resolve_source(j->roots, source, !is_manifest, real, root, err);
    if (rc != 0)
        return rc;
    /* the params are a job request the runner parses back (proto) */
    size_t len = 0, cap = 256;
    char *p = imago_xcalloc(1, cap);
    append(&p, &len, &cap, is_manifest ? "{\"source\":{\"manifest\":" : "{\"source\":{\"dir\":");
    json_str(&p, &len, &cap, real);
    if (!is_manifest) {
        append(&p, &len, &cap, recursive ? ",\"recursive\":true" : ",\"recursive\":false");
        if (n_extensions > 0) {
            append(&p, &len, &cap, ",\"extensions\":[");
            for (int i = 0; i < n_extensions; i++) {
                if (i)
                    append(&p, &len, &cap, ",");
                json_str(&p, &len, &cap, extensions[i]);
            }
            append(&p, &len, &cap, "]");
        }
    }
    append(&p, &len, &cap, "}}");
    int64_t id = 0;
    rc = imago_job_create(j->ix, "ingest", p, &id, err);
    free(p);
    if (rc != 0)
        return rc;
    pthread_mutex_lock(&j->mu);
    j->stats.jobs_started++;
    enqueue(j, id, 0);
    pthread_mutex_unlock(&j->mu);
    IMAGO_INFO("jobs", "job %lld: ingest %s %s", (long long)id, is_manifest ? "manifest" : "dir",
               real);
    *job_id = id;
    return 0;
}

int imago_jobs_submit_reindex(imago_jobs *j, const char *factory, int dba, int64_t *job_id,
                              imago_error *err)
{
    size_t len = 0, cap = 128;
    char *p = imago_xcalloc(1, cap);
    append(&p, &len, &cap, "{");
    if (factory) {
        append(&p, &len, &cap, "\"factory\":");
        json_str(&p, &len, &cap, factory);
    }
    if (dba >= 0) {
        append(&p, &len, &cap, factory ? "," : "");
        append(&p, &len, &cap, dba ? "\"dba\":true" : "\"dba\":false");
    }
    append(&p, &len, &cap, "}");
    int rc = imago_jobs_submit_pass(j, "reindex", p, job_id, err);
    free(p);
    return rc;
}

int imago_jobs_submit_pass(imago_jobs *j, const char *kind, const char *params_json,
                           int64_t *job_id, imago_error *err)
{
    int64_t id = 0;
    int rc = imago_job_create(j->ix, kind, params_json, &id, err);
    if (rc != 0)
        return rc;
    pthread_mutex_lock(&j->mu);
    j->stats.jobs_started++;
    enqueue(j, id, 1);
    pthread_mutex_unlock(&j->mu);
    IMAGO_INFO("jobs", "job %lld: %s %s", (long long)id, kind, params_json ? params_json : "");
    *job_id = id;
    return 0;
}

/* Lists the items of a pending ingest job and starts it. */
static int prepare_ingest(imago_jobs *j, int64_t id, imago_error *err)
{
    imago_job_info info;
    memset(&info, 0, sizeof info);
    int rc = imago_job_get(j->ix, id, &info, err);
    if (rc != 0)
        return rc;
    if (info.state != IMAGO_JOB_PENDING || info.total > 0) {
        /* already listed (a crash between the listing and the start) */
        int st = info.state;
        imago_job_info_clear(&info);
        if (st == IMAGO_JOB_PENDING)
            return imago_job_set_state(j->ix, id, IMAGO_JOB_RUNNING, NULL, err);
        return 0;
    }
    imago_job_request req;
    rc = imago_job_request_parse(info.params_json, strlen(info.params_json ? info.params_json : ""),
                                 &req, err);
    imago_job_info_clear(&info);
    if (rc != 0)
        return rc;
    char real[PATH_MAX], root[PATH_MAX];
    imago_ingest_list l = {0};
    rc = imago_ingest_resolve_source(j->roots, req.path, req.kind == IMAGO_JOB_SOURCE_DIR, real,
                                     root, err);
    if (rc == 0) {
        if (req.kind == IMAGO_JOB_SOURCE_DIR)
            imago_ingest_list_dir(j->cfg, j->roots, real, root, &req, &l, 0);
        else
            rc = imago_ingest_list_manifest(j->roots, real, root, &l, err);
    }
    if (rc == 0)
        rc = imago_job_add_items(j->ix, id, (const char *const *)l.src, (const char *const *)l.ext,
                                 l.n, err);
    if (rc == 0) {
        IMAGO_INFO("jobs", "job %lld: %zu items", (long long)id, l.n);
        rc = imago_job_set_state(j->ix, id, IMAGO_JOB_RUNNING, NULL, err);
    }
    imago_ingest_list_free(&l);
    imago_job_request_clear(&req);
    return rc;
}

static int run_reindex(imago_jobs *j, int64_t id, imago_error *err)
{
    imago_job_info info;
    memset(&info, 0, sizeof info);
    int rc = imago_job_get(j->ix, id, &info, err);
    if (rc != 0)
        return rc;
    if (info.state == IMAGO_JOB_PENDING)
        rc = imago_job_set_state(j->ix, id, IMAGO_JOB_RUNNING, NULL, err);
    if (rc == 0 && imago_whitening_job_kind(info.kind)) {
        rc = imago_whitening_job_run(j->ix, info.kind, info.params_json, err);
        imago_job_info_clear(&info);
        return rc;
    }
    imago_reindex_request rr;
    memset(&rr, 0, sizeof rr);
    if (rc == 0)
        rc = imago_reindex_request_parse(
            info.params_json, strlen(info.params_json ? info.params_json : ""), &rr, err);
    imago_job_info_clear(&info);
    if (rc != 0)
        return rc;
    imago_index_reindex_params rp = imago_index_reindex_params_default();
    rp.factory = rr.factory;
    rp.dba = rr.dba;
    rc = imago_index_reindex(j->ix, &rp, err);
    imago_reindex_request_clear(&rr);
    return rc;
}

static int api_of(int code)
{
    return (int)imago_api_error_from_code(code, IMAGO_API_CTX_IMAGE);
}

/* Reads and ingests one item; marks it done or failed. */
static void process_item(imago_jobs *j, const imago_job_item *it)
{
    imago_error err;
    imago_error_clear(&err);
    char *src = imago_xstrdup(it->source);
    char *meta = strchr(src, '\n');
    if (meta)
        *meta++ = '\0';
    char real[PATH_MAX], root[PATH_MAX];
    uint8_t *bytes = NULL;
    size_t len = 0;
    int rc = 0;
    /* checked again at read time: the tree may have changed since the listing
     * (and manifest items were never checked): the same answer for a path
     * outside the roots whether or not it exists, and never a blocking open */
    rc = imago_ingest_confine(j->roots, src, IMAGO_ERR_NOT_FOUND, real, root, &err);
    struct stat st;
    int fd = rc == 0 ? imago_ingest_open_regular(src, real, &st, &err) : rc;
    if (fd < 0) {
        rc = fd;
    } else {
        size_t max = j->cfg->engine.max_image_bytes > 0 ? (size_t)j->cfg->engine.max_image_bytes
                                                        : MAX_FILE_BYTES_DEFAULT;
        if ((uint64_t)st.st_size > max) {
            rc = imago_error_set(&err, IMAGO_ERR_TOO_LARGE,
                                 "%s: %lld bytes is over engine.max_image_bytes", src,
                                 (long long)st.st_size);
        } else {
            len = (size_t)st.st_size;
            bytes = malloc(len ? len : 1);
            if (!bytes)
                rc = imago_error_set(&err, IMAGO_ERR_NOMEM, "%s: out of memory", src);
            else if (read_all(fd, bytes, len) != 0)
                rc = imago_error_set(&err, IMAGO_ERR_IO, "%s: short read", src);
        }
        close(fd);
    }
    imago_ingest_result res = {0, 0, 0};
    if (rc == 0) {
        imago_ingest_one in;
        memset(&in, 0, sizeof in);
        in.bytes = bytes;
        in.len = len;
        in.external_id = it->external_id;
        in.uri = src;
        in.metadata_json = meta;
        in.retry_busy = 1;
        in.stop = &j->stop;
        rc = imago_ingest_image(j->b, j->ix, &in, &res, &err);
    }
    free(bytes);
    imago_error e2;
    imago_error_clear(&e2);
    if (rc == IMAGO_ERR_CANCELLED || rc == IMAGO_ERR_NOT_READY) {
        /* stopping: the item stays running in the store and goes back to
         * pending at the next start (imago_job_resume) */
    } else if (rc == 0) {
        if (imago_job_item_done(j->ix, it->id, res.id, &e2) != 0)
            IMAGO_ERROR("jobs", "item %lld: %s", (long long)it->id, e2.msg);
        pthread_mutex_lock(&j->mu);
        j->stats.items_done++;
        if (!res.unchanged)
            j->stats.images_indexed++;
        pthread_mutex_unlock(&j->mu);
    } else {
        if (imago_job_item_failed(j->ix, it->id, rc, err.msg, &e2) != 0)
            IMAGO_ERROR("jobs", "item %lld: %s", (long long)it->id, e2.msg);
        IMAGO_INFO("jobs", "job %lld: %s: %s (%s)", (long long)it->job_id, src, err.msg,
                   imago_api_error_name((imago_api_error)api_of(rc)));
        pthread_mutex_lock(&j->mu);
        j->stats.items_failed++;
        pthread_mutex_unlock(&j->mu);
    }
    free(src);
}

/* No item left to claim: finish the job when nothing runs any more. */
static void finish_job(imago_jobs *j, int64_t id)
{
    imago_error err;
    imago_error_clear(&err);
    imago_job_info info;
    memset(&info, 0, sizeof info);
    if (imago_job_get(j->ix, id, &info, &err) != 0) {
        IMAGO_ERROR("jobs", "job %lld: %s", (long long)id, err.msg);
        return;
    }
    int state = info.state;
    int64_t pending = info.pending, running = info.running;
    imago_job_info_clear(&info);
    if (state != IMAGO_JOB_RUNNING || pending > 0 || running > 0)
        return;
    if (j->cfg->index.dba) {
        imago_index_reindex_params rp = imago_index_reindex_params_default();
        if (imago_index_reindex(j->ix, &rp, &err) != 0)
            IMAGO_ERROR("jobs", "job %lld: DBA pass failed: %s", (long long)id, err.msg);
    }
    if (imago_job_set_state(j->ix, id, IMAGO_JOB_DONE, NULL, &err) == 0) {
        pthread_mutex_lock(&j->mu);
        j->stats.jobs_done++;
        pthread_mutex_unlock(&j->mu);
        IMAGO_INFO("jobs", "job %lld: done", (long long)id);
    }
}

static void *runner_main(void *arg)
{
    imago_jobs *j = arg;
    pthread_mutex_lock(&j->mu);
    while (!atomic_load(&j->stop)) {
        job_rt *r = j->jobs;
        while (r && (r->preparing || r->finishing))
            r = r->next;
        if (!r) {
            pthread_cond_wait(&j->cv, &j->mu);
            continue;
        }
        int64_t id = r->id;
        imago_error err;
        imago_error_clear(&err);
        if (!r->prepared) {
            r->preparing = 1;
            pthread_mutex_unlock(&j->mu);
            int rc = r->is_reindex ? run_reindex(j, id, &err) : prepare_ingest(j, id, &err);
            if (rc != 0) {
                IMAGO_ERROR("jobs", "job %lld failed: %s", (long long)id, err.msg);
                imago_error e2;
                imago_job_set_state(j->ix, id, IMAGO_JOB_FAILED, err.msg, &e2);
            } else if (r->is_reindex) {
                imago_error e2;
                imago_job_set_state(j->ix, id, IMAGO_JOB_DONE, NULL, &e2);
            }
            pthread_mutex_lock(&j->mu);
            r->preparing = 0;
            r->prepared = 1;
            if (rc != 0 || r->is_reindex) {
                if (rc != 0)
                    j->stats.jobs_failed++;
                else
                    j->stats.jobs_done++;
                dequeue(j, r);
            }
            pthread_cond_broadcast(&j->cv);
            continue;
        }
        if (r->base_count < 0) {
            imago_job_info info;
            memset(&info, 0, sizeof info);
            pthread_mutex_unlock(&j->mu);
            int64_t base = 0;
            if (imago_job_get(j->ix, id, &info, &err) == 0) {
                base = info.done + info.failed;
                imago_job_info_clear(&info);
            }
            pthread_mutex_lock(&j->mu);
            /* while mu was released another thread may have finished the
             * job and freed r: look it up again by id */
            r = find_rt(j, id);
            if (!r || r->preparing || r->finishing)
                continue; /* gone, or another thread owns it now */
            if (r->base_count < 0) {
                r->base_count = base;
                r->t0_us = imago_now_us();
            }
        }
        r->active++;
        pthread_mutex_unlock(&j->mu);
        imago_job_item *items = NULL;
        size_t n = 0;
        if (imago_job_claim(j->ix, id, 1, &items, &n, &err) != 0)
            n = 0;
        if (n > 0 && !atomic_load(&j->stop))
            process_item(j, &items[0]);
        imago_job_items_free(items, n);
        pthread_mutex_lock(&j->mu);
        r->active--;
        if (n == 0 && r->active == 0 && !r->finishing) {
            r->finishing = 1;
            pthread_mutex_unlock(&j->mu);
            finish_job(j, id);
            imago_job_info info;
            memset(&info, 0, sizeof info);
            int final = 1;
            if (imago_job_get(j->ix, id, &info, &err) == 0) {
                final = info.state != IMAGO_JOB_RUNNING && info.state != IMAGO_JOB_PENDING;
                imago_job_info_clear(&info);
            }
            pthread_mutex_lock(&j->mu);
            r->finishing = 0;
            /* a thread that selected r before finishing was set may still
             * hold it (active > 0): it frees r on its own empty claim */
            if (final && r->active == 0)
                dequeue(j, r);
            pthread_cond_broadcast(&j->cv);
        } else if (n == 0) {
            /* other threads still work on its last items: wait for them */
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 20 * 1000 * 1000;
            if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
            }
            pthread_cond_timedwait(&j->cv, &j->mu, &ts);
        }
    }
    pthread_mutex_unlock(&j->mu);
    return NULL;
}

int imago_jobs_new(const imago_config *cfg, const imago_config_strlist *roots, imago_index *ix,
                   imago_batcher *b, imago_jobs **out, imago_error *err)
{
    imago_jobs *j = imago_xcalloc(1, sizeof *j);
    j->cfg = cfg;
    j->roots = roots ? roots : &cfg->ingest.roots;
    j->ix = ix;
    j->b = b;
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    atomic_init(&j->stop, 0);
    int64_t *ids = NULL;
    size_t n = 0;
    int rc = imago_job_resume(ix, &ids, &n, err);
    if (rc != 0) {
        imago_jobs_free(j);
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        imago_job_info info;
        memset(&info, 0, sizeof info);
        imago_error e2;
        if (imago_job_get(ix, ids[i], &info, &e2) != 0)
            continue;
        IMAGO_INFO("jobs", "resuming job %lld (%s, %lld of %lld items left)", (long long)ids[i],
                   info.kind, (long long)(info.pending + info.running), (long long)info.total);
        enqueue(j, ids[i],
                strcmp(info.kind, "reindex") == 0 || imago_whitening_job_kind(info.kind));
        imago_job_info_clear(&info);
    }
    free(ids);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int nt = cfg->ingest.parallelism > 0 ? cfg->ingest.parallelism : (int)(cpus > 0 ? cpus : 1);
    j->threads = imago_xcalloc((size_t)nt, sizeof *j->threads);
    for (int i = 0; i < nt; i++) {
        int prc = pthread_create(&j->threads[i], NULL, runner_main, j);
        if (prc != 0) {
            imago_jobs_free(j);
            return imago_error_set(err, IMAGO_ERR_BACKEND, "cannot start a job runner: %s",
                                   strerror(prc));
        }
        j->n_threads++;
    }
    *out = j;
    return 0;
}

void imago_jobs_free(imago_jobs *j)
{
    if (!j)
        return;
    pthread_mutex_lock(&j->mu);
    atomic_store(&j->stop, 1);
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
    for (int i = 0; i < j->n_threads; i++)
        pthread_join(j->threads[i], NULL);
    free(j->threads);
    while (j->jobs)
        dequeue(j, j->jobs);
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    free(j);
}

int imago_jobs_progress_get(imago_jobs *j, int64_t job_id, imago_jobs_progress *out,
                            imago_error *err)
{
    memset(out, 0, sizeof *out);
    int rc = imago_job_get(j->ix, job_id, &out->info, err);
    if (rc != 0)
        return rc;
    out->rate = 0;
    out->eta_s = -1;
    pthread_mutex_lock(&j->mu);
    job_rt *r = find_rt(j, job_id);
    if (r && r->base_count >= 0) {
        double dt = (double)(imago_now_us() - r->t0_us) / 1e6;
        int64_t did = out->info.done + out->info.failed - r->base_count;
        if (dt > 0 && did > 0) {
            out->rate = (double)did / dt;
            out->eta_s = (double)(out->info.pending + out->info.running) / out->rate;
        }
    }
    pthread_mutex_unlock(&j->mu);
    if (!r && out->info.updated_at > out->info.created_at) {
        /* not active in this process: the average over the job's life */
        out->rate = (double)(out->info.done + out->info.failed) /
                    (double)(out->info.updated_at - out->info.created_at);
    }
    if (out->info.state == IMAGO_JOB_DONE)
        out->eta_s = 0;
    return 0;
}

int imago_jobs_cancel(imago_jobs *j, int64_t job_id, imago_error *err)
{
    imago_job_info info;
    memset(&info, 0, sizeof info);
    int rc = imago_job_get(j->ix, job_id, &info, err);
    if (rc != 0)
        return rc;
    int st = info.state;
    imago_job_info_clear(&info);
    if (st != IMAGO_JOB_PENDING && st != IMAGO_JOB_RUNNING)
        return imago_error_set(err, IMAGO_ERR_CONFLICT, "job %lld is already %s", (long long)job_id,
                               imago_job_state_name((imago_job_state)st));
    rc = imago_job_set_state(j->ix, job_id, IMAGO_JOB_CANCELLED, "cancelled by request", err);
    if (rc == 0) {
        pthread_mutex_lock(&j->mu);
        j->stats.jobs_cancelled++;
        pthread_cond_broadcast(&j->cv);
        pthread_mutex_unlock(&j->mu);
    }
    return rc;
}

void imago_jobs_stats_get(imago_jobs *j, imago_jobs_stats *out)
{
    pthread_mutex_lock(&j->mu);
    *out = j->stats;
    pthread_mutex_unlock(&j->mu);
}
