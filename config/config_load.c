/* config/config_load.c: the sources: the config file (JSON, sections or
 * flat keys), the IMAGO_<SECTION>_<KEY> environment variables and the
 * command-line flags, applied in that order by imago_config_load; the checks
 * between options; imago_config_set; "did you mean" hints for unknown names.
 */
#include "config_int.h"

#include "imago_build.h"

#include <ctype.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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

/* ---- sources ----------------------------------------------------------- */

/* A retired option (imago_config_retired_keys) given by a source: a warning,
 * and the value is ignored. Returns 1 when name[0..len) is one. */
static int retired(const char *name, size_t len, const char *src, const char *origin)
{
    const imago_config_retired_key *r = imago_config_retired(name, len);
    if (!r)
        return 0;
    IMAGO_WARN("config", "%s (%s %s) is deprecated and ignored: %s; remove it", r->name, src,
               origin, r->why);
    return 1;
}

static void unknown_key_error(imago_config_full *full, const char *path, const char *section,
                              const char *key)
{
    char full_name[160], hint[200];
    snprintf(full_name, sizeof full_name, "%s.%s", section, key);
    const char *name = section[0] ? full_name : key;
    if (retired(name, strlen(name), "file", path))
        return;
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
    imago_config_add_error(full, "%s: unknown key in file %s%s", full_name, path,
                           suggest_text(&s, "", hint, sizeof hint));
}

static void apply_file(imago_config_full *full, const char *path)
{
    json_error_t jerr;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        if (jerr.line > 0)
            imago_config_add_error(full, "config file %s: %s (line %d, column %d)", path, jerr.text,
                                   jerr.line, jerr.column);
        else
            imago_config_add_error(full, "config file %s: %s", path, jerr.text);
        return;
    }
    if (!json_is_object(root)) {
        imago_config_add_error(
            full, "config file %s: the top level must be an object of sections, got %s", path,
            imago_config_json_type_text(root));
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
            imago_config_apply(full, direct, NULL, body, IMAGO_CONFIG_SRC_FILE, path);
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
            imago_config_add_error(full, "%s: unknown section in file %s%s", sec, path,
                                   suggest_text(&s, "", hint, sizeof hint));
            continue;
        }
        if (!json_is_object(body)) {
            imago_config_add_error(full, "%s: section in file %s must be an object, got %s", sec,
                                   path, imago_config_json_type_text(body));
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
            imago_config_apply(full, opt, NULL, val, IMAGO_CONFIG_SRC_FILE, path);
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
        if (!opt && upper && !strchr(name, '-') && retired(name, strlen(name), "env", envname))
            continue;
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
            imago_config_add_error(full, "%s: unknown environment variable (no option %s)%s",
                                   envname, name, hint);
            continue;
        }
        imago_config_apply(full, opt, eq + 1, NULL, IMAGO_CONFIG_SRC_ENV, envname);
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
           imago_config_parse_bool(s, &b) == 0;
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
    imago_config_add_error(full, "%s: unknown flag%s", arg, hint);
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
        imago_config_describe_source(cert_set ? s_cert : s_key, cert_set ? o_cert : o_key, where,
                                     sizeof where);
        imago_config_add_error(full,
                               "%s: set (from %s) without %s: HTTPS needs both a certificate and a "
                               "key",
                               cert_set ? "server.tls_cert" : "server.tls_key", where,
                               cert_set ? "server.tls_key" : "server.tls_cert");
    }
    if (cfg->server.tls_cert[0] && !IMAGO_HAVE_TLS) {
        imago_config_describe_source(s_cert, o_cert, where, sizeof where);
        imago_config_add_error(
            full,
            "server.tls_cert: set (from %s) but this build of libmicrohttpd has no "
            "TLS support",
            where);
    }
    imago_config_source s_backend = imago_config_source_of(cfg, "engine.backend", &o_backend);
    if (strcmp(cfg->engine.backend, "cuda") == 0 && !IMAGO_HAVE_CUDNN) {
        imago_config_describe_source(s_backend, o_backend, where, sizeof where);
        imago_config_add_error(
            full,
            "engine.backend: bad value \"cuda\" from %s: this build has no CUDA "
            "backend (rebuild with CUDA and cuDNN: -Dcuda=enabled -Dcudnn=enabled); "
            "allowed here: auto, cpu",
            where);
    }
    imago_config_source s_prec = imago_config_source_of(cfg, "engine.precision", &o_prec);
    if (strcmp(cfg->engine.precision, "fp16") == 0 && strcmp(cfg->engine.backend, "cpu") == 0) {
        imago_config_describe_source(s_prec, o_prec, where, sizeof where);
        imago_config_add_error(full,
                               "engine.precision: bad value \"fp16\" from %s: fp16 needs the CUDA "
                               "backend, and engine.backend is cpu; allowed on cpu: fp32, bf16",
                               where);
    }
}

int imago_config_check(imago_config *cfg, imago_error *err)
{
    imago_config_full *full = imago_config_full_of(cfg);
    imago_config_clear_errors(full);
    cross_checks(full);
    return imago_config_report_errors(full, err);
}

int imago_config_load(imago_config *cfg, int argc, char **argv, char **envp,
                      const imago_config_flag *command_flags, int *rest_argc, char ***rest_argv,
                      imago_error *err)
{
    imago_config_full *full = imago_config_full_of(cfg);
    imago_config_clear_errors(full);
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
                imago_config_add_error(full, "%s: the flag --%s takes no value", arg, cf->name);
            if (cf->arg == IMAGO_CONFIG_ARG_REQUIRED && !val) {
                if (i + 1 < argc)
                    rest[n_rest++] = argv[++i];
                else
                    imago_config_add_error(full, "%s: the flag needs a value", arg);
            }
            continue;
        }

        if (len == 6 && strncmp(name, "config", 6) == 0) {
            if (!val && i + 1 < argc)
                val = argv[++i];
            if (!val || !*val)
                imago_config_add_error(full, "%s: the flag needs a file name", arg);
            else
                config_path = val;
            continue;
        }

        const imago_config_option *opt = NULL;
        for (size_t k = 0; k < sizeof aliases / sizeof aliases[0]; k++)
            if (strlen(aliases[k].flag) == len && strncmp(aliases[k].flag, name, len) == 0)
                opt = imago_config_find(aliases[k].option);
        if (!opt) {
            int idx = imago_config_find_n(name, len);
            opt = idx < 0 ? NULL : &imago_config_table[idx];
        }
        if (!opt && retired(name, len, "flag", arg)) {
            if (!val && i + 1 < argc)
                i++; /* its value, as for any non-boolean option */
            continue;
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
            imago_config_add_error(full, "%s: the flag needs a value (%s)", arg, opt->name);
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
        imago_config_apply(full, flags[k].opt, flags[k].value, NULL, IMAGO_CONFIG_SRC_FLAG,
                           flags[k].origin);
    free(flags);

    imago_config_derive(full);

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
    return imago_config_report_errors(full, err);
}

int imago_config_set(imago_config *cfg, const char *name, const char *text, imago_error *err)
{
    imago_config_full *full = imago_config_full_of(cfg);
    imago_config_clear_errors(full);
    const imago_config_option *opt = imago_config_find(name);
    if (!opt) {
        suggest s;
        char hint[200];
        suggest_init(&s, name ? name : "");
        for (int i = 0; i < imago_config_table_len; i++)
            suggest_try(&s, imago_config_table[i].name);
        imago_config_add_error(full, "%s: unknown option%s", name ? name : "(null)",
                               suggest_text(&s, "", hint, sizeof hint));
        imago_error_set(err, IMAGO_ERR_NOT_FOUND, "%s", full->errors[0]);
        return IMAGO_ERR_NOT_FOUND;
    }
    if (!text) {
        imago_config_add_error(full, "%s: no value given", opt->name);
        return imago_config_report_errors(full, err);
    }
    imago_config_apply(full, opt, text, NULL, IMAGO_CONFIG_SRC_API, "");
    imago_config_derive(full);
    return imago_config_report_errors(full, err);
}
