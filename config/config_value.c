/* config/config_value.c: the values of options: parsing one from text (env,
 * flags, defaults) or JSON (the config file) into its type with its bounds,
 * allowed values and extra check, committing it with its source, the error
 * message for a bad one, and the text form of a value (dumps, help).
 */
#include "config_int.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- values ------------------------------------------------------------ */

void imago_config_value_free(const imago_config_option *opt, imago_config_value *v)
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

size_t imago_config_field_size(imago_config_type type)
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
static void value_commit(imago_config *cfg, const imago_config_option *opt, imago_config_value *v)
{
    imago_config_value old;
    void *field = imago_config_field(cfg, opt);
    memcpy(&old, field, imago_config_field_size(opt->type));
    imago_config_value_free(opt, &old);
    memcpy(field, v, imago_config_field_size(opt->type));
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

static void set_why(char *why, const char *text)
{
    snprintf(why, IMAGO_CONFIG_WHY_CAP, "%s", text);
}

int imago_config_parse_bool(const char *s, int *out)
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
static int store_integer(const imago_config_option *opt, long long ll, imago_config_value *v,
                         char *why)
{
    if (check_range(opt, (double)ll, why) != 0)
        return -1;
    if (opt->type == IMAGO_CONFIG_INT)
        v->i = (int)ll;
    else
        v->l = (int64_t)ll;
    return 0;
}

static int parse_json_value(const imago_config_option *opt, json_t *j, imago_config_value *v,
                            char *why);

/* Parses text (env, flag, default) into v. On failure *why says why. */
int imago_config_parse_text(const imago_config_option *opt, const char *text, imago_config_value *v,
                            char *why)
{
    memset(v, 0, sizeof *v);
    long long ll;
    switch (opt->type) {
    case IMAGO_CONFIG_BOOL:
        if (imago_config_parse_bool(text, &v->b) != 0) {
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
                imago_config_value_free(opt, v);
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
                imago_config_value_free(opt, v);
                return -1;
            }
            v->nl.items[v->nl.n++] = d;
        }
        int count = opt->type == IMAGO_CONFIG_STRLIST ? v->sl.n : v->nl.n;
        if ((opt->max_items && count > opt->max_items) ||
            (opt->type == IMAGO_CONFIG_NUMLIST && count == 0)) {
            set_why(why, count ? "has too many items" : "is empty");
            imago_config_value_free(opt, v);
            return -1;
        }
        return 0;
    }
    }
    set_why(why, "unknown type");
    return -1;
}

const char *imago_config_json_type_text(const json_t *j)
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
static int parse_json_value(const imago_config_option *opt, json_t *j, imago_config_value *v,
                            char *why)
{
    memset(v, 0, sizeof *v);
#define WRONG_TYPE(expected)                                                                       \
    do {                                                                                           \
        snprintf(why, IMAGO_CONFIG_WHY_CAP, "wrong JSON type: expected %s, got %s", expected,      \
                 imago_config_json_type_text(j));                                                  \
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
            return imago_config_parse_text(opt, json_string_value(j), v, why);
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
        return imago_config_parse_text(opt, json_string_value(j), v, why);
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
                    imago_config_value_free(opt, v);
                    set_why(why, "wrong JSON type: expected an array of strings");
                    return -1;
                }
                v->sl.items[v->sl.n++] = imago_xstrdup(json_string_value(item));
            } else {
                if (!json_is_number(item)) {
                    imago_config_value_free(opt, v);
                    set_why(why, "wrong JSON type: expected an array of numbers");
                    return -1;
                }
                double d = json_number_value(item);
                if (!in_range(opt, d)) {
                    imago_config_value_free(opt, v);
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

static void set_source(imago_config_full *full, const imago_config_option *opt,
                       imago_config_source src, const char *origin)
{
    int i = imago_config_option_index(opt);
    full->source[i] = src;
    free(full->origin[i]);
    full->origin[i] = origin && *origin ? imago_xstrdup(origin) : NULL;
}

void imago_config_describe_source(imago_config_source src, const char *origin, char *buf,
                                  size_t cap)
{
    if (origin && *origin)
        snprintf(buf, cap, "%s %s", imago_config_source_name(src), origin);
    else
        snprintf(buf, cap, "%s", imago_config_source_name(src));
}

/* Runs the option's extra check on a parsed value; returns 0 or -1 with msg. */
static int run_check(const imago_config_option *opt, const imago_config_value *v, char *msg,
                     size_t cap)
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
int imago_config_apply(imago_config_full *full, const imago_config_option *opt, const char *text,
                       json_t *j, imago_config_source src, const char *origin)
{
    imago_config_value v;
    char why[IMAGO_CONFIG_WHY_CAP] = "";
    char check_msg[256] = "";
    int rc = j ? parse_json_value(opt, j, &v, why) : imago_config_parse_text(opt, text, &v, why);
    if (rc == 0 && run_check(opt, &v, check_msg, sizeof check_msg) != 0) {
        imago_config_value_free(opt, &v);
        rc = -1;
    }
    if (rc != 0) {
        char shown[160], where[320], allowed[256];
        shown_value(opt, text, j, shown, sizeof shown);
        imago_config_describe_source(src, origin, where, sizeof where);
        if (check_msg[0])
            imago_config_add_error(full, "%s: bad value %s from %s: %s", opt->name, shown, where,
                                   check_msg);
        else
            imago_config_add_error(full, "%s: bad value %s from %s: %s; allowed: %s", opt->name,
                                   shown, where, why[0] ? why : "invalid",
                                   allowed_text(opt, allowed, sizeof allowed));
        return -1;
    }
    value_commit(&full->cfg, opt, &v);
    set_source(full, opt, src, origin);
    full->derived[imago_config_option_index(opt)] = 0;
    return 0;
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
