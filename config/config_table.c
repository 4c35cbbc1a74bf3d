/* The option table: every configuration key of imago, its type, default,
 * bounds or allowed values, flags and help; and the retired keys, still
 * accepted and ignored. To add an option: add the field to imago_config in
 * config.h, one row here (in its section), then regenerate
 * config/imago.example.json (test_config_dump fails until you do). */
#include "config_int.h"

#include <arpa/inet.h>
#include <stddef.h>
#include <string.h>

#define F(field) offsetof(imago_config, field)
#define SECRET IMAGO_CONFIG_F_SECRET
#define KIB 1024.0
#define MIB (1024.0 * 1024.0)
#define GIB (1024.0 * 1024.0 * 1024.0)

#define BOOL(nm, fld, dflt, fl, hlp)                                                               \
    {                                                                                              \
        .name = nm, .type = IMAGO_CONFIG_BOOL, .flags = fl, .offset = F(fld), .def = dflt,         \
        .help = hlp                                                                                \
    }
/* The numeric rows: INT (int), INT64 (int64_t), BYTES (int64_t with K/M/G
 * suffixes), DOUBLE. */
#define NUM(ty, nm, fld, dflt, lo, hi, fl, hlp)                                                    \
    {                                                                                              \
        .name = nm, .type = ty, .flags = fl, .offset = F(fld), .def = dflt, .min = lo, .max = hi,  \
        .help = hlp                                                                                \
    }
#define INT(nm, fld, dflt, lo, hi, fl, hlp) NUM(IMAGO_CONFIG_INT, nm, fld, dflt, lo, hi, fl, hlp)
#define INT64(nm, fld, dflt, lo, hi, fl, hlp)                                                      \
    NUM(IMAGO_CONFIG_INT64, nm, fld, dflt, lo, hi, fl, hlp)
#define BYTES(nm, fld, dflt, lo, hi, fl, hlp)                                                      \
    INT64(nm, fld, dflt, lo, hi, (fl) | IMAGO_CONFIG_F_BYTES, hlp)
#define DOUBLE(nm, fld, dflt, lo, hi, fl, hlp)                                                     \
    NUM(IMAGO_CONFIG_DOUBLE, nm, fld, dflt, lo, hi, fl, hlp)
#define STRING(nm, fld, dflt, fl, chk, hlp)                                                        \
    {                                                                                              \
        .name = nm, .type = IMAGO_CONFIG_STRING, .flags = fl, .offset = F(fld), .def = dflt,       \
        .help = hlp, .check = chk                                                                  \
    }
#define ENUM(nm, fld, dflt, values, fl, hlp)                                                       \
    {                                                                                              \
        .name = nm, .type = IMAGO_CONFIG_ENUM, .flags = fl, .offset = F(fld), .def = dflt,         \
        .choices = values, .help = hlp                                                             \
    }
#define STRLIST(nm, fld, dflt, most, fl, chk, hlp)                                                 \
    {                                                                                              \
        .name = nm, .type = IMAGO_CONFIG_STRLIST, .flags = fl, .offset = F(fld), .def = dflt,      \
        .max_items = most, .help = hlp, .check = chk                                               \
    }
#define NUMLIST(nm, fld, dflt, lo, hi, most, fl, hlp)                                              \
    {                                                                                              \
        .name = nm, .type = IMAGO_CONFIG_NUMLIST, .flags = fl, .offset = F(fld), .def = dflt,      \
        .min = lo, .max = hi, .max_items = most, .help = hlp                                       \
    }

/* ---- extra checks ------------------------------------------------------ */

static int check_nonempty(const void *field, char *msg, size_t cap)
{
    if (**(char *const *)field == '\0') {
        snprintf(msg, cap, "must not be empty");
        return -1;
    }
    return 0;
}

static int check_listen(const void *field, char *msg, size_t cap)
{
    const char *s = *(char *const *)field;
    unsigned char buf[16];
    if (strcmp(s, "localhost") == 0 || inet_pton(AF_INET, s, buf) == 1 ||
        inet_pton(AF_INET6, s, buf) == 1)
        return 0;
    snprintf(msg, cap,
             "must be an IPv4 or IPv6 address (\"0.0.0.0\", \"::\", \"127.0.0.1\") "
             "or \"localhost\"");
    return -1;
}

static int check_cors(const void *field, char *msg, size_t cap)
{
    const char *s = *(char *const *)field;
    if (*s == '\0' || strcmp(s, "*") == 0 || strncmp(s, "http://", 7) == 0 ||
        strncmp(s, "https://", 8) == 0)
        return 0;
    snprintf(msg, cap, "must be \"\", \"*\" or an origin such as \"https://example.org\"");
    return -1;
}

static int check_roots(const void *field, char *msg, size_t cap)
{
    const imago_config_strlist *l = field;
    for (int i = 0; i < l->n; i++) {
        if (l->items[i][0] == '\0') {
            snprintf(msg, cap, "item %d is an empty path", i + 1);
            return -1;
        }
    }
    return 0;
}

static int check_extensions(const void *field, char *msg, size_t cap)
{
    const imago_config_strlist *l = field;
    for (int i = 0; i < l->n; i++) {
        const char *e = l->items[i];
        if (e[0] != '.' || e[1] == '\0' || strchr(e, '/') != NULL) {
            snprintf(msg, cap, "item %d (\"%s\") must look like \".jpg\"", i + 1, e);
            return -1;
        }
    }
    return 0;
}

/* ---- allowed values ---------------------------------------------------- */

static const char *const log_levels[] = {"debug", "info", "warn", "error", NULL};
static const char *const log_formats[] = {"text", "json", NULL};
static const char *const demo_archs[] = {"resnet50-gem",     "resnet101-gem",     "resnet152-gem",
                                         "resnet50-agem",    "resnet101-agem",    "resnet152-agem",
                                         "resnet50-glam",    "resnet101-glam",    "resnet152-glam",
                                         "resnet50-apgem",   "resnet101-apgem",   "resnet152-apgem",
                                         "resnet50-glap",    "resnet101-glap",    "resnet152-glap",
                                         "mobilenet_v2-gem", "mobilenet_v2-glam",
                                         "mobilenet_v2-apgem", "mobilenet_v2-glap", NULL};
static const char *const backends[] = {"auto", "cpu", "cuda", NULL};
static const char *const precisions[] = {"fp32", "bf16", "fp16", NULL};
static const char *const store_precisions[] = {"fp32", "fp16", "bf16", NULL};
static const char *const durabilities[] = {"normal", "full", NULL};

const char *const imago_config_sections[] = {"server", "auth", "engine", "index", "ingest", NULL};

/* ---- the table --------------------------------------------------------- */

const imago_config_option imago_config_table[] = {
    /* server */
    STRING("server.listen", server.listen, "0.0.0.0", 0, check_listen,
           "Address the HTTP server binds: an IPv4/IPv6 literal (\"0.0.0.0\" = all IPv4 "
           "interfaces, \"::\" = all IPv6) or \"localhost\"."),
    INT("server.port", server.port, "8080", 0, 65535, 0,
        "TCP port; 0 picks a free port (the server logs the one it got)."),
    INT("server.threads", server.threads, "0", 0, 1024, 0,
        "HTTP worker threads; 0 = one per CPU core."),
    BYTES("server.max_body_bytes", server.max_body_bytes, "32MiB", 1 * KIB, 4 * GIB, 0,
          "Largest request body accepted (413 above it); accepts K/KiB/M/MiB/G/GiB."),
    INT("server.max_connections", server.max_connections, "1024", 1, 1000000, 0,
        "Most concurrent client connections; more are refused."),
    INT("server.connection_timeout_s", server.connection_timeout_s, "30", 0, 86400, 0,
        "Seconds an idle connection stays open; 0 = no limit."),
    INT("server.request_timeout_s", server.request_timeout_s, "60", 0, 86400, 0,
        "Seconds a request may take from its last byte to its answer (503 after); 0 = no "
        "limit."),
    STRING("server.tls_cert", server.tls_cert, "", 0, NULL,
           "PEM certificate file for HTTPS; set together with server.tls_key, empty = plain "
           "HTTP."),
    STRING("server.tls_key", server.tls_key, "", 0, NULL,
           "PEM private key file for HTTPS; set together with server.tls_cert."),
    STRING("server.cors_origin", server.cors_origin, "", 0, check_cors,
           "Value of Access-Control-Allow-Origin (\"*\" or \"https://host\"); empty = no CORS "
           "headers."),
    BOOL("server.web", server.web, "true", 0, "Serve the search web page at /."),
    ENUM("server.log_level", server.log_level, "info", log_levels, 0,
         "Least severe log level written."),
    ENUM("server.log_format", server.log_format, "text", log_formats, 0,
         "Log lines as text or as one JSON object per line."),

    /* auth */
    STRING("auth.admin_token", auth.admin_token, "", SECRET, NULL,
           "Bearer token for the admin API. Empty: imago generates one on first start, "
           "stores it (mode 0600) in auth.admin_token_file and prints it once."),
    STRING("auth.search_token", auth.search_token, "", SECRET, NULL,
           "Bearer token required for search/extract/read endpoints; empty = open."),
    {.name = "auth.admin_token_file",
     .type = IMAGO_CONFIG_STRING,
     .flags = IMAGO_CONFIG_F_DERIVED,
     .offset = F(auth.admin_token_file),
     .def = "",
     .help = "Where a generated admin token is stored; empty = <index.data_dir>/admin.token."},

    /* engine */
    STRING("engine.model", engine.model, "", 0, NULL,
           "Model file (.safetensors, see tools/convert.py); empty = the built-in demo model "
           "(random weights from a fixed seed: works end to end, not a trained model)."),
    ENUM("engine.demo_arch", engine.demo_arch, "resnet50-gem", demo_archs, 0,
         "Architecture of the demo model. resnet50-gem needs about half the compute and "
         "memory of resnet101-agem, which matters on CPU-only hosts; untrained weights gain "
         "nothing from the larger network."),
    ENUM("engine.backend", engine.backend, "auto", backends, 0,
         "Compute backend: auto = CUDA when the GPU plugin loads and finds a device, else "
         "CPU (oneDNN); cuda = fail unless the GPU can be used."),
    STRING("engine.cuda_plugin", engine.cuda_plugin, "", 0, NULL,
           "Path of the GPU backend plugin imago_cuda.so; empty = ../lib/imago/ next to the "
           "imago binary, then the install directory, then the build tree."),
    ENUM("engine.precision", engine.precision, "fp32", precisions, 0,
         "Arithmetic precision: fp32 (the reference), bf16 (AVX-512 BF16 CPUs, GPUs), "
         "fp16 (CUDA only)."),
    INT("engine.threads", engine.threads, "0", 0, 1024, 0,
        "CPU threads for the network; 0 = all cores."),
    INT("engine.max_side", engine.max_side, "1024", 64, 8192, 0,
        "Images are resized so the longer side is at most this (never upscaled)."),
    NUMLIST("engine.scales", engine.scales, "1,0.70710678,0.5", 0.0625, 2.0, 8, 0,
            "Multi-scale extraction factors (1 to 8 values in [0.0625, 2]); the descriptor "
            "is the GeM of the per-scale descriptors."),
    INT("engine.max_batch", engine.max_batch, "8", 1, 1024, 0,
        "Most images of the same shape run in one forward pass."),
    INT("engine.max_delay_us", engine.max_delay_us, "2000", 0, 1000000, 0,
        "Longest time (microseconds) the oldest queued image waits for a batch to fill."),
    INT("engine.queue_depth", engine.queue_depth, "256", 1, 65536, 0,
        "Most images waiting for the network; beyond it requests get 503 + Retry-After."),
    INT("engine.decode_threads", engine.decode_threads, "0", 0, 256, 0,
        "Threads decoding and resizing images; 0 = one per CPU core."),
    INT64("engine.max_pixels", engine.max_pixels, "100000000", 1, 1e9, 0,
          "Largest declared image size (width x height) decoded; larger images are refused "
          "before any allocation (413)."),
    BYTES("engine.max_image_bytes", engine.max_image_bytes, "32MiB", 1 * KIB, 4 * GIB, 0,
          "Largest encoded image accepted (upload or file); accepts K/KiB/M/MiB/G/GiB."),

    /* index */
    STRING("index.data_dir", index.data_dir, "./imago-data", 0, check_nonempty,
           "Directory of the SQLite store, index snapshots and the admin token (created if "
           "missing). Relative paths are relative to the working directory; a system "
           "service should use /var/lib/imago."),
    STRING("index.factory", index.factory, "Flat", 0, check_nonempty,
           "FAISS index factory string: \"Flat\" (exact, imago's own BLAS search), "
           "\"HNSW32\", \"IVF4096,PQ64\", ..."),
    INT("index.nprobe", index.nprobe, "16", 1, 65536, 0,
        "IVF indexes: inverted lists visited per query."),
    INT("index.ef_search", index.ef_search, "64", 1, 65536, 0,
        "HNSW indexes: search-time candidate list size."),
    BOOL("index.dba", index.dba, "false", 0,
         "Database-side augmentation: helps when objects have several views in the "
         "collection (landmarks), hurts near-duplicate search."),
    INT("index.dba_k", index.dba_k, "2", 1, IMAGO_DBA_K_MAX, 0, "DBA: neighbours added to each vector."),
    DOUBLE("index.dba_beta", index.dba_beta, "1", 0, 100, 0,
           "DBA: neighbour weight exponent (x_i . x_j)^beta."),
    BOOL("index.qe", index.qe, "false", 0,
         "Alpha query expansion by default (requests may override)."),
    INT("index.qe_k", index.qe_k, "2", 1, IMAGO_QE_K_MAX, 0, "QE: neighbours averaged into the query."),
    DOUBLE("index.qe_alpha", index.qe_alpha, "0", 0, 100, 0,
           "QE: neighbour weight exponent (q . x_j)^alpha; 0 = average QE."),
    ENUM("index.durability", index.durability, "normal", durabilities, 0,
         "SQLite sync: normal survives a process crash (WAL), full also a power loss."),
    ENUM("index.precision", index.precision, "fp32", store_precisions, 0,
         "Element type of the exact (Flat) vector store: fp16/bf16 halve memory and "
         "bandwidth."),

    /* ingest */
    STRLIST("ingest.roots", ingest.roots, "", 0, 0, check_roots,
            "Directories bulk jobs may read (symlinks resolved and checked); empty = "
            "directory jobs are refused."),
    INT("ingest.parallelism", ingest.parallelism, "0", 0, 256, 0,
        "Files a bulk job reads and decodes at once; 0 = one per CPU core."),
    STRLIST("ingest.extensions", ingest.extensions, ".jpg,.jpeg,.png", 64, 0, check_extensions,
            "File extensions a directory job picks up (case-insensitive)."),
    BOOL("ingest.recursive", ingest.recursive, "true", 0,
         "Whether directory jobs descend into subdirectories unless the job says."),
};

const int imago_config_table_len = (int)(sizeof imago_config_table / sizeof imago_config_table[0]);

/* Options that were removed; see imago_config_retired_key. */
const imago_config_retired_key imago_config_retired_keys[] = {
    {"index.snapshot_interval_s",
     "no code ever read it; the index writes its snapshot after every 10000 changes and at "
     "shutdown, and a start replays the store after the snapshot either way"},
    {NULL, NULL},
};
