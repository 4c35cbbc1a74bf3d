/* Error records: first error wins, messages formatted where the failure is
 * detected, with optional context prefixes added on the way up. */
#include "common.h"

#include <string.h>

void imago_error_clear(imago_error *err)
{
    if (err) {
        err->code = 0;
        err->msg[0] = '\0';
    }
}

int imago_error_set(imago_error *err, int code, const char *fmt, ...)
{
    if (!err || err->code != 0)
        return code;
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return code;
}

void imago_error_prefix(imago_error *err, const char *fmt, ...)
{
    if (!err || err->code == 0)
        return;
    char prefix[IMAGO_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    /* prefix + ": " + old message, truncated to the buffer */
    char joined[IMAGO_ERROR_MSG_MAX];
    size_t n = strlen(prefix);
    if (n > sizeof joined - 3)
        n = sizeof joined - 3;
    memcpy(joined, prefix, n);
    joined[n++] = ':';
    joined[n++] = ' ';
    size_t rest = strlen(err->msg);
    if (rest > sizeof joined - 1 - n)
        rest = sizeof joined - 1 - n;
    memcpy(joined + n, err->msg, rest);
    joined[n + rest] = '\0';
    memcpy(err->msg, joined, sizeof joined);
}

const char *imago_error_name(int code)
{
    switch (code) {
    case IMAGO_OK: return "ok";
    case IMAGO_ERR_INVALID: return "invalid";
    case IMAGO_ERR_NOMEM: return "nomem";
    case IMAGO_ERR_IO: return "io";
    case IMAGO_ERR_FORMAT: return "format";
    case IMAGO_ERR_UNSUPPORTED: return "unsupported";
    case IMAGO_ERR_TOO_LARGE: return "too_large";
    case IMAGO_ERR_NOT_FOUND: return "not_found";
    case IMAGO_ERR_CONFLICT: return "conflict";
    case IMAGO_ERR_BUSY: return "busy";
    case IMAGO_ERR_BACKEND: return "backend";
    case IMAGO_ERR_AUTH: return "auth";
    case IMAGO_ERR_CANCELLED: return "cancelled";
    case IMAGO_ERR_INTERNAL: return "internal";
    case IMAGO_ERR_NOT_READY: return "not_ready";
    default: return "unknown";
    }
}
