/* Private helpers shared by the proto/ sources (not for other modules). */
#ifndef IMAGO_PROTO_INT_H
#define IMAGO_PROTO_INT_H

#include <stddef.h>

#include <jansson.h>

#include "proto.h"

/* Length of the valid UTF-8 sequence starting at s[0] (1..4), or 0 when it is
 * invalid (overlong forms, surrogates and code points above U+10FFFF are
 * invalid). Reads at most n bytes. */
size_t proto_utf8_seq(const unsigned char *s, size_t n);

/* Whether s[0..n) is valid UTF-8 without NUL bytes. */
int proto_utf8_valid(const char *s, size_t n);

/* New NUL-terminated copy of s[0..n) with every invalid UTF-8 byte and every
 * NUL replaced by '?'. Caller frees. */
char *proto_utf8_sanitize(const char *s, size_t n);

/* Whether c is an RFC 9110 token character (tchar). */
int proto_is_tchar(unsigned char c);

/* Whether c is optional whitespace (OWS: space or tab). */
int proto_is_ows(unsigned char c);

/* ASCII case-insensitive compare of NUL-terminated a with b[0..n). */
int proto_ieq(const char *a, const char *b, size_t n);

/* json_dumps with the house flags (compact, keys in insertion order, real
 * numbers round-tripping); returns 0 or IMAGO_ERR_NOMEM. Consumes nothing. */
int proto_dump(const json_t *j, char **out, imago_error *err);

/* Parses JSON text (n bytes) allowing any top-level value, rejecting NUL
 * bytes and duplicate keys. IMAGO_ERR_FORMAT "WHAT: line L column C: ..." */
int proto_json_load(const char *s, size_t n, const char *what, json_t **out, imago_error *err);

/* Builds a json string from a C string that may be NULL (-> null). Invalid
 * UTF-8 is sanitized. New reference. */
json_t *proto_json_str_or_null(const char *s);

#endif
