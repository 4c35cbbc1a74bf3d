/* Unit tests for proto/errors.c: the API error table (names, HTTP status,
 * Retry-After), the IMAGO_ERR_* mapping and the JSON error body. */
#include "proto/proto.h"
#include "tap.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

int main(void)
{
    static const struct {
        imago_api_error code;
        const char *name;
        int status;
    } table[] = {
        {IMAGO_API_INVALID_REQUEST, "invalid_request", 400},
        {IMAGO_API_INVALID_PARAMETER, "invalid_parameter", 400},
        {IMAGO_API_INVALID_JSON, "invalid_json", 400},
        {IMAGO_API_INVALID_IMAGE, "invalid_image", 400},
        {IMAGO_API_UNAUTHORIZED, "unauthorized", 401},
        {IMAGO_API_FORBIDDEN, "forbidden", 403},
        {IMAGO_API_NOT_FOUND, "not_found", 404},
        {IMAGO_API_METHOD_NOT_ALLOWED, "method_not_allowed", 405},
        {IMAGO_API_CONFLICT, "conflict", 409},
        {IMAGO_API_PAYLOAD_TOO_LARGE, "payload_too_large", 413},
        {IMAGO_API_IMAGE_TOO_LARGE, "image_too_large", 413},
        {IMAGO_API_UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", 415},
        {IMAGO_API_UNPROCESSABLE, "unprocessable", 422},
        {IMAGO_API_INTERNAL, "internal", 500},
        {IMAGO_API_BUSY, "busy", 503},
        {IMAGO_API_NOT_READY, "not_ready", 503},
    };
    int n = (int)(sizeof table / sizeof table[0]);
    is_int(n, IMAGO_API_ERROR_COUNT_ - 1, "every API error code is in the test table");
    for (int i = 0; i < n; i++) {
        is_str(imago_api_error_name(table[i].code), table[i].name, "name of %s", table[i].name);
        is_int(imago_api_error_status(table[i].code), table[i].status, "status of %s",
               table[i].name);
        imago_api_error back = IMAGO_API_OK;
        imago_error err;
        imago_error_clear(&err);
        is_int(imago_api_error_parse(table[i].name, &back, &err), 0, "parse %s", table[i].name);
        is_int(back, table[i].code, "parse %s round-trips", table[i].name);
        is_int(imago_api_error_retry_after(table[i].code), table[i].status == 503,
               "Retry-After only for 503 (%s)", table[i].name);
    }
    is_str(imago_api_error_name((imago_api_error)999), "internal", "unknown code -> internal");
    is_int(imago_api_error_status((imago_api_error)999), 500, "unknown code -> 500");
    is_int(imago_api_error_status((imago_api_error)-3), 500, "negative code -> 500");
    imago_api_error dummy;
    imago_error err;
    imago_error_clear(&err);
    is_int(imago_api_error_parse("nope", &dummy, &err), IMAGO_ERR_INVALID, "unknown name refused");

    /* mapping from internal codes */
    static const struct {
        int code;
        imago_api_context ctx;
        imago_api_error want;
    } map[] = {
        {0, IMAGO_API_CTX_GENERIC, IMAGO_API_OK},
        {IMAGO_ERR_INVALID, IMAGO_API_CTX_GENERIC, IMAGO_API_INVALID_PARAMETER},
        {IMAGO_ERR_INVALID, IMAGO_API_CTX_IMAGE, IMAGO_API_INVALID_PARAMETER},
        {IMAGO_ERR_FORMAT, IMAGO_API_CTX_IMAGE, IMAGO_API_INVALID_IMAGE},
        {IMAGO_ERR_FORMAT, IMAGO_API_CTX_JSON, IMAGO_API_INVALID_JSON},
        {IMAGO_ERR_FORMAT, IMAGO_API_CTX_REQUEST, IMAGO_API_INVALID_REQUEST},
        {IMAGO_ERR_FORMAT, IMAGO_API_CTX_GENERIC, IMAGO_API_INVALID_REQUEST},
        {IMAGO_ERR_UNSUPPORTED, IMAGO_API_CTX_IMAGE, IMAGO_API_UNSUPPORTED_MEDIA_TYPE},
        {IMAGO_ERR_UNSUPPORTED, IMAGO_API_CTX_REQUEST, IMAGO_API_UNSUPPORTED_MEDIA_TYPE},
        {IMAGO_ERR_UNSUPPORTED, IMAGO_API_CTX_GENERIC, IMAGO_API_UNPROCESSABLE},
        {IMAGO_ERR_TOO_LARGE, IMAGO_API_CTX_IMAGE, IMAGO_API_IMAGE_TOO_LARGE},
        {IMAGO_ERR_TOO_LARGE, IMAGO_API_CTX_REQUEST, IMAGO_API_PAYLOAD_TOO_LARGE},
        {IMAGO_ERR_NOT_FOUND, IMAGO_API_CTX_GENERIC, IMAGO_API_NOT_FOUND},
        {IMAGO_ERR_CONFLICT, IMAGO_API_CTX_GENERIC, IMAGO_API_CONFLICT},
        {IMAGO_ERR_CANCELLED, IMAGO_API_CTX_GENERIC, IMAGO_API_CONFLICT},
        {IMAGO_ERR_BUSY, IMAGO_API_CTX_IMAGE, IMAGO_API_BUSY},
        {IMAGO_ERR_NOT_READY, IMAGO_API_CTX_GENERIC, IMAGO_API_NOT_READY},
        {IMAGO_ERR_AUTH, IMAGO_API_CTX_GENERIC, IMAGO_API_UNAUTHORIZED},
        {IMAGO_ERR_NOMEM, IMAGO_API_CTX_IMAGE, IMAGO_API_INTERNAL},
        {IMAGO_ERR_IO, IMAGO_API_CTX_GENERIC, IMAGO_API_INTERNAL},
        {IMAGO_ERR_BACKEND, IMAGO_API_CTX_IMAGE, IMAGO_API_INTERNAL},
        {IMAGO_ERR_INTERNAL, IMAGO_API_CTX_GENERIC, IMAGO_API_INTERNAL},
        {-1234, IMAGO_API_CTX_GENERIC, IMAGO_API_INTERNAL},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        is_str(imago_api_error_name(imago_api_error_from_code(map[i].code, map[i].ctx)),
               imago_api_error_name(map[i].want), "map %s (ctx %d)", imago_error_name(map[i].code),
               (int)map[i].ctx);
    /* status of the mapped codes: the proto/openapi.yaml ErrorCode list */
    is_int(imago_api_error_status(imago_api_error_from_code(IMAGO_ERR_BUSY, 0)), 503, "busy 503");
    is_int(
        imago_api_error_status(imago_api_error_from_code(IMAGO_ERR_TOO_LARGE, IMAGO_API_CTX_IMAGE)),
        413, "too large image 413");

    /* error body */
    char *body = imago_api_error_body(IMAGO_API_INVALID_IMAGE, "image: truncated \"JPEG\"");
    is_str(body,
           "{\"error\":{\"code\":\"invalid_image\",\"message\":\"image: truncated \\\"JPEG\\\"\"}}",
           "error body exact text");
    free(body);
    body = imago_api_error_body(IMAGO_API_NOT_FOUND, NULL);
    is_str(body, "{\"error\":{\"code\":\"not_found\",\"message\":\"not_found\"}}",
           "NULL message -> the code name");
    free(body);
    body = imago_api_error_body(IMAGO_API_INVALID_PARAMETER, "bad \xff\xfe byte \xc3\xa9");
    json_error_t je;
    json_t *j = json_loads(body, 0, &je);
    ok(j != NULL, "invalid UTF-8 message still gives valid JSON");
    is_str(json_string_value(json_object_get(json_object_get(j, "error"), "message")),
           "bad ?? byte \xc3\xa9", "invalid bytes replaced, valid UTF-8 kept");
    json_decref(j);
    free(body);
    return tap_done();
}
