/* imago config: the whole configuration as one declarative option table.
 *
 * Every option has a name "section.key", a type, a default, bounds or allowed
 * values, flags (secret, byte size, derived), help text, and the offset of its
 * field in the typed struct imago_config, so other modules simply read
 * `cfg->engine.max_batch`. The table lives in config/config_table.c: adding an
 * option is one field in the struct below plus one row there (and
 * `imago serve --dump-config=example > config/imago.example.json`).
 *
 * Sources, later ones win: built-in defaults <- `--config FILE` (JSON, nested
 * by section: {"engine": {"max_batch": 8}}) <- environment variables
 * IMAGO_<SECTION>_<KEY> (IMAGO_ENGINE_MAX_BATCH=8) <- command-line flags
 * (`--engine.max-batch 8`, `--engine.max_batch=8`, `--port`, `--model`,
 * `--data-dir`, `--config`). The source of every option is recorded.
 *
 * Loading reports all errors at once (imago_config_error_count/_error_at),
 * each naming the key, the bad value, where it came from and what is allowed.
 * An unknown key is an error, except a retired one (index.snapshot_interval_s):
 * it is ignored with a warning in the log, so an older config still loads.
 *
 * Thread safety: a config is built and loaded by one thread; after
 * imago_config_load() returns it is read-only and may be read from any number
 * of threads without locking. The option table is immutable and global.
 */
#ifndef IMAGO_CONFIG_H
#define IMAGO_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/common.h"

/* ---- the typed configuration ------------------------------------------- */

/* A list of strings; items are owned by the config. */
typedef struct imago_config_strlist {
    int n;
    char **items;
} imago_config_strlist;

/* A list of numbers; items are owned by the config. */
typedef struct imago_config_numlist {
    int n;
    double *items;
} imago_config_numlist;

/* Strings (char *) are owned by the config and NUL-terminated, never NULL
 * ("" when unset). Enum fields (const char *) point to the static allowed
 * value in the option table, so they compare with strcmp and live forever.
 * Booleans are int 0/1. Treat everything as read-only. */
typedef struct imago_config {
    struct {
        char *listen; /* IPv4/IPv6 literal or "localhost" */
        int port;     /* 0 = pick a free port */
        int threads;  /* HTTP worker threads, 0 = number of cores */
        int64_t max_body_bytes;
        int max_connections;
        int connection_timeout_s; /* idle connection timeout, 0 = none */
        int request_timeout_s;    /* whole request budget, 0 = none */
        char *tls_cert;           /* PEM paths; both or neither */
        char *tls_key;
        char *cors_origin;      /* "" = no CORS headers */
        int web;                /* serve the web page at / */
        const char *log_level;  /* "debug" | "info" | "warn" | "error" */
        const char *log_format; /* "text" | "json" */
    } server;
    struct {
        char *admin_token;      /* "" = generate one on first start */
        char *search_token;     /* "" = search is open */
        char *admin_token_file; /* resolved: default <index.data_dir>/admin.token */
    } auth;
    struct {
        char *model;           /* .safetensors path, "" = the demo model */
        const char *demo_arch; /* "resnet50-gem", "resnet101-agem", ... */
        const char *backend;   /* "auto" | "cpu" | "cuda" */
        char *cuda_plugin;     /* imago_cuda.so path, "" = the default places */
        const char *precision; /* "fp32" | "bf16" | "fp16" */
        int threads;           /* 0 = all cores */
        int max_side;
        imago_config_numlist scales;
        int max_batch;
        int max_delay_us;
        int queue_depth;
        int decode_threads; /* 0 = number of cores */
        int64_t max_pixels;
        int64_t max_image_bytes;
    } engine;
    struct {
        char *data_dir;
        char *factory; /* FAISS factory string, "Flat" = imago's exact search */
        int nprobe;
        int ef_search;
        int dba;
        int dba_k;
        double dba_beta;
        int qe;
        int qe_k;
        double qe_alpha;
        const char *durability; /* "normal" | "full" */
        const char *precision;  /* flat store: "fp32" | "fp16" | "bf16" */
    } index;
    struct {
        imago_config_strlist roots;
        int parallelism; /* 0 = number of cores */
        imago_config_strlist extensions;
        int recursive;
    } ingest;
} imago_config;

/* ---- the option table -------------------------------------------------- */

typedef enum imago_config_type {
    IMAGO_CONFIG_BOOL,    /* int 0/1; JSON true/false; text true/false/1/0/yes/no/on/off */
    IMAGO_CONFIG_INT,     /* int */
    IMAGO_CONFIG_INT64,   /* int64_t; with IMAGO_CONFIG_F_BYTES also "32MiB", "1G" */
    IMAGO_CONFIG_DOUBLE,  /* double */
    IMAGO_CONFIG_STRING,  /* char * */
    IMAGO_CONFIG_ENUM,    /* const char * into choices */
    IMAGO_CONFIG_STRLIST, /* imago_config_strlist; text "a,b" or a JSON array */
    IMAGO_CONFIG_NUMLIST  /* imago_config_numlist; text "1,0.5" or a JSON array */
} imago_config_type;

/* Option flags (1u is unused). */
#define IMAGO_CONFIG_F_SECRET 2u  /* redacted in dumps and error messages */
#define IMAGO_CONFIG_F_BYTES 4u   /* INT64 that accepts K/KiB/M/MiB/G/GiB suffixes */
#define IMAGO_CONFIG_F_DERIVED 8u /* "" is replaced by a value computed from others */

/* One row of the table. All pointers are static. */
typedef struct imago_config_option {
    const char *name; /* "engine.max_batch" */
    imago_config_type type;
    unsigned flags;             /* IMAGO_CONFIG_F_* */
    size_t offset;              /* of the field in imago_config */
    const char *def;            /* default in the text syntax of env/flags */
    double min, max;            /* numeric bounds (for lists: of each item) */
    int max_items;              /* lists: most items (0 = no limit) */
    const char *const *choices; /* ENUM: NULL-terminated allowed values */
    const char *help;           /* one or two sentences */
    /* Extra check of a parsed value (field points into the config): returns 0,
     * or writes why the value is invalid to msg and returns -1. May be NULL. */
    int (*check)(const void *field, char *msg, size_t cap);
} imago_config_option;

/* Number of options and the i-th (0 <= i < count), in table order (grouped by
 * section). Thread-safe. */
int imago_config_option_count(void);
const imago_config_option *imago_config_option_at(int i);

/* The option named "section.key" (also accepts "section.key-with-dashes"), or
 * NULL. Thread-safe. */
const imago_config_option *imago_config_find(const char *name);

/* Writes the environment variable name of opt ("IMAGO_ENGINE_MAX_BATCH") and
 * its canonical flag ("--engine.max-batch") into buf (cap bytes, truncated). */
void imago_config_env_name(const imago_config_option *opt, char *buf, size_t cap);
void imago_config_flag_name(const imago_config_option *opt, char *buf, size_t cap);

/* Human name of a type ("integer", "list of strings"). */
const char *imago_config_type_name(imago_config_type type);

/* ---- building and loading a config ------------------------------------ */

typedef enum imago_config_source {
    IMAGO_CONFIG_SRC_DEFAULT = 0,
    IMAGO_CONFIG_SRC_FILE = 1,
    IMAGO_CONFIG_SRC_ENV = 2,
    IMAGO_CONFIG_SRC_FLAG = 3,
    IMAGO_CONFIG_SRC_API = 4 /* imago_config_set() */
} imago_config_source;

/* "default" | "file" | "env" | "flag" | "api". */
const char *imago_config_source_name(imago_config_source src);

/* Creates a config holding the built-in defaults (all sources "default";
 * auth.admin_token_file resolved from index.data_dir). Never fails (aborts on
 * OOM like the other small allocations). Free with imago_config_free. */
imago_config *imago_config_new(void);
void imago_config_free(imago_config *cfg); /* accepts NULL */

/* A flag of the command being run that load() passes through instead of
 * treating it as unknown, e.g. {"dump-config", IMAGO_CONFIG_ARG_OPTIONAL}. */
typedef enum imago_config_arg {
    IMAGO_CONFIG_ARG_NONE = 0,     /* --name */
    IMAGO_CONFIG_ARG_REQUIRED = 1, /* --name VALUE or --name=VALUE */
    IMAGO_CONFIG_ARG_OPTIONAL = 2  /* --name or --name=VALUE */
} imago_config_arg;

typedef struct imago_config_flag {
    const char *name; /* without the leading dashes */
    imago_config_arg arg;
} imago_config_flag;

/* Applies the sources in order to cfg (fresh from imago_config_new):
 * the file named by --config FILE (or else by $IMAGO_CONFIG, if set), the
 * IMAGO_<SECTION>_<KEY> variables of envp, then the config flags of argv.
 *
 * argv[0 .. argc-1] are the arguments after the command name (borrowed).
 * envp is a NULL-terminated "NAME=VALUE" array (pass `environ`), or NULL to
 * ignore the environment. Only variables IMAGO_<SECTION>_* of a known section
 * are config variables (others such as IMAGO_SOURCE_ROOT are left alone); an
 * unknown key in a known section is an error.
 *
 * command_flags (terminated by a {NULL} row; may be NULL) are passed through.
 * On return *rest_argv (if rest_argv is not NULL) is a malloc'ed,
 * NULL-terminated array of borrowed argv pointers holding, in order, the
 * command flags (with their separate value when they take one) and the
 * positional arguments (everything after "--" is positional); *rest_argc is
 * its length. The caller frees the array (not the strings) with free(). The
 * rest is returned even when load fails.
 *
 * Returns 0, or IMAGO_ERR_INVALID when any error was found: err then says how
 * many and quotes the first, and the full list is in imago_config_error_at().
 * Options with a bad value keep their previous value. Call once per config. */
int imago_config_load(imago_config *cfg, int argc, char **argv, char **envp,
                      const imago_config_flag *command_flags, int *rest_argc, char ***rest_argv,
                      imago_error *err);

/* Sets one option from text (same syntax as an environment variable) with
 * source "api": for tests and embedders. Checks the value (type, bounds,
 * allowed values) but not the rules between options (a TLS cert needs a key):
 * call imago_config_check() after the last set. Returns 0 or
 * IMAGO_ERR_INVALID / IMAGO_ERR_NOT_FOUND with the message in err (and in the
 * error list); a bad value leaves the option unchanged. */
int imago_config_set(imago_config *cfg, const char *name, const char *value, imago_error *err);

/* Runs the checks between options that imago_config_load() runs last
 * (server.tls_cert with server.tls_key and a TLS build; engine.backend cuda in
 * a CUDA build; no fp16 with engine.backend cpu). Returns 0, or
 * IMAGO_ERR_INVALID with every violation in the error list. */
int imago_config_check(imago_config *cfg, imago_error *err);

/* Errors collected by the last load/set: count, and the i-th message
 * ("engine.max_batch: 0 (env IMAGO_ENGINE_MAX_BATCH) is out of range: must be
 * an integer in [1, 1024]"). Strings are owned by cfg, valid until the next
 * load/set/free. */
int imago_config_error_count(const imago_config *cfg);
const char *imago_config_error_at(const imago_config *cfg, int i);

/* Where the value of the option came from. *origin (if origin is not NULL)
 * receives the file path, the environment variable name, the flag as written,
 * or "" (static or owned by cfg). Returns IMAGO_CONFIG_SRC_DEFAULT for unknown
 * names. */
imago_config_source imago_config_source_of(const imago_config *cfg, const char *name,
                                           const char **origin);

/* ---- dumping ----------------------------------------------------------- */

typedef enum imago_config_dump_mode {
    /* {"engine": {"max_batch": {"value": 8, "source": "env",
     *  "from": "IMAGO_ENGINE_MAX_BATCH"}, ...}, ...} */
    IMAGO_CONFIG_DUMP_SOURCES = 0,
    /* {"engine": {"max_batch": 8, ...}, ...}: loadable with --config */
    IMAGO_CONFIG_DUMP_VALUES = 1,
    /* VALUES plus a "_help" object per section (config/imago.example.json) */
    IMAGO_CONFIG_DUMP_EXAMPLE = 2
} imago_config_dump_mode;

/* Writes the effective config as pretty JSON (trailing newline) into *out
 * (malloc'ed, caller frees). Secrets are written as "<redacted>" when set and
 * "" when not. Derived options (auth.admin_token_file given as "") are
 * written as "" in VALUES/EXAMPLE mode so the file stays portable.
 * Returns 0 or IMAGO_ERR_NOMEM. Thread-safe on a loaded config. */
int imago_config_dump_json(const imago_config *cfg, imago_config_dump_mode mode, char **out,
                           imago_error *err);

/* Writes "section.key = value    # source (origin)" lines, secrets redacted.
 * Returns 0 or IMAGO_ERR_IO. */
int imago_config_dump_text(const imago_config *cfg, FILE *out, imago_error *err);

/* Writes the help of every option (name, type, default, range or choices,
 * env variable, secret) for `imago help serve`. */
void imago_config_print_help(FILE *out);

#endif /* IMAGO_CONFIG_H */
