/* server-private: the bearer tokens (auth.c). */
#ifndef IMAGO_SERVER_AUTH_H
#define IMAGO_SERVER_AUTH_H

#include "common/common.h"
#include "config/config.h"
#include "proto/proto.h"

typedef enum imago_auth_level {
    IMAGO_AUTH_OPEN = 0,   /* anyone */
    IMAGO_AUTH_SEARCH = 1, /* the search token when one is configured (or the admin token) */
    IMAGO_AUTH_ADMIN = 2   /* the admin token */
} imago_auth_level;

typedef struct imago_auth {
    char admin[256];  /* never empty after imago_auth_init */
    char search[256]; /* "" = search is open */
} imago_auth;

/* Fills auth from cfg->auth. When no admin token is configured it reads
 * cfg->auth.admin_token_file, or generates a random token and writes it there
 * (mode 0600, created exclusively) and logs it once. Returns 0 or
 * IMAGO_ERR_IO / IMAGO_ERR_INVALID (a token file that is empty, too long or
 * readable by others). */
int imago_auth_init(imago_auth *auth, const imago_config *cfg, imago_error *err);

/* Constant-time comparison (time depends only on the lengths' maximum, not
 * on where the strings differ). Returns 1 when equal. */
int imago_auth_token_equal(const char *a, const char *b);

/* Checks an Authorization header value (NULL when absent) for a level.
 * Returns IMAGO_API_OK, IMAGO_API_UNAUTHORIZED (missing, malformed or unknown
 * token) or IMAGO_API_FORBIDDEN (a valid search token on an admin route). */
imago_api_error imago_auth_check(const imago_auth *auth, imago_auth_level level,
                                 const char *authorization);

#endif /* IMAGO_SERVER_AUTH_H */
