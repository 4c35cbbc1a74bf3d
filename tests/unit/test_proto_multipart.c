/* Unit tests for proto/multipart.c: RFC 7578 bodies as browsers and curl send
 * them, preambles/epilogues, padding, limits, and malformed bodies. Every body
 * is parsed from an exact-size heap copy, so an over-read shows under ASan. */
#include "proto/proto.h"
#include "tap.h"

#include <stdlib.h>
#include <string.h>

static imago_error err;
static char *kept[8]; /* body copies whose parts are still being read */
static int n_kept;

static int parse_n(const char *body, size_t len, const char *boundary,
                   const imago_multipart_limits *lim, imago_multipart **out)
{
    char *copy = malloc(len ? len : 1);
    memcpy(copy, body, len);
    imago_error_clear(&err);
    imago_multipart *mp = NULL;
    int rc = imago_multipart_parse(copy, len, boundary, lim, &mp, &err);
    if (out && rc == 0 && n_kept < 8) {
        *out = mp; /* part data points into copy: keep it until the end */
        kept[n_kept++] = copy;
        return rc;
    }
    imago_multipart_free(mp);
    free(copy);
    return rc;
}

static int parse(const char *body, const char *boundary)
{
    return parse_n(body, strlen(body), boundary, NULL, NULL);
}

int main(void)
{
    const char *b = "XyZ";
    /* a curl-style body: text field, file with binary bytes containing CR, LF
     * and dashes that are not a delimiter */
    static const char body1[] =
        "--XyZ\r\n"
        "Content-Disposition: form-data; name=\"k\"\r\n"
        "\r\n"
        "5\r\n"
        "--XyZ\r\n"
        "Content-Disposition: form-data; name=\"image\"; filename=\"caf\xc3\xa9.jpg\"\r\n"
        "Content-Type: image/jpeg\r\n"
        "\r\n"
        "\xff\xd8\xff\r\n--XyY\r\n-\r\n\0tail\r\n"
        "--XyZ--\r\n";
    size_t len1 = sizeof body1 - 1;
    char *copy = malloc(len1);
    memcpy(copy, body1, len1);
    imago_multipart *mp = NULL;
    imago_error_clear(&err);
    is_int(imago_multipart_parse(copy, len1, b, NULL, &mp, &err), 0, "valid body parses");
    if (!mp)
        tap_bail(err.msg);
    is_int(mp->n_parts, 2, "two parts");
    is_str(mp->parts[0].name, "k", "first name");
    ok(mp->parts[0].filename == NULL, "text field has no filename");
    ok(mp->parts[0].content_type == NULL, "text field has no content type");
    is_int(mp->parts[0].len, 1, "first value length");
    ok(memcmp(mp->parts[0].data, "5", 1) == 0, "first value");
    const imago_multipart_part *img = imago_multipart_find(mp, "image");
    ok(img != NULL, "find image part");
    is_str(img->filename, "caf\xc3\xa9.jpg", "UTF-8 filename kept");
    is_str(img->content_type, "image/jpeg", "part content type");
    static const char want_data[] = "\xff\xd8\xff\r\n--XyY\r\n-\r\n\0tail";
    is_int(img->len, sizeof want_data - 1, "binary data length (with NUL, CRLF, dashes)");
    ok(memcmp(img->data, want_data, sizeof want_data - 1) == 0, "binary data exact");
    ok(img->data >= (const uint8_t *)copy && img->data + img->len <= (const uint8_t *)copy + len1,
       "part data borrowed from the body");
    ok(imago_multipart_find(mp, "nope") == NULL, "missing name -> NULL");
    imago_multipart_free(mp);

    /* every strict prefix of the body must fail (no close delimiter yet),
     * except those that already hold the whole close delimiter */
    int prefix_fail = 0, prefix_total = 0;
    size_t close_end = len1 - 2; /* "--XyZ--" ends before the final CRLF */
    for (size_t n = 0; n < close_end; n++) {
        char *c = malloc(n ? n : 1);
        memcpy(c, body1, n);
        imago_multipart *m = NULL;
        imago_error_clear(&err);
        int rc = imago_multipart_parse(c, n, b, NULL, &m, &err);
        prefix_total++;
        if (rc == IMAGO_ERR_FORMAT && m == NULL)
            prefix_fail++;
        imago_multipart_free(m);
        free(c);
    }
    is_int(prefix_fail, prefix_total, "all %d truncations refused with IMAGO_ERR_FORMAT",
           prefix_total);
    is_int(parse_n(body1, close_end, b, NULL, NULL), 0, "close delimiter without CRLF accepted");

    /* preamble, transport padding, epilogue, quoted name with an escape */
    is_int(parse("preamble text\r\n--XyZ  \t\r\n"
                 "content-disposition: FORM-DATA;name=\"a\\\"b\"\r\n\r\nv\r\n--XyZ--epilogue",
                 b),
           0, "preamble + padding + epilogue + case-insensitive header");
    {
        const char *s =
            "x\r\n--XyZ\r\nContent-Disposition: form-data; name=\"a\\\"b\"\r\n\r\n\r\n--XyZ--";
        imago_multipart *m = NULL;
        is_int(parse_n(s, strlen(s), b, NULL, &m), 0, "escaped quote in name");
        if (m) {
            is_str(m->parts[0].name, "a\"b", "quoted-pair unescaped");
            is_int(m->parts[0].len, 0, "empty value");
            imago_multipart_free(m);
        }
    }
    /* a preamble that merely contains the boundary without CRLF before it */
    is_int(parse("junk--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\nv\r\n--XyZ--", b),
           IMAGO_ERR_FORMAT, "delimiter must start a line");

    is_int(parse("", b), IMAGO_ERR_FORMAT, "empty body");
    is_int(parse("no boundary at all", b), IMAGO_ERR_FORMAT, "no delimiter");
    is_int(parse("--XyZ--\r\n", b), IMAGO_ERR_FORMAT, "zero parts refused");
    is_int(parse("--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\nv\r\n", b),
           IMAGO_ERR_FORMAT, "missing final boundary");
    is_int(parse("--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\nv\r\n--XyZ", b),
           IMAGO_ERR_FORMAT, "delimiter at the end without -- or CRLF");
    is_int(parse("--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\nv\r\n--XyZjunk\r\n", b),
           IMAGO_ERR_FORMAT, "garbage after a delimiter");
    ok(strstr(err.msg, "multipart") != NULL, "message says multipart: %s", err.msg);
    is_int(parse("--XyZ\nContent-Disposition: form-data; name=a\n\nv\n--XyZ--", b),
           IMAGO_ERR_FORMAT, "bare LF line endings refused");
    is_int(parse("--XyZ\r\nContent-Type: text/plain\r\n\r\nv\r\n--XyZ--", b), IMAGO_ERR_FORMAT,
           "no Content-Disposition");
    is_int(parse("--XyZ\r\nContent-Disposition: attachment; name=a\r\n\r\nv\r\n--XyZ--", b),
           IMAGO_ERR_FORMAT, "not form-data");
    is_int(parse("--XyZ\r\nContent-Disposition: form-data; filename=a\r\n\r\nv\r\n--XyZ--", b),
           IMAGO_ERR_FORMAT, "no name");
    is_int(parse("--XyZ\r\nContent-Disposition: form-data; name=\"\"\r\n\r\nv\r\n--XyZ--", b),
           IMAGO_ERR_FORMAT, "empty name");
    is_int(parse("--XyZ\r\nContent-Disposition: form-data; name=a; name=b\r\n\r\nv\r\n--XyZ--", b),
           IMAGO_ERR_FORMAT, "duplicate name parameter");
    is_int(parse("--XyZ\r\nContent-Disposition: form-data; name=\"a\r\n\r\nv\r\n--XyZ--", b),
           IMAGO_ERR_FORMAT, "unterminated quoted name");
    is_int(parse("--XyZ\r\nContent-Disposition: form-data;\r\n name=a\r\n\r\nv\r\n--XyZ--", b),
           IMAGO_ERR_FORMAT, "folded header refused");
    is_int(parse("--XyZ\r\nContent-Disposition form-data; name=a\r\n\r\nv\r\n--XyZ--", b),
           IMAGO_ERR_FORMAT, "header without colon");
    is_int(parse("--XyZ\r\nContent-Disposition: form-data; name=a\r\n"
                 "Content-Disposition: form-data; name=b\r\n\r\nv\r\n--XyZ--",
                 b),
           IMAGO_ERR_FORMAT, "two Content-Disposition headers");
    is_int(parse("--XyZ\r\nContent-Disposition: form-data; name=a\r\nX: a\x01z\r\n\r\nv\r\n--XyZ--",
                 b),
           IMAGO_ERR_FORMAT, "control character in a header");
    {
        static const char nul[] =
            "--XyZ\r\nContent-Disposition: form-data; name=a\0b\r\n\r\nv\r\n--XyZ--";
        is_int(parse_n(nul, sizeof nul - 1, b, NULL, NULL), IMAGO_ERR_FORMAT, "NUL in a header");
    }
    is_int(parse("--XyZ\r\nContent-Disposition: form-data; name=a", b), IMAGO_ERR_FORMAT,
           "body ends inside headers");
    is_int(parse("--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\nv\r\n--XyZ--", NULL),
           IMAGO_ERR_INVALID, "NULL boundary");
    is_int(parse("--\r\n", ""), IMAGO_ERR_INVALID, "empty boundary");

    /* limits */
    imago_multipart_limits lim = imago_multipart_limits_default();
    is_int(lim.max_parts, 16, "default max parts");
    lim.max_parts = 2;
    const char *three = "--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n"
                        "--XyZ\r\nContent-Disposition: form-data; name=b\r\n\r\n2\r\n"
                        "--XyZ\r\nContent-Disposition: form-data; name=c\r\n\r\n3\r\n--XyZ--";
    is_int(parse_n(three, strlen(three), b, &lim, NULL), IMAGO_ERR_TOO_LARGE,
           "3 parts over limit 2");
    lim.max_parts = 3;
    is_int(parse_n(three, strlen(three), b, &lim, NULL), 0, "3 parts within limit 3");
    lim = imago_multipart_limits_default();
    lim.max_header_bytes = 64;
    const char *longhdr =
        "--XyZ\r\nContent-Disposition: form-data; name=a\r\n"
        "X-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\nv\r\n--XyZ--";
    is_int(parse_n(longhdr, strlen(longhdr), b, &lim, NULL), IMAGO_ERR_TOO_LARGE,
           "headers over 64 bytes");
    lim.max_header_bytes = 4096;
    lim.max_headers = 1;
    is_int(parse_n(longhdr, strlen(longhdr), b, &lim, NULL), IMAGO_ERR_TOO_LARGE,
           "two header lines over max_headers 1");
    lim.max_headers = 2;
    is_int(parse_n(longhdr, strlen(longhdr), b, &lim, NULL), 0, "two header lines within 2");
    /* an unterminated header line longer than the limit: TOO_LARGE, not a scan of the body */
    {
        size_t n = 100000;
        char *big = malloc(n);
        memcpy(big, "--XyZ\r\nX: ", 10);
        memset(big + 10, 'a', n - 10);
        imago_multipart *m = NULL;
        imago_error_clear(&err);
        is_int(imago_multipart_parse(big, n, b, NULL, &m, &err), IMAGO_ERR_TOO_LARGE,
               "endless header line -> TOO_LARGE");
        free(big);
    }
    /* 16 parts OK with the defaults, 17 refused */
    {
        char buf[4096];
        size_t o = 0;
        for (int i = 0; i < 17; i++)
            o += (size_t)snprintf(buf + o, sizeof buf - o,
                                  "--XyZ\r\nContent-Disposition: form-data; name=f%d\r\n\r\n%d\r\n",
                                  i, i);
        size_t at16 = 0;
        /* find the start of part 17 to build a 16-part body */
        const char *p = buf;
        for (int i = 0; i < 16; i++)
            p = strstr(p + 1, "--XyZ\r\n");
        at16 = (size_t)(p - buf);
        char b16[4096];
        memcpy(b16, buf, at16);
        memcpy(b16 + at16, "--XyZ--", 8);
        is_int(parse(b16, b), 0, "16 parts accepted");
        o += (size_t)snprintf(buf + o, sizeof buf - o, "--XyZ--");
        is_int(parse(buf, b), IMAGO_ERR_TOO_LARGE, "17 parts refused");
    }
    /* a boundary with regex-ish and space characters */
    is_int(parse("--a b'()+_,-./:=?\r\nContent-Disposition: form-data; name=x\r\n\r\nv\r\n"
                 "--a b'()+_,-./:=?--",
                 "a b'()+_,-./:=?"),
           0, "boundary with every special bchar");
    for (int i = 0; i < n_kept; i++)
        free(kept[i]);
    free(copy);
    return tap_done();
}
