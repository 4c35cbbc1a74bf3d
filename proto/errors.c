/* The stable table of API error codes: name, HTTP status, Retry-After, the
 * mapping from internal IMAGO_ERR_* codes, and the JSON error body. */
#include "proto_int.h"

#include <stdlib.h>
#include <string.h>

static const struct {
    const char *name;
    int status;
    int retry_after;
} api_errors[IMAGO_API_ERROR_COUNT_] = {
    [IMAGO_API_OK] = {"ok", 200, 0},
    [IMAGO_API_INVALID_REQUEST] = {"invalid_request", 400, 0},
    [IMAGO_API_INVALID_PARAMETER] = {"invalid_parameter", 400, 0},
    [IMAGO_API_INVALID_JSON] = {"invalid_json", 400, 0},
    [IMAGO_API_INVALID_IMAGE] = {"invalid_image", 400, 0},
    [IMAGO_API_UNAUTHORIZED] = {"unauthorized", 401, 0},
    [IMAGO_API_FORBIDDEN] = {"forbidden", 403, 0},
    [IMAGO_API_NOT_FOUND] = {"not_found", 404, 0},
    [IMAGO_API_METHOD_NOT_ALLOWED] = {"method_not_allowed", 405, 0},
    [IMAGO_API_CONFLICT] = {"conflict", 409, 0},
    [IMAGO_API_PAYLOAD_TOO_LARGE] = {"payload_too_large", 413, 0},
    [IMAGO_API_IMAGE_TOO_LARGE] = {"image_too_large", 413, 0},
    [IMAGO_API_UNSUPPORTED_MEDIA_TYPE] = {"unsupported_media_type", 415, 0},
    [IMAGO_API_UNPROCESSABLE] = {"unprocessable", 422, 0},
    [IMAGO_API_INTERNAL] = {"internal", 500, 0},
    [IMAGO_API_BUSY] = {"busy", 503, 1},
    [IMAGO_API_NOT_READY] = {"not_ready", 503, 1},
};

static int api_valid(imago_api_error code)
{
    return (int)code >= 0 && code < IMAGO_API_ERROR_COUNT_;
}

const char *imago_api_error_name(imago_api_error code)
{
    return api_valid(code) ? api_errors[code].name : "internal";
}

int imago_api_error_status(imago_api_error code)
{
    return api_valid(code) ? api_errors[code].status : 500;
}

int imago_api_error_retry_after(imago_api_error code)
{
    return api_valid(code) ? api_errors[code].retry_after : 0;
}

int imago_api_error_parse(const char *name, imago_api_error *out, imago_error *err)
{
    if (name) {
        for (int i = 0; i < IMAGO_API_ERROR_COUNT_; i++) {
            if (strcmp(name, api_errors[i].name) == 0) {
                *out = (imago_api_error)i;
                return 0;
            }
        }
    }
    return imago_error_set(err, IMAGO_ERR_INVALID, "unknown API error code \"%s\"",
                           name ? name : "(null)");
}

imago_api_error imago_api_error_from_code(int imago_code, imago_api_context ctx)
{
    switch (imago_code) {
    case IMAGO_OK: return IMAGO_API_OK;
    case IMAGO_ERR_INVALID: return IMAGO_API_INVALID_PARAMETER;
    case IMAGO_ERR_FORMAT:
        if (ctx == IMAGO_API_CTX_IMAGE)
            return IMAGO_API_INVALID_IMAGE;
        if (ctx == IMAGO_API_CTX_JSON)
            return IMAGO_API_INVALID_JSON;
        return IMAGO_API_INVALID_REQUEST;
    case IMAGO_ERR_UNSUPPORTED:
        if (ctx == IMAGO_API_CTX_IMAGE || ctx == IMAGO_API_CTX_REQUEST)
            return IMAGO_API_UNSUPPORTED_MEDIA_TYPE;
        return IMAGO_API_UNPROCESSABLE;
    case IMAGO_ERR_TOO_LARGE:
        return ctx == IMAGO_API_CTX_IMAGE ? IMAGO_API_IMAGE_TOO_LARGE : IMAGO_API_PAYLOAD_TOO_LARGE;
    case IMAGO_ERR_NOT_FOUND: return IMAGO_API_NOT_FOUND;
    case IMAGO_ERR_CONFLICT:
    case IMAGO_ERR_CANCELLED: return IMAGO_API_CONFLICT;
    case IMAGO_ERR_BUSY: return IMAGO_API_BUSY;
    case IMAGO_ERR_NOT_READY: return IMAGO_API_NOT_READY;
    case IMAGO_ERR_AUTH: return IMAGO_API_UNAUTHORIZED;
    case IMAGO_ERR_NOMEM:
    case IMAGO_ERR_IO:
    case IMAGO_ERR_BACKEND:
    case IMAGO_ERR_INTERNAL:
    default: return IMAGO_API_INTERNAL;
    }
}

char *imago_api_error_body(imago_api_error code, const char *message)
{
    const char *name = imago_api_error_name(code);
    char *msg = proto_utf8_sanitize(message ? message : name, strlen(message ? message : name));
    json_t *inner = json_pack("{s:s, s:s}", "code", name, "message", msg);
    json_t *root = inner ? json_pack("{s:o}", "error", inner) : NULL;
    free(msg);
    char *out = root ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    if (!out) {
        /* only reachable on OOM inside jansson */
        fprintf(stderr, "imago: out of memory formatting an error body\n");
        abort();
    }
    return out;
}
