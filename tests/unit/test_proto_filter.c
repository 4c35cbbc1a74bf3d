/* Unit tests for the proto helpers the index routes use: metadata filter
 * matching (imago_filter_match), manifest lines (imago_manifest_line_parse)
 * and the job list body (imago_job_list_to_json). */
#include "proto/proto.h"
#include "tap.h"

#include <stdlib.h>
#include <string.h>

static imago_error err;

/* Parses filter JSON through the search parameter, as a request does. */
static int match(const char *filter, const char *meta)
{
    imago_search_params p = imago_search_params_default();
    imago_error_clear(&err);
    if (imago_search_params_set(&p, "filter", filter, strlen(filter), &err) != 0) {
        tap_diag("filter %s: %s", filter, err.msg);
        return -1;
    }
    int m = imago_filter_match(p.filter, p.n_filter, meta);
    imago_search_params_clear(&p);
    return m;
}

static int manifest(const char *line, char **path, char **ext, char **meta)
{
    *path = *ext = *meta = NULL;
    imago_error_clear(&err);
    return imago_manifest_line_parse(line, strlen(line), path, ext, meta, &err);
}

int main(void)
{
    /* filters */
    is_int(match("{\"a\":\"x\"}", "{\"a\":\"x\",\"b\":2}"), 1, "string equal");
    is_int(match("{\"a\":\"x\"}", "{\"a\":\"y\"}"), 0, "string differs");
    is_int(match("{\"a\":\"x\"}", "{\"b\":\"x\"}"), 0, "key absent");
    is_int(match("{\"n\":2}", "{\"n\":2.0}"), 1, "number equals a real of the same value");
    is_int(match("{\"n\":2}", "{\"n\":\"2\"}"), 0, "number vs string");
    is_int(match("{\"t\":true}", "{\"t\":true}"), 1, "bool true");
    is_int(match("{\"t\":true}", "{\"t\":false}"), 0, "bool differs");
    is_int(match("{\"z\":null}", "{\"z\":null}"), 1, "null matches null");
    is_int(match("{\"z\":null}", "{}"), 0, "null does not match an absent key");
    is_int(match("{\"a\":\"x\",\"n\":1}", "{\"a\":\"x\",\"n\":1}"), 1, "two terms, both hold");
    is_int(match("{\"a\":\"x\",\"n\":1}", "{\"a\":\"x\",\"n\":3}"), 0, "two terms, one fails");
    is_int(match("{\"a\":\"x\"}", NULL), 0, "no metadata");
    is_int(match("{\"a\":\"x\"}", "[1]"), 0, "metadata not an object");
    is_int(match("{\"a\":\"x\"}", "{broken"), 0, "metadata not JSON");
    is_int(imago_filter_match(NULL, 0, NULL), 1, "no terms match anything");

    /* manifest lines */
    char *p, *e, *m;
    is_int(manifest("{\"path\":\"a/b.jpg\",\"external_id\":\"b\",\"metadata\":{\"k\": 1}}", &p, &e,
                    &m),
           0, "full line");
    is_str(p, "a/b.jpg", "path");
    is_str(e, "b", "external_id");
    is_str(m, "{\"k\":1}", "metadata canonical compact");
    free(p);
    free(e);
    free(m);
    is_int(manifest("{\"path\":\"c.png\"}", &p, &e, &m), 0, "path only");
    ok(p && strcmp(p, "c.png") == 0 && !e && !m, "external_id and metadata NULL when absent");
    free(p);
    is_int(manifest("{\"external_id\":\"x\"}", &p, &e, &m), IMAGO_ERR_INVALID, "no path");
    ok(strncmp(err.msg, "path:", 5) == 0, "message names path (%s)", err.msg);
    is_int(manifest("{\"path\":\"\"}", &p, &e, &m), IMAGO_ERR_INVALID, "empty path");
    is_int(manifest("{\"path\":\"a\\nb\"}", &p, &e, &m), IMAGO_ERR_INVALID,
           "control character in path");
    is_int(manifest("{\"path\":\"a\",\"size\":3}", &p, &e, &m), IMAGO_ERR_INVALID, "unknown field");
    ok(strncmp(err.msg, "size:", 5) == 0, "message names the field (%s)", err.msg);
    is_int(manifest("{\"path\":\"a\",\"metadata\":[1]}", &p, &e, &m), IMAGO_ERR_INVALID,
           "metadata not an object");
    is_int(manifest("{\"path\":\"a\",\"external_id\":7}", &p, &e, &m), IMAGO_ERR_INVALID,
           "external_id not a string");
    is_int(manifest("{\"path\":", &p, &e, &m), IMAGO_ERR_FORMAT, "not JSON");
    is_int(manifest("[\"a\"]", &p, &e, &m), IMAGO_ERR_INVALID, "not an object");
    ok(!p && !e && !m, "outputs untouched on error");

    /* job list */
    imago_job_status js[2];
    memset(js, 0, sizeof js);
    js[0].id = 7;
    js[0].kind = "ingest";
    js[0].state = IMAGO_API_JOB_RUNNING;
    js[0].total = 10;
    js[0].done = 4;
    js[0].rate = 2.5;
    js[0].eta_s = 2.4;
    js[1].id = 3;
    js[1].kind = "reindex";
    js[1].state = IMAGO_API_JOB_DONE;
    js[1].total = -1;
    js[1].eta_s = -1;
    char *out = NULL;
    imago_error_clear(&err);
    is_int(imago_job_list_to_json(js, 2, &out, &err), 0, "job list");
    const char *want =
        "{\"jobs\":[{\"id\":7,\"kind\":\"ingest\",\"state\":\"running\",\"total\":10,";
    ok(out && strncmp(out, want, strlen(want)) == 0, "job list body starts with the first job (%s)",
       out ? out : "");
    ok(out &&
           strstr(out, "{\"id\":3,\"kind\":\"reindex\",\"state\":\"done\",\"total\":null") != NULL,
       "second job, total null when unknown");
    free(out);
    is_int(imago_job_list_to_json(NULL, 0, &out, &err), 0, "empty list");
    is_str(out, "{\"jobs\":[]}", "empty list body");
    free(out);
    return tap_done();
}
