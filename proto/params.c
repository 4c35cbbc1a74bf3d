/* Request parameters: the typed, validated parameter structs of the search /
 * extract / add-image endpoints, set one decoded name/value pair at a time
 * (the server takes query arguments as libmicrohttpd decodes them, and
 * multipart fields). Every validation error names the parameter first ("k: ..."). */
#include "proto_int.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- value helpers ------------------------------------------------------ */

/* A short printable rendering of a bad value for messages. */
static void show(char *dst, size_t cap, const char *v, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 4 < cap; i++) {
        unsigned char c = (unsigned char)v[i];
        dst[o++] = (c >= 0x20 && c < 0x7F && c != '"') ? (char)c : '?';
    }
    if (n > 0 && o + 4 >= cap) {
        memcpy(dst + o, "...", 3);
        o += 3;
    }
    dst[o] = '\0';
}

static int bad(imago_error *err, int code, const char *name, const char *v, size_t n,
               const char *what)
{
    char s[48];
    show(s, sizeof s, v, n);
    return imago_error_set(err, code, "%s: %s (got \"%s\")", name, what, s);
}

static int parse_int(const char *name, const char *v, size_t n, long lo, long hi, int *out,
                     imago_error *err)
{
    char what[64];
    snprintf(what, sizeof what, "must be an integer in %ld..%ld", lo, hi);
    if (n == 0 || n > 12)
        return bad(err, IMAGO_ERR_INVALID, name, v, n, what);
    long x = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return bad(err, IMAGO_ERR_INVALID, name, v, n, what);
        x = x * 10 + (v[i] - '0');
    }
    if (x < lo || x > hi)
        return bad(err, IMAGO_ERR_INVALID, name, v, n, what);
    *out = (int)x;
    return 0;
}

/* A plain decimal number (no hex, inf, nan), parsed with strtod. */
static int parse_num(const char *v, size_t n, double *out)
{
    if (n == 0 || n > 64)
        return -1;
    char buf[65];
    for (size_t i = 0; i < n; i++) {
        char c = v[i];
        if (!((c >= '0' && c <= '9') || c == '.' || c == '-' || c == '+' || c == 'e' || c == 'E'))
            return -1;
        buf[i] = c;
    }
    buf[n] = '\0';
    char *end;
    errno = 0;
    double d = strtod(buf, &end);
    if (end != buf + n || errno == ERANGE || !isfinite(d))
        return -1;
    *out = d;
    return 0;
}

static int parse_bool(const char *name, const char *v, size_t n, int *out, imago_error *err)
{
    static const char *yes[] = {"true", "1", "yes", "on"};
    static const char *no[] = {"false", "0", "no", "off"};
    for (int i = 0; i < 4; i++) {
        if (proto_ieq(yes[i], v, n)) {
            *out = 1;
            return 0;
        }
        if (proto_ieq(no[i], v, n)) {
            *out = 0;
            return 0;
        }
    }
    return bad(err, IMAGO_ERR_INVALID, name, v, n, "must be true or false");
}

static int parse_bbox(const char *v, size_t n, double box[4], imago_error *err)
{
    const char *what = "must be x1,y1,x2,y2 (four numbers >= 0 with x1 < x2 and y1 < y2)";
    size_t i = 0;
    for (int k = 0; k < 4; k++) {
        while (i < n && v[i] == ' ')
            i++;
        size_t s = i;
        while (i < n && v[i] != ',' && v[i] != ' ')
            i++;
        if (parse_num(v + s, i - s, &box[k]) != 0 || box[k] < 0)
            return bad(err, IMAGO_ERR_INVALID, "bbox", v, n, what);
        while (i < n && v[i] == ' ')
            i++;
        if (k < 3) {
            if (i >= n || v[i] != ',')
                return bad(err, IMAGO_ERR_INVALID, "bbox", v, n, what);
            i++;
        }
    }
    if (i != n || !(box[0] < box[2]) || !(box[1] < box[3]))
        return bad(err, IMAGO_ERR_INVALID, "bbox", v, n, what);
    return 0;
}

static int cmp_key(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void filter_free(imago_search_params *p)
{
    for (int i = 0; i < p->n_filter; i++) {
        free(p->filter[i].key);
        free(p->filter[i].str);
    }
    free(p->filter);
    free(p->filter_json);
    p->filter = NULL;
    p->filter_json = NULL;
    p->n_filter = 0;
}

static int parse_filter(imago_search_params *p, const char *v, size_t n, imago_error *err)
{
    json_t *j = NULL;
    int rc = proto_json_load(v, n, "filter", &j, err);
    if (rc)
        return rc;
    if (!json_is_object(j)) {
        json_decref(j);
        return imago_error_set(err, IMAGO_ERR_INVALID,
                               "filter: must be a JSON object of metadata values");
    }
    size_t cnt = json_object_size(j);
    if (cnt > IMAGO_FILTER_TERMS_MAX) {
        json_decref(j);
        return imago_error_set(err, IMAGO_ERR_INVALID, "filter: more than %d keys",
                               IMAGO_FILTER_TERMS_MAX);
    }
    const char **keys = imago_xcalloc(cnt ? cnt : 1, sizeof *keys);
    size_t i = 0;
    const char *key;
    json_t *val;
    json_object_foreach(j, key, val) keys[i++] = key;
    qsort(keys, cnt, sizeof *keys, cmp_key);
    imago_filter_term *terms = imago_xcalloc(cnt ? cnt : 1, sizeof *terms);
    for (i = 0; i < cnt; i++) {
        val = json_object_get(j, keys[i]);
        imago_filter_term *t = &terms[i];
        size_t kl = strlen(keys[i]);
        if (kl == 0 || kl > 256 || memchr(keys[i], 0, kl)) {
            rc = imago_error_set(err, IMAGO_ERR_INVALID, "filter: keys must have 1..256 bytes");
            break;
        }
        if (json_is_string(val)) {
            t->type = IMAGO_FILTER_STRING;
            t->str = imago_xstrdup(json_string_value(val));
        } else if (json_is_number(val)) {
            t->type = IMAGO_FILTER_NUMBER;
            t->num = json_number_value(val);
        } else if (json_is_boolean(val)) {
            t->type = IMAGO_FILTER_BOOL;
            t->boolean = json_is_true(val);
        } else if (json_is_null(val)) {
            t->type = IMAGO_FILTER_NULL;
        } else {
            rc = imago_error_set(err, IMAGO_ERR_INVALID,
                                 "filter: value of \"%.64s\" must be a string, number, "
                                 "boolean or null",
                                 keys[i]);
            break;
        }
        t->key = imago_xstrdup(keys[i]);
    }
    char *text = NULL;
    if (rc == 0) {
        text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(17));
        if (!text)
            rc = imago_error_set(err, IMAGO_ERR_NOMEM, "filter: out of memory");
    }
    free(keys);
    json_decref(j);
    if (rc) {
        for (i = 0; i < cnt; i++) {
            free(terms[i].key);
            free(terms[i].str);
        }
        free(terms);
        return rc;
    }
    p->filter = terms;
    p->n_filter = (int)cnt;
    p->filter_json = text;
    return 0;
}

/* ---- search / extract --------------------------------------------------- */

imago_search_params imago_search_params_default(void)
{
    imago_search_params p;
    memset(&p, 0, sizeof p);
    p.k = 10;
    p.qe = -1;
    p.with_metadata = 1;
    return p;
}

void imago_search_params_clear(imago_search_params *p)
{
    if (!p)
        return;
    filter_free(p);
    *p = imago_search_params_default();
}

/* Sets *which to the index of name in names[n]; an error when it is not
 * there or already set (its bit in seen). */
static int param_lookup(const char *const *names, int n, uint32_t seen, const char *name,
                        int *which, imago_error *err)
{
    for (int i = 0; i < n; i++) {
        if (strcmp(name, names[i]) == 0) {
            if (seen & (1u << i))
                return imago_error_set(err, IMAGO_ERR_INVALID, "%s: given more than once", name);
            *which = i;
            return 0;
        }
    }
    char s[48];
    show(s, sizeof s, name, strlen(name));
    return imago_error_set(err, IMAGO_ERR_INVALID, "%s: unknown parameter", s);
}

enum { SP_K, SP_BBOX, SP_QE, SP_QE_K, SP_QE_ALPHA, SP_WITH_METADATA, SP_FILTER, SP_COUNT_ };
static const char *const search_names[SP_COUNT_] = {"k",        "bbox",          "qe",    "qe_k",
                                                    "qe_alpha", "with_metadata", "filter"};

int imago_search_params_set(imago_search_params *p, const char *name, const char *value,
                            size_t value_len, imago_error *err)
{
    int which = -1;
    if (param_lookup(search_names, SP_COUNT_, p->seen_, name, &which, err) != 0)
        return IMAGO_ERR_INVALID;
    if (memchr(value, 0, value_len))
        return imago_error_set(err, IMAGO_ERR_INVALID, "%s: contains a NUL byte", name);
    int rc = 0;
    switch (which) {
    case SP_K: rc = parse_int(name, value, value_len, 1, IMAGO_SEARCH_K_MAX, &p->k, err); break;
    case SP_BBOX:
        rc = parse_bbox(value, value_len, p->bbox, err);
        if (rc == 0)
            p->has_bbox = 1;
        break;
    case SP_QE: rc = parse_bool(name, value, value_len, &p->qe, err); break;
    case SP_QE_K: rc = parse_int(name, value, value_len, 1, IMAGO_QE_K_MAX, &p->qe_k, err); break;
    case SP_QE_ALPHA: {
        double a;
        if (parse_num(value, value_len, &a) != 0 || a < 0 || a > 10)
            rc = bad(err, IMAGO_ERR_INVALID, name, value, value_len, "must be a number in 0..10");
        else {
            p->qe_alpha = a;
            p->has_qe_alpha = 1;
        }
        break;
    }
    case SP_WITH_METADATA: rc = parse_bool(name, value, value_len, &p->with_metadata, err); break;
    case SP_FILTER: rc = parse_filter(p, value, value_len, err); break;
    default: break;
    }
    if (rc == 0)
        p->seen_ |= 1u << which;
    return rc;
}

/* ---- add image ---------------------------------------------------------- */

#define EXTERNAL_ID_MAX 256
#define URI_MAX 2048
#define METADATA_MAX 65536

imago_add_image_params imago_add_image_params_default(void)
{
    imago_add_image_params p;
    memset(&p, 0, sizeof p);
    return p;
}

void imago_add_image_params_clear(imago_add_image_params *p)
{
    if (!p)
        return;
    free(p->external_id);
    free(p->uri);
    free(p->metadata_json);
    *p = imago_add_image_params_default();
}

/* UTF-8 text without control characters, 1..max bytes. */
static int text_field(const char *name, const char *v, size_t n, size_t max, char **out,
                      imago_error *err)
{
    if (n == 0 || n > max)
        return imago_error_set(err, IMAGO_ERR_INVALID, "%s: must have 1..%zu bytes", name, max);
    if (!proto_utf8_valid(v, n))
        return imago_error_set(err, IMAGO_ERR_INVALID, "%s: must be valid UTF-8", name);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c < 0x20 || c == 0x7F)
            return imago_error_set(err, IMAGO_ERR_INVALID, "%s: control characters are not allowed",
                                   name);
    }
    char *s = imago_xmalloc(n + 1);
    memcpy(s, v, n);
    s[n] = '\0';
    *out = s;
    return 0;
}

enum { AP_EXTERNAL_ID, AP_URI, AP_METADATA, AP_COUNT_ };
static const char *const add_names[AP_COUNT_] = {"external_id", "uri", "metadata"};

int imago_add_image_params_set(imago_add_image_params *p, const char *name, const char *value,
                               size_t value_len, imago_error *err)
{
    int which = -1;
    if (param_lookup(add_names, AP_COUNT_, p->seen_, name, &which, err) != 0)
        return IMAGO_ERR_INVALID;
    int rc = 0;
    if (which == AP_EXTERNAL_ID) {
        rc = text_field(name, value, value_len, EXTERNAL_ID_MAX, &p->external_id, err);
    } else if (which == AP_URI) {
        rc = text_field(name, value, value_len, URI_MAX, &p->uri, err);
    } else {
        if (value_len > METADATA_MAX)
            return imago_error_set(err, IMAGO_ERR_TOO_LARGE, "metadata: over %d bytes",
                                   METADATA_MAX);
        json_t *j;
        rc = proto_json_load(value, value_len, "metadata", &j, err);
        if (rc)
            return rc;
        if (!json_is_object(j)) {
            json_decref(j);
            return imago_error_set(err, IMAGO_ERR_INVALID, "metadata: must be a JSON object");
        }
        char *text = NULL;
        rc = proto_dump(j, &text, err);
        json_decref(j);
        if (rc == 0)
            p->metadata_json = text;
    }
    if (rc == 0)
        p->seen_ |= 1u << which;
    return rc;
}

int imago_proto_parse_id(const char *s, int64_t *out, imago_error *err)
{
    size_t n = s ? strlen(s) : 0;
    int64_t x = 0;
    if (n == 0 || n > 16 || s[0] == '0')
        goto fail;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            goto fail;
        x = x * 10 + (s[i] - '0');
    }
    if (x > ((int64_t)1 << 53) - 1)
        goto fail;
    *out = x;
    return 0;
fail:
    return bad(err, IMAGO_ERR_INVALID, "id", s ? s : "", n, "must be a positive integer");
}
