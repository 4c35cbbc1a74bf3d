/* config/config.c: the config object: the option table seen from outside
 * (count, lookup by name with '-' for '_', env and flag names), the error
 * list of the last load/set, and new / free / source_of (defaults from the
 * table, auth.admin_token_file derived from index.data_dir). Parsing values:
 * config_value.c; the sources (file, env, flags): config_load.c.
 */
#include "config_int.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

int imago_config_find_n(const char *name, size_t len)
{
    for (int i = 0; i < imago_config_table_len; i++)
        if (name_eq(imago_config_table[i].name, name, len))
            return i;
    return -1;
}

const imago_config_retired_key *imago_config_retired(const char *name, size_t len)
{
    for (const imago_config_retired_key *r = imago_config_retired_keys; r->name; r++)
        if (name_eq(r->name, name, len))
            return r;
    return NULL;
}

const imago_config_option *imago_config_find(const char *name)
{
    if (!name)
        return NULL;
    int i = imago_config_find_n(name, strlen(name));
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

void imago_config_add_error(imago_config_full *full, const char *fmt, ...)
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

void imago_config_clear_errors(imago_config_full *full)
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
int imago_config_report_errors(imago_config_full *full, imago_error *err)
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

/* ---- new / free -------------------------------------------------------- */

void imago_config_derive(imago_config_full *full)
{
    /* auth.admin_token_file: "" (from any source) means <data_dir>/admin.token;
     * a derived value follows later changes of data_dir */
    const imago_config_option *opt = imago_config_find("auth.admin_token_file");
    int i = imago_config_option_index(opt);
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
        imago_config_value v;
        char why[IMAGO_CONFIG_WHY_CAP] = "";
        if (imago_config_parse_text(opt, opt->def, &v, why) != 0) {
            /* a bug in the table, caught by the first test run */
            fprintf(stderr, "imago config: default of %s (\"%s\") is invalid: %s\n", opt->name,
                    opt->def, why);
            abort();
        }
        memcpy(imago_config_field(&full->cfg, opt), &v, imago_config_field_size(opt->type));
    }
    imago_config_derive(full);
    return &full->cfg;
}

void imago_config_free(imago_config *cfg)
{
    if (!cfg)
        return;
    imago_config_full *full = imago_config_full_of(cfg);
    for (int i = 0; i < imago_config_table_len; i++) {
        const imago_config_option *opt = &imago_config_table[i];
        imago_config_value v;
        memcpy(&v, imago_config_field(cfg, opt), imago_config_field_size(opt->type));
        imago_config_value_free(opt, &v);
        free(full->origin[i]);
    }
    imago_config_clear_errors(full);
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
    int i = imago_config_option_index(opt);
    if (origin && full->origin[i])
        *origin = full->origin[i];
    return full->source[i];
}
