/* Config output: the effective config as JSON (with or without sources, or as
 * the commented example file), as text lines, and the option help. */
#include "config_int.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static const char *redacted = "<redacted>";

/* The JSON value of one option, secrets redacted; raw_derived writes an
 * option whose value was derived from others as what was given (""). */
static json_t *option_json(const imago_config *cfg, const imago_config_option *opt, int raw_derived)
{
    const imago_config_full *full = imago_config_full_of_const(cfg);
    const void *field = imago_config_field_const(cfg, opt);
    int i = (int)(opt - imago_config_table);
    if ((opt->flags & IMAGO_CONFIG_F_DERIVED) && raw_derived && full->derived[i])
        return json_string("");
    switch (opt->type) {
    case IMAGO_CONFIG_BOOL: return json_boolean(*(const int *)field);
    case IMAGO_CONFIG_INT: return json_integer(*(const int *)field);
    case IMAGO_CONFIG_INT64: return json_integer((json_int_t) * (const int64_t *)field);
    case IMAGO_CONFIG_DOUBLE: return json_real(*(const double *)field);
    case IMAGO_CONFIG_STRING: {
        const char *s = *(char *const *)field;
        if ((opt->flags & IMAGO_CONFIG_F_SECRET) && s[0])
            s = redacted;
        return json_string(s);
    }
    case IMAGO_CONFIG_ENUM: return json_string(*(const char *const *)field);
    case IMAGO_CONFIG_STRLIST: {
        const imago_config_strlist *l = field;
        json_t *a = json_array();
        for (int k = 0; a && k < l->n; k++)
            json_array_append_new(a, json_string(l->items[k]));
        return a;
    }
    case IMAGO_CONFIG_NUMLIST: {
        const imago_config_numlist *l = field;
        json_t *a = json_array();
        for (int k = 0; a && k < l->n; k++)
            json_array_append_new(a, json_real(l->items[k]));
        return a;
    }
    }
    return json_null();
}

int imago_config_dump_json(const imago_config *cfg, imago_config_dump_mode mode, char **out,
                           imago_error *err)
{
    const imago_config_full *full = imago_config_full_of_const(cfg);
    json_t *root = json_object();
    if (!root)
        return imago_error_set(err, IMAGO_ERR_NOMEM, "config dump: out of memory");
    if (mode == IMAGO_CONFIG_DUMP_EXAMPLE)
        json_object_set_new(
            root, "_comment",
            json_string("imago configuration: every key with its default. Load it with "
                        "`imago serve --config FILE`; IMAGO_<SECTION>_<KEY> variables and "
                        "--section.key flags override it. Keys starting with \"_\" are "
                        "comments. Regenerate with `imago serve --dump-config=example`."));
    for (int s = 0; imago_config_sections[s]; s++) {
        const char *sec = imago_config_sections[s];
        size_t sec_len = strlen(sec);
        json_t *section = json_object();
        json_t *help = mode == IMAGO_CONFIG_DUMP_EXAMPLE ? json_object() : NULL;
        if (help)
            json_object_set_new(section, "_help", help);
        for (int i = 0; i < imago_config_table_len; i++) {
            const imago_config_option *opt = &imago_config_table[i];
            if (strncmp(opt->name, sec, sec_len) != 0 || opt->name[sec_len] != '.')
                continue;
            const char *key = opt->name + sec_len + 1;
            json_t *v = option_json(cfg, opt, mode != IMAGO_CONFIG_DUMP_SOURCES);
            if (mode == IMAGO_CONFIG_DUMP_SOURCES) {
                json_t *entry = json_object();
                json_object_set_new(entry, "value", v);
                json_object_set_new(entry, "source",
                                    json_string(imago_config_source_name(full->source[i])));
                if (full->origin[i])
                    json_object_set_new(entry, "from", json_string(full->origin[i]));
                json_object_set_new(section, key, entry);
            } else {
                json_object_set_new(section, key, v);
            }
            if (help) {
                char env[128];
                imago_config_env_name(opt, env, sizeof env);
                char *text = NULL;
                size_t len = 0;
                FILE *f = open_memstream(&text, &len);
                if (f) {
                    fprintf(f, "%s (%s)", opt->help, env);
                    fclose(f);
                    json_object_set_new(help, key, json_string(text));
                }
                free(text);
            }
        }
        json_object_set_new(root, sec, section);
    }
    char *s = json_dumps(root, JSON_INDENT(2) | JSON_REAL_PRECISION(15));
    json_decref(root);
    if (!s)
        return imago_error_set(err, IMAGO_ERR_NOMEM, "config dump: out of memory");
    size_t n = strlen(s);
    char *r = imago_xmalloc(n + 2);
    memcpy(r, s, n);
    r[n] = '\n';
    r[n + 1] = '\0';
    free(s);
    *out = r;
    return 0;
}

int imago_config_dump_text(const imago_config *cfg, FILE *out, imago_error *err)
{
    const imago_config_full *full = imago_config_full_of_const(cfg);
    for (int i = 0; i < imago_config_table_len; i++) {
        const imago_config_option *opt = &imago_config_table[i];
        json_t *j = option_json(cfg, opt, 0);
        char *v =
            j ? json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT | JSON_REAL_PRECISION(15)) : NULL;
        json_decref(j);
        if (!v)
            return imago_error_set(err, IMAGO_ERR_NOMEM, "config dump: out of memory");
        char line[1200];
        snprintf(line, sizeof line, "%s = %s", opt->name, v);
        free(v);
        int rc;
        if (full->origin[i])
            rc = fprintf(out, "%-48s # %s %s\n", line, imago_config_source_name(full->source[i]),
                         full->origin[i]);
        else
            rc = fprintf(out, "%-48s # %s\n", line, imago_config_source_name(full->source[i]));
        if (rc < 0)
            return imago_error_set(err, IMAGO_ERR_IO, "config dump: write failed");
    }
    return fflush(out) == 0 ? 0 : imago_error_set(err, IMAGO_ERR_IO, "config dump: write failed");
}

static const char *value_word(const imago_config_option *opt)
{
    switch (opt->type) {
    case IMAGO_CONFIG_BOOL: return "[=BOOL]";
    case IMAGO_CONFIG_INT:
    case IMAGO_CONFIG_INT64: return (opt->flags & IMAGO_CONFIG_F_BYTES) ? " BYTES" : " N";
    case IMAGO_CONFIG_DOUBLE: return " X";
    case IMAGO_CONFIG_STRING: return " STR";
    case IMAGO_CONFIG_ENUM: return " WORD";
    case IMAGO_CONFIG_STRLIST: return " A,B";
    case IMAGO_CONFIG_NUMLIST: return " X,Y";
    }
    return "";
}

void imago_config_print_help(FILE *out)
{
    const char *prev_sec = "";
    size_t prev_len = 0;
    for (int i = 0; i < imago_config_table_len; i++) {
        const imago_config_option *opt = &imago_config_table[i];
        const char *dot = strchr(opt->name, '.');
        size_t sec_len = (size_t)(dot - opt->name);
        if (sec_len != prev_len || strncmp(prev_sec, opt->name, sec_len) != 0) {
            fprintf(out, "\n[%.*s]\n", (int)sec_len, opt->name);
            prev_sec = opt->name;
            prev_len = sec_len;
        }
        char flag[128], env[128], allowed[512];
        imago_config_flag_name(opt, flag, sizeof flag);
        imago_config_env_name(opt, env, sizeof env);
        /* allowed values, in the words of the error messages */
        switch (opt->type) {
        case IMAGO_CONFIG_ENUM: {
            size_t n = 0;
            allowed[0] = '\0';
            for (int k = 0; opt->choices[k] && n < sizeof allowed; k++)
                n += (size_t)snprintf(allowed + n, sizeof allowed - n, "%s%s", k ? "|" : "",
                                      opt->choices[k]);
            break;
        }
        case IMAGO_CONFIG_INT:
        case IMAGO_CONFIG_INT64:
            snprintf(allowed, sizeof allowed, "%.0f..%.0f", opt->min, opt->max);
            break;
        case IMAGO_CONFIG_DOUBLE:
        case IMAGO_CONFIG_NUMLIST:
            snprintf(allowed, sizeof allowed, "%g..%g", opt->min, opt->max);
            break;
        default: allowed[0] = '\0'; break;
        }
        char flagcol[200];
        snprintf(flagcol, sizeof flagcol, "%s%s", flag, value_word(opt));
        fprintf(out, "  %-36s %s\n", flagcol, env);
        fprintf(out, "      %s\n", opt->help);
        fprintf(out, "      default: %s%s%s%s%s\n", opt->def[0] ? opt->def : "\"\"",
                allowed[0] ? "; allowed: " : "", allowed,
                (opt->flags & IMAGO_CONFIG_F_SECRET) ? "; secret (redacted in dumps)" : "",
                opt->type == IMAGO_CONFIG_STRLIST || opt->type == IMAGO_CONFIG_NUMLIST
                    ? "; list: comma-separated or a JSON array"
                    : "");
    }
    fprintf(out, "\nShort flags: --port = --server.port, --model = --engine.model, "
                 "--data-dir = --index.data-dir,\n--config FILE (or $IMAGO_CONFIG) reads a "
                 "JSON file {\"section\": {\"key\": value}}.\nOrder: defaults < file < "
                 "IMAGO_* environment < flags. Keys starting with \"_\" in the file are "
                 "comments.\n");
}
