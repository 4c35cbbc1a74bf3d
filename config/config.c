/* Config loading: parses values from text (env, flags, defaults) and JSON (the
 * config file), applies the sources in order, records where every value came
 * from, and collects every error instead of stopping at the first. */
#include "config_int.h"

#include "imago_build.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* A parsed value before it is committed to its field (same layout as the
 * field for each type, so check() can read it). */
typedef union value {
    int b;
    int i;
    int64_t l;
    double d;
    char *s;
    const char *e;
    imago_config_strlist sl;
    imago_config_numlist nl;
} value;

/* ---- table access ------------------------------------------------------ */

int imago_config_option_count(void)
{
    return imago_config_table_len;
}

const imago_config_option *imago_config_option_at(int i)
{
    if (i < 0 || i >= imago_config_table_len)
        return NULL;
    return &imago_config_table[i];
}

/* Compares an option name with a user spelling in which '-' stands for '_'. */
static int name_eq(const char *opt_name, const char *s, size_t len)
{
    size_t i = 0;
    for (; i < len && opt_name[i]; i++) {
        char c = s[i] == '-' ? '_' : s[i];
        if (c != opt_name[i])
            return 0;
    }
    return i == len && opt_name[i] == '\0';
}

static int find_index_n(const char *name, size_t len)
{
    for (int i = 0; i < imago_config_table_len; i++)
        if (name_eq(imago_config_table[i].name, name, len))
            return i;
    return -1;
}

const imago_config_option *imago_config_find(const char *name)
{
    if (!name)
        return NULL;
    int i = find_index_n(name, strlen(name));
    return i < 0 ? NULL : &imago_config_table[i];
}

void imago_config_env_name(const imago_config_option *opt, char *buf, size_t cap)
{
    size_t n = 0;
    const char *prefix = "IMAGO_";
    for (const char *p = prefix; *p && n + 1 < cap; p++)
        buf[n++] = *p;
    for (const char *p = opt->name; *p && n + 1 < cap; p++)
        buf[n++] = *p == '.' ? '_' : (char)toupper((unsigned char)*p);
    if (cap)
        buf[n < cap ? n : cap - 1] = '\0';
}

void imago_config_flag_name(const imago_config_option *opt, char *buf, size_t cap)
{
    size_t n = 0;
    for (int k = 0; k < 2 && n + 1 < cap; k++)
        buf[n++] = '-';
    for (const char *p = opt->name; *p && n + 1 < cap; p++)
        buf[n++] = *p == '_' ? '-' : *p;
    if (cap)
        buf[n < cap ? n : cap - 1] = '\0';
}

const char *imago_config_type_name(imago_config_type type)
{
    switch (type) {
    case IMAGO_CONFIG_BOOL: return "boolean";
    case IMAGO_CONFIG_INT: return "integer";
    case IMAGO_CONFIG_INT64: return "integer";
    case IMAGO_CONFIG_DOUBLE: return "number";
    case IMAGO_CONFIG_STRING: return "string";
    case IMAGO_CONFIG_ENUM: return "string";
    case IMAGO_CONFIG_STRLIST: return "list of strings";
    case IMAGO_CONFIG_NUMLIST: return "list of numbers";
    }
    return "?";
}

const char *imago_config_source_name(imago_config_source src)
{
    switch (src) {
    case IMAGO_CONFIG_SRC_DEFAULT: return "default";
    case IMAGO_CONFIG_SRC_FILE: return "file";
    case IMAGO_CONFIG_SRC_ENV: return "env";
    case IMAGO_CONFIG_SRC_FLAG: return "flag";
    case IMAGO_CONFIG_SRC_API: return "api";
    }
    return "?";
}

/* ---- errors ------------------------------------------------------------ */

static void add_error(imago_config_full *full, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static void add_error(imago_config_full *full, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (full->n_errors == full->cap_errors) {
        full->cap_errors = full->cap_errors ? 2 * full->cap_errors : 8;
        full->errors = imago_xrealloc(full->errors, sizeof(char *) * (size_t)full->cap_errors);
    }
    full->errors[full->n_errors++] = imago_xstrdup(buf);
}

static void clear_errors(imago_config_full *full)
{
    for (int i = 0; i < full->n_errors; i++)
        free(full->errors[i]);
    full->n_errors = 0;
}

int imago_config_error_count(const imago_config *cfg)
{
    return cfg ? imago_config_full_of_const(cfg)->n_errors : 0;
}

const char *imago_config_error_at(const imago_config *cfg, int i)
{
    const imago_config_full *full = imago_config_full_of_const(cfg);
    if (!cfg || i < 0 || i >= full->n_errors)
        return NULL;
    return full->errors[i];
}

/* Fills err from the error list: the count and as many messages as fit. */
static int report_errors(imago_config_full *full, imago_error *err)
{
    if (full->n_errors == 0)
        return 0;
    char buf[IMAGO_ERROR_MSG_MAX];
    if (full->n_errors == 1) {
        snprintf(buf, sizeof buf, "%s", full->errors[0]);
    } else {
        size_t n = (size_t)snprintf(buf, sizeof buf, "%d configuration errors: %s", full->n_errors,
                                    full->errors[0]);
        for (int i = 1; i < full->n_errors && n < sizeof buf; i++)
            n += (size_t)snprintf(buf + n, sizeof buf - n, "; %s", full->errors[i]);
    }
    return imago_error_set(err, IMAGO_ERR_INVALID, "%s", buf);
}

/* ---- "did you mean" ---------------------------------------------------- */

static int edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64)
        return 1000;
    int prev[65], cur[65];
    for (size_t j = 0; j <= lb; j++)
        prev[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int sub = prev[j - 1] +
                      (tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]));
            int del = prev[j] + 1, ins = cur[j - 1] + 1;
            cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
        memcpy(prev, cur, sizeof(int) * (lb + 1));
    }
    return prev[lb];
}

/* Closest candidate within a distance that still reads as a typo, or NULL. */
typedef struct suggest {
    const char *best;
    int dist;
    int limit;
    const char *word;
} suggest;

static void suggest_init(suggest *s, const char *word)
{
    s->best = NULL;
    s->dist = 1000;
    s->word = word;
    int len = (int)strlen(word);
    s->limit = len / 3 > 2 ? len / 3 : 2;
}

static void suggest_try(suggest *s, const char *candidate)
{
    int d = edit_distance(s->word, candidate);
    if (d <= s->limit && d < s->dist) {
        s->dist = d;
        s->best = candidate;
    }
}

/* Writes " (did you mean X?)" or "" into buf. */
static const char *suggest_text(const suggest *s, const char *prefix, char *buf, size_t cap)
{
    if (!s->best)
        buf[0] = '\0';
    else
        snprintf(buf, cap, " (did you mean %s%s?)", prefix, s->best);
    return buf;
}

/* ---- values ------------------------------------------------------------ */

static void value_free(const imago_config_option *opt, value *v)
{
    switch (opt->type) {
    case IMAGO_CONFIG_STRING:
        free(v->s);
        v->s = NULL;
        break;
    case IMAGO_CONFIG_STRLIST:
        for (int i = 0; i < v->sl.n; i++)
            free(v->sl.items[i]);
        free(v->sl.items);
        v->sl.items = NULL;
        v->sl.n = 0;
        break;
    case IMAGO_CONFIG_NUMLIST:
        free(v->nl.items);
        v->nl.items = NULL;
        v->nl.n = 0;
        break;
    default: break;
    }
}

static size_t field_size(imago_config_type type)
{
    switch (type) {
    case IMAGO_CONFIG_BOOL:
    case IMAGO_CONFIG_INT: return sizeof(int);
    case IMAGO_CONFIG_INT64: return sizeof(int64_t);
    case IMAGO_CONFIG_DOUBLE: return sizeof(double);
    case IMAGO_CONFIG_STRING: return sizeof(char *);
    case IMAGO_CONFIG_ENUM: return sizeof(const char *);
    case IMAGO_CONFIG_STRLIST: return sizeof(imago_config_strlist);
    case IMAGO_CONFIG_NUMLIST: return sizeof(imago_config_numlist);
    }
    return 0;
}

/* Frees what the field holds and moves v into it. */
static void value_commit(imago_config *cfg, const imago_config_option *opt, value *v)
{
    value old;
    void *field = imago_config_field(cfg, opt);
    memcpy(&old, field, field_size(opt->type));
    value_free(opt, &old);
    memcpy(field, v, field_size(opt->type));
}

/* What the option accepts, for error messages and help. */
static const char *allowed_text(const imago_config_option *opt, char *buf, size_t cap)
{
    size_t n = 0;
    switch (opt->type) {
    case IMAGO_CONFIG_BOOL: snprintf(buf, cap, "true or false"); break;
    case IMAGO_CONFIG_INT:
        snprintf(buf, cap, "an integer in [%.0f, %.0f]", opt->min, opt->max);
        break;
    case IMAGO_CONFIG_INT64:
        snprintf(buf, cap, "an integer in [%.0f, %.0f]%s", opt->min, opt->max,
                 (opt->flags & IMAGO_CONFIG_F_BYTES)
                     ? " (bytes; suffixes K, KiB, M, MiB, G, GiB allowed)"
                     : "");
        break;
    case IMAGO_CONFIG_DOUBLE: snprintf(buf, cap, "a number in [%g, %g]", opt->min, opt->max); break;
    case IMAGO_CONFIG_STRING: snprintf(buf, cap, "a string"); break;
    case IMAGO_CONFIG_ENUM:
        n = (size_t)snprintf(buf, cap, "one of ");
        for (int i = 0; opt->choices[i] && n < cap; i++)
            n += (size_t)snprintf(buf + n, cap - n, "%s%s", i ? ", " : "", opt->choices[i]);
        break;
    case IMAGO_CONFIG_STRLIST:
        if (opt->max_items)
            snprintf(buf, cap, "a list of at most %d strings (\"a,b\" or [\"a\",\"b\"])",
                     opt->max_items);
        else
            snprintf(buf, cap, "a list of strings (\"a,b\" or [\"a\",\"b\"])");
        break;
    case IMAGO_CONFIG_NUMLIST:
        snprintf(buf, cap, "a list of 1 to %d numbers in [%g, %g] (\"1,0.5\" or [1,0.5])",
                 opt->max_items, opt->min, opt->max);
        break;
    }
    return buf;
}

#define WHY_CAP 160

static void set_why(char *why, const char *text)
{
    snprintf(why, WHY_CAP, "%s", text);
}

static int parse_bool_text(const char *s, int *out)
{
    static const char *const yes[] = {"true", "1", "yes", "on"};
    static const char *const no[] = {"false", "0", "no", "off"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    return -1;
}

/* Copies s without surrounding white space into a new string. */
static char *trimmed_dup(const char *s, size_t len)
{
    while (len && isspace((unsigned char)*s)) {
        s++;
        len--;
    }
    while (len && isspace((unsigned char)s[len - 1]))
        len--;
    char *r = imago_xmalloc(len + 1);
    memcpy(r, s, len);
    r[len] = '\0';
    return r;
}

/* Parses a whole decimal integer (with an optional byte suffix when bytes). */
static int parse_integer_text(const char *s, int bytes, long long *out, char *why)
{
    char *t = trimmed_dup(s, strlen(s));
    int rc = -1;
    set_why(why, "not an integer");
    if (t[0] == '\0')
        goto done;
    errno = 0;
    char *end;
    long long v = strtoll(t, &end, 10);
    if (end == t)
        goto done;
    if (errno == ERANGE) {
        set_why(why, "out of range");
        goto done;
    }
    while (isspace((unsigned char)*end))
        end++;
    if (*end && bytes) {
        static const struct {
            const char *suffix;
            long long mult;
        } units[] = {{"k", 1LL << 10},   {"kib", 1LL << 10}, {"m", 1LL << 20},
                     {"mib", 1LL << 20}, {"g", 1LL << 30},   {"gib", 1LL << 30}};
        int found = 0;
        for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
            if (strcasecmp(end, units[i].suffix) == 0) {
                if (v > LLONG_MAX / units[i].mult || v < LLONG_MIN / units[i].mult) {
                    set_why(why, "out of range");
                    goto done;
                }
                v *= units[i].mult;
                found = 1;
                break;
            }
        }
        if (!found) {
            set_why(why, "unknown size suffix");
            goto done;
        }
    } else if (*end) {
        goto done;
    }
    *out = v;
    rc = 0;
done:
    free(t);
    return rc;
}

static int parse_double_text(const char *s, double *out)
{
    char *t = trimmed_dup(s, strlen(s));
    char *end;
    errno = 0;
    double v = strtod(t, &end);
    int ok = t[0] != '\0' && *end == '\0' && errno == 0 && isfinite(v);
    free(t);
    if (!ok)
        return -1;
    *out = v;
    return 0;
}

static int in_range(const imago_config_option *opt, double v)
{
    return v >= opt->min && v <= opt->max;
}

/* 0 when x is in the option's range; else -1 with *why set. */
static int check_range(const imago_config_option *opt, double x, char *why)
{
    if (in_range(opt, x))
        return 0;
    set_why(why, "out of range");
    return -1;
}

/* Stores an integer option's value ll in v (v->i or v->l by type) when it is
 * in the option's range; else -1 with *why set. */
static int store_integer(const imago_config_option *opt, long long ll, value *v, char *why)
{
    if (check_range(opt, (double)ll, why) != 0)
        return -1;
    if (opt->type == IMAGO_CONFIG_INT)
        v->i = (int)ll;
    else
        v->l = (int64_t)ll;
    return 0;
}

static int parse_json_value(const imago_config_option *opt, json_t *j, value *v, char *why);

/* Parses text (env, flag, default) into v. On failure *why says why. */
static int parse_text_value(const imago_config_option *opt, const char *text, value *v, char *why)
{
    memset(v, 0, sizeof *v);
    long long ll;
    switch (opt->type) {
    case IMAGO_CONFIG_BOOL:
        if (parse_bool_text(text, &v->b) != 0) {
            set_why(why, "not a boolean (true/false/1/0/yes/no/on/off)");
            return -1;
        }
        return 0;
    case IMAGO_CONFIG_INT:
    case IMAGO_CONFIG_INT64:
        if (parse_integer_text(text, (opt->flags & IMAGO_CONFIG_F_BYTES) != 0, &ll, why) != 0)
            return -1;
        return store_integer(opt, ll, v, why);
    case IMAGO_CONFIG_DOUBLE:
        if (parse_double_text(text, &v->d) != 0) {
            set_why(why, "not a number");
            return -1;
        }
        return check_range(opt, v->d, why);
    case IMAGO_CONFIG_STRING: v->s = imago_xstrdup(text); return 0;
    case IMAGO_CONFIG_ENUM:
        for (int i = 0; opt->choices[i]; i++) {
            if (strcmp(text, opt->choices[i]) == 0) {
                v->e = opt->choices[i];
                return 0;
            }
        }
        set_why(why, "not an allowed value");
        return -1;
    case IMAGO_CONFIG_STRLIST:
    case IMAGO_CONFIG_NUMLIST: {
        const char *p = text;
        while (isspace((unsigned char)*p))
            p++;
        if (*p == '[') {
            json_error_t jerr;
            json_t *j = json_loads(text, 0, &jerr);
            if (!j) {
                set_why(why, "not a valid JSON array");
                return -1;
            }
            int rc = parse_json_value(opt, j, v, why);
            json_decref(j);
            return rc;
        }
        /* comma-separated; "" is the empty list */
        int n = 0;
        if (*p) {
            n = 1;
            for (const char *q = p; *q; q++)
                n += *q == ',';
        }
        if (opt->type == IMAGO_CONFIG_STRLIST)
            v->sl.items = imago_xcalloc((size_t)n + 1, sizeof(char *));
        else
            v->nl.items = imago_xcalloc((size_t)n + 1, sizeof(double));
        const char *start = p;
        for (int k = 0; k < n; k++) {
            const char *end = strchr(start, ',');
            size_t len = end ? (size_t)(end - start) : strlen(start);
            char *item = trimmed_dup(start, len);
            start = end ? end + 1 : start + len;
            if (item[0] == '\0') {
                free(item);
                set_why(why, "has an empty item");
                value_free(opt, v);
                return -1;
            }
            if (opt->type == IMAGO_CONFIG_STRLIST) {
                v->sl.items[v->sl.n++] = item;
                continue;
            }
            double d;
            int bad = parse_double_text(item, &d) != 0;
            free(item);
            if (bad || !in_range(opt, d)) {
                set_why(why, bad ? "has an item that is not a number" : "has an item out of range");
                value_free(opt, v);
                return -1;
            }
            v->nl.items[v->nl.n++] = d;
        }
        int count = opt->type == IMAGO_CONFIG_STRLIST ? v->sl.n : v->nl.n;
        if ((opt->max_items && count > opt->max_items) ||
            (opt->type == IMAGO_CONFIG_NUMLIST && count == 0)) {
            set_why(why, count ? "has too many items" : "is empty");
            value_free(opt, v);
            return -1;
        }
        return 0;
    }
    }
    set_why(why, "unknown type");
    return -1;
}

static const char *json_type_text(const json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "?";
}

/* Parses a JSON value (config file, or a JSON array in env/flags) into v. */
static int parse_json_value(const imago_config_option *opt, json_t *j, value *v, char *why)
{
    memset(v, 0, sizeof *v);
#define WRONG_TYPE(expected)                                                                       \
    do {                                                                                           \
        snprintf(why, WHY_CAP, "wrong JSON type: expected %s, got %s", expected,                   \
                 json_type_text(j));                                                               \
        return -1;                                                                                 \
    } while (0)
    switch (opt->type) {
    case IMAGO_CONFIG_BOOL:
        if (!json_is_boolean(j))
            WRONG_TYPE("true or false");
        v->b = json_is_true(j);
        return 0;
    case IMAGO_CONFIG_INT:
    case IMAGO_CONFIG_INT64: {
        if (json_is_string(j) && (opt->flags & IMAGO_CONFIG_F_BYTES))
            return parse_text_value(opt, json_string_value(j), v, why);
        if (!json_is_integer(j))
            WRONG_TYPE((opt->flags & IMAGO_CONFIG_F_BYTES) ? "an integer or a size string"
                                                           : "an integer");
        return store_integer(opt, json_integer_value(j), v, why);
    }
    case IMAGO_CONFIG_DOUBLE:
        if (!json_is_number(j))
            WRONG_TYPE("a number");
        v->d = json_number_value(j);
        return check_range(opt, v->d, why);
    case IMAGO_CONFIG_STRING:
    case IMAGO_CONFIG_ENUM:
        if (!json_is_string(j))
            WRONG_TYPE("a string");
        if (strlen(json_string_value(j)) != json_string_length(j)) {
            set_why(why, "contains a NUL character");
            return -1;
        }
        return parse_text_value(opt, json_string_value(j), v, why);
    case IMAGO_CONFIG_STRLIST:
    case IMAGO_CONFIG_NUMLIST: {
        int is_str = opt->type == IMAGO_CONFIG_STRLIST;
        if (!json_is_array(j))
            WRONG_TYPE(is_str ? "an array of strings" : "an array of numbers");
        size_t n = json_array_size(j);
        if ((opt->max_items && n > (size_t)opt->max_items) || (!is_str && n == 0)) {
            set_why(why, n ? "has too many items" : "is empty");
            return -1;
        }
        if (is_str)
            v->sl.items = imago_xcalloc(n + 1, sizeof(char *));
        else
            v->nl.items = imago_xcalloc(n + 1, sizeof(double));
        for (size_t k = 0; k < n; k++) {
            json_t *item = json_array_get(j, k);
            if (is_str) {
                if (!json_is_string(item) ||
                    strlen(json_string_value(item)) != json_string_length(item)) {
                    value_free(opt, v);
                    set_why(why, "wrong JSON type: expected an array of strings");
                    return -1;
                }
                v->sl.items[v->sl.n++] = imago_xstrdup(json_string_value(item));
            } else {
                if (!json_is_number(item)) {
                    value_free(opt, v);
                    set_why(why, "wrong JSON type: expected an array of numbers");
                    return -1;
                }
                double d = json_number_value(item);
                if (!in_range(opt, d)) {
                    value_free(opt, v);
                    set_why(why, "has an item out of range");
                    return -1;
                }
                v->nl.items[v->nl.n++] = d;
            }
        }
        return 0;
    }
    }
#undef WRONG_TYPE
    set_why(why, "unknown type");
    return -1;
}

/* ---- applying values --------------------------------------------------- */

static int option_index(const imago_config_option *opt)
{
    return (int)(opt - imago_config_table);
}

static void set_source(imago_config_full *full, const imago_config_option *opt,
                       imago_config_source src, const char *origin)
{
    int i = option_index(opt);
    full->source[i] = src;
    free(full->origin[i]);
    full->origin[i] = origin && *origin ? imago_xstrdup(origin) : NULL;
}

static void describe_source(imago_config_source src, const char *origin, char *buf, size_t cap)
{
    if (origin && *origin)
        snprintf(buf, cap, "%s %s", imago_config_source_name(src), origin);
    else
        snprintf(buf, cap, "%s", imago_config_source_name(src));
}

/* Runs the option's extra check on a parsed value; returns 0 or -1 with msg. */
static int run_check(const imago_config_option *opt, const value *v, char *msg, size_t cap)
{
    if (!opt->check)
        return 0;
    return opt->check(v, msg, cap);
}

/* Shows a bad value in an error message: quoted text, or compact JSON. */
static void shown_value(const imago_config_option *opt, const char *text, json_t *j, char *buf,
                        size_t cap)
{
    if (opt->flags & IMAGO_CONFIG_F_SECRET) {
        snprintf(buf, cap, "<redacted>");
    } else if (j) {
        char *s = json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT);
        snprintf(buf, cap, "%.100s%s", s ? s : "?", s && strlen(s) > 100 ? "..." : "");
        free(s);
    } else {
        snprintf(buf, cap, "\"%.100s%s\"", text, strlen(text) > 100 ? "..." : "");
    }
}

/* Parses and commits one value from one source; records an error on failure. */
static int apply_value(imago_config_full *full, const imago_config_option *opt, const char *text,
                       json_t *j, imago_config_source src, const char *origin)
{
    value v;
    char why[WHY_CAP] = "";
    char check_msg[256] = "";
    int rc = j ? parse_json_value(opt, j, &v, why) : parse_text_value(opt, text, &v, why);
    if (rc == 0 && run_check(opt, &v, check_msg, sizeof check_msg) != 0) {
        value_free(opt, &v);
        rc = -1;
    }
    if (rc != 0) {
        char shown[160], where[320], allowed[256];
        shown_value(opt, text, j, shown, sizeof shown);
        describe_source(src, origin, where, sizeof where);
        if (check_msg[0])
            add_error(full, "%s: bad value %s from %s: %s", opt->name, shown, where, check_msg);
        else
            add_error(full, "%s: bad value %s from %s: %s; allowed: %s", opt->name, shown, where,
                      why[0] ? why : "invalid", allowed_text(opt, allowed, sizeof allowed));
        return -1;
    }
    value_commit(&full->cfg, opt, &v);
    set_source(full, opt, src, origin);
    full->derived[option_index(opt)] = 0;
    return 0;
}

/* ---- new / free -------------------------------------------------------- */

static void derive(imago_config_full *full)
{
    /* auth.admin_token_file: "" (from any source) means <data_dir>/admin.token;
     * a derived value follows later changes of data_dir */
    const imago_config_option *opt = imago_config_find("auth.admin_token_file");
    int i = option_index(opt);
    if (!full->derived[i] && full->cfg.auth.admin_token_file[0] != '\0')
        return;
    full->derived[i] = 1;
    const char *dir = full->cfg.index.data_dir;
    size_t len = strlen(dir);
    const char *sep = (len && dir[len - 1] == '/') ? "" : "/";
    size_t need = len + strlen(sep) + sizeof "admin.token";
    char *path = imago_xmalloc(need);
    snprintf(path, need, "%s%sadmin.token", dir, sep);
    free(full->cfg.auth.admin_token_file);
    full->cfg.auth.admin_token_file = path;
}

imago_config *imago_config_new(void)
{
    imago_config_full *full = imago_xcalloc(1, sizeof *full);
    full->source = imago_xcalloc((size_t)imago_config_table_len, sizeof *full->source);
    full->origin = imago_xcalloc((size_t)imago_config_table_len, sizeof *full->origin);
    full->derived = imago_xcalloc((size_t)imago_config_table_len, sizeof *full->derived);
    for (int i = 0; i < imago_config_table_len; i++) {
        const imago_config_option *opt = &imago_config_table[i];
        value v;
        char why[WHY_CAP] = "";
        if (parse_text_value(opt, opt->def, &v, why) != 0) {
            /* a bug in the table, caught by the first test run */
            fprintf(stderr, "imago config: default of %s (\"%s\") is invalid: %s\n", opt->name,
                    opt->def, why);
            abort();
        }
        memcpy(imago_config_field(&full->cfg, opt), &v, field_size(opt->type));
    }
    derive(full);
    return &full->cfg;
}

void imago_config_free(imago_config *cfg)
{
    if (!cfg)
        return;
    imago_config_full *full = imago_config_full_of(cfg);
    for (int i = 0; i < imago_config_table_len; i++) {
        const imago_config_option *opt = &imago_config_table[i];
        value v;
        memcpy(&v, imago_config_field(cfg, opt), field_size(opt->type));
        value_free(opt, &v);
        free(full->origin[i]);
    }
    clear_errors(full);
    free(full->errors);
    free(full->origin);
    free(full->derived);
    free(full->source);
    free(full);
}

imago_config_source imago_config_source_of(const imago_config *cfg, const char *name,
                                           const char **origin)
{
    const imago_config_full *full = imago_config_full_of_const(cfg);
    const imago_config_option *opt = imago_config_find(name);
    if (origin)
        *origin = "";
    if (!cfg || !opt)
        return IMAGO_CONFIG_SRC_DEFAULT;
    int i = option_index(opt);
    if (origin && full->origin[i])
        *origin = full->origin[i];
    return full->source[i];
}

/* ---- sources ----------------------------------------------------------- */

static void unknown_key_error(imago_config_full *full, const char *path, const char *section,
                              const char *key)
{
    char full_name[160], hint[200];
    snprintf(full_name, sizeof full_name, "%s.%s", section, key);
    suggest s;
    suggest_init(&s, full_name);
    for (int i = 0; i < imago_config_table_len; i++)
        suggest_try(&s, imago_config_table[i].name);
    if (!s.best) {
        /* the right key in the wrong section */
        for (int i = 0; i < imago_config_table_len; i++) {
            const char *dot = strchr(imago_config_table[i].name, '.');
            if (dot && strcmp(dot + 1, key) == 0) {
                s.best = imago_config_table[i].name;
                break;
            }
        }
    }
    add_error(full, "%s: unknown key in file %s%s", full_name, path,
              suggest_text(&s, "", hint, sizeof hint));
}

static void apply_file(imago_config_full *full, const char *path)
{
    json_error_t jerr;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        if (jerr.line > 0)
            add_error(full, "config file %s: %s (line %d, column %d)", path, jerr.text, jerr.line,
                      jerr.column);
        else
            add_error(full, "config file %s: %s", path, jerr.text);
        return;
    }
    if (!json_is_object(root)) {
        add_error(full, "config file %s: the top level must be an object of sections, got %s", path,
                  json_type_text(root));
        json_decref(root);
        return;
    }
    const char *sec;
    json_t *body;
    json_object_foreach(root, sec, body)
    {
        if (sec[0] == '_')
            continue; /* "_help", "_comment": comments */
        const imago_config_option *direct = strchr(sec, '.') ? imago_config_find(sec) : NULL;
        if (direct) { /* flat form {"engine.max_batch": 8} */
            apply_value(full, direct, NULL, body, IMAGO_CONFIG_SRC_FILE, path);
            continue;
        }
        int known = 0;
        for (int i = 0; imago_config_sections[i]; i++)
            known |= strcmp(imago_config_sections[i], sec) == 0;
        if (!known) {
            if (strchr(sec, '.')) {
                unknown_key_error(full, path, "", sec);
                continue;
            }
            suggest s;
            char hint[200];
            suggest_init(&s, sec);
            for (int i = 0; imago_config_sections[i]; i++)
                suggest_try(&s, imago_config_sections[i]);
            add_error(full, "%s: unknown section in file %s%s", sec, path,
                      suggest_text(&s, "", hint, sizeof hint));
            continue;
        }
        if (!json_is_object(body)) {
            add_error(full, "%s: section in file %s must be an object, got %s", sec, path,
                      json_type_text(body));
            continue;
        }
        const char *key;
        json_t *val;
        json_object_foreach(body, key, val)
        {
            if (key[0] == '_')
                continue;
            char name[160];
            snprintf(name, sizeof name, "%s.%s", sec, key);
            const imago_config_option *opt = imago_config_find(name);
            if (!opt || strchr(key, '.')) {
                unknown_key_error(full, path, sec, key);
                continue;
            }
            apply_value(full, opt, NULL, val, IMAGO_CONFIG_SRC_FILE, path);
        }
    }
    json_decref(root);
}

static void apply_env(imago_config_full *full, char **envp)
{
    for (char **e = envp; e && *e; e++) {
        const char *var = *e;
        if (strncmp(var, "IMAGO_", 6) != 0)
            continue;
        const char *eq = strchr(var, '=');
        if (!eq)
            continue;
        const char *rest = var + 6;
        const char *sec = NULL;
        size_t sec_len = 0;
        for (int i = 0; imago_config_sections[i]; i++) {
            size_t n = strlen(imago_config_sections[i]);
            int match = (size_t)(eq - rest) > n + 1 && rest[n] == '_';
            for (size_t k = 0; match && k < n; k++)
                match = rest[k] == toupper((unsigned char)imago_config_sections[i][k]);
            if (match) {
                sec = imago_config_sections[i];
                sec_len = n;
            }
        }
        if (!sec)
            continue; /* IMAGO_CONFIG, IMAGO_SOURCE_ROOT, ...: not an option variable */
        char envname[160], name[160];
        size_t envlen = (size_t)(eq - var);
        if (envlen >= sizeof envname)
            envlen = sizeof envname - 1;
        memcpy(envname, var, envlen);
        envname[envlen] = '\0';
        /* IMAGO_ENGINE_MAX_BATCH -> engine.max_batch; the key must be upper case */
        int upper = 1;
        size_t n = (size_t)snprintf(name, sizeof name, "%s.", sec);
        for (const char *p = rest + sec_len + 1; p < eq && n + 1 < sizeof name; p++) {
            upper &= !islower((unsigned char)*p);
            name[n++] = (char)tolower((unsigned char)*p);
        }
        name[n] = '\0';
        const imago_config_option *opt = upper ? imago_config_find(name) : NULL;
        if (!opt || strchr(name, '-')) {
            suggest s;
            char hint[200];
            suggest_init(&s, envname);
            char cand[160];
            const char *best = NULL;
            for (int i = 0; i < imago_config_table_len; i++) {
                imago_config_env_name(&imago_config_table[i], cand, sizeof cand);
                int d = edit_distance(envname, cand);
                if (d <= s.limit && d < s.dist) {
                    s.dist = d;
                    best = imago_config_table[i].name;
                }
            }
            if (best) {
                const imago_config_option *b = imago_config_find(best);
                imago_config_env_name(b, cand, sizeof cand);
                snprintf(hint, sizeof hint, " (did you mean %s?)", cand);
            } else {
                hint[0] = '\0';
            }
            add_error(full, "%s: unknown environment variable (no option %s)%s", envname, name,
                      hint);
            continue;
        }
        apply_value(full, opt, eq + 1, NULL, IMAGO_CONFIG_SRC_ENV, envname);
    }
}

/* Short flags: alias -> option. */
static const struct {
    const char *flag;
    const char *option;
} aliases[] = {
    {"port", "server.port"},
    {"model", "engine.model"},
    {"data-dir", "index.data_dir"},
    {"data_dir", "index.data_dir"},
};

typedef struct pending_flag {
    const imago_config_option *opt;
    const char *value;
    char origin[96];
} pending_flag;

static int is_bool_literal(const char *s)
{
    int b;
    return s && (strcasecmp(s, "true") == 0 || strcasecmp(s, "false") == 0) &&
           parse_bool_text(s, &b) == 0;
}

static void unknown_flag_error(imago_config_full *full, const char *arg, const char *name,
                               size_t len, const imago_config_flag *command_flags)
{
    char word[160], cand[160], hint[200];
    snprintf(word, sizeof word, "%.*s", (int)len, name);
    suggest s;
    suggest_init(&s, word);
    const char *best = NULL;
    char best_buf[160] = "";
    for (int i = 0; i < imago_config_table_len; i++) {
        imago_config_flag_name(&imago_config_table[i], cand, sizeof cand);
        int d1 = edit_distance(word, cand + 2),
            d2 = edit_distance(word, imago_config_table[i].name);
        int d = d1 < d2 ? d1 : d2;
        if (d <= s.limit && d < s.dist) {
            s.dist = d;
            snprintf(best_buf, sizeof best_buf, "%s", cand);
            best = best_buf;
        }
    }
    for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++) {
        int d = edit_distance(word, aliases[i].flag);
        if (d <= s.limit && d < s.dist) {
            s.dist = d;
            snprintf(best_buf, sizeof best_buf, "--%s", aliases[i].flag);
            best = best_buf;
        }
    }
    for (const imago_config_flag *f = command_flags; f && f->name; f++) {
        int d = edit_distance(word, f->name);
        if (d <= s.limit && d < s.dist) {
            s.dist = d;
            snprintf(best_buf, sizeof best_buf, "--%s", f->name);
            best = best_buf;
        }
    }
    if (best)
        snprintf(hint, sizeof hint, " (did you mean %s?)", best);
    else
        hint[0] = '\0';
    add_error(full, "%s: unknown flag%s", arg, hint);
}

/* Checks that involve several options; adds to the error list. */
static void cross_checks(imago_config_full *full)
{
    imago_config *cfg = &full->cfg;
    const char *o_cert, *o_key, *o_backend, *o_prec;
    imago_config_source s_cert = imago_config_source_of(cfg, "server.tls_cert", &o_cert);
    imago_config_source s_key = imago_config_source_of(cfg, "server.tls_key", &o_key);
    char where[320];
    if (!cfg->server.tls_cert[0] != !cfg->server.tls_key[0]) {
        int cert_set = cfg->server.tls_cert[0] != 0;
        describe_source(cert_set ? s_cert : s_key, cert_set ? o_cert : o_key, where, sizeof where);
        add_error(full,
                  "%s: set (from %s) without %s: HTTPS needs both a certificate and a "
                  "key",
                  cert_set ? "server.tls_cert" : "server.tls_key", where,
                  cert_set ? "server.tls_key" : "server.tls_cert");
    }
    if (cfg->server.tls_cert[0] && !IMAGO_HAVE_TLS) {
        describe_source(s_cert, o_cert, where, sizeof where);
        add_error(full,
                  "server.tls_cert: set (from %s) but this build of libmicrohttpd has no "
                  "TLS support",
                  where);
    }
    imago_config_source s_backend = imago_config_source_of(cfg, "engine.backend", &o_backend);
    if (strcmp(cfg->engine.backend, "cuda") == 0 && !IMAGO_HAVE_CUDNN) {
        describe_source(s_backend, o_backend, where, sizeof where);
        add_error(full,
                  "engine.backend: bad value \"cuda\" from %s: this build has no CUDA "
                  "backend (rebuild with CUDA and cuDNN: -Dcuda=enabled -Dcudnn=enabled); "
                  "allowed here: auto, cpu",
                  where);
    }
    imago_config_source s_prec = imago_config_source_of(cfg, "engine.precision", &o_prec);
    if (strcmp(cfg->engine.precision, "fp16") == 0 && strcmp(cfg->engine.backend, "cpu") == 0) {
        describe_source(s_prec, o_prec, where, sizeof where);
        add_error(full,
                  "engine.precision: bad value \"fp16\" from %s: fp16 needs the CUDA "
                  "backend, and engine.backend is cpu; allowed on cpu: fp32, bf16",
                  where);
    }
}

int imago_config_check(imago_config *cfg, imago_error *err)
{
    imago_config_full *full = imago_config_full_of(cfg);
    clear_errors(full);
    cross_checks(full);
    return report_errors(full, err);
}

int imago_config_load(imago_config *cfg, int argc, char **argv, char **envp,
                      const imago_config_flag *command_flags, int *rest_argc, char ***rest_argv,
                      imago_error *err)
{
    imago_config_full *full = imago_config_full_of(cfg);
    clear_errors(full);
    char **rest = imago_xcalloc((size_t)argc + 1, sizeof(char *));
    int n_rest = 0;
    pending_flag *flags = imago_xcalloc((size_t)argc + 1, sizeof *flags);
    int n_flags = 0;
    const char *config_path = NULL;

    for (int i = 0; i < argc; i++) {
        char *arg = argv[i];
        if (strcmp(arg, "--") == 0) {
            while (++i < argc)
                rest[n_rest++] = argv[i];
            break;
        }
        if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0') {
            rest[n_rest++] = arg;
            continue;
        }
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const char *val = eq ? eq + 1 : NULL;

        /* the command's own flags pass through */
        const imago_config_flag *cf = NULL;
        for (const imago_config_flag *f = command_flags; f && f->name; f++)
            if (strlen(f->name) == len && strncmp(f->name, name, len) == 0)
                cf = f;
        if (cf) {
            rest[n_rest++] = arg;
            if (cf->arg == IMAGO_CONFIG_ARG_NONE && val)
                add_error(full, "%s: the flag --%s takes no value", arg, cf->name);
            if (cf->arg == IMAGO_CONFIG_ARG_REQUIRED && !val) {
                if (i + 1 < argc)
                    rest[n_rest++] = argv[++i];
                else
                    add_error(full, "%s: the flag needs a value", arg);
            }
            continue;
        }

        if (len == 6 && strncmp(name, "config", 6) == 0) {
            if (!val && i + 1 < argc)
                val = argv[++i];
            if (!val || !*val)
                add_error(full, "%s: the flag needs a file name", arg);
            else
                config_path = val;
            continue;
        }

        const imago_config_option *opt = NULL;
        for (size_t k = 0; k < sizeof aliases / sizeof aliases[0]; k++)
            if (strlen(aliases[k].flag) == len && strncmp(aliases[k].flag, name, len) == 0)
                opt = imago_config_find(aliases[k].option);
        if (!opt) {
            int idx = find_index_n(name, len);
            opt = idx < 0 ? NULL : &imago_config_table[idx];
        }
        if (!opt) {
            unknown_flag_error(full, arg, name, len, command_flags);
            continue;
        }
        if (!val) {
            if (opt->type == IMAGO_CONFIG_BOOL)
                val = (i + 1 < argc && is_bool_literal(argv[i + 1])) ? argv[++i] : "true";
            else if (i + 1 < argc)
                val = argv[++i];
        }
        if (!val) {
            add_error(full, "%s: the flag needs a value (%s)", arg, opt->name);
            continue;
        }
        flags[n_flags].opt = opt;
        flags[n_flags].value = val;
        snprintf(flags[n_flags].origin, sizeof flags[n_flags].origin, "--%.*s", (int)len, name);
        n_flags++;
    }

    if (!config_path && envp) {
        for (char **e = envp; *e; e++)
            if (strncmp(*e, "IMAGO_CONFIG=", 13) == 0 && (*e)[13])
                config_path = *e + 13;
    }
    if (config_path)
        apply_file(full, config_path);
    apply_env(full, envp);
    for (int k = 0; k < n_flags; k++)
        apply_value(full, flags[k].opt, flags[k].value, NULL, IMAGO_CONFIG_SRC_FLAG,
                    flags[k].origin);
    free(flags);

    derive(full);

    cross_checks(full);

    if (rest_argv) {
        *rest_argv = rest;
        if (rest_argc)
            *rest_argc = n_rest;
    } else {
        free(rest);
        if (rest_argc)
            *rest_argc = n_rest;
    }
    return report_errors(full, err);
}

int imago_config_set(imago_config *cfg, const char *name, const char *text, imago_error *err)
{
    imago_config_full *full = imago_config_full_of(cfg);
    clear_errors(full);
    const imago_config_option *opt = imago_config_find(name);
    if (!opt) {
        suggest s;
        char hint[200];
        suggest_init(&s, name ? name : "");
        for (int i = 0; i < imago_config_table_len; i++)
            suggest_try(&s, imago_config_table[i].name);
        add_error(full, "%s: unknown option%s", name ? name : "(null)",
                  suggest_text(&s, "", hint, sizeof hint));
        imago_error_set(err, IMAGO_ERR_NOT_FOUND, "%s", full->errors[0]);
        return IMAGO_ERR_NOT_FOUND;
    }
    if (!text) {
        add_error(full, "%s: no value given", opt->name);
        return report_errors(full, err);
    }
    apply_value(full, opt, text, NULL, IMAGO_CONFIG_SRC_API, "");
    derive(full);
    return report_errors(full, err);
}

/* ---- value text -------------------------------------------------------- */

/* Shortest %g form that reads back as the same double. */
static void format_double(double d, char *buf, size_t cap)
{
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, cap, "%.*g", prec, d);
        if (strtod(buf, NULL) == d)
            return;
    }
}

char *imago_config_value_text(const imago_config *cfg, const imago_config_option *opt)
{
    const void *field = imago_config_field_const(cfg, opt);
    char buf[64];
    switch (opt->type) {
    case IMAGO_CONFIG_BOOL: return imago_xstrdup(*(const int *)field ? "true" : "false");
    case IMAGO_CONFIG_INT:
        snprintf(buf, sizeof buf, "%d", *(const int *)field);
        return imago_xstrdup(buf);
    case IMAGO_CONFIG_INT64:
        snprintf(buf, sizeof buf, "%lld", (long long)*(const int64_t *)field);
        return imago_xstrdup(buf);
    case IMAGO_CONFIG_DOUBLE:
        format_double(*(const double *)field, buf, sizeof buf);
        return imago_xstrdup(buf);
    case IMAGO_CONFIG_STRING: return imago_xstrdup(*(char *const *)field);
    case IMAGO_CONFIG_ENUM: return imago_xstrdup(*(const char *const *)field);
    case IMAGO_CONFIG_STRLIST:
    case IMAGO_CONFIG_NUMLIST: {
        size_t cap = 64, len = 0;
        char *out = imago_xmalloc(cap);
        out[0] = '\0';
        int n = opt->type == IMAGO_CONFIG_STRLIST ? ((const imago_config_strlist *)field)->n
                                                  : ((const imago_config_numlist *)field)->n;
        for (int i = 0; i < n; i++) {
            const char *item;
            if (opt->type == IMAGO_CONFIG_STRLIST) {
                item = ((const imago_config_strlist *)field)->items[i];
            } else {
                format_double(((const imago_config_numlist *)field)->items[i], buf, sizeof buf);
                item = buf;
            }
            size_t need = len + strlen(item) + 2;
            if (need > cap) {
                cap = need * 2;
                out = imago_xrealloc(out, cap);
            }
            len += (size_t)snprintf(out + len, cap - len, "%s%s", i ? "," : "", item);
        }
        return out;
    }
    }
    return imago_xstrdup("");
}
