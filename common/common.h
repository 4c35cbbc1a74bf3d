/* imago common: error type and codes, leveled logging, checked allocation.
 *
 * Every module depends on this header and only on this header from common/.
 * Thread safety: imago_error values are owned by the caller (one per call
 * chain); the logger is safe to call from any thread.
 */
#ifndef IMAGO_COMMON_H
#define IMAGO_COMMON_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- errors ------------------------------------------------------------ */

/* Error codes: 0 is success, every failure is negative. Stable: proto/ maps
 * them to HTTP status codes and to the error strings of the API. */
enum {
    IMAGO_OK = 0,
    IMAGO_ERR_INVALID = -1,     /* a bad argument or parameter */
    IMAGO_ERR_NOMEM = -2,       /* a big allocation failed */
    IMAGO_ERR_IO = -3,          /* a read/write/open failed */
    IMAGO_ERR_FORMAT = -4,      /* malformed input data (image, model, JSON) */
    IMAGO_ERR_UNSUPPORTED = -5, /* well-formed but not supported */
    IMAGO_ERR_TOO_LARGE = -6,   /* over a configured limit (bytes, pixels) */
    IMAGO_ERR_NOT_FOUND = -7,
    IMAGO_ERR_CONFLICT = -8,
    IMAGO_ERR_BUSY = -9,        /* queue full, try again later */
    IMAGO_ERR_BACKEND = -10,    /* oneDNN / CUDA / FAISS / SQLite failure */
    IMAGO_ERR_AUTH = -11,
    IMAGO_ERR_CANCELLED = -12,
    IMAGO_ERR_INTERNAL = -13,   /* a bug */
    IMAGO_ERR_NOT_READY = -14,
    IMAGO_ERR_LAST_ = -15
};

#define IMAGO_ERROR_MSG_MAX 512

/* Caller-owned error record. The first error set wins: later calls to
 * imago_error_set() on an error that already holds one are ignored, so the
 * message names the place that detected the failure. */
typedef struct imago_error {
    int code;                      /* 0 or IMAGO_ERR_* */
    char msg[IMAGO_ERROR_MSG_MAX]; /* human readable, NUL-terminated */
} imago_error;

/* Resets err to "no error". err may be NULL. */
void imago_error_clear(imago_error *err);

/* Records code and a printf-style message in err unless err already holds an
 * error or is NULL. Returns code, so callers can `return imago_error_set(...)`. */
int imago_error_set(imago_error *err, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Prefixes the message already in err with "prefix: " (context on the way up).
 * No-op when err is NULL or holds no error. */
void imago_error_prefix(imago_error *err, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Stable lower-case name of a code ("invalid", "format", ...); never NULL. */
const char *imago_error_name(int code);

/* ---- limits of the API ------------------------------------------------- */

/* Each limit is defined here once and used by proto/ (request parsing),
 * config/ (option bounds), index/ (argument checks) and written in
 * proto/openapi.yaml (tests/unit/test_server_openapi.c checks they agree). */
#define IMAGO_SEARCH_K_MAX 1000 /* hits one search may ask for */
#define IMAGO_QE_K_MAX 100      /* neighbours averaged by query expansion */
#define IMAGO_DBA_K_MAX 64      /* neighbours added to a vector by DBA */

/* ---- logging ----------------------------------------------------------- */

typedef enum imago_log_level {
    IMAGO_LOG_DEBUG = 0,
    IMAGO_LOG_INFO = 1,
    IMAGO_LOG_WARN = 2,
    IMAGO_LOG_ERROR = 3,
    IMAGO_LOG_OFF = 4
} imago_log_level;

typedef enum imago_log_format {
    IMAGO_LOG_TEXT = 0, /* "2026-11-22T23:07:24.123Z INFO  engine: message" */
    IMAGO_LOG_JSON = 1  /* {"ts":"...","level":"info","module":"engine","msg":"..."} */
} imago_log_format;

/* Configures the single log sink. out is borrowed (default stderr). Call
 * before starting threads; imago_log() itself is thread-safe. */
void imago_log_setup(imago_log_level min_level, imago_log_format format, FILE *out);

/* Parses "debug|info|warn|error|off"; returns 0 or IMAGO_ERR_INVALID. */
int imago_log_level_parse(const char *s, imago_log_level *out);

/* Whether a message of this level would be written. */
int imago_log_enabled(imago_log_level level);

/* Writes one line (one JSON object in JSON mode). module is a short static
 * name ("engine"). Thread-safe: lines from different threads never interleave. */
void imago_log(imago_log_level level, const char *module, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
void imago_logv(imago_log_level level, const char *module, const char *fmt, va_list ap);

#define IMAGO_DEBUG(mod, ...) imago_log(IMAGO_LOG_DEBUG, mod, __VA_ARGS__)
#define IMAGO_INFO(mod, ...) imago_log(IMAGO_LOG_INFO, mod, __VA_ARGS__)
#define IMAGO_WARN(mod, ...) imago_log(IMAGO_LOG_WARN, mod, __VA_ARGS__)
#define IMAGO_ERROR(mod, ...) imago_log(IMAGO_LOG_ERROR, mod, __VA_ARGS__)

/* ---- allocation -------------------------------------------------------- */

/* a * b into *out; returns 0, or IMAGO_ERR_TOO_LARGE on overflow (out untouched). */
int imago_size_mul(size_t a, size_t b, size_t *out);
/* a * b * c, same contract. */
int imago_size_mul3(size_t a, size_t b, size_t c, size_t *out);
/* a + b, same contract. */
int imago_size_add(size_t a, size_t b, size_t *out);

/* Small bookkeeping allocations: abort with a message on OOM, never NULL
 * (n == 0 allocates 1 byte). Free with free(). */
void *imago_xmalloc(size_t n);
void *imago_xcalloc(size_t count, size_t size); /* overflow-checked, aborts */
void *imago_xrealloc(void *p, size_t n);
char *imago_xstrdup(const char *s);

/* Big buffers: count * size bytes, overflow-checked; returns 0 and sets *out,
 * or IMAGO_ERR_NOMEM / IMAGO_ERR_TOO_LARGE with a message in err. The memory
 * is 64-byte aligned and zeroed when zero != 0. Free with imago_free_aligned. */
int imago_alloc_array(size_t count, size_t size, int zero, void **out, imago_error *err);
void imago_free_aligned(void *p);

/* Reads the whole file at path into malloc'ed memory (*data, NUL-terminated
 * after its *len bytes; free with free()). IMAGO_ERR_IO when it cannot be
 * opened or read, IMAGO_ERR_TOO_LARGE over max_bytes (common/file.c). */
int imago_read_file(const char *path, size_t max_bytes, void **data, size_t *len,
                    imago_error *err);

/* Monotonic clock in microseconds / seconds (for timings and rates). */
int64_t imago_now_us(void);
double imago_now_s(void);

#endif /* IMAGO_COMMON_H */
