/* Content-Type header parsing (RFC 9110 media-type with parameters, RFC 2046
 * boundary rules) and image magic-byte sniffing. */
#include "proto_int.h"

#include <string.h>

static int is_bchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return 1;
    return c != 0 && strchr("'()+_,-./:=? ", c) != NULL;
}

static char lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

static size_t token_len(const char *s)
{
    size_t n = 0;
    while (proto_is_tchar((unsigned char)s[n]))
        n++;
    return n;
}

/* Reads a quoted-string at s (s[0] == '"') into dst (cap bytes incl. NUL).
 * Returns the number of input bytes consumed, 0 on a malformed or too long
 * string. */
static size_t quoted_string(const char *s, char *dst, size_t cap)
{
    size_t i = 1, o = 0;
    for (;;) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\0')
            return 0; /* unterminated */
        if (c == '"')
            break;
        if (c == '\\') {
            unsigned char e = (unsigned char)s[i + 1];
            if (!(e == '\t' || (e >= 0x20 && e != 0x7F)))
                return 0;
            c = e;
            i += 2;
        } else {
            if (!(c == '\t' || (c >= 0x20 && c != 0x7F)))
                return 0;
            i++;
        }
        if (o + 1 >= cap)
            return 0;
        dst[o++] = (char)c;
    }
    dst[o] = '\0';
    return i + 1;
}

static imago_media media_of(const char *type)
{
    static const struct {
        const char *name;
        imago_media media;
    } known[] = {
        {"image/jpeg", IMAGO_MEDIA_JPEG},
        {"image/jpg", IMAGO_MEDIA_JPEG},
        {"image/pjpeg", IMAGO_MEDIA_JPEG},
        {"image/png", IMAGO_MEDIA_PNG},
        {"multipart/form-data", IMAGO_MEDIA_MULTIPART},
        {"application/json", IMAGO_MEDIA_JSON},
        {"application/octet-stream", IMAGO_MEDIA_OCTET},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(type, known[i].name) == 0)
            return known[i].media;
    return IMAGO_MEDIA_OTHER;
}

int imago_content_type_parse(const char *header, imago_content_type *out, imago_error *err)
{
    imago_content_type ct;
    memset(&ct, 0, sizeof ct);
    const char *p = header ? header : "";
    while (proto_is_ows((unsigned char)*p))
        p++;
    if (*p == '\0') {
        *out = ct;
        return 0;
    }
    size_t tl = token_len(p);
    if (tl == 0 || p[tl] != '/')
        return imago_error_set(err, IMAGO_ERR_INVALID, "Content-Type: expected type/subtype");
    size_t sl = token_len(p + tl + 1);
    if (sl == 0)
        return imago_error_set(err, IMAGO_ERR_INVALID, "Content-Type: empty subtype");
    if (tl + 1 + sl >= sizeof ct.type)
        return imago_error_set(err, IMAGO_ERR_INVALID, "Content-Type: media type too long");
    for (size_t i = 0; i < tl + 1 + sl; i++)
        ct.type[i] = lower(p[i]);
    ct.type[tl + 1 + sl] = '\0';
    ct.media = media_of(ct.type);
    p += tl + 1 + sl;

    int have_charset = 0, have_boundary = 0;
    for (;;) {
        while (proto_is_ows((unsigned char)*p))
            p++;
        if (*p == '\0')
            break;
        if (*p != ';')
            return imago_error_set(
                err, IMAGO_ERR_INVALID, "Content-Type: unexpected character '%c' after media type",
                (unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7F ? *p : '?');
        p++;
        while (proto_is_ows((unsigned char)*p))
            p++;
        if (*p == '\0' || *p == ';')
            continue; /* empty parameter (RFC 9110 allows it) */
        size_t nl = token_len(p);
        if (nl == 0 || p[nl] != '=')
            return imago_error_set(err, IMAGO_ERR_INVALID,
                                   "Content-Type: malformed parameter (expected name=value)");
        const char *name = p;
        p += nl + 1;
        char value[IMAGO_MULTIPART_BOUNDARY_MAX + 2];
        if (*p == '"') {
            size_t used = quoted_string(p, value, sizeof value);
            if (used == 0)
                return imago_error_set(
                    err, IMAGO_ERR_INVALID,
                    "Content-Type: malformed or too long quoted parameter value");
            p += used;
        } else {
            size_t vl = token_len(p);
            if (vl == 0)
                return imago_error_set(err, IMAGO_ERR_INVALID,
                                       "Content-Type: empty parameter value");
            if (vl >= sizeof value)
                return imago_error_set(err, IMAGO_ERR_INVALID,
                                       "Content-Type: parameter value too long");
            memcpy(value, p, vl);
            value[vl] = '\0';
            p += vl;
        }
        if (proto_ieq("charset", name, nl)) {
            if (have_charset)
                return imago_error_set(err, IMAGO_ERR_INVALID,
                                       "Content-Type: duplicate charset parameter");
            have_charset = 1;
            size_t vl = strlen(value);
            if (vl >= sizeof ct.charset)
                return imago_error_set(err, IMAGO_ERR_INVALID, "Content-Type: charset too long");
            for (size_t i = 0; i <= vl; i++)
                ct.charset[i] = lower(value[i]);
        } else if (proto_ieq("boundary", name, nl)) {
            if (have_boundary)
                return imago_error_set(err, IMAGO_ERR_INVALID,
                                       "Content-Type: duplicate boundary parameter");
            have_boundary = 1;
            size_t vl = strlen(value);
            if (vl == 0 || vl > IMAGO_MULTIPART_BOUNDARY_MAX)
                return imago_error_set(err, IMAGO_ERR_INVALID,
                                       "Content-Type: boundary must have 1..%d characters",
                                       IMAGO_MULTIPART_BOUNDARY_MAX);
            for (size_t i = 0; i < vl; i++)
                if (!is_bchar((unsigned char)value[i]))
                    return imago_error_set(err, IMAGO_ERR_INVALID,
                                           "Content-Type: invalid character in boundary");
            if (value[vl - 1] == ' ')
                return imago_error_set(err, IMAGO_ERR_INVALID,
                                       "Content-Type: boundary ends with a space");
            memcpy(ct.boundary, value, vl + 1);
        }
        /* other parameters are ignored */
    }
    if (ct.media == IMAGO_MEDIA_MULTIPART && !have_boundary)
        return imago_error_set(err, IMAGO_ERR_INVALID,
                               "Content-Type: multipart/form-data without a boundary");
    *out = ct;
    return 0;
}

imago_media imago_media_sniff(const void *data, size_t len)
{
    const unsigned char *d = data;
    static const unsigned char png_magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    if (d && len >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF)
        return IMAGO_MEDIA_JPEG;
    if (d && len >= 8 && memcmp(d, png_magic, 8) == 0)
        return IMAGO_MEDIA_PNG;
    return IMAGO_MEDIA_OTHER;
}
