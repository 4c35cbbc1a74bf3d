/* imago proto: the HTTP-agnostic API layer.
 *
 * Everything the server needs to turn request bytes into validated C structs
 * and C structs into response JSON, without knowing about libmicrohttpd:
 *   - the stable table of API error codes, their HTTP status, and the mapping
 *     from IMAGO_ERR_* codes (proto/errors.c);
 *   - Content-Type parsing (proto/content_type.c);
 *   - a strict whole-buffer multipart/form-data parser (proto/multipart.c);
 *   - request parameters from query strings / multipart fields, with errors
 *     that name the parameter (proto/params.c);
 *   - request/response structs <-> JSON (proto/json.c).
 * proto/openapi.yaml is the contract these functions implement.
 *
 * jansson stays inside proto/: JSON crosses this header as text (char *).
 * Thread safety: every function here is reentrant; a struct may be used by
 * one thread at a time. Errors follow common.h: 0 or a negative IMAGO_ERR_*,
 * message in the caller's imago_error. Validation failures of a request
 * parameter return IMAGO_ERR_INVALID with a message that starts with the
 * parameter's name ("k: ..."); malformed JSON returns IMAGO_ERR_FORMAT.
 */
#ifndef IMAGO_PROTO_H
#define IMAGO_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

/* ======================================================================
 * API error codes (proto/errors.c)
 * ====================================================================== */

/* Stable: the string names are part of the API (error.code in every error
 * body) and never change meaning. */
typedef enum imago_api_error {
    IMAGO_API_OK = 0,
    IMAGO_API_INVALID_REQUEST,        /* 400 malformed request (bad multipart, bad query string) */
    IMAGO_API_INVALID_PARAMETER,      /* 400 unknown / wrong type / out of range parameter */
    IMAGO_API_INVALID_JSON,           /* 400 body or field is not valid JSON */
    IMAGO_API_INVALID_IMAGE,          /* 400 undecodable, corrupt or truncated image */
    IMAGO_API_UNAUTHORIZED,           /* 401 missing or malformed token */
    IMAGO_API_FORBIDDEN,              /* 403 valid token without the needed rights */
    IMAGO_API_NOT_FOUND,              /* 404 */
    IMAGO_API_METHOD_NOT_ALLOWED,     /* 405 path exists, method does not */
    IMAGO_API_CONFLICT,               /* 409 state conflict (job already finished, ...) */
    IMAGO_API_PAYLOAD_TOO_LARGE,      /* 413 body over server.max_body */
    IMAGO_API_IMAGE_TOO_LARGE,        /* 413 declared pixels over engine.max_pixels */
    IMAGO_API_UNSUPPORTED_MEDIA_TYPE, /* 415 */
    IMAGO_API_UNPROCESSABLE,          /* 422 well-formed but cannot be processed */
    IMAGO_API_INTERNAL,               /* 500 a bug or a backend failure */
    IMAGO_API_BUSY,                   /* 503 + Retry-After: queue full */
    IMAGO_API_NOT_READY,              /* 503 + Retry-After: model or index not ready */
    IMAGO_API_ERROR_COUNT_
} imago_api_error;

/* Stable snake_case name ("invalid_image"); "internal" for unknown values. */
const char *imago_api_error_name(imago_api_error code);

/* HTTP status of the code (200 for IMAGO_API_OK, 500 for unknown values). */
int imago_api_error_status(imago_api_error code);

/* Parses a name back; returns 0 or IMAGO_ERR_INVALID. */
int imago_api_error_parse(const char *name, imago_api_error *out, imago_error *err);

/* Whether responses with this code carry a Retry-After header (busy, not_ready). */
int imago_api_error_retry_after(imago_api_error code);

/* What was being processed when an IMAGO_ERR_* arose: the same internal code
 * means different things to a client (IMAGO_ERR_FORMAT is invalid_image for
 * an image, invalid_json for a JSON body). */
typedef enum imago_api_context {
    IMAGO_API_CTX_GENERIC = 0,
    IMAGO_API_CTX_IMAGE,  /* decoding / embedding an uploaded image */
    IMAGO_API_CTX_JSON,   /* parsing a JSON body or JSON-valued field */
    IMAGO_API_CTX_REQUEST /* parsing the HTTP request (multipart, query, headers) */
} imago_api_context;

/* Maps an internal code (0 or IMAGO_ERR_*) to the API code:
 *   INVALID -> invalid_parameter; FORMAT -> invalid_image (IMAGE), invalid_json
 *   (JSON), invalid_request (REQUEST / GENERIC); UNSUPPORTED -> unsupported_media_type
 *   (IMAGE, REQUEST), unprocessable (otherwise); TOO_LARGE -> image_too_large
 *   (IMAGE), payload_too_large (otherwise); NOT_FOUND -> not_found; CONFLICT,
 *   CANCELLED -> conflict; BUSY -> busy; NOT_READY -> not_ready; AUTH ->
 *   unauthorized; NOMEM, IO, BACKEND, INTERNAL and unknown codes -> internal. */
imago_api_error imago_api_error_from_code(int imago_code, imago_api_context ctx);

/* Error body {"error": {"code": "...", "message": "..."}}: a new
 * NUL-terminated string owned by the caller (free()). message may be NULL
 * (then the code's name is used); invalid UTF-8 in it is replaced. Never
 * fails (aborts on OOM like imago_xmalloc). */
char *imago_api_error_body(imago_api_error code, const char *message);

/* ======================================================================
 * Content-Type (proto/content_type.c)
 * ====================================================================== */

typedef enum imago_media {
    IMAGO_MEDIA_NONE = 0,  /* header absent or empty */
    IMAGO_MEDIA_OTHER,     /* well-formed, not one imago understands */
    IMAGO_MEDIA_JPEG,      /* image/jpeg (also image/jpg, image/pjpeg) */
    IMAGO_MEDIA_PNG,       /* image/png */
    IMAGO_MEDIA_MULTIPART, /* multipart/form-data */
    IMAGO_MEDIA_JSON,      /* application/json */
    IMAGO_MEDIA_OCTET      /* application/octet-stream: sniffed by the decoder */
} imago_media;

#define IMAGO_MULTIPART_BOUNDARY_MAX 70 /* RFC 2046 */

typedef struct imago_content_type {
    imago_media media;
    char type[64];    /* lower-cased "image/jpeg"; "" when media is NONE */
    char charset[32]; /* lower-cased charset parameter, "" when absent */
    char boundary[IMAGO_MULTIPART_BOUNDARY_MAX + 1]; /* multipart only, unquoted */
} imago_content_type;

/* Parses a Content-Type header value (NULL or blank -> media NONE). Type and
 * subtype are case-insensitive tokens; parameters are token=token or
 * token="quoted-string" (RFC 9110); unknown parameters are ignored.
 * multipart/form-data requires a valid boundary (1..70 bchars, no trailing
 * space). Errors: IMAGO_ERR_INVALID (malformed header, missing/bad boundary,
 * duplicate parameter). Output set only on success. */
int imago_content_type_parse(const char *header, imago_content_type *out, imago_error *err);

/* Sniffs the image format from magic bytes: IMAGO_MEDIA_JPEG, IMAGO_MEDIA_PNG
 * or IMAGO_MEDIA_OTHER. Reads at most 8 bytes. */
imago_media imago_media_sniff(const void *data, size_t len);

/* ======================================================================
 * multipart/form-data (proto/multipart.c)
 * ====================================================================== */

typedef struct imago_multipart_limits {
    int max_parts;           /* default 16 */
    size_t max_header_bytes; /* per part, all header lines together; default 4096 */
    int max_headers;         /* header lines per part; default 8 */
} imago_multipart_limits;

imago_multipart_limits imago_multipart_limits_default(void);

typedef struct imago_multipart_part {
    char *name;          /* form field name (Content-Disposition name=), owned */
    char *filename;      /* NULL when absent, owned */
    char *content_type;  /* Content-Type of the part as sent, NULL when absent, owned */
    const uint8_t *data; /* borrowed from the parsed body */
    size_t len;
} imago_multipart_part;

typedef struct imago_multipart {
    int n_parts;
    imago_multipart_part *parts;
} imago_multipart;

/* Parses a whole multipart/form-data body (RFC 7578 / RFC 2046). body is
 * borrowed and must outlive *out (part data points into it). A preamble
 * before the first delimiter and an epilogue after the close delimiter are
 * ignored; whitespace after a delimiter is allowed. Every part needs a
 * Content-Disposition: form-data header with a name. Errors (nothing is
 * allocated): IMAGO_ERR_FORMAT (no delimiter, missing close delimiter,
 * malformed part header, missing name, header folding, NUL in headers),
 * IMAGO_ERR_TOO_LARGE (over limits), IMAGO_ERR_INVALID (bad boundary).
 * Never reads outside [body, body + len). limits NULL = defaults. */
int imago_multipart_parse(const void *body, size_t len, const char *boundary,
                          const imago_multipart_limits *limits, imago_multipart **out,
                          imago_error *err);

/* The first part named name, or NULL. */
const imago_multipart_part *imago_multipart_find(const imago_multipart *mp, const char *name);

void imago_multipart_free(imago_multipart *mp);

/* ======================================================================
 * Parameters (proto/params.c)
 * ====================================================================== */

/* Callback for one decoded name=value request parameter (the server's query
 * arguments, decoded by libmicrohttpd). name/value are NUL-terminated and
 * borrowed for the call; value_len excludes the terminator (values may
 * contain NUL as %00). Return 0 to continue, a negative code to stop. */
typedef int (*imago_query_cb)(void *ctx, const char *name, const char *value, size_t value_len,
                              imago_error *err);

/* One metadata-equality condition of a search filter. */
typedef enum imago_filter_type {
    IMAGO_FILTER_STRING = 0,
    IMAGO_FILTER_NUMBER,
    IMAGO_FILTER_BOOL,
    IMAGO_FILTER_NULL
} imago_filter_type;

typedef struct imago_filter_term {
    char *key; /* owned */
    imago_filter_type type;
    char *str;   /* STRING: owned; else NULL */
    double num;  /* NUMBER */
    int boolean; /* BOOL */
} imago_filter_term;

#define IMAGO_FILTER_TERMS_MAX 32

/* POST /v1/search and POST /v1/extract parameters. */
typedef struct imago_search_params {
    int k; /* 1..1000, default 10 */
    int has_bbox;
    double bbox[4]; /* x1,y1,x2,y2 in source pixels, x1<x2, y1<y2, >= 0 */
    int qe;         /* -1 = collection default, 0 = off, 1 = on */
    int qe_k;       /* 0 = collection default, else 1..100 */
    int has_qe_alpha;
    double qe_alpha;   /* 0..10 when has_qe_alpha */
    int with_metadata; /* default 1 */
    int n_filter;
    imago_filter_term *filter; /* owned; the "filter" JSON object, keys sorted */
    char *filter_json;         /* owned canonical compact text of the filter, or NULL */
    uint32_t seen_;            /* private: parameters already set (duplicates are errors) */
} imago_search_params;

/* Defaults (no allocation). */
imago_search_params imago_search_params_default(void);
/* Frees owned members and resets to defaults. p may be NULL. */
void imago_search_params_clear(imago_search_params *p);

/* Sets one parameter from its string value (query string or multipart field):
 * k, bbox, qe (true/false/1/0/yes/no/on/off), qe_k, qe_alpha, with_metadata,
 * filter (a JSON object of scalar values). Unknown names, values of the wrong
 * type or out of range, and a parameter given twice -> IMAGO_ERR_INVALID,
 * message "NAME: ...". filter that is not JSON -> IMAGO_ERR_FORMAT. */
int imago_search_params_set(imago_search_params *p, const char *name, const char *value,
                            size_t value_len, imago_error *err);

/* The "image" multipart field is not a parameter: server handles it. */
#define IMAGO_PROTO_IMAGE_FIELD "image"

/* POST /v1/images fields (besides the image). */
typedef struct imago_add_image_params {
    char *external_id;   /* owned; NULL = none. 1..256 bytes UTF-8, no control chars */
    char *uri;           /* owned; NULL = none. <= 2048 bytes, no control chars */
    char *metadata_json; /* owned canonical compact JSON object, NULL = none; <= 64 KiB */
    uint32_t seen_;
} imago_add_image_params;

imago_add_image_params imago_add_image_params_default(void);
void imago_add_image_params_clear(imago_add_image_params *p);
/* Sets external_id, uri or metadata; same error contract as
 * imago_search_params_set (metadata not JSON -> IMAGO_ERR_FORMAT, not an
 * object -> IMAGO_ERR_INVALID, over 64 KiB -> IMAGO_ERR_TOO_LARGE). */
int imago_add_image_params_set(imago_add_image_params *p, const char *name, const char *value,
                               size_t value_len, imago_error *err);

/* Parses a decimal image or job id from a path segment ("42"): 1..2^53-1,
 * digits only. Returns 0 or IMAGO_ERR_INVALID ("id: ..."). */
int imago_proto_parse_id(const char *s, int64_t *out, imago_error *err);

/* ======================================================================
 * JSON requests (proto/json.c)
 * ====================================================================== */

typedef enum imago_job_source_kind {
    IMAGO_JOB_SOURCE_DIR = 1,
    IMAGO_JOB_SOURCE_MANIFEST = 2
} imago_job_source_kind;

#define IMAGO_JOB_EXTENSIONS_MAX 16

/* POST /v1/admin/jobs body:
 *   {"source": {"dir": "/data/photos", "recursive": true, "extensions": ["jpg","png"]}}
 *   {"source": {"manifest": "/data/list.jsonl"}}
 * (a top-level {"manifest": "..."} is accepted as a short form). */
typedef struct imago_job_request {
    imago_job_source_kind kind;
    char *path;       /* owned; the dir or manifest path as sent (not resolved) */
    int recursive;    /* dir only; default 1 */
    int n_extensions; /* dir only; 0 = the default set (jpg, jpeg, png) */
    char *extensions[IMAGO_JOB_EXTENSIONS_MAX]; /* owned, lower-cased, without dots */
} imago_job_request;

/* Parses the body (len bytes, need not be NUL-terminated). Errors:
 * IMAGO_ERR_FORMAT (not JSON, "json: line L column C: ..."), IMAGO_ERR_INVALID
 * (wrong shape; unknown keys; message names the field, e.g. "source.dir: ...").
 * *out is set on success; clear it with imago_job_request_clear. */
int imago_job_request_parse(const char *body, size_t len, imago_job_request *out, imago_error *err);
void imago_job_request_clear(imago_job_request *r);

/* POST /v1/admin/reindex body (may be empty): {"dba": bool, "factory": "IVF1024,PQ64",
 * "compact": bool}. Absent fields keep the collection's setting (-1 / NULL). */
typedef struct imago_reindex_request {
    int dba;       /* -1 = unchanged */
    int compact;   /* -1 = default (yes) */
    char *factory; /* owned, NULL = unchanged */
} imago_reindex_request;

int imago_reindex_request_parse(const char *body, size_t len, imago_reindex_request *out,
                                imago_error *err);
void imago_reindex_request_clear(imago_reindex_request *r);

/* ======================================================================
 * JSON responses (proto/json.c)
 *
 * Every *_to_json returns 0 and a new NUL-terminated compact JSON string in
 * *out (caller frees with free()), or IMAGO_ERR_INVALID (an embedded JSON
 * text such as metadata_json is not a JSON object; a non-finite number) /
 * IMAGO_ERR_NOMEM. Inputs are borrowed.
 * ====================================================================== */

typedef struct imago_search_hit {
    int64_t id;
    const char *external_id; /* NULL -> JSON null */
    double score;
    const char *uri;           /* NULL -> JSON null */
    const char *metadata_json; /* a JSON object as text, NULL -> omitted (or null) */
} imago_search_hit;

typedef struct imago_search_timings {
    double decode_ms, queue_ms, forward_ms, search_ms, qe_ms, metadata_ms, total_ms;
} imago_search_timings;

typedef struct imago_search_response {
    int n_results;
    const imago_search_hit *results;
    imago_search_timings timings;
    uint64_t index_seq;
    int with_metadata; /* 0: "metadata" is omitted from every hit */
} imago_search_response;

int imago_search_response_to_json(const imago_search_response *r, char **out, imago_error *err);

/* {"dim": d, "descriptor": [...]} with floats printed to round-trip (%.9g). */
int imago_extract_response_to_json(const float *descriptor, int dim, char **out, imago_error *err);

/* 201 {"id": n, "external_id": "...", "replaced": bool} */
int imago_add_image_response_to_json(int64_t id, const char *external_id, int replaced, char **out,
                                     imago_error *err);

/* GET /v1/images/{id}. */
typedef struct imago_image_record {
    int64_t id;
    const char *external_id; /* NULL -> null */
    const char *uri;         /* NULL -> null */
    const char *sha256;      /* hex, NULL -> null */
    int width, height;
    const char *metadata_json; /* JSON object text, NULL -> {} */
    int64_t created_at;        /* unix seconds */
} imago_image_record;

int imago_image_record_to_json(const imago_image_record *r, char **out, imago_error *err);

typedef enum imago_api_job_state {
    IMAGO_API_JOB_QUEUED = 0,
    IMAGO_API_JOB_RUNNING,
    IMAGO_API_JOB_DONE,
    IMAGO_API_JOB_FAILED,
    IMAGO_API_JOB_CANCELLED
} imago_api_job_state;

/* POST /v1/admin/whitening body (may be empty): {"dim": d, "power": 0.25,
 * "sample": 200000, "force": false}. dim 1..65536 (0 when absent: the
 * server's default min(D, rows - 1)); power a number in [0, 1]; sample an
 * integer >= 2 or 0 (all rows); force a boolean. Errors: IMAGO_ERR_FORMAT
 * (not JSON), IMAGO_ERR_INVALID (the message names the field). */
typedef struct imago_whitening_request {
    int dim;      /* 0 = default */
    double power; /* default 0.25 */
    long sample;  /* default 200000; 0 = all rows */
    int force;    /* default 0 */
} imago_whitening_request;

imago_whitening_request imago_whitening_request_default(void);
int imago_whitening_request_parse(const char *body, size_t len, imago_whitening_request *out,
                                  imago_error *err);
/* The canonical JSON text of a request (the job's params); *out malloc'ed. */
char *imago_whitening_request_to_json(const imago_whitening_request *r);

/* A collection's learned whitening, for GET /v1/admin/whitening and
 * /v1/info ("index": {"whitening": ...}). */
typedef struct imago_whitening_desc {
    int64_t version;
    int dim_in, dim, rank;
    double power, eps;
    int64_t trained_on, rows, created_at;
    const char *fingerprint;
} imago_whitening_desc;

/* {"whitening": {...}} */
int imago_whitening_to_json(const imago_whitening_desc *w, char **out, imago_error *err);

/* "queued", "running", "done", "failed", "cancelled". */
const char *imago_api_job_state_name(imago_api_job_state s);
int imago_api_job_state_parse(const char *s, imago_api_job_state *out, imago_error *err);

typedef struct imago_job_item_error {
    const char *path;
    imago_api_error code; /* printed by name */
    const char *message;
} imago_job_item_error;

/* GET /v1/admin/jobs/{id}. */
typedef struct imago_job_status {
    int64_t id;
    const char *kind; /* "ingest" | "reindex" | "whitening" | "whitening_remove" */
    imago_api_job_state state;
    int64_t total; /* -1 = not known yet -> null */
    int64_t done;
    int64_t failed;
    double rate;                    /* items per second */
    double eta_s;                   /* < 0 -> null */
    int64_t created_at, updated_at; /* unix seconds */
    const char *error; /* why the job itself failed, NULL = it did not */
    int n_errors;
    const imago_job_item_error *errors; /* the first errors (server caps the count) */
} imago_job_status;

int imago_job_status_to_json(const imago_job_status *s, char **out, imago_error *err);

/* 202 {"job_id": n} */
int imago_job_created_to_json(int64_t job_id, char **out, imago_error *err);

/* GET /v1/admin/jobs: {"jobs": [status, ...]} newest first. */
int imago_job_list_to_json(const imago_job_status *jobs, int n, char **out, imago_error *err);

/* Whether the metadata JSON object text (NULL = no metadata) satisfies every
 * term of a search filter (equality of top-level keys; a NUMBER term equals
 * any JSON number of the same value; NULL matches a null value, not an
 * absent key). Text that is not a JSON object matches no term. Returns 1 or
 * 0; n == 0 always matches. Thread-safe. */
int imago_filter_match(const imago_filter_term *terms, int n, const char *metadata_json);

/* One line of a bulk-ingest manifest (JSON lines):
 *   {"path": "a/b.jpg", "external_id": "b", "metadata": {...}}
 * path is required (non-empty, no control characters), external_id (string,
 * 1..256 bytes) and metadata (object, <= 64 KiB) are optional. *path,
 * *external_id and *metadata_json (canonical compact text) are new strings
 * (NULL when absent) owned by the caller. Errors: IMAGO_ERR_FORMAT (not
 * JSON), IMAGO_ERR_INVALID (shape; message names the field). */
int imago_manifest_line_parse(const char *line, size_t len, char **path, char **external_id,
                              char **metadata_json, imago_error *err);

/* GET /v1/info. Strings NULL -> null. */
typedef struct imago_info {
    const char *version;
    const char *model_name;
    const char *backbone;
    const char *head;
    int dim;
    const char *fingerprint;
    int trained; /* 0 -> "demo": true plus a warning string */
    const char *backend;
    const char *precision;
    const char *device;
    const char *backend_note; /* why auto stayed on the CPU; NULL/"" -> absent */
    const char *index_type;
    int64_t index_size;
    uint64_t index_seq;
    int index_dim;                         /* 0 -> absent */
    const imago_whitening_desc *whitening; /* NULL -> "whitening": null */
    int ready;
} imago_info;

int imago_info_to_json(const imago_info *info, char **out, imago_error *err);

#endif /* IMAGO_PROTO_H */
