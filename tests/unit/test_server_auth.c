/* Unit tests for server/auth.c: bearer parsing, 401 vs 403 per level,
 * constant-time equality, and the generated admin token file (0600, reused). */
#include "server/server.h"
#include "tap.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int main(void)
{
    is_int(imago_auth_token_equal("abc", "abc"), 1, "equal");
    is_int(imago_auth_token_equal("abc", "abd"), 0, "last byte differs");
    is_int(imago_auth_token_equal("abc", "ab"), 0, "prefix is not equal");
    is_int(imago_auth_token_equal("", "a"), 0, "empty vs non-empty");
    is_int(imago_auth_token_equal("ab\xff", "ab"), 0, "longer with high byte");

    imago_auth a;
    memset(&a, 0, sizeof a);
    strcpy(a.admin, "adm1n");
    strcpy(a.search, "s3arch");
    static const struct {
        imago_auth_level level;
        const char *hdr;
        imago_api_error want;
    } cases[] = {
        {IMAGO_AUTH_OPEN, NULL, IMAGO_API_OK},
        {IMAGO_AUTH_OPEN, "Bearer junk", IMAGO_API_OK},
        {IMAGO_AUTH_SEARCH, NULL, IMAGO_API_UNAUTHORIZED},
        {IMAGO_AUTH_SEARCH, "Bearer s3arch", IMAGO_API_OK},
        {IMAGO_AUTH_SEARCH, "bearer s3arch", IMAGO_API_OK},
        {IMAGO_AUTH_SEARCH, "Bearer adm1n", IMAGO_API_OK},
        {IMAGO_AUTH_SEARCH, "Bearer s3arc", IMAGO_API_UNAUTHORIZED},
        {IMAGO_AUTH_SEARCH, "Basic czNhcmNo", IMAGO_API_UNAUTHORIZED},
        {IMAGO_AUTH_SEARCH, "Bearer ", IMAGO_API_UNAUTHORIZED},
        {IMAGO_AUTH_ADMIN, NULL, IMAGO_API_UNAUTHORIZED},
        {IMAGO_AUTH_ADMIN, "Bearer adm1n", IMAGO_API_OK},
        {IMAGO_AUTH_ADMIN, "Bearer  adm1n ", IMAGO_API_OK},
        {IMAGO_AUTH_ADMIN, "Bearer s3arch", IMAGO_API_FORBIDDEN},
        {IMAGO_AUTH_ADMIN, "Bearer adm1nX", IMAGO_API_UNAUTHORIZED},
        {IMAGO_AUTH_ADMIN, "Bearer adm", IMAGO_API_UNAUTHORIZED},
        {IMAGO_AUTH_ADMIN, "Beareradm1n", IMAGO_API_UNAUTHORIZED},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        is_str(imago_api_error_name(imago_auth_check(&a, cases[i].level, cases[i].hdr)),
               imago_api_error_name(cases[i].want), "level %d, Authorization: %s",
               (int)cases[i].level, cases[i].hdr ? cases[i].hdr : "(none)");
    a.search[0] = '\0';
    is_int(imago_auth_check(&a, IMAGO_AUTH_SEARCH, NULL), IMAGO_API_OK,
           "search is open without a search token");
    is_int(imago_auth_check(&a, IMAGO_AUTH_SEARCH, "Bearer wrong"), IMAGO_API_OK,
           "open search ignores a bad token");

    /* generated admin token */
    char dir[] = "/tmp/imago_auth_XXXXXX";
    if (!mkdtemp(dir))
        tap_bail("mkdtemp failed");
    char path[256];
    snprintf(path, sizeof path, "%s/sub/admin.token", dir);
    imago_config *cfg = imago_config_new();
    imago_error err = {0};
    ok(imago_config_set(cfg, "auth.admin_token_file", path, &err) == 0, "set token file: %s",
       err.msg);
    imago_auth g1, g2;
    imago_error_clear(&err);
    is_int(imago_auth_init(&g1, cfg, &err), 0, "generates a token: %s", err.msg);
    is_int((int)strlen(g1.admin), 64, "64 hex characters");
    struct stat st;
    ok(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600, "file mode 0600");
    imago_error_clear(&err);
    is_int(imago_auth_init(&g2, cfg, &err), 0, "second start reads it");
    is_str(g2.admin, g1.admin, "same token on the second start");
    chmod(path, 0644);
    imago_error_clear(&err);
    is_int(imago_auth_init(&g2, cfg, &err), IMAGO_ERR_INVALID, "world-readable token file refused");
    unlink(path);
    char sub[256];
    snprintf(sub, sizeof sub, "%s/sub", dir);
    rmdir(sub);
    rmdir(dir);
    imago_error_clear(&err);
    ok(imago_config_set(cfg, "auth.admin_token", "configured-token", &err) == 0, "set admin token");
    imago_error_clear(&err);
    is_int(imago_auth_init(&g2, cfg, &err), 0, "configured token");
    is_str(g2.admin, "configured-token", "configured token used");
    imago_error_clear(&err);
    ok(imago_config_set(cfg, "auth.search_token", "has space", &err) == 0, "set search token");
    imago_error_clear(&err);
    is_int(imago_auth_init(&g2, cfg, &err), IMAGO_ERR_INVALID, "token with a space refused");
    imago_config_free(cfg);
    return tap_done();
}
