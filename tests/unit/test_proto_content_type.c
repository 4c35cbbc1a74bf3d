/* Unit tests for proto/content_type.c: media types, parameters, quoted
 * boundaries, malformed headers, and image sniffing. */
#include "proto/proto.h"
#include "tap.h"

#include <string.h>

static int parse(const char *h, imago_content_type *ct)
{
    imago_error err;
    imago_error_clear(&err);
    memset(ct, 0x5a, sizeof *ct);
    return imago_content_type_parse(h, ct, &err);
}

int main(void)
{
    imago_content_type ct;
    is_int(parse(NULL, &ct), 0, "NULL header ok");
    is_int(ct.media, IMAGO_MEDIA_NONE, "NULL -> NONE");
    is_int(parse("   ", &ct), 0, "blank header ok");
    is_int(ct.media, IMAGO_MEDIA_NONE, "blank -> NONE");

    is_int(parse("image/jpeg", &ct), 0, "image/jpeg");
    is_int(ct.media, IMAGO_MEDIA_JPEG, "jpeg media");
    is_str(ct.type, "image/jpeg", "type text");
    is_str(ct.charset, "", "no charset");
    is_int(parse("Image/JPG", &ct), 0, "Image/JPG");
    is_int(ct.media, IMAGO_MEDIA_JPEG, "image/jpg alias, case-insensitive");
    is_int(parse("image/png ; foo=bar", &ct), 0, "png with unknown param");
    is_int(ct.media, IMAGO_MEDIA_PNG, "png media");
    is_int(parse("image/gif", &ct), 0, "gif parses");
    is_int(ct.media, IMAGO_MEDIA_OTHER, "gif is OTHER");
    is_int(parse("application/json; charset=UTF-8", &ct), 0, "json with charset");
    is_int(ct.media, IMAGO_MEDIA_JSON, "json media");
    is_str(ct.charset, "utf-8", "charset lower-cased");
    is_int(parse("application/json;charset=\"utf-8\"", &ct), 0, "quoted charset");
    is_str(ct.charset, "utf-8", "quoted charset value");
    is_int(parse("application/octet-stream", &ct), 0, "octet-stream");
    is_int(ct.media, IMAGO_MEDIA_OCTET, "octet media");

    is_int(parse("multipart/form-data; boundary=----WebKitFormBoundary7MA4YWxkTrZu0gW", &ct), 0,
           "browser multipart");
    is_int(ct.media, IMAGO_MEDIA_MULTIPART, "multipart media");
    is_str(ct.boundary, "----WebKitFormBoundary7MA4YWxkTrZu0gW", "boundary kept, case preserved");
    is_int(parse("multipart/form-data; BOUNDARY=\"a b:c?d\"", &ct), 0,
           "quoted boundary with space");
    is_str(ct.boundary, "a b:c?d", "quoted boundary unquoted");
    is_int(parse("multipart/form-data; boundary=\"x\\\"y\"", &ct), IMAGO_ERR_INVALID,
           "quote is not a bchar");
    is_int(parse("multipart/form-data; boundary=\"ab \"", &ct), IMAGO_ERR_INVALID,
           "boundary ending in a space refused");
    is_int(parse("multipart/form-data", &ct), IMAGO_ERR_INVALID, "multipart without boundary");
    is_int(parse("multipart/form-data; boundary=\"\"", &ct), IMAGO_ERR_INVALID, "empty boundary");
    char longb[128] = "multipart/form-data; boundary=";
    size_t l = strlen(longb);
    memset(longb + l, 'b', 71);
    longb[l + 71] = '\0';
    is_int(parse(longb, &ct), IMAGO_ERR_INVALID, "71-char boundary refused");
    longb[l + 70] = '\0';
    is_int(parse(longb, &ct), 0, "70-char boundary accepted");
    is_int((int)strlen(ct.boundary), 70, "70-char boundary kept whole");
    is_int(parse("multipart/form-data; boundary=a; boundary=b", &ct), IMAGO_ERR_INVALID,
           "duplicate boundary refused");
    is_int(parse("multipart/form-data; boundary=\"abc", &ct), IMAGO_ERR_INVALID,
           "unterminated quoted string");

    is_int(parse("image", &ct), IMAGO_ERR_INVALID, "no slash");
    is_int(parse("image/", &ct), IMAGO_ERR_INVALID, "empty subtype");
    is_int(parse("/jpeg", &ct), IMAGO_ERR_INVALID, "empty type");
    is_int(parse("image/jpeg garbage", &ct), IMAGO_ERR_INVALID, "garbage after type");
    is_int(parse("image/jpeg; =x", &ct), IMAGO_ERR_INVALID, "parameter without name");
    is_int(parse("image/jpeg; a=", &ct), IMAGO_ERR_INVALID, "parameter without value");
    is_int(parse("image/jpeg;;", &ct), 0, "empty parameters tolerated");
    is_int(parse("image/jpeg; charset=\"a\x01\"", &ct), IMAGO_ERR_INVALID,
           "control char in quotes");

    /* output untouched on failure */
    imago_content_type keep;
    memset(&keep, 0, sizeof keep);
    keep.media = IMAGO_MEDIA_PNG;
    imago_error err;
    imago_error_clear(&err);
    is_int(imago_content_type_parse("bad", &keep, &err), IMAGO_ERR_INVALID, "bad header");
    is_int(keep.media, IMAGO_MEDIA_PNG, "output untouched on failure");
    ok(strstr(err.msg, "Content-Type") != NULL, "message names the header");

    static const unsigned char jpg[] = {0xFF, 0xD8, 0xFF, 0xE0};
    static const unsigned char png[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    is_int(imago_media_sniff(jpg, sizeof jpg), IMAGO_MEDIA_JPEG, "sniff jpeg");
    is_int(imago_media_sniff(png, sizeof png), IMAGO_MEDIA_PNG, "sniff png");
    is_int(imago_media_sniff(png, 7), IMAGO_MEDIA_OTHER, "truncated png magic");
    is_int(imago_media_sniff("GIF89a", 6), IMAGO_MEDIA_OTHER, "gif is other");
    is_int(imago_media_sniff(NULL, 0), IMAGO_MEDIA_OTHER, "empty is other");
    return tap_done();
}
