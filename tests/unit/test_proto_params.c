/* Unit tests for proto/params.c: search/extract parameters,
 * add-image fields and ids, with exact error codes and the parameter named
 * in every message. */
#include "proto/proto.h"
#include "tap.h"

#include <stdlib.h>
#include <string.h>

static imago_error err;

static int sset(imago_search_params *p, const char *name, const char *value)
{
    imago_error_clear(&err);
    return imago_search_params_set(p, name, value, strlen(value), &err);
}

/* Sets name=value on fresh params; returns the code and checks the message
 * names the parameter when it fails. */
static int one(const char *name, const char *value)
{
    imago_search_params p = imago_search_params_default();
    int rc = sset(&p, name, value);
    if (rc && strncmp(err.msg, name, strlen(name)) != 0)
        tap_diag("message does not start with the parameter name: %s", err.msg);
    if (rc && strncmp(err.msg, name, strlen(name)) != 0)
        rc = 1; /* makes the caller's equality check fail */
    imago_search_params_clear(&p);
    return rc;
}

int main(void)
{
    /* ---- search params through a query string ---- */
    imago_search_params p = imago_search_params_default();
    is_int(p.k, 10, "default k");
    is_int(p.qe, -1, "default qe = collection default");
    is_int(p.with_metadata, 1, "default with_metadata");
    imago_error_clear(&err);
    /* the server hands over each decoded query argument (libmicrohttpd
     * decodes them) and each multipart field in turn */
    static const char *const full[][2] = {
        {"k", "1000"},      {"bbox", "10.5,20,300,400.25"},
        {"qe", "on"},       {"qe_k", "3"},
        {"qe_alpha", "0.5"}, {"with_metadata", "false"},
        {"filter", "{\"city\":\"Paris\",\"n\":2}"},
    };
    int all = 0;
    for (size_t i = 0; i < sizeof full / sizeof full[0]; i++)
        all |= sset(&p, full[i][0], full[i][1]);
    is_int(all, 0, "full parameter set accepted");
    is_int(p.k, 1000, "k");
    is_int(p.has_bbox, 1, "bbox set");
    is_close(p.bbox[0], 10.5, 0, "x1");
    is_close(p.bbox[1], 20, 0, "y1");
    is_close(p.bbox[2], 300, 0, "x2");
    is_close(p.bbox[3], 400.25, 0, "y2");
    is_int(p.qe, 1, "qe on");
    is_int(p.qe_k, 3, "qe_k");
    is_int(p.has_qe_alpha, 1, "qe_alpha set");
    is_close(p.qe_alpha, 0.5, 0, "qe_alpha");
    is_int(p.with_metadata, 0, "with_metadata false");
    is_int(p.n_filter, 2, "two filter terms");
    is_str(p.filter[0].key, "city", "terms sorted: city first");
    is_int(p.filter[0].type, IMAGO_FILTER_STRING, "city is a string");
    is_str(p.filter[0].str, "Paris", "city value");
    is_str(p.filter[1].key, "n", "then n");
    is_int(p.filter[1].type, IMAGO_FILTER_NUMBER, "n is a number");
    is_close(p.filter[1].num, 2, 0, "n value");
    is_str(p.filter_json, "{\"city\":\"Paris\",\"n\":2}", "canonical filter text");
    /* a parameter given twice (query + multipart) */
    is_int(sset(&p, "k", "5"), IMAGO_ERR_INVALID, "k twice refused");
    is_str(err.msg, "k: given more than once", "duplicate message");
    is_int(p.k, 1000, "k unchanged after the refusal");
    imago_search_params_clear(&p);
    is_int(p.k, 10, "clear resets");
    ok(p.filter == NULL && p.filter_json == NULL, "clear frees the filter");

    /* ---- each parameter's validation ---- */
    is_int(one("k", "1"), 0, "k=1");
    is_int(one("k", "0"), IMAGO_ERR_INVALID, "k=0");
    is_int(one("k", "1001"), IMAGO_ERR_INVALID, "k=1001");
    is_int(one("k", "-1"), IMAGO_ERR_INVALID, "k=-1");
    is_int(one("k", "5x"), IMAGO_ERR_INVALID, "k=5x");
    is_int(one("k", ""), IMAGO_ERR_INVALID, "k empty");
    is_int(one("k", "1.5"), IMAGO_ERR_INVALID, "k=1.5");
    is_int(one("k", "99999999999999999999"), IMAGO_ERR_INVALID, "k overflow");
    {
        imago_search_params q = imago_search_params_default();
        sset(&q, "k", "abc");
        is_str(err.msg, "k: must be an integer in 1..1000 (got \"abc\")", "k message exact");
        imago_search_params_clear(&q);
    }
    is_int(one("bbox", "0,0,1,1"), 0, "minimal bbox");
    is_int(one("bbox", " 1 , 2 , 3 , 4 "), 0, "bbox with spaces");
    is_int(one("bbox", "1,2,3"), IMAGO_ERR_INVALID, "three numbers");
    is_int(one("bbox", "1,2,3,4,5"), IMAGO_ERR_INVALID, "five numbers");
    is_int(one("bbox", "3,2,1,4"), IMAGO_ERR_INVALID, "x1 > x2");
    is_int(one("bbox", "1,4,3,4"), IMAGO_ERR_INVALID, "y1 == y2");
    is_int(one("bbox", "-1,0,3,4"), IMAGO_ERR_INVALID, "negative");
    is_int(one("bbox", "nan,0,3,4"), IMAGO_ERR_INVALID, "nan");
    is_int(one("bbox", "0,0,inf,4"), IMAGO_ERR_INVALID, "inf");
    is_int(one("bbox", "0x1,0,3,4"), IMAGO_ERR_INVALID, "hex");
    is_int(one("bbox", "0,0,1e999,4"), IMAGO_ERR_INVALID, "overflow");
    is_int(one("bbox", "1,,3,4"), IMAGO_ERR_INVALID, "empty field");
    is_int(one("qe", "TRUE"), 0, "qe=TRUE");
    is_int(one("qe", "no"), 0, "qe=no");
    is_int(one("qe", "2"), IMAGO_ERR_INVALID, "qe=2");
    is_int(one("qe", ""), IMAGO_ERR_INVALID, "qe empty");
    is_int(one("qe_k", "100"), 0, "qe_k=100");
    is_int(one("qe_k", "101"), IMAGO_ERR_INVALID, "qe_k=101");
    is_int(one("qe_k", "0"), IMAGO_ERR_INVALID, "qe_k=0");
    is_int(one("qe_alpha", "0"), 0, "qe_alpha=0");
    is_int(one("qe_alpha", "3e0"), 0, "qe_alpha=3e0");
    is_int(one("qe_alpha", "10.5"), IMAGO_ERR_INVALID, "qe_alpha=10.5");
    is_int(one("qe_alpha", "-0.1"), IMAGO_ERR_INVALID, "qe_alpha<0");
    is_int(one("with_metadata", "1"), 0, "with_metadata=1");
    is_int(one("with_metadata", "maybe"), IMAGO_ERR_INVALID, "with_metadata=maybe");
    is_int(one("filter", "{}"), 0, "empty filter");
    is_int(one("filter", "{\"a\":true,\"b\":null,\"c\":1.5}"), 0, "bool/null/number filter");
    is_int(one("filter", "[1]"), IMAGO_ERR_INVALID, "filter array");
    is_int(one("filter", "{\"a\":{\"b\":1}}"), IMAGO_ERR_INVALID, "nested filter value");
    is_int(one("filter", "{\"a\":[1]}"), IMAGO_ERR_INVALID, "array filter value");
    is_int(one("filter", "{\"a\":1,\"a\":2}"), IMAGO_ERR_FORMAT, "duplicate keys are bad JSON");
    is_int(one("filter", "{bad"), IMAGO_ERR_FORMAT, "filter not JSON -> FORMAT");
    is_int(one("filter", "{\"\":1}"), IMAGO_ERR_INVALID, "empty filter key");
    {
        char big[2048] = "{";
        for (int i = 0; i < 33; i++) {
            size_t o = strlen(big);
            snprintf(big + o, sizeof big - o, "%s\"k%d\":%d", i ? "," : "", i, i);
        }
        strcat(big, "}");
        is_int(one("filter", big), IMAGO_ERR_INVALID, "33 filter keys refused");
    }
    is_int(one("limit", "5"), IMAGO_ERR_INVALID, "unknown parameter refused");
    {
        imago_search_params q = imago_search_params_default();
        sset(&q, "limit", "5");
        is_str(err.msg, "limit: unknown parameter", "unknown parameter named");
        imago_error_clear(&err);
        is_int(imago_search_params_set(&q, "k", "5\0", 2, &err), IMAGO_ERR_INVALID, "NUL in value");
        imago_search_params_clear(&q);
    }

    /* ---- add image ---- */
    imago_add_image_params a = imago_add_image_params_default();
    imago_error_clear(&err);
    is_int(imago_add_image_params_set(&a, "external_id", "img-42", 6, &err), 0, "external_id");
    is_str(a.external_id, "img-42", "external_id stored");
    const char *meta = "{ \"title\": \"Tour Eiffel\", \"tags\": [\"paris\"], \"year\": 1889 }";
    imago_error_clear(&err);
    is_int(imago_add_image_params_set(&a, "metadata", meta, strlen(meta), &err), 0, "metadata");
    is_str(a.metadata_json, "{\"title\":\"Tour Eiffel\",\"tags\":[\"paris\"],\"year\":1889}",
           "metadata compacted, order kept");
    imago_error_clear(&err);
    is_int(imago_add_image_params_set(&a, "uri", "https://example.org/a.jpg", 25, &err), 0, "uri");
    imago_error_clear(&err);
    is_int(imago_add_image_params_set(&a, "external_id", "x", 1, &err), IMAGO_ERR_INVALID,
           "external_id twice");
    imago_add_image_params_clear(&a);
    ok(a.external_id == NULL && a.metadata_json == NULL && a.uri == NULL, "clear frees");
    static const struct {
        const char *name;
        const char *value;
        int rc;
    } add_cases[] = {
        {"external_id", "", IMAGO_ERR_INVALID},        {"external_id", "a\nb", IMAGO_ERR_INVALID},
        {"external_id", "bad\xff", IMAGO_ERR_INVALID}, {"external_id", "caf\xc3\xa9", 0},
        {"metadata", "[1,2]", IMAGO_ERR_INVALID},      {"metadata", "{\"a\":", IMAGO_ERR_FORMAT},
        {"metadata", "\"str\"", IMAGO_ERR_INVALID},    {"color", "red", IMAGO_ERR_INVALID},
    };
    for (size_t i = 0; i < sizeof add_cases / sizeof add_cases[0]; i++) {
        imago_add_image_params q = imago_add_image_params_default();
        imago_error_clear(&err);
        int rc = imago_add_image_params_set(&q, add_cases[i].name, add_cases[i].value,
                                            strlen(add_cases[i].value), &err);
        is_int(rc, add_cases[i].rc, "add case %zu: %s", (size_t)i, add_cases[i].name);
        if (rc)
            ok(strncmp(err.msg, add_cases[i].name, strlen(add_cases[i].name)) == 0,
               "message names %s: %s", add_cases[i].name, err.msg);
        imago_add_image_params_clear(&q);
    }
    {
        size_t n = 70000;
        char *big = malloc(n + 1);
        memset(big, ' ', n);
        big[0] = '{';
        big[n - 1] = '}';
        big[n] = '\0';
        imago_add_image_params q = imago_add_image_params_default();
        imago_error_clear(&err);
        is_int(imago_add_image_params_set(&q, "metadata", big, n, &err), IMAGO_ERR_TOO_LARGE,
               "metadata over 64 KiB");
        imago_add_image_params_clear(&q);
        free(big);
    }

    /* ---- ids ---- */
    int64_t id = 0;
    imago_error_clear(&err);
    is_int(imago_proto_parse_id("42", &id, &err), 0, "id 42");
    is_int(id, 42, "id value");
    is_int(imago_proto_parse_id("9007199254740991", &id, &err), 0, "id 2^53-1");
    imago_error_clear(&err);
    is_int(imago_proto_parse_id("9007199254740992", &id, &err), IMAGO_ERR_INVALID, "id 2^53");
    const char *bad_ids[] = {"", "0", "007", "-1", "1a", "+1", " 1", "99999999999999999"};
    for (size_t i = 0; i < sizeof bad_ids / sizeof bad_ids[0]; i++) {
        imago_error_clear(&err);
        is_int(imago_proto_parse_id(bad_ids[i], &id, &err), IMAGO_ERR_INVALID, "id \"%s\" refused",
               bad_ids[i]);
    }
    ok(strncmp(err.msg, "id: ", 4) == 0, "id message names the parameter");
    return tap_done();
}
