/* The upload of an image: the parameters (query string, multipart fields)
 * and the image of POST /v1/search, /v1/extract and /v1/images, checked
 * (size, JPEG or PNG) before any of them runs.
 */
#include "app.h"

#include <stdio.h>
#include <string.h>

static int set_param(imago_upload *u, const char *name, const char *value, size_t len,
                     imago_error *err)
{
    if (u->kind == IMAGO_UPLOAD_SEARCH)
        return imago_search_params_set(&u->search, name, value, len, err);
    return imago_add_image_params_set(&u->add, name, value, len, err);
}

static int query_param_cb(void *ctx, const char *name, const char *value, size_t len,
                          imago_error *err)
{
    return set_param(ctx, name, value, len, err);
}

void imago_upload_clear(imago_upload *u)
{
    imago_search_params_clear(&u->search);
    imago_add_image_params_clear(&u->add);
    imago_multipart_free(u->mp);
    u->mp = NULL;
}

int imago_upload_read(imago_http_request *r, imago_http_response *resp, imago_upload_kind kind,
                      imago_upload *u)
{
    memset(u, 0, sizeof *u);
    u->kind = kind;
    u->search = imago_search_params_default();
    u->add = imago_add_image_params_default();
    const imago_config *cfg = imago_server_config(imago_app_server(r));
    imago_error err;
    imago_error_clear(&err);
    if (imago_http_query_each(r, query_param_cb, u, &err) != 0) {
        imago_http_fail_code(resp, &err, IMAGO_API_CTX_JSON);
        return -1;
    }
    imago_content_type ct;
    if (imago_content_type_parse(imago_http_header(r, "Content-Type"), &ct, &err) != 0) {
        imago_http_fail(resp, IMAGO_API_INVALID_REQUEST, err.msg);
        return -1;
    }
    size_t len = 0;
    const uint8_t *body = imago_http_body(r, &len);
    imago_media declared = ct.media;
    if (ct.media == IMAGO_MEDIA_MULTIPART) {
        if (imago_multipart_parse(body, len, ct.boundary, NULL, &u->mp, &err) != 0) {
            imago_http_fail_code(resp, &err, IMAGO_API_CTX_REQUEST);
            return -1;
        }
        const imago_multipart_part *img = NULL;
        for (int i = 0; i < u->mp->n_parts; i++) {
            const imago_multipart_part *p = &u->mp->parts[i];
            if (strcmp(p->name, IMAGO_PROTO_IMAGE_FIELD) == 0) {
                if (img) {
                    imago_http_fail(resp, IMAGO_API_INVALID_PARAMETER,
                                    "image: given more than once");
                    return -1;
                }
                img = p;
                continue;
            }
            if (set_param(u, p->name, (const char *)p->data, p->len, &err) != 0) {
                imago_http_fail_code(resp, &err, IMAGO_API_CTX_JSON);
                return -1;
            }
        }
        if (!img) {
            imago_http_fail(resp, IMAGO_API_INVALID_PARAMETER,
                            "image: required (a multipart field named image)");
            return -1;
        }
        declared = IMAGO_MEDIA_OCTET;
        if (img->content_type) {
            imago_content_type pct;
            imago_error_clear(&err);
            if (imago_content_type_parse(img->content_type, &pct, &err) != 0) {
                imago_http_fail(resp, IMAGO_API_INVALID_REQUEST, err.msg);
                return -1;
            }
            if (pct.media != IMAGO_MEDIA_JPEG && pct.media != IMAGO_MEDIA_PNG &&
                pct.media != IMAGO_MEDIA_OCTET && pct.media != IMAGO_MEDIA_NONE) {
                char msg[192];
                snprintf(msg, sizeof msg,
                         "image: Content-Type '%s' is not supported; send "
                         "image/jpeg or image/png",
                         pct.type);
                imago_http_fail(resp, IMAGO_API_UNSUPPORTED_MEDIA_TYPE, msg);
                return -1;
            }
            if (pct.media != IMAGO_MEDIA_NONE)
                declared = pct.media;
        }
        u->image = img->data;
        u->image_len = img->len;
    } else {
        u->image = body;
        u->image_len = len;
    }
    if (u->image_len == 0) {
        imago_http_fail(resp, IMAGO_API_INVALID_IMAGE, "image: empty");
        return -1;
    }
    if ((uint64_t)u->image_len > (uint64_t)cfg->engine.max_image_bytes) {
        char msg[96];
        snprintf(msg, sizeof msg, "image: %zu bytes is over engine.max_image_bytes (%lld)",
                 u->image_len, (long long)cfg->engine.max_image_bytes);
        imago_http_fail(resp, IMAGO_API_PAYLOAD_TOO_LARGE, msg);
        return -1;
    }
    if (imago_media_sniff(u->image, u->image_len) == IMAGO_MEDIA_OTHER) {
        /* declared JPEG/PNG that is not one is corrupt; anything else is a
         * format imago does not read */
        if (declared == IMAGO_MEDIA_JPEG || declared == IMAGO_MEDIA_PNG)
            imago_http_fail(resp, IMAGO_API_INVALID_IMAGE, "image: not a valid JPEG or PNG file");
        else
            imago_http_fail(resp, IMAGO_API_UNSUPPORTED_MEDIA_TYPE,
                            "image: only JPEG and PNG images are supported");
        return -1;
    }
    return 0;
}
