/* Private to config/: the option table (config_table.c), the per-config
 * bookkeeping (sources, error list) and the helpers shared by config.c (the
 * object, errors), config_value.c (parsing and committing values),
 * config_load.c (file, env, flags) and config_dump.c. */
#ifndef IMAGO_CONFIG_INT_H
#define IMAGO_CONFIG_INT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

extern const imago_config_option imago_config_table[];
extern const int imago_config_table_len;

/* Section names in table order ("server", "auth", ...), NULL-terminated. */
extern const char *const imago_config_sections[];

/* Bookkeeping kept next to the public struct: imago_config_new allocates one
 * imago_config_full and hands out &full->cfg. */
typedef struct imago_config_full {
    imago_config cfg;            /* first: the public pointer is the whole allocation */
    imago_config_source *source; /* per option, table order */
    char **origin;               /* per option, owned, NULL = "" */
    unsigned char *derived;      /* per option: value computed from others (was "") */
    char **errors;               /* messages of the last load/set */
    int n_errors, cap_errors;
} imago_config_full;

static inline imago_config_full *imago_config_full_of(imago_config *cfg)
{
    return (imago_config_full *)cfg;
}
static inline const imago_config_full *imago_config_full_of_const(const imago_config *cfg)
{
    return (const imago_config_full *)cfg;
}

/* Pointer to the field of opt inside cfg. */
static inline void *imago_config_field(imago_config *cfg, const imago_config_option *opt)
{
    return (char *)cfg + opt->offset;
}
static inline const void *imago_config_field_const(const imago_config *cfg,
                                                   const imago_config_option *opt)
{
    return (const char *)cfg + opt->offset;
}

/* Index of opt in the table (opt points into imago_config_table). */
static inline int imago_config_option_index(const imago_config_option *opt)
{
    return (int)(opt - imago_config_table);
}

/* A parsed value before it is committed to its field (same layout as the
 * field for each type, so check() can read it). */
typedef union imago_config_value {
    int b;
    int i;
    int64_t l;
    double d;
    char *s;
    const char *e;
    imago_config_strlist sl;
    imago_config_numlist nl;
} imago_config_value;

/* Size of the why buffers the parsers fill. */
#define IMAGO_CONFIG_WHY_CAP 160

/* An option that no longer exists but is still accepted, and ignored with
 * a warning, so that older config files, environments and command lines
 * keep working (config_table.c; the list ends with a {NULL} row). */
typedef struct imago_config_retired_key {
    const char *name; /* "index.snapshot_interval_s" */
    const char *why;  /* the end of the warning: why it has no effect */
} imago_config_retired_key;

extern const imago_config_retired_key imago_config_retired_keys[];

/* config.c */

/* The retired key spelled name[0..len) ('-' for '_'), or NULL. */
const imago_config_retired_key *imago_config_retired(const char *name, size_t len);

/* Index of the option spelled name[0..len) ('-' for '_'), or -1. */
int imago_config_find_n(const char *name, size_t len);
/* Appends a message to the error list. */
void imago_config_add_error(imago_config_full *full, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
void imago_config_clear_errors(imago_config_full *full);
/* Fills err from the error list (count and as many messages as fit): 0 when
 * the list is empty, else IMAGO_ERR_INVALID. */
int imago_config_report_errors(imago_config_full *full, imago_error *err);
/* Recomputes the derived options (auth.admin_token_file from index.data_dir). */
void imago_config_derive(imago_config_full *full);

/* config_value.c */

void imago_config_value_free(const imago_config_option *opt, imago_config_value *v);
size_t imago_config_field_size(imago_config_type type);
/* true/false/1/0/yes/no/on/off (any case): 0, else -1. */
int imago_config_parse_bool(const char *s, int *out);
/* Parses text (env, flag, default) into v. On failure why (IMAGO_CONFIG_WHY_CAP)
 * says why and -1 is returned. */
int imago_config_parse_text(const imago_config_option *opt, const char *text, imago_config_value *v,
                            char *why);
/* "an object", "a string", ... for messages. */
const char *imago_config_json_type_text(const json_t *j);
/* "file /etc/imago.json", "env IMAGO_X", "default" into buf. */
void imago_config_describe_source(imago_config_source src, const char *origin, char *buf,
                                  size_t cap);
/* Parses (from text, or from j when not NULL) and commits one value from one
 * source; on failure records an error, keeps the old value and returns -1. */
int imago_config_apply(imago_config_full *full, const imago_config_option *opt, const char *text,
                       json_t *j, imago_config_source src, const char *origin);

/* Writes the value of opt as text in the env/flag syntax into a malloc'ed
 * string (lists comma-separated, numbers with %.17g trimmed). */
char *imago_config_value_text(const imago_config *cfg, const imago_config_option *opt);

#endif /* IMAGO_CONFIG_INT_H */
