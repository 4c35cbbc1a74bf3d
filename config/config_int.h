/* Private to config/: the option table and the per-config bookkeeping
 * (sources, error list) shared by config.c and config_dump.c. */
#ifndef IMAGO_CONFIG_INT_H
#define IMAGO_CONFIG_INT_H

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

/* Writes the value of opt as text in the env/flag syntax into a malloc'ed
 * string (lists comma-separated, numbers with %.17g trimmed). */
char *imago_config_value_text(const imago_config *cfg, const imago_config_option *opt);

#endif /* IMAGO_CONFIG_INT_H */
