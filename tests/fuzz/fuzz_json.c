/* Fuzz target: every JSON-reading entry point of proto/ (job and reindex
 * bodies, the filter and metadata fields, search parameters) and the response
 * encoders fed with what the decoders accepted.
 *
 * Input: the first byte selects the entry point, the rest is its text.
 * Invariants checked (abort() on violation): success leaves well-formed
 * outputs, failure leaves an error message and no output.
 */
#include "proto/proto.h"

#include "fuzz_proto_driver.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *text = (const char *)data + 1;
    size_t n = size - 1;
    imago_error err;
    imago_error_clear(&err);
    int rc;
    switch (data[0] % 5) {
    case 0: {
        imago_job_request r;
        memset(&r, 0x5a, sizeof r);
        rc = imago_job_request_parse(text, n, &r, &err);
        if (rc == 0) {
            fuzz_accepted++;
            if (!r.path || !r.path[0] ||
                (r.kind != IMAGO_JOB_SOURCE_DIR && r.kind != IMAGO_JOB_SOURCE_MANIFEST) ||
                r.n_extensions < 0 || r.n_extensions > IMAGO_JOB_EXTENSIONS_MAX)
                abort();
            imago_job_request_clear(&r);
        }
        break;
    }
    case 1: {
        imago_reindex_request r;
        rc = imago_reindex_request_parse(text, n, &r, &err);
        if (rc == 0) {
            fuzz_accepted++;
            if (r.dba < -1 || r.dba > 1 || r.compact < -1 || r.compact > 1)
                abort();
            imago_reindex_request_clear(&r);
        }
        break;
    }
    case 2: {
        imago_search_params p = imago_search_params_default();
        rc = imago_search_params_set(&p, "filter", text, n, &err);
        if (rc == 0) {
            fuzz_accepted++;
            if (!p.filter_json || p.n_filter < 0 || p.n_filter > IMAGO_FILTER_TERMS_MAX)
                abort();
            for (int i = 1; i < p.n_filter; i++)
                if (strcmp(p.filter[i - 1].key, p.filter[i].key) >= 0)
                    abort(); /* sorted, unique */
            /* the canonical text must parse back to the same terms */
            imago_search_params q = imago_search_params_default();
            imago_error e2;
            imago_error_clear(&e2);
            if (imago_search_params_set(&q, "filter", p.filter_json, strlen(p.filter_json), &e2) ||
                q.n_filter != p.n_filter || strcmp(q.filter_json, p.filter_json) != 0)
                abort();
            imago_search_params_clear(&q);
        }
        imago_search_params_clear(&p);
        break;
    }
    case 3: {
        imago_add_image_params p = imago_add_image_params_default();
        rc = imago_add_image_params_set(&p, "metadata", text, n, &err);
        if (rc == 0) {
            fuzz_accepted++;
            /* what we store must embed into responses */
            imago_search_hit hit = {
                .id = 1, .external_id = "x", .score = 0.5, .metadata_json = p.metadata_json};
            imago_search_response sr = {.n_results = 1, .results = &hit, .with_metadata = 1};
            char *out = NULL;
            imago_error e2;
            imago_error_clear(&e2);
            if (imago_search_response_to_json(&sr, &out, &e2) != 0 || !out)
                abort();
            free(out);
        }
        imago_add_image_params_clear(&p);
        break;
    }
    default: {
        char *q = malloc(n + 1);
        memcpy(q, text, n);
        q[n] = '\0';
        /* one search parameter as the server hands it over: name=value,
         * the value's bytes as they are (NUL included) */
        imago_search_params p = imago_search_params_default();
        char *eq = memchr(q, '=', n);
        if (eq) {
            *eq = '\0';
            rc = imago_search_params_set(&p, q, eq + 1, n - (size_t)(eq + 1 - q), &err);
        } else {
            rc = imago_search_params_set(&p, q, "", 0, &err);
        }
        if (rc == 0)
            fuzz_accepted++;
        imago_search_params_clear(&p);
        free(q);
        break;
    }
    }
    if (rc != 0 && (err.code != rc || err.msg[0] == '\0'))
        abort();
    return 0;
}

#ifdef IMAGO_FUZZ_STANDALONE
static const fuzz_seed seeds[] = {
    {"\x00{\"source\":{\"dir\":\"/data/"
     "photos\",\"recursive\":true,\"extensions\":[\"jpg\",\".PNG\"]}}",
     79},
    {"\x00{\"source\":{\"manifest\":\"/m.jsonl\"}}", 35},
    {"\x00{\"manifest\":\"/m\\u00e9\"}", 24},
    {"\x01{\"dba\":true,\"factory\":\"IVF1024,PQ64\",\"compact\":false}", 54},
    {"\x01", 1},
    {"\x02{\"city\":\"Paris\",\"n\":2,\"ok\":true,\"z\":null,\"f\":-1.5e3}", 0},
    {"\x03{\"title\":\"Tour\",\"tags\":[\"a\",{\"b\":[1,2.5,null,false]}],\"u\":"
     "\"\\ud83d\\ude00\"}",
     0},
    {"\x04k=5&bbox=1%2C2%2C3%2C4&qe=on&qe_alpha=0.5&filter=%7B%22a%22%3A1%7D", 0},
};
static const char *const dict[] = {
    "{",
    "}",
    "[",
    "]",
    "\"",
    ":",
    ",",
    "null",
    "true",
    "false",
    "1e308",
    "-0",
    "\\u0000",
    "\\ud800",
    "\"source\"",
    "\"dir\"",
    "\"manifest\"",
    "\"recursive\"",
    "\"extensions\"",
    "\"dba\"",
    "\"factory\"",
    "%",
    "%2C",
    "&",
    "=",
    "+",
    "k",
    "bbox",
    "filter",
    "\xc3\xa9",
    "\xff",
    "[[[[[[[[",
};

int main(int argc, char **argv)
{
    return fuzz_main(argc, argv, seeds, sizeof seeds / sizeof seeds[0], dict,
                     sizeof dict / sizeof dict[0]);
}
#endif
