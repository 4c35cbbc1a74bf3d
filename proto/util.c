/* Small helpers shared by the proto/ sources: UTF-8 validation and
 * sanitizing, and the house JSON load/dump conventions. */
#include "proto_int.h"

#include <stdlib.h>
#include <string.h>

size_t proto_utf8_seq(const unsigned char *s, size_t n)
{
    if (n == 0)
        return 0;
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    size_t len;
    unsigned cp, min;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        cp = c & 0x1F;
        min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        cp = c & 0x0F;
        min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        cp = c & 0x07;
        min = 0x10000;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

int proto_utf8_valid(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        if (u[i] == 0)
            return 0;
        size_t l = proto_utf8_seq(u + i, n - i);
        if (l == 0)
            return 0;
        i += l;
    }
    return 1;
}

char *proto_utf8_sanitize(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    char *out = imago_xmalloc(n + 1);
    size_t i = 0;
    while (i < n) {
        size_t l = u[i] ? proto_utf8_seq(u + i, n - i) : 0;
        if (l == 0) {
            out[i] = '?';
            i++;
        } else {
            memcpy(out + i, s + i, l);
            i += l;
        }
    }
    out[n] = '\0';
    return out;
}

int proto_is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return 1;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

int proto_is_ows(unsigned char c)
{
    return c == ' ' || c == '\t';
}

int proto_ieq(const char *a, const char *b, size_t n)
{
    if (strlen(a) != n)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
        if (x >= 'A' && x <= 'Z')
            x = (unsigned char)(x - 'A' + 'a');
        if (y >= 'A' && y <= 'Z')
            y = (unsigned char)(y - 'A' + 'a');
        if (x != y)
            return 0;
    }
    return 1;
}

int proto_dump(const json_t *j, char **out, imago_error *err)
{
    char *s = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(9) | JSON_ENCODE_ANY);
    if (!s)
        return imago_error_set(err, IMAGO_ERR_NOMEM, "out of memory encoding JSON");
    *out = s;
    return 0;
}

int proto_json_load(const char *s, size_t n, const char *what, json_t **out, imago_error *err)
{
    json_error_t je;
    json_t *j = json_loadb(s, n, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
    if (!j)
        return imago_error_set(err, IMAGO_ERR_FORMAT, "%s: invalid JSON at line %d column %d: %s",
                               what, je.line, je.column, je.text);
    *out = j;
    return 0;
}

json_t *proto_json_str_or_null(const char *s)
{
    if (!s)
        return json_null();
    size_t n = strlen(s);
    if (proto_utf8_valid(s, n))
        return json_stringn(s, n);
    char *clean = proto_utf8_sanitize(s, n);
    json_t *j = json_string(clean);
    free(clean);
    return j;
}
