/* JSON request bodies (jobs, reindex) -> structs, and response structs ->
 * JSON text, with jansson. Field errors name the field ("source.dir: ..."). */
#include "proto_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PATH_MAX_BYTES 4096

/* ---- requests ----------------------------------------------------------- */

static int load_object(const char *body, size_t len, const char *what, json_t **out,
                       imago_error *err)
{
    json_t *j = NULL;
    int rc = proto_json_load(body, len, what, &j, err);
    if (rc)
        return rc;
    if (!json_is_object(j)) {
        json_decref(j);
        return imago_error_set(err, IMAGO_ERR_INVALID, "%s: must be a JSON object", what);
    }
    *out = j;
    return 0;
}

/* Fails on keys of obj that are not in allowed (NULL-terminated). */
static int only_keys(json_t *obj, const char *prefix, const char *const *allowed, imago_error *err)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        int found = 0;
        for (int i = 0; allowed[i]; i++)
            if (strcmp(key, allowed[i]) == 0)
                found = 1;
        if (!found)
            return imago_error_set(err, IMAGO_ERR_INVALID, "%s%.64s: unknown field", prefix, key);
    }
    return 0;
}

static int path_field(json_t *v, const char *name, char **out, imago_error *err)
{
    if (!json_is_string(v))
        return imago_error_set(err, IMAGO_ERR_INVALID, "%s: must be a string", name);
    size_t n = json_string_length(v);
    const char *s = json_string_value(v);
    if (n == 0 || n > PATH_MAX_BYTES)
        return imago_error_set(err, IMAGO_ERR_INVALID, "%s: must have 1..%d bytes", name,
                               PATH_MAX_BYTES);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20)
            return imago_error_set(err, IMAGO_ERR_INVALID, "%s: control characters are not allowed",
                                   name);
    *out = imago_xstrdup(s);
    return 0;
}

void imago_job_request_clear(imago_job_request *r)
{
    if (!r)
        return;
    free(r->path);
    for (int i = 0; i < r->n_extensions; i++)
        free(r->extensions[i]);
    memset(r, 0, sizeof *r);
}

static int parse_extensions(json_t *arr, imago_job_request *r, imago_error *err)
{
    if (!json_is_array(arr))
        return imago_error_set(err, IMAGO_ERR_INVALID,
                               "source.extensions: must be an array of strings");
    size_t n = json_array_size(arr);
    if (n == 0 || n > IMAGO_JOB_EXTENSIONS_MAX)
        return imago_error_set(err, IMAGO_ERR_INVALID, "source.extensions: must have 1..%d entries",
                               IMAGO_JOB_EXTENSIONS_MAX);
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(arr, i);
        if (!json_is_string(e))
            return imago_error_set(err, IMAGO_ERR_INVALID,
                                   "source.extensions[%zu]: must be a string", i);
        const char *s = json_string_value(e);
        size_t l = json_string_length(e);
        if (l > 0 && s[0] == '.') {
            s++;
            l--;
        }
        if (l == 0 || l > 16)
            return imago_error_set(err, IMAGO_ERR_INVALID,
                                   "source.extensions[%zu]: must have 1..16 characters", i);
        char *x = imago_xmalloc(l + 1);
        for (size_t k = 0; k < l; k++) {
            char c = s[k];
            if (c >= 'A' && c <= 'Z')
                c = (char)(c - 'A' + 'a');
            if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) {
                free(x);
                return imago_error_set(err, IMAGO_ERR_INVALID,
                                       "source.extensions[%zu]: letters and digits only", i);
            }
            x[k] = c;
        }
        x[l] = '\0';
        r->extensions[r->n_extensions++] = x;
    }
    return 0;
}

int imago_job_request_parse(const char *body, size_t len, imago_job_request *out, imago_error *err)
{
    json_t *root = NULL;
    int rc = load_object(body, len, "body", &root, err);
    if (rc)
        return rc;
    imago_job_request r;
    memset(&r, 0, sizeof r);
    r.recursive = 1;
    static const char *const top_keys[] = {"source", "manifest", NULL};
    rc = only_keys(root, "", top_keys, err);
    json_t *src = json_object_get(root, "source");
    json_t *short_manifest = json_object_get(root, "manifest");
    if (rc == 0 && src && short_manifest)
        rc = imago_error_set(err, IMAGO_ERR_INVALID,
                             "manifest: give either source or manifest, not both");
    if (rc == 0 && short_manifest) {
        r.kind = IMAGO_JOB_SOURCE_MANIFEST;
        rc = path_field(short_manifest, "manifest", &r.path, err);
    } else if (rc == 0 && !src) {
        rc = imago_error_set(err, IMAGO_ERR_INVALID, "source: required");
    } else if (rc == 0 && !json_is_object(src)) {
        rc = imago_error_set(err, IMAGO_ERR_INVALID, "source: must be an object");
    } else if (rc == 0) {
        static const char *const src_keys[] = {"dir", "recursive", "extensions", "manifest", NULL};
        rc = only_keys(src, "source.", src_keys, err);
        json_t *dir = json_object_get(src, "dir");
        json_t *man = json_object_get(src, "manifest");
        json_t *rec = json_object_get(src, "recursive");
        json_t *ext = json_object_get(src, "extensions");
        if (rc == 0 && dir && man)
            rc = imago_error_set(err, IMAGO_ERR_INVALID,
                                 "source: give either dir or manifest, not both");
        else if (rc == 0 && !dir && !man)
            rc = imago_error_set(err, IMAGO_ERR_INVALID, "source: needs dir or manifest");
        else if (rc == 0 && man && (rec || ext))
            rc = imago_error_set(err, IMAGO_ERR_INVALID, "source.%s: only valid with dir",
                                 rec ? "recursive" : "extensions");
        if (rc == 0 && man) {
            r.kind = IMAGO_JOB_SOURCE_MANIFEST;
            rc = path_field(man, "source.manifest", &r.path, err);
        } else if (rc == 0) {
            r.kind = IMAGO_JOB_SOURCE_DIR;
            rc = path_field(dir, "source.dir", &r.path, err);
            if (rc == 0 && rec) {
                if (!json_is_boolean(rec))
                    rc = imago_error_set(err, IMAGO_ERR_INVALID,
                                         "source.recursive: must be true or false");
                else
                    r.recursive = json_is_true(rec);
            }
            if (rc == 0 && ext)
                rc = parse_extensions(ext, &r, err);
        }
    }
    json_decref(root);
    if (rc) {
        imago_job_request_clear(&r);
        return rc;
    }
    *out = r;
    return 0;
}

void imago_reindex_request_clear(imago_reindex_request *r)
{
    if (!r)
        return;
    free(r->factory);
    r->factory = NULL;
    r->dba = -1;
    r->compact = -1;
}

int imago_reindex_request_parse(const char *body, size_t len, imago_reindex_request *out,
                                imago_error *err)
{
    imago_reindex_request r = {.dba = -1, .compact = -1, .factory = NULL};
    size_t i = 0;
    while (i < len && (body[i] == ' ' || body[i] == '\t' || body[i] == '\r' || body[i] == '\n'))
        i++;
    if (i == len) {
        *out = r;
        return 0;
    }
    json_t *root = NULL;
    int rc = load_object(body, len, "body", &root, err);
    if (rc)
        return rc;
    static const char *const keys[] = {"dba", "compact", "factory", NULL};
    rc = only_keys(root, "", keys, err);
    json_t *v;
    if (rc == 0 && (v = json_object_get(root, "dba"))) {
        if (!json_is_boolean(v))
            rc = imago_error_set(err, IMAGO_ERR_INVALID, "dba: must be true or false");
        else
            r.dba = json_is_true(v);
    }
    if (rc == 0 && (v = json_object_get(root, "compact"))) {
        if (!json_is_boolean(v))
            rc = imago_error_set(err, IMAGO_ERR_INVALID, "compact: must be true or false");
        else
            r.compact = json_is_true(v);
    }
    if (rc == 0 && (v = json_object_get(root, "factory"))) {
        size_t n = json_is_string(v) ? json_string_length(v) : 0;
        const char *s = json_is_string(v) ? json_string_value(v) : "";
        if (n == 0 || n > 128)
            rc = imago_error_set(err, IMAGO_ERR_INVALID,
                                 "factory: must be a string of 1..128 "
                                 "characters");
        for (size_t k = 0; rc == 0 && k < n; k++) {
            char c = s[k];
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == ',' || c == '_' || c == '.' || c == '-' || c == '+'))
                rc = imago_error_set(err, IMAGO_ERR_INVALID,
                                     "factory: invalid character in a FAISS factory string");
        }
        if (rc == 0)
            r.factory = imago_xstrdup(s);
    }
    json_decref(root);
    if (rc) {
        imago_reindex_request_clear(&r);
        return rc;
    }
    *out = r;
    return 0;
}

/* ---- responses ---------------------------------------------------------- */

/* Takes ownership of v and sets it; reports OOM / a NULL value (a non-finite
 * number or an allocation failure in jansson). */
static int put(json_t *obj, const char *key, json_t *v, imago_error *err)
{
    if (!v)
        return imago_error_set(err, IMAGO_ERR_INVALID, "%s: not representable in JSON", key);
    if (json_object_set_new(obj, key, v) != 0)
        return imago_error_set(err, IMAGO_ERR_NOMEM, "%s: out of memory", key);
    return 0;
}

static json_t *real_or_null(double d)
{
    return isfinite(d) ? json_real(d) : NULL;
}

/* Parses stored JSON text that must be an object (new reference in *out). */
static int embed_object(const char *text, const char *what, json_t **out, imago_error *err)
{
    json_error_t je;
    json_t *j = json_loads(text, JSON_REJECT_DUPLICATES, &je);
    if (!j || !json_is_object(j)) {
        json_decref(j);
        return imago_error_set(err, IMAGO_ERR_INVALID, "%s: stored value is not a JSON object",
                               what);
    }
    *out = j;
    return 0;
}

static int finish(json_t *root, int rc, char **out, imago_error *err)
{
    if (rc == 0)
        rc = proto_dump(root, out, err);
    json_decref(root);
    return rc;
}

int imago_search_response_to_json(const imago_search_response *r, char **out, imago_error *err)
{
    json_t *root = json_object();
    json_t *arr = json_array();
    int rc = put(root, "results", arr, err);
    for (int i = 0; rc == 0 && i < r->n_results; i++) {
        const imago_search_hit *h = &r->results[i];
        json_t *o = json_object();
        if (json_array_append_new(arr, o) != 0) {
            rc = imago_error_set(err, IMAGO_ERR_NOMEM, "results: out of memory");
            break;
        }
        rc = put(o, "id", json_integer(h->id), err);
        if (rc == 0)
            rc = put(o, "external_id", proto_json_str_or_null(h->external_id), err);
        if (rc == 0)
            rc = put(o, "score", real_or_null(h->score), err);
        if (rc == 0)
            rc = put(o, "uri", proto_json_str_or_null(h->uri), err);
        if (rc == 0 && r->with_metadata) {
            json_t *m = NULL;
            if (h->metadata_json)
                rc = embed_object(h->metadata_json, "metadata", &m, err);
            else
                m = json_object();
            if (rc == 0)
                rc = put(o, "metadata", m, err);
        }
    }
    json_t *t = json_object();
    if (rc == 0)
        rc = put(root, "timings", t, err);
    else
        json_decref(t);
    const imago_search_timings *tm = &r->timings;
    const struct {
        const char *k;
        double v;
    } ts[] = {{"decode_ms", tm->decode_ms},   {"queue_ms", tm->queue_ms},
              {"forward_ms", tm->forward_ms}, {"search_ms", tm->search_ms},
              {"qe_ms", tm->qe_ms},           {"metadata_ms", tm->metadata_ms},
              {"total_ms", tm->total_ms}};
    for (size_t i = 0; rc == 0 && i < sizeof ts / sizeof ts[0]; i++)
        rc = put(t, ts[i].k, real_or_null(ts[i].v), err);
    if (rc == 0)
        rc = put(root, "index_seq", json_integer((json_int_t)r->index_seq), err);
    return finish(root, rc, out, err);
}

int imago_extract_response_to_json(const float *descriptor, int dim, char **out, imago_error *err)
{
    if (dim <= 0 || !descriptor)
        return imago_error_set(err, IMAGO_ERR_INVALID, "descriptor: empty");
    /* printed by hand: %.9g round-trips every float, jansson would print doubles */
    size_t cap = (size_t)dim * 18 + 64;
    char *s = malloc(cap);
    if (!s)
        return imago_error_set(err, IMAGO_ERR_NOMEM, "descriptor: out of memory");
    size_t o = (size_t)snprintf(s, cap, "{\"dim\":%d,\"descriptor\":[", dim);
    for (int i = 0; i < dim; i++) {
        if (!isfinite(descriptor[i])) {
            free(s);
            return imago_error_set(err, IMAGO_ERR_INVALID, "descriptor: element %d is not finite",
                                   i);
        }
        o += (size_t)snprintf(s + o, cap - o, "%s%.9g", i ? "," : "", (double)descriptor[i]);
    }
    snprintf(s + o, cap - o, "]}");
    *out = s;
    return 0;
}

int imago_add_image_response_to_json(int64_t id, const char *external_id, int replaced, char **out,
                                     imago_error *err)
{
    json_t *root = json_object();
    int rc = put(root, "id", json_integer(id), err);
    if (rc == 0)
        rc = put(root, "external_id", proto_json_str_or_null(external_id), err);
    if (rc == 0)
        rc = put(root, "replaced", json_boolean(replaced), err);
    return finish(root, rc, out, err);
}

int imago_image_record_to_json(const imago_image_record *r, char **out, imago_error *err)
{
    json_t *root = json_object();
    int rc = put(root, "id", json_integer(r->id), err);
    if (rc == 0)
        rc = put(root, "external_id", proto_json_str_or_null(r->external_id), err);
    if (rc == 0)
        rc = put(root, "uri", proto_json_str_or_null(r->uri), err);
    if (rc == 0)
        rc = put(root, "sha256", proto_json_str_or_null(r->sha256), err);
    if (rc == 0)
        rc = put(root, "width", json_integer(r->width), err);
    if (rc == 0)
        rc = put(root, "height", json_integer(r->height), err);
    json_t *m = NULL;
    if (rc == 0)
        rc = r->metadata_json ? embed_object(r->metadata_json, "metadata", &m, err)
                              : (m = json_object(), 0);
    if (rc == 0)
        rc = put(root, "metadata", m, err);
    if (rc == 0)
        rc = put(root, "created_at", json_integer(r->created_at), err);
    return finish(root, rc, out, err);
}

static const char *const job_states[] = {"queued", "running", "done", "failed", "cancelled"};

const char *imago_api_job_state_name(imago_api_job_state s)
{
    return ((int)s >= 0 && (int)s < 5) ? job_states[s] : "unknown";
}

int imago_api_job_state_parse(const char *s, imago_api_job_state *out, imago_error *err)
{
    for (int i = 0; s && i < 5; i++) {
        if (strcmp(s, job_states[i]) == 0) {
            *out = (imago_api_job_state)i;
            return 0;
        }
    }
    return imago_error_set(err, IMAGO_ERR_INVALID, "state: unknown job state \"%.32s\"",
                           s ? s : "(null)");
}

int imago_job_status_to_json(const imago_job_status *s, char **out, imago_error *err)
{
    json_t *root = json_object();
    int rc = put(root, "id", json_integer(s->id), err);
    if (rc == 0)
        rc = put(root, "kind", proto_json_str_or_null(s->kind), err);
    if (rc == 0)
        rc = put(root, "state", json_string(imago_api_job_state_name(s->state)), err);
    if (rc == 0)
        rc = put(root, "total", s->total < 0 ? json_null() : json_integer(s->total), err);
    if (rc == 0)
        rc = put(root, "done", json_integer(s->done), err);
    if (rc == 0)
        rc = put(root, "failed", json_integer(s->failed), err);
    if (rc == 0)
        rc = put(root, "rate", real_or_null(s->rate), err);
    if (rc == 0)
        rc = put(root, "eta_s", s->eta_s < 0 ? json_null() : real_or_null(s->eta_s), err);
    if (rc == 0)
        rc = put(root, "created_at", json_integer(s->created_at), err);
    if (rc == 0)
        rc = put(root, "updated_at", json_integer(s->updated_at), err);
    if (rc == 0)
        rc = put(root, "error", proto_json_str_or_null(s->error), err);
    json_t *arr = json_array();
    if (rc == 0)
        rc = put(root, "errors", arr, err);
    else
        json_decref(arr);
    for (int i = 0; rc == 0 && i < s->n_errors; i++) {
        const imago_job_item_error *e = &s->errors[i];
        json_t *o = json_object();
        if (json_array_append_new(arr, o) != 0) {
            rc = imago_error_set(err, IMAGO_ERR_NOMEM, "errors: out of memory");
            break;
        }
        rc = put(o, "path", proto_json_str_or_null(e->path), err);
        if (rc == 0)
            rc = put(o, "code", json_string(imago_api_error_name(e->code)), err);
        if (rc == 0)
            rc = put(o, "message", proto_json_str_or_null(e->message), err);
    }
    return finish(root, rc, out, err);
}

int imago_job_created_to_json(int64_t job_id, char **out, imago_error *err)
{
    json_t *root = json_object();
    int rc = put(root, "job_id", json_integer(job_id), err);
    return finish(root, rc, out, err);
}

int imago_info_to_json(const imago_info *info, char **out, imago_error *err)
{
    json_t *root = json_object();
    json_t *model = json_object(), *backend = json_object(), *index = json_object();
    int rc = put(root, "version", proto_json_str_or_null(info->version), err);
    if (rc == 0)
        rc = put(root, "ready", json_boolean(info->ready), err);
    if (rc == 0) {
        rc = put(root, "model", model, err);
        model = NULL;
    }
    if (rc == 0) {
        rc = put(root, "backend", backend, err);
        backend = NULL;
    }
    if (rc == 0) {
        rc = put(root, "index", index, err);
        index = NULL;
    }
    json_decref(model);
    json_decref(backend);
    json_decref(index);
    if (rc)
        return finish(root, rc, out, err);
    model = json_object_get(root, "model");
    backend = json_object_get(root, "backend");
    index = json_object_get(root, "index");
    if (!info->model_name) /* engine not loaded (yet): no model to describe */
        rc = put(root, "model", json_null(), err);
    else
        rc = put(model, "name", proto_json_str_or_null(info->model_name), err);
    if (!info->model_name)
        goto backend;
    if (rc == 0)
        rc = put(model, "backbone", proto_json_str_or_null(info->backbone), err);
    if (rc == 0)
        rc = put(model, "head", proto_json_str_or_null(info->head), err);
    if (rc == 0)
        rc = put(model, "dim", info->dim > 0 ? json_integer(info->dim) : json_null(), err);
    if (rc == 0)
        rc = put(model, "fingerprint", proto_json_str_or_null(info->fingerprint), err);
    if (rc == 0)
        rc = put(model, "demo", json_boolean(!info->trained), err);
    if (rc == 0 && !info->trained)
        rc = put(model, "warning",
                 json_string("demo model: random weights from a fixed seed, not a trained "
                             "retrieval model; it finds near-duplicates only"),
                 err);
backend:
    if (rc == 0)
        rc = put(backend, "name", proto_json_str_or_null(info->backend), err);
    if (rc == 0)
        rc = put(backend, "precision", proto_json_str_or_null(info->precision), err);
    if (rc == 0)
        rc = put(backend, "device", proto_json_str_or_null(info->device), err);
    if (rc == 0 && info->backend_note && info->backend_note[0])
        rc = put(backend, "note", json_string(info->backend_note), err);
    if (rc == 0)
        rc = put(index, "type", proto_json_str_or_null(info->index_type), err);
    if (rc == 0)
        rc = put(index, "size", info->index_size < 0 ? json_null() : json_integer(info->index_size),
                 err);
    if (rc == 0)
        rc = put(index, "seq", json_integer((json_int_t)info->index_seq), err);
    return finish(root, rc, out, err);
}

int imago_job_list_to_json(const imago_job_status *jobs, int n, char **out, imago_error *err)
{
    json_t *root = json_object();
    json_t *arr = json_array();
    int rc = put(root, "jobs", arr, err);
    for (int i = 0; rc == 0 && i < n; i++) {
        char *one = NULL;
        rc = imago_job_status_to_json(&jobs[i], &one, err);
        if (rc != 0)
            break;
        json_t *j = json_loads(one, 0, NULL);
        free(one);
        if (!j || json_array_append_new(arr, j) != 0)
            rc = imago_error_set(err, IMAGO_ERR_NOMEM, "jobs: out of memory");
    }
    return finish(root, rc, out, err);
}

static int term_match(const imago_filter_term *t, const json_t *v)
{
    if (!v)
        return 0;
    switch (t->type) {
    case IMAGO_FILTER_STRING: return json_is_string(v) && strcmp(json_string_value(v), t->str) == 0;
    case IMAGO_FILTER_NUMBER: return json_is_number(v) && json_number_value(v) == t->num;
    case IMAGO_FILTER_BOOL:
        return json_is_boolean(v) && (json_is_true(v) ? 1 : 0) == (t->boolean ? 1 : 0);
    case IMAGO_FILTER_NULL: return json_is_null(v);
    }
    return 0;
}

int imago_filter_match(const imago_filter_term *terms, int n, const char *metadata_json)
{
    if (n <= 0)
        return 1;
    if (!metadata_json)
        return 0;
    json_t *j = json_loads(metadata_json, 0, NULL);
    int match = j && json_is_object(j);
    for (int i = 0; match && i < n; i++)
        match = term_match(&terms[i], json_object_get(j, terms[i].key));
    json_decref(j);
    return match;
}

int imago_manifest_line_parse(const char *line, size_t len, char **path, char **external_id,
                              char **metadata_json, imago_error *err)
{
    json_t *j = NULL;
    int rc = proto_json_load(line, len, "manifest line", &j, err);
    if (rc != 0)
        return rc;
    char *p = NULL, *e = NULL, *m = NULL;
    const char *key;
    json_t *v;
    if (!json_is_object(j)) {
        rc = imago_error_set(err, IMAGO_ERR_INVALID, "manifest line: not a JSON object");
        goto out;
    }
    json_object_foreach(j, key, v)
    {
        if (strcmp(key, "path") != 0 && strcmp(key, "external_id") != 0 &&
            strcmp(key, "metadata") != 0) {
            rc = imago_error_set(err, IMAGO_ERR_INVALID, "%.64s: unknown field", key);
            goto out;
        }
    }
    v = json_object_get(j, "path");
    if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > 4096) {
        rc = imago_error_set(err, IMAGO_ERR_INVALID, "path: required, a non-empty string");
        goto out;
    }
    for (const char *c = json_string_value(v); *c; c++) {
        if ((unsigned char)*c < 0x20) {
            rc = imago_error_set(err, IMAGO_ERR_INVALID, "path: control characters");
            goto out;
        }
    }
    p = imago_xstrdup(json_string_value(v));
    v = json_object_get(j, "external_id");
    if (v && !json_is_null(v)) {
        if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > 256) {
            rc = imago_error_set(err, IMAGO_ERR_INVALID, "external_id: a string of 1..256 bytes");
            goto out;
        }
        e = imago_xstrdup(json_string_value(v));
    }
    v = json_object_get(j, "metadata");
    if (v && !json_is_null(v)) {
        if (!json_is_object(v)) {
            rc = imago_error_set(err, IMAGO_ERR_INVALID, "metadata: not a JSON object");
            goto out;
        }
        rc = proto_dump(v, &m, err);
        if (rc == 0 && strlen(m) > 65536)
            rc = imago_error_set(err, IMAGO_ERR_TOO_LARGE, "metadata: over 64 KiB");
        if (rc != 0)
            goto out;
    }
    *path = p;
    *external_id = e;
    *metadata_json = m;
    p = e = m = NULL;
out:
    free(p);
    free(e);
    free(m);
    json_decref(j);
    return rc;
}
