/* index store: round trips of images/descriptors/thumbnails/metadata,
 * constraint errors, replace semantics, fingerprint refusal, durability
 * setting, jobs state machine and resume. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "index/index.h"
#include "tap.h"

#define DIM 8

static char dir[256];

static void rand_unit(float *v, int d, unsigned *seed)
{
    double s = 0;
    for (int i = 0; i < d; i++) {
        v[i] = (float)(rand_r(seed) / (double)RAND_MAX - 0.5);
        s += v[i] * v[i];
    }
    for (int i = 0; i < d; i++)
        v[i] /= (float)sqrt(s);
}

static imago_index *open_ix(const char *fp, imago_error *err)
{
    imago_index_params p = imago_index_params_default();
    p.data_dir = dir;
    p.model_fingerprint = fp;
    p.dim = DIM;
    p.durability = "full";
    imago_index *ix = NULL;
    if (imago_index_open(&p, &ix, err))
        return NULL;
    return ix;
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/imago_test_store_XXXXXX");
    if (!mkdtemp(dir))
        tap_bail("mkdtemp");
    imago_log_setup(IMAGO_LOG_WARN, IMAGO_LOG_TEXT, stderr);
    imago_error err;
    imago_error_clear(&err);
    imago_index *ix = open_ix("aaaa", &err);
    ok(ix != NULL, "open new store: %s", err.msg);
    if (!ix)
        return tap_done();

    unsigned seed = 1;
    float v[3][DIM];
    for (int i = 0; i < 3; i++)
        rand_unit(v[i], DIM, &seed);
    const char thumb[] = "\xff\xd8jpegbytes\x00\x01";
    imago_index_item items[3] = {
        {.external_id = "a",
         .sha256 = "00ff",
         .uri = "file:///a.jpg",
         .width = 640,
         .height = 480,
         .metadata_json = "{\"city\":\"Oxford\",\"n\":1}",
         .thumbnail = thumb,
         .thumbnail_len = sizeof thumb,
         .vector = v[0]},
        {.external_id = "b", .vector = v[1]},
        {.external_id = "c", .metadata_json = "{\"city\":\"Paris\"}", .vector = v[2]},
    };
    int64_t ids[3] = {0, 0, 0};
    imago_error_clear(&err);
    is_int(imago_index_add(ix, items, 3, ids, &err), 0, "add 3 items: %s", err.msg);
    ok(ids[0] > 0 && ids[1] == ids[0] + 1 && ids[2] == ids[1] + 1, "ids are consecutive");

    imago_image_info *info = NULL;
    is_int(imago_index_get(ix, ids[0], &info, &err), 0, "get a");
    if (info) {
        is_str(info->external_id, "a", "external_id round trip");
        is_str(info->sha256, "00ff", "sha256 round trip");
        is_str(info->uri, "file:///a.jpg", "uri round trip");
        is_int(info->width, 640, "width");
        is_int(info->height, 480, "height");
        is_str(info->metadata_json, "{\"city\":\"Oxford\",\"n\":1}", "metadata round trip");
        is_int(info->has_thumbnail, 1, "has thumbnail");
        is_int(info->seq, 1, "seq of first item");
        imago_image_info_free(info);
    }
    info = NULL;
    is_int(imago_index_get_by_external(ix, "c", &info, &err), 0, "get by external id");
    if (info) {
        is_int(info->id, ids[2], "external id -> id");
        ok(info->sha256 == NULL && info->uri == NULL, "absent fields are NULL");
        is_int(info->has_thumbnail, 0, "no thumbnail");
        imago_image_info_free(info);
    }
    void *tb = NULL;
    size_t tl = 0;
    is_int(imago_index_thumbnail(ix, ids[0], &tb, &tl, &err), 0, "thumbnail");
    ok(tl == sizeof thumb && tb && memcmp(tb, thumb, tl) == 0, "thumbnail bytes round trip");
    free(tb);
    imago_error_clear(&err);
    is_int(imago_index_thumbnail(ix, ids[1], &tb, &tl, &err), IMAGO_ERR_NOT_FOUND,
           "no thumbnail -> not found");
    float back[DIM];
    is_int(imago_index_get_vector(ix, ids[1], back, &err), 0, "raw vector");
    ok(memcmp(back, v[1], sizeof back) == 0, "raw vector round trip bit-exact");

    /* constraint errors */
    imago_error_clear(&err);
    imago_index_item bad = {.external_id = "", .vector = v[0]};
    is_int(imago_index_add(ix, &bad, 1, NULL, &err), IMAGO_ERR_INVALID, "empty external_id");
    imago_error_clear(&err);
    bad.external_id = "x";
    bad.metadata_json = "{not json";
    is_int(imago_index_add(ix, &bad, 1, NULL, &err), IMAGO_ERR_INVALID, "bad metadata JSON");
    imago_error_clear(&err);
    bad.metadata_json = "[1,2]";
    is_int(imago_index_add(ix, &bad, 1, NULL, &err), IMAGO_ERR_INVALID, "metadata not object");
    imago_error_clear(&err);
    float nanv[DIM];
    memcpy(nanv, v[0], sizeof nanv);
    nanv[3] = NAN;
    imago_index_item badv = {.external_id = "y", .vector = nanv};
    is_int(imago_index_add(ix, &badv, 1, NULL, &err), IMAGO_ERR_INVALID, "NaN vector");
    imago_error_clear(&err);
    float zero[DIM] = {0};
    badv.vector = zero;
    is_int(imago_index_add(ix, &badv, 1, NULL, &err), IMAGO_ERR_INVALID, "zero vector");
    imago_error_clear(&err);
    imago_index_item dup[2] = {{.external_id = "d", .vector = v[0]},
                               {.external_id = "d", .vector = v[1]}};
    is_int(imago_index_add(ix, dup, 2, NULL, &err), IMAGO_ERR_CONFLICT,
           "duplicate external_id in a batch");
    imago_index_stats stats;
    imago_index_stats_get(ix, &stats, NULL);
    is_int(stats.count, 3, "failed adds added nothing");
    is_int(stats.seq, 3, "sequence unchanged by failed adds");

    /* replace keeps the id */
    imago_index_item rep = {.external_id = "b", .metadata_json = "{\"v\":2}", .vector = v[0]};
    int64_t rid = 0;
    imago_error_clear(&err);
    is_int(imago_index_add(ix, &rep, 1, &rid, &err), 0, "replace b");
    is_int(rid, ids[1], "replace keeps the id");
    imago_index_get_vector(ix, ids[1], back, &err);
    ok(memcmp(back, v[0], sizeof back) == 0, "replaced vector stored");
    imago_index_stats_get(ix, &stats, NULL);
    is_int(stats.count, 3, "replace does not add a live image");
    is_int(stats.seq, 4, "replace bumps the sequence");

    /* delete */
    imago_error_clear(&err);
    is_int(imago_index_delete(ix, ids[2], &err), 0, "delete c");
    imago_error_clear(&err);
    is_int(imago_index_delete(ix, ids[2], &err), IMAGO_ERR_NOT_FOUND, "delete twice");
    imago_error_clear(&err);
    is_int(imago_index_get(ix, ids[2], &info, &err), IMAGO_ERR_NOT_FOUND, "deleted not found");
    imago_error_clear(&err);
    is_int(imago_index_delete(ix, 9999, &err), IMAGO_ERR_NOT_FOUND, "delete unknown id");
    imago_index_stats_get(ix, &stats, NULL);
    is_int(stats.count, 2, "count after delete");
    /* dead index positions: the replaced vector of b and the deleted c */
    is_int(stats.deleted, 2, "tombstones after replace + delete");
    is_int(imago_index_verify(ix, &err), 0, "index agrees with store: %s", err.msg);

    /* jobs */
    int64_t job = 0;
    imago_error_clear(&err);
    is_int(imago_job_create(ix, "ingest", "{\"dir\":\"/x\"}", &job, &err), 0, "create job");
    const char *srcs[3] = {"/x/1.jpg", "/x/2.jpg", "/x/3.jpg"};
    const char *exts[3] = {"one", NULL, "three"};
    is_int(imago_job_add_items(ix, job, srcs, exts, 3, &err), 0, "add job items");
    imago_job_item *its = NULL;
    size_t nit = 0;
    imago_error_clear(&err);
    is_int(imago_job_claim(ix, job, 2, &its, &nit, &err), IMAGO_ERR_CONFLICT,
           "claim from a pending job refused");
    imago_error_clear(&err);
    is_int(imago_job_set_state(ix, job, IMAGO_JOB_RUNNING, NULL, &err), 0, "job -> running");
    is_int(imago_job_claim(ix, job, 2, &its, &nit, &err), 0, "claim 2");
    is_int(nit, 2, "2 items claimed");
    if (nit == 2) {
        is_str(its[0].source, "/x/1.jpg", "first claimed item in order");
        is_str(its[0].external_id, "one", "external id of item");
        ok(its[1].external_id == NULL, "NULL external id kept");
        is_int(its[0].attempts, 1, "attempt counted");
        is_int(imago_job_item_done(ix, its[0].id, ids[0], &err), 0, "item done");
        is_int(imago_job_item_failed(ix, its[1].id, IMAGO_ERR_FORMAT, "corrupt jpeg", &err), 0,
               "item failed");
        imago_error_clear(&err);
        is_int(imago_job_item_done(ix, its[1].id, 1, &err), IMAGO_ERR_CONFLICT,
               "finishing a finished item refused");
    }
    imago_job_items_free(its, nit);
    imago_job_info ji;
    imago_error_clear(&err);
    is_int(imago_job_get(ix, job, &ji, &err), 0, "get job");
    is_int(ji.total, 3, "total");
    is_int(ji.done, 1, "done");
    is_int(ji.failed, 1, "failed");
    is_int(ji.pending, 1, "pending");
    is_int(ji.state, IMAGO_JOB_RUNNING, "state running");
    is_str(ji.kind, "ingest", "kind");
    is_str(ji.params_json, "{\"dir\":\"/x\"}", "params");
    imago_job_info_clear(&ji);
    is_int(imago_job_errors(ix, job, 10, &its, &nit, &err), 0, "job errors");
    is_int(nit, 1, "one error");
    if (nit == 1) {
        is_int(its[0].error_code, IMAGO_ERR_FORMAT, "error code kept");
        is_str(its[0].error, "corrupt jpeg", "error message kept");
    }
    imago_job_items_free(its, nit);
    /* claim the last one and "crash" with it running */
    is_int(imago_job_claim(ix, job, 10, &its, &nit, &err), 0, "claim rest");
    is_int(nit, 1, "one left");
    imago_job_items_free(its, nit);
    imago_index_free(ix);

    /* reopen: other model refused with a message naming the way out */
    imago_error_clear(&err);
    ix = open_ix("bbbb", &err);
    ok(ix == NULL && err.code == IMAGO_ERR_CONFLICT, "other model fingerprint refused");
    ok(strstr(err.msg, "index the collection again") != NULL, "message names the path: %s",
       err.msg);
    imago_error_clear(&err);
    ix = open_ix("aaaa", &err);
    ok(ix != NULL, "reopen: %s", err.msg);
    if (!ix)
        return tap_done();
    int64_t *jobs = NULL;
    size_t nj = 0;
    is_int(imago_job_resume(ix, &jobs, &nj, &err), 0, "resume");
    ok(nj == 1 && jobs[0] == job, "unfinished job listed");
    free(jobs);
    is_int(imago_job_claim(ix, job, 10, &its, &nit, &err), 0, "claim after resume");
    is_int(nit, 1, "the running item is pending again");
    if (nit == 1)
        is_int(its[0].attempts, 2, "second attempt");
    if (nit == 1)
        imago_job_item_done(ix, its[0].id, ids[1], &err);
    imago_job_items_free(its, nit);
    is_int(imago_job_set_state(ix, job, IMAGO_JOB_DONE, NULL, &err), 0, "job done");
    imago_error_clear(&err);
    is_int(imago_job_set_state(ix, job, IMAGO_JOB_RUNNING, NULL, &err), IMAGO_ERR_CONFLICT,
           "done is final");
    int64_t jl[4];
    size_t njl = 0;
    is_int(imago_job_list(ix, jl, 4, &njl, &err), 0, "list jobs");
    is_int(njl, 1, "one job");
    imago_index_stats_get(ix, &stats, NULL);
    is_int(stats.count, 2, "count after reopen");
    is_int(stats.seq, 5, "sequence after reopen");
    /* compaction purges the tombstone */
    imago_error_clear(&err);
    is_int(imago_index_reindex(ix, NULL, &err), 0, "compact: %s", err.msg);
    imago_index_stats_get(ix, &stats, NULL);
    is_int(stats.deleted, 0, "no tombstones after compaction");
    is_int(stats.count, 2, "count kept by compaction");
    is_int(imago_index_verify(ix, &err), 0, "index agrees with store after compaction");
    imago_index_free(ix);

    imago_error_clear(&err);
    imago_index_params p = imago_index_params_default();
    p.data_dir = dir;
    p.model_fingerprint = "aaaa";
    p.dim = DIM;
    p.durability = "sometimes";
    ok(imago_index_open(&p, &ix, &err) == IMAGO_ERR_INVALID, "bad durability refused");
    imago_error_clear(&err);
    p.durability = "normal";
    p.dim = DIM + 1;
    ok(imago_index_open(&p, &ix, &err) == IMAGO_ERR_CONFLICT, "other dim refused");

    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        tap_diag("cleanup failed");
    return tap_done();
}
