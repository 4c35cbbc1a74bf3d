/* Unit tests for proto/json.c: job and reindex request bodies, and the exact
 * JSON text of every response. */
#include "proto/proto.h"
#include "tap.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static imago_error err;

static int job(const char *body, imago_job_request *r)
{
    imago_error_clear(&err);
    memset(r, 0, sizeof *r);
    return imago_job_request_parse(body, strlen(body), r, &err);
}

static int job_rc(const char *body, const char *want_prefix)
{
    imago_job_request r;
    int rc = job(body, &r);
    if (rc == 0)
        imago_job_request_clear(&r);
    else if (want_prefix && strncmp(err.msg, want_prefix, strlen(want_prefix)) != 0) {
        tap_diag("message \"%s\" lacks prefix \"%s\"", err.msg, want_prefix);
        return 1;
    }
    return rc;
}

int main(void)
{
    imago_job_request r;
    is_int(job("{\"source\":{\"dir\":\"/data/photos\",\"recursive\":false,"
               "\"extensions\":[\"JPG\",\".png\"]}}",
               &r),
           0, "dir job");
    is_int(r.kind, IMAGO_JOB_SOURCE_DIR, "kind dir");
    is_str(r.path, "/data/photos", "dir path");
    is_int(r.recursive, 0, "recursive false");
    is_int(r.n_extensions, 2, "two extensions");
    is_str(r.extensions[0], "jpg", "lower-cased");
    is_str(r.extensions[1], "png", "dot stripped");
    imago_job_request_clear(&r);
    is_int(job("{\"source\":{\"dir\":\"/d\"}}", &r), 0, "dir defaults");
    is_int(r.recursive, 1, "recursive by default");
    is_int(r.n_extensions, 0, "default extension set");
    imago_job_request_clear(&r);
    is_int(job("{\"source\":{\"manifest\":\"/m.jsonl\"}}", &r), 0, "manifest job");
    is_int(r.kind, IMAGO_JOB_SOURCE_MANIFEST, "kind manifest");
    is_str(r.path, "/m.jsonl", "manifest path");
    imago_job_request_clear(&r);
    is_int(job("{\"manifest\":\"/m2\"}", &r), 0, "short manifest form");
    is_str(r.path, "/m2", "short manifest path");
    imago_job_request_clear(&r);

    is_int(job_rc("", "body"), IMAGO_ERR_FORMAT, "empty body is not JSON");
    is_int(job_rc("{\"source\":", "body"), IMAGO_ERR_FORMAT, "truncated JSON");
    is_int(job_rc("[]", "body"), IMAGO_ERR_INVALID, "array body");
    is_int(job_rc("{}", "source"), IMAGO_ERR_INVALID, "missing source");
    is_int(job_rc("{\"source\":\"/d\"}", "source"), IMAGO_ERR_INVALID, "source string");
    is_int(job_rc("{\"source\":{}}", "source"), IMAGO_ERR_INVALID, "empty source");
    is_int(job_rc("{\"source\":{\"dir\":\"/a\",\"manifest\":\"/b\"}}", "source"), IMAGO_ERR_INVALID,
           "dir and manifest");
    is_int(job_rc("{\"source\":{\"dir\":5}}", "source.dir"), IMAGO_ERR_INVALID, "dir number");
    is_int(job_rc("{\"source\":{\"dir\":\"\"}}", "source.dir"), IMAGO_ERR_INVALID, "dir empty");
    is_int(job_rc("{\"source\":{\"dir\":\"/a\\n\"}}", "source.dir"), IMAGO_ERR_INVALID,
           "control char in dir");
    is_int(job_rc("{\"source\":{\"dir\":\"/a\",\"recursive\":1}}", "source.recursive"),
           IMAGO_ERR_INVALID, "recursive not bool");
    is_int(job_rc("{\"source\":{\"dir\":\"/a\",\"extensions\":[]}}", "source.extensions"),
           IMAGO_ERR_INVALID, "no extensions");
    is_int(job_rc("{\"source\":{\"dir\":\"/a\",\"extensions\":[\"j/g\"]}}", "source.extensions[0]"),
           IMAGO_ERR_INVALID, "bad extension");
    is_int(
        job_rc("{\"source\":{\"dir\":\"/a\",\"extensions\":[\"jpg\",3]}}", "source.extensions[1]"),
        IMAGO_ERR_INVALID, "non-string extension");
    is_int(job_rc("{\"source\":{\"dir\":\"/a\",\"depth\":3}}", "source.depth"), IMAGO_ERR_INVALID,
           "unknown source field named");
    is_int(job_rc("{\"source\":{\"dir\":\"/a\"},\"priority\":1}", "priority"), IMAGO_ERR_INVALID,
           "unknown top-level field named");
    is_int(job_rc("{\"source\":{\"manifest\":\"/a\",\"recursive\":true}}", "source.recursive"),
           IMAGO_ERR_INVALID, "recursive with a manifest");
    is_int(job_rc("{\"source\":{\"dir\":\"/a\"},\"manifest\":\"/b\"}", "manifest"),
           IMAGO_ERR_INVALID, "both forms");
    is_int(job_rc("{\"source\":{\"dir\":\"/a\",\"dir\":\"/b\"}}", "body"), IMAGO_ERR_FORMAT,
           "duplicate keys refused");

    imago_reindex_request rr;
    imago_error_clear(&err);
    is_int(imago_reindex_request_parse("", 0, &rr, &err), 0, "empty reindex body");
    is_int(rr.dba, -1, "dba unchanged");
    ok(rr.factory == NULL, "factory unchanged");
    const char *rb = "{\"dba\":true,\"factory\":\"IVF1024,PQ64\",\"compact\":false}";
    imago_error_clear(&err);
    is_int(imago_reindex_request_parse(rb, strlen(rb), &rr, &err), 0, "reindex body");
    is_int(rr.dba, 1, "dba");
    is_int(rr.compact, 0, "compact");
    is_str(rr.factory, "IVF1024,PQ64", "factory");
    imago_reindex_request_clear(&rr);
    const char *bad_rb[] = {"{\"dba\":\"yes\"}", "{\"factory\":\"a b\"}", "{\"factory\":\"\"}",
                            "{\"x\":1}", "[1]"};
    for (int i = 0; i < 5; i++) {
        imago_error_clear(&err);
        is_int(imago_reindex_request_parse(bad_rb[i], strlen(bad_rb[i]), &rr, &err),
               IMAGO_ERR_INVALID, "reindex %s refused", bad_rb[i]);
    }

    imago_whitening_request wr;
    imago_error_clear(&err);
    is_int(imago_whitening_request_parse(" ", 1, &wr, &err), 0, "empty whitening body");
    ok(wr.dim == 0 && wr.power == 0.25 && wr.sample == 200000 && !wr.force,
       "whitening defaults (dim 0, power 0.25, sample 200000, no force)");
    const char *wb = "{\"dim\":64,\"power\":0.5,\"sample\":0,\"force\":true}";
    imago_error_clear(&err);
    is_int(imago_whitening_request_parse(wb, strlen(wb), &wr, &err), 0, "whitening body");
    ok(wr.dim == 64 && wr.power == 0.5 && wr.sample == 0 && wr.force, "whitening fields");
    char *wj = imago_whitening_request_to_json(&wr);
    imago_whitening_request wr2;
    imago_error_clear(&err);
    is_int(imago_whitening_request_parse(wj, strlen(wj), &wr2, &err), 0, "canonical text parses");
    ok(wr.dim == wr2.dim && wr.power == wr2.power && wr.sample == wr2.sample &&
           wr.force == wr2.force,
       "whitening request round-trips (%s)", wj);
    free(wj);
    const char *bad_wb[] = {"{\"dim\":0}",      "{\"dim\":1.5}",    "{\"dim\":70000}",
                            "{\"power\":-0.1}", "{\"power\":1.01}", "{\"power\":\"a\"}",
                            "{\"sample\":1}",   "{\"sample\":-1}",  "{\"force\":1}",
                            "{\"dims\":4}",     "[1]"};
    for (int i = 0; i < 11; i++) {
        imago_error_clear(&err);
        is_int(imago_whitening_request_parse(bad_wb[i], strlen(bad_wb[i]), &wr, &err),
               IMAGO_ERR_INVALID, "whitening %s refused (%s)", bad_wb[i], err.msg);
    }
    imago_error_clear(&err);
    is_int(imago_whitening_request_parse("{\"dim\"", 6, &wr, &err), IMAGO_ERR_FORMAT,
           "whitening: not JSON");

    /* ---- responses: exact text ---- */
    char *out = NULL;
    imago_search_hit hits[2] = {
        {.id = 7,
         .external_id = "a",
         .score = 0.875,
         .uri = NULL,
         .metadata_json = "{\"title\":\"x\"}"},
        {.id = 9, .external_id = NULL, .score = 0.5, .uri = "file:///b.jpg", .metadata_json = NULL},
    };
    imago_search_response sr = {.n_results = 2,
                                .results = hits,
                                .timings = {1.5, 0.25, 10, 2, 0, 0.5, 14.75},
                                .index_seq = 123,
                                .with_metadata = 1};
    imago_error_clear(&err);
    is_int(imago_search_response_to_json(&sr, &out, &err), 0, "search response");
    is_str(out,
           "{\"results\":[{\"id\":7,\"external_id\":\"a\",\"score\":0.875,\"uri\":null,"
           "\"metadata\":{\"title\":\"x\"}},{\"id\":9,\"external_id\":null,\"score\":0.5,"
           "\"uri\":\"file:///b.jpg\",\"metadata\":{}}],\"timings\":{\"decode_ms\":1.5,"
           "\"queue_ms\":0.25,\"forward_ms\":10.0,\"search_ms\":2.0,\"qe_ms\":0.0,"
           "\"metadata_ms\":0.5,\"total_ms\":14.75},\"index_seq\":123}",
           "search response text");
    free(out);
    sr.with_metadata = 0;
    sr.n_results = 1;
    imago_error_clear(&err);
    is_int(imago_search_response_to_json(&sr, &out, &err), 0, "without metadata");
    ok(out && strstr(out, "metadata\"") == NULL, "metadata omitted");
    free(out);
    sr.with_metadata = 1;
    hits[0].metadata_json = "[1]";
    imago_error_clear(&err);
    out = NULL;
    is_int(imago_search_response_to_json(&sr, &out, &err), IMAGO_ERR_INVALID,
           "stored metadata not an object");
    ok(out == NULL, "no output on error");
    hits[0].metadata_json = NULL;
    hits[0].score = NAN;
    imago_error_clear(&err);
    is_int(imago_search_response_to_json(&sr, &out, &err), IMAGO_ERR_INVALID, "NaN score refused");
    sr.n_results = 0;
    imago_error_clear(&err);
    is_int(imago_search_response_to_json(&sr, &out, &err), 0, "empty results");
    ok(out && strncmp(out, "{\"results\":[],", 14) == 0, "empty results array");
    free(out);

    float d[3] = {0.1f, -1.0f, 3.4028235e38f};
    imago_error_clear(&err);
    is_int(imago_extract_response_to_json(d, 3, &out, &err), 0, "extract");
    is_str(out, "{\"dim\":3,\"descriptor\":[0.100000001,-1,3.40282347e+38]}", "extract text");
    free(out);
    d[1] = INFINITY;
    imago_error_clear(&err);
    is_int(imago_extract_response_to_json(d, 3, &out, &err), IMAGO_ERR_INVALID, "inf refused");
    {
        /* round trip of every float through %.9g */
        float v[2048];
        for (int i = 0; i < 2048; i++)
            v[i] = (float)((i * 2654435761u) % 100003) / 100003.0f - 0.5f;
        imago_error_clear(&err);
        is_int(imago_extract_response_to_json(v, 2048, &out, &err), 0, "2048-d extract");
        int same = 0;
        const char *p = strchr(out, '[') + 1;
        for (int i = 0; i < 2048; i++) {
            char *end;
            float x = strtof(p, &end);
            same += x == v[i];
            p = end + 1;
        }
        is_int(same, 2048, "all 2048 floats round-trip exactly");
        free(out);
    }

    imago_error_clear(&err);
    is_int(imago_add_image_response_to_json(5, "ext-5", 1, &out, &err), 0, "add response");
    is_str(out, "{\"id\":5,\"external_id\":\"ext-5\",\"replaced\":true}", "add response text");
    free(out);

    imago_image_record rec = {.id = 3,
                              .external_id = "e",
                              .uri = NULL,
                              .sha256 = "ab",
                              .width = 640,
                              .height = 480,
                              .metadata_json = NULL,
                              .created_at = 1700000000};
    imago_error_clear(&err);
    is_int(imago_image_record_to_json(&rec, &out, &err), 0, "image record");
    is_str(out,
           "{\"id\":3,\"external_id\":\"e\",\"uri\":null,\"sha256\":\"ab\",\"width\":640,"
           "\"height\":480,\"metadata\":{},\"created_at\":1700000000}",
           "image record text");
    free(out);

    imago_job_item_error je[1] = {{"/d/bad.jpg", IMAGO_API_INVALID_IMAGE, "truncated"}};
    imago_job_status js = {.id = 2,
                           .kind = "ingest",
                           .state = IMAGO_API_JOB_RUNNING,
                           .total = -1,
                           .done = 10,
                           .failed = 1,
                           .rate = 2.5,
                           .eta_s = -1,
                           .created_at = 1,
                           .updated_at = 2,
                           .n_errors = 1,
                           .errors = je};
    imago_error_clear(&err);
    is_int(imago_job_status_to_json(&js, &out, &err), 0, "job status");
    is_str(out,
           "{\"id\":2,\"kind\":\"ingest\",\"state\":\"running\",\"total\":null,\"done\":10,"
           "\"failed\":1,\"rate\":2.5,\"eta_s\":null,\"created_at\":1,\"updated_at\":2,"
           "\"error\":null,\"errors\":[{\"path\":\"/d/bad.jpg\",\"code\":\"invalid_image\","
           "\"message\":\"truncated\"}]}",
           "job status text");
    free(out);
    js.state = IMAGO_API_JOB_FAILED;
    js.error = "m.jsonl line 1: not JSON";
    js.n_errors = 0;
    imago_error_clear(&err);
    is_int(imago_job_status_to_json(&js, &out, &err), 0, "failed job status");
    ok(out && strstr(out, "\"state\":\"failed\"") &&
           strstr(out, "\"error\":\"m.jsonl line 1: not JSON\""),
       "a failed job's own reason is its error: %s", out ? out : "(null)");
    free(out);
    imago_error_clear(&err);
    is_int(imago_job_created_to_json(17, &out, &err), 0, "job created");
    is_str(out, "{\"job_id\":17}", "job created text");
    free(out);
    imago_api_job_state st;
    for (int s = 0; s < 5; s++) {
        imago_error_clear(&err);
        ok(imago_api_job_state_parse(imago_api_job_state_name((imago_api_job_state)s), &st, &err) == 0 &&
               (int)st == s,
           "job state %s round-trips", imago_api_job_state_name((imago_api_job_state)s));
    }
    imago_error_clear(&err);
    is_int(imago_api_job_state_parse("paused", &st, &err), IMAGO_ERR_INVALID, "unknown state");

    imago_info info = {.version = "0.1.0",
                       .model_name = "demo-resnet101-agem",
                       .backbone = "resnet101",
                       .head = "agem",
                       .dim = 2048,
                       .fingerprint = "ff",
                       .trained = 1,
                       .backend = "cpu",
                       .precision = "fp32",
                       .device = "oneDNN",
                       .index_type = "Flat",
                       .index_size = 12,
                       .index_seq = 40,
                       .ready = 1};
    imago_error_clear(&err);
    is_int(imago_info_to_json(&info, &out, &err), 0, "info");
    is_str(out,
           "{\"version\":\"0.1.0\",\"ready\":true,\"model\":{\"name\":\"demo-resnet101-agem\","
           "\"backbone\":\"resnet101\",\"head\":\"agem\",\"dim\":2048,\"fingerprint\":\"ff\","
           "\"demo\":false},\"backend\":{\"name\":\"cpu\",\"precision\":\"fp32\","
           "\"device\":\"oneDNN\"},\"index\":{\"type\":\"Flat\",\"size\":12,\"seq\":40,"
           "\"whitening\":null}}",
           "info text");
    free(out);
    imago_whitening_desc wd = {.version = 3,
                               .dim_in = 1280,
                               .dim = 64,
                               .rank = 143,
                               .power = 0.25,
                               .eps = 0.5,
                               .trained_on = 144,
                               .rows = 150,
                               .created_at = 1700000000,
                               .fingerprint = "abc"};
    const char *wtext = "{\"version\":3,\"dim_in\":1280,\"dim\":64,\"rank\":143,\"power\":0.25,"
                        "\"eps\":0.5,\"trained_on\":144,\"rows\":150,\"created_at\":1700000000,"
                        "\"fingerprint\":\"abc\"}";
    info.whitening = &wd;
    info.index_dim = 64;
    imago_error_clear(&err);
    is_int(imago_info_to_json(&info, &out, &err), 0, "info with a whitening");
    char want[600];
    snprintf(want, sizeof want, "\"seq\":40,\"dim\":64,\"whitening\":%s}}", wtext);
    ok(strstr(out, want) != NULL, "index.dim and index.whitening reported (%s)", out);
    free(out);
    imago_error_clear(&err);
    is_int(imago_whitening_to_json(&wd, &out, &err), 0, "whitening description");
    snprintf(want, sizeof want, "{\"whitening\":%s}", wtext);
    is_str(out, want, "whitening description text");
    free(out);
    info.whitening = NULL;
    info.index_dim = 0;
    info.trained = 0;
    imago_error_clear(&err);
    is_int(imago_info_to_json(&info, &out, &err), 0, "info demo");
    ok(strstr(out, "\"demo\":true,\"warning\":\"demo model") != NULL, "demo warning present");
    free(out);
    info.backend_note = "no GPU backend: no CUDA device";
    imago_error_clear(&err);
    is_int(imago_info_to_json(&info, &out, &err), 0, "info with a backend note");
    ok(strstr(out, "\"device\":\"oneDNN\",\"note\":\"no GPU backend: no CUDA device\"}") != NULL,
       "the backend note is reported (%s)", out);
    free(out);
    info.backend_note = "";
    imago_error_clear(&err);
    is_int(imago_info_to_json(&info, &out, &err), 0, "info with an empty note");
    ok(strstr(out, "\"note\"") == NULL, "an empty note is absent");
    free(out);
    imago_info empty = {.version = "0.1.0", .index_size = -1};
    imago_error_clear(&err);
    is_int(imago_info_to_json(&empty, &out, &err), 0, "info without engine/index");
    is_str(out,
           "{\"version\":\"0.1.0\",\"ready\":false,\"model\":null,\"backend\":{\"name\":null,"
           "\"precision\":null,\"device\":null},\"index\":{\"type\":null,\"size\":null,"
           "\"seq\":0}}",
           "info with nothing loaded");
    free(out);
    return tap_done();
}
