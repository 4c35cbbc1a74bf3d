/* Strict whole-buffer multipart/form-data parser (RFC 7578 over RFC 2046).
 *
 * The server accumulates the body (bounded by server.max_body) and hands it
 * here; part data is returned as borrowed slices of that buffer, so an image
 * upload is never copied. Every read is bounded by the buffer length; header
 * sizes and part counts are limited before anything is allocated for them.
 */
#include "proto_int.h"

#include <stdlib.h>
#include <string.h>

imago_multipart_limits imago_multipart_limits_default(void)
{
    imago_multipart_limits l = {.max_parts = 16, .max_header_bytes = 4096, .max_headers = 8};
    return l;
}

/* A parsed part header line, pointing into the body. */
typedef struct hdr_line {
    const char *name;
    size_t name_len;
    const char *value; /* OWS trimmed on both ends */
    size_t value_len;
} hdr_line;

static void part_clear(imago_multipart_part *p)
{
    free(p->name);
    free(p->filename);
    free(p->content_type);
    memset(p, 0, sizeof *p);
}

void imago_multipart_free(imago_multipart *mp)
{
    if (!mp)
        return;
    for (int i = 0; i < mp->n_parts; i++)
        part_clear(&mp->parts[i]);
    free(mp->parts);
    free(mp);
}

const imago_multipart_part *imago_multipart_find(const imago_multipart *mp, const char *name)
{
    if (!mp || !name)
        return NULL;
    for (int i = 0; i < mp->n_parts; i++)
        if (strcmp(mp->parts[i].name, name) == 0)
            return &mp->parts[i];
    return NULL;
}

/* Parses one parameter value of a Content-Disposition header starting at
 * v[*i] (token or quoted-string) into a new string. Returns NULL on a
 * malformed value. */
static char *disp_value(const char *v, size_t n, size_t *i)
{
    size_t p = *i;
    if (p < n && v[p] == '"') {
        /* quoted-string; bytes >= 0x80 (UTF-8 file names) are obs-text */
        char *out = imago_xmalloc(n - p + 1);
        size_t o = 0;
        p++;
        for (;;) {
            if (p >= n) {
                free(out);
                return NULL;
            }
            unsigned char c = (unsigned char)v[p];
            if (c == '"')
                break;
            if (c == '\\') {
                if (p + 1 >= n) {
                    free(out);
                    return NULL;
                }
                c = (unsigned char)v[p + 1];
                p += 2;
            } else {
                p++;
            }
            if (c < 0x20 && c != '\t') {
                free(out);
                return NULL;
            }
            if (c == 0x7F) {
                free(out);
                return NULL;
            }
            out[o++] = (char)c;
        }
        out[o] = '\0';
        *i = p + 1;
        return out;
    }
    size_t s = p;
    while (p < n && proto_is_tchar((unsigned char)v[p]))
        p++;
    if (p == s)
        return NULL;
    char *out = imago_xmalloc(p - s + 1);
    memcpy(out, v + s, p - s);
    out[p - s] = '\0';
    *i = p;
    return out;
}

/* Content-Disposition: form-data; name="x"[; filename="y"] */
static int parse_disposition(const char *v, size_t n, imago_multipart_part *part, imago_error *err)
{
    size_t i = 0;
    while (i < n && proto_is_tchar((unsigned char)v[i]))
        i++;
    if (!proto_ieq("form-data", v, i))
        return imago_error_set(err, IMAGO_ERR_FORMAT, "multipart: part %s is not form-data",
                               "Content-Disposition");
    for (;;) {
        while (i < n && proto_is_ows((unsigned char)v[i]))
            i++;
        if (i == n)
            break;
        if (v[i] != ';')
            return imago_error_set(err, IMAGO_ERR_FORMAT,
                                   "multipart: malformed Content-Disposition");
        i++;
        while (i < n && proto_is_ows((unsigned char)v[i]))
            i++;
        if (i == n)
            break;
        size_t ns = i;
        while (i < n && proto_is_tchar((unsigned char)v[i]))
            i++;
        size_t nl = i - ns;
        while (i < n && proto_is_ows((unsigned char)v[i]))
            i++;
        if (nl == 0 || i >= n || v[i] != '=')
            return imago_error_set(err, IMAGO_ERR_FORMAT,
                                   "multipart: malformed Content-Disposition parameter");
        i++;
        while (i < n && proto_is_ows((unsigned char)v[i]))
            i++;
        char *val = disp_value(v, n, &i);
        if (!val)
            return imago_error_set(err, IMAGO_ERR_FORMAT,
                                   "multipart: malformed Content-Disposition parameter value");
        char **slot = NULL;
        if (proto_ieq("name", v + ns, nl))
            slot = &part->name;
        else if (proto_ieq("filename", v + ns, nl))
            slot = &part->filename;
        if (!slot) {
            free(val); /* filename* and extensions are ignored (RFC 7578 4.2) */
            continue;
        }
        if (*slot) {
            free(val);
            return imago_error_set(err, IMAGO_ERR_FORMAT,
                                   "multipart: duplicate Content-Disposition parameter");
        }
        *slot = val;
    }
    if (!part->name || part->name[0] == '\0')
        return imago_error_set(err, IMAGO_ERR_FORMAT, "multipart: part without a field name");
    return 0;
}

/* Splits one header line [s, s+n) (without CRLF). */
static int split_header(const char *s, size_t n, hdr_line *h, imago_error *err)
{
    if (n > 0 && proto_is_ows((unsigned char)s[0]))
        return imago_error_set(err, IMAGO_ERR_FORMAT,
                               "multipart: folded part header lines are not allowed");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && c != '\t') || c == 0x7F)
            return imago_error_set(err, IMAGO_ERR_FORMAT,
                                   "multipart: control character in a part header");
    }
    size_t i = 0;
    while (i < n && proto_is_tchar((unsigned char)s[i]))
        i++;
    if (i == 0 || i >= n || s[i] != ':')
        return imago_error_set(err, IMAGO_ERR_FORMAT, "multipart: malformed part header line");
    h->name = s;
    h->name_len = i;
    i++;
    while (i < n && proto_is_ows((unsigned char)s[i]))
        i++;
    size_t e = n;
    while (e > i && proto_is_ows((unsigned char)s[e - 1]))
        e--;
    h->value = s + i;
    h->value_len = e - i;
    return 0;
}

static const char *find(const char *hay, size_t hay_len, const char *needle, size_t nlen)
{
    return memmem(hay, hay_len, needle, nlen);
}

/* Parses the headers of one part, starting at body[*pos] (right after the
 * CRLF that ends a delimiter line). On success *pos is the first data byte. */
static int parse_part_headers(const char *body, size_t len, size_t *pos,
                              const imago_multipart_limits *lim, imago_multipart_part *part,
                              imago_error *err)
{
    size_t p = *pos;
    size_t start = p;
    int n_headers = 0, have_disp = 0;
    for (;;) {
        size_t used = p - start;
        if (used >= lim->max_header_bytes)
            return imago_error_set(err, IMAGO_ERR_TOO_LARGE,
                                   "multipart: part headers over %zu bytes", lim->max_header_bytes);
        size_t window = len - p;
        size_t budget = lim->max_header_bytes - used;
        if (window > budget)
            window = budget;
        const char *eol = find(body + p, window, "\r\n", 2);
        if (!eol) {
            if (len - p > budget)
                return imago_error_set(err, IMAGO_ERR_TOO_LARGE,
                                       "multipart: part headers over %zu bytes",
                                       lim->max_header_bytes);
            return imago_error_set(err, IMAGO_ERR_FORMAT,
                                   "multipart: body ends inside part headers");
        }
        size_t ll = (size_t)(eol - (body + p));
        if (ll == 0) {
            p += 2;
            break;
        }
        if (++n_headers > lim->max_headers)
            return imago_error_set(err, IMAGO_ERR_TOO_LARGE,
                                   "multipart: more than %d headers in a part", lim->max_headers);
        /* a bare LF inside the line is also a control character: rejected */
        hdr_line h = {0};
        int rc = split_header(body + p, ll, &h, err);
        if (rc)
            return rc;
        if (proto_ieq("content-disposition", h.name, h.name_len)) {
            if (have_disp)
                return imago_error_set(err, IMAGO_ERR_FORMAT,
                                       "multipart: duplicate Content-Disposition header");
            have_disp = 1;
            rc = parse_disposition(h.value, h.value_len, part, err);
            if (rc)
                return rc;
        } else if (proto_ieq("content-type", h.name, h.name_len)) {
            if (part->content_type)
                return imago_error_set(err, IMAGO_ERR_FORMAT,
                                       "multipart: duplicate Content-Type header");
            part->content_type = imago_xmalloc(h.value_len + 1);
            memcpy(part->content_type, h.value, h.value_len);
            part->content_type[h.value_len] = '\0';
        }
        /* other headers (Content-Transfer-Encoding is deprecated by RFC 7578) ignored */
        p += ll + 2;
    }
    if (!have_disp)
        return imago_error_set(err, IMAGO_ERR_FORMAT,
                               "multipart: part without a Content-Disposition header");
    *pos = p;
    return 0;
}

int imago_multipart_parse(const void *body_v, size_t len, const char *boundary,
                          const imago_multipart_limits *limits, imago_multipart **out,
                          imago_error *err)
{
    imago_multipart_limits lim = limits ? *limits : imago_multipart_limits_default();
    const char *body = body_v;
    size_t blen = boundary ? strlen(boundary) : 0;
    if (blen == 0 || blen > IMAGO_MULTIPART_BOUNDARY_MAX)
        return imago_error_set(err, IMAGO_ERR_INVALID,
                               "multipart: boundary must have 1..%d characters",
                               IMAGO_MULTIPART_BOUNDARY_MAX);
    if (!body && len > 0)
        return imago_error_set(err, IMAGO_ERR_INVALID, "multipart: NULL body");

    /* delim = CRLF "--" boundary; the first one may lack the CRLF when the
     * body starts with it (no preamble). */
    char delim[IMAGO_MULTIPART_BOUNDARY_MAX + 5];
    memcpy(delim, "\r\n--", 4);
    memcpy(delim + 4, boundary, blen);
    size_t dlen = blen + 4;

    size_t pos;
    if (len >= dlen - 2 && memcmp(body, delim + 2, dlen - 2) == 0) {
        pos = dlen - 2;
    } else {
        const char *d = len ? find(body, len, delim, dlen) : NULL;
        if (!d)
            return imago_error_set(err, IMAGO_ERR_FORMAT,
                                   "multipart: no boundary delimiter in the body");
        pos = (size_t)(d - body) + dlen;
    }

    imago_multipart *mp = imago_xcalloc(1, sizeof *mp);
    int cap = 0;
    int rc = 0;
    for (;;) {
        /* pos is right after a delimiter's boundary */
        if (len - pos >= 2 && body[pos] == '-' && body[pos + 1] == '-')
            break; /* close delimiter; the epilogue is ignored */
        while (pos < len && proto_is_ows((unsigned char)body[pos]))
            pos++; /* transport padding */
        if (len - pos < 2 || body[pos] != '\r' || body[pos + 1] != '\n') {
            rc = imago_error_set(err, IMAGO_ERR_FORMAT,
                                 pos >= len ? "multipart: body ends without the closing boundary"
                                            : "multipart: garbage after a boundary delimiter");
            goto fail;
        }
        pos += 2;
        if (mp->n_parts >= lim.max_parts) {
            rc = imago_error_set(err, IMAGO_ERR_TOO_LARGE, "multipart: more than %d parts",
                                 lim.max_parts);
            goto fail;
        }
        if (mp->n_parts == cap) {
            cap = cap ? cap * 2 : 4;
            if (cap > lim.max_parts)
                cap = lim.max_parts;
            mp->parts = imago_xrealloc(mp->parts, (size_t)cap * sizeof *mp->parts);
        }
        imago_multipart_part *part = &mp->parts[mp->n_parts];
        memset(part, 0, sizeof *part);
        mp->n_parts++;
        rc = parse_part_headers(body, len, &pos, &lim, part, err);
        if (rc)
            goto fail;
        const char *d = find(body + pos, len - pos, delim, dlen);
        if (!d) {
            rc = imago_error_set(err, IMAGO_ERR_FORMAT,
                                 "multipart: body ends without the closing boundary");
            goto fail;
        }
        part->data = (const uint8_t *)body + pos;
        part->len = (size_t)(d - (body + pos));
        pos = (size_t)(d - body) + dlen;
    }
    if (mp->n_parts == 0) {
        rc = imago_error_set(err, IMAGO_ERR_FORMAT, "multipart: no parts");
        goto fail;
    }
    *out = mp;
    return 0;
fail:
    imago_multipart_free(mp);
    return rc;
}
