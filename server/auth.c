/* Bearer-token authentication: the admin token (configured, or generated on
 * first start and kept 0600 in the data dir) and the optional search token,
 * compared in constant time. */
#include "auth.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

int imago_auth_token_equal(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    size_t n = la > lb ? la : lb;
    volatile unsigned char diff = (unsigned char)(la != lb);
    for (size_t i = 0; i < n; i++) {
        unsigned char x = i < la ? (unsigned char)a[i] : 0;
        unsigned char y = i < lb ? (unsigned char)b[i] : 0;
        diff |= (unsigned char)(x ^ y);
    }
    return diff == 0;
}

imago_api_error imago_auth_check(const imago_auth *auth, imago_auth_level level,
                                 const char *authorization)
{
    if (level == IMAGO_AUTH_OPEN)
        return IMAGO_API_OK;
    if (level == IMAGO_AUTH_SEARCH && auth->search[0] == '\0')
        return IMAGO_API_OK;
    if (!authorization)
        return IMAGO_API_UNAUTHORIZED;
    /* "Bearer" is case-insensitive (RFC 6750 / RFC 9110 auth-scheme) */
    if (strncasecmp(authorization, "Bearer ", 7) != 0)
        return IMAGO_API_UNAUTHORIZED;
    const char *tok = authorization + 7;
    while (*tok == ' ')
        tok++;
    size_t n = strlen(tok);
    while (n > 0 && tok[n - 1] == ' ')
        n--;
    char given[256];
    if (n == 0 || n >= sizeof given)
        return IMAGO_API_UNAUTHORIZED;
    memcpy(given, tok, n);
    given[n] = '\0';
    int is_admin = imago_auth_token_equal(given, auth->admin);
    int is_search = auth->search[0] && imago_auth_token_equal(given, auth->search);
    if (is_admin)
        return IMAGO_API_OK;
    if (is_search)
        return level == IMAGO_AUTH_ADMIN ? IMAGO_API_FORBIDDEN : IMAGO_API_OK;
    return IMAGO_API_UNAUTHORIZED;
}

static int copy_token(char *dst, size_t cap, const char *src, const char *what, imago_error *err)
{
    size_t n = strlen(src);
    if (n >= cap)
        return imago_error_set(err, IMAGO_ERR_INVALID, "%s: longer than %zu characters", what,
                               cap - 1);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)src[i] <= 0x20 || (unsigned char)src[i] >= 0x7F)
            return imago_error_set(err, IMAGO_ERR_INVALID,
                                   "%s: only printable ASCII without spaces is allowed", what);
    memcpy(dst, src, n + 1);
    return 0;
}

/* mkdir -p of the parent directory of path, mode 0700 for new directories. */
static int make_parent(const char *path, imago_error *err)
{
    char dir[4096];
    size_t n = strlen(path);
    if (n >= sizeof dir)
        return imago_error_set(err, IMAGO_ERR_INVALID, "%s: path too long", path);
    memcpy(dir, path, n + 1);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir)
        return 0;
    *slash = '\0';
    for (char *p = dir + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(dir, 0700) != 0 && errno != EEXIST)
            return imago_error_set(err, IMAGO_ERR_IO, "creating %s: %s", dir, strerror(errno));
        *p = '/';
    }
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return imago_error_set(err, IMAGO_ERR_IO, "creating %s: %s", dir, strerror(errno));
    return 0;
}

static int read_token_file(const char *path, char *dst, size_t cap, imago_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return errno == ENOENT
                   ? IMAGO_ERR_NOT_FOUND
                   : imago_error_set(err, IMAGO_ERR_IO, "opening %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return imago_error_set(err, IMAGO_ERR_IO, "%s: not a regular file", path);
    }
    if (st.st_mode & 077) {
        close(fd);
        return imago_error_set(err, IMAGO_ERR_INVALID,
                               "%s: readable by group or others (mode %03o); chmod 600 it", path,
                               (unsigned)(st.st_mode & 0777));
    }
    char buf[512];
    ssize_t got = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (got < 0)
        return imago_error_set(err, IMAGO_ERR_IO, "reading %s: %s", path, strerror(errno));
    buf[got] = '\0';
    while (got > 0 && (buf[got - 1] == '\n' || buf[got - 1] == '\r' || buf[got - 1] == ' '))
        buf[--got] = '\0';
    if (got == 0)
        return imago_error_set(err, IMAGO_ERR_INVALID, "%s: empty admin token file", path);
    return copy_token(dst, cap, buf, path, err);
}

static int generate_token(const char *path, char *dst, size_t cap, imago_error *err)
{
    unsigned char raw[32];
    size_t got = 0;
    while (got < sizeof raw) {
        ssize_t n = getrandom(raw + got, sizeof raw - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return imago_error_set(err, IMAGO_ERR_IO, "getrandom: %s", strerror(errno));
        got += (size_t)n;
    }
    static const char hex[] = "0123456789abcdef";
    char tok[65];
    for (size_t i = 0; i < sizeof raw; i++) {
        tok[2 * i] = hex[raw[i] >> 4];
        tok[2 * i + 1] = hex[raw[i] & 15];
    }
    tok[64] = '\0';
    int rc = make_parent(path, err);
    if (rc)
        return rc;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return imago_error_set(err, IMAGO_ERR_IO, "creating %s: %s", path, strerror(errno));
    char line[66];
    memcpy(line, tok, 64);
    line[64] = '\n';
    ssize_t w = write(fd, line, 65);
    int sync_rc = fsync(fd);
    if (close(fd) != 0 || w != 65 || sync_rc != 0) {
        unlink(path);
        return imago_error_set(err, IMAGO_ERR_IO, "writing %s failed", path);
    }
    IMAGO_WARN("auth", "generated an admin token (stored in %s, mode 0600): %s", path, tok);
    return copy_token(dst, cap, tok, "admin token", err);
}

int imago_auth_init(imago_auth *auth, const imago_config *cfg, imago_error *err)
{
    memset(auth, 0, sizeof *auth);
    int rc = copy_token(auth->search, sizeof auth->search, cfg->auth.search_token,
                        "auth.search_token", err);
    if (rc)
        return rc;
    if (cfg->auth.admin_token[0])
        return copy_token(auth->admin, sizeof auth->admin, cfg->auth.admin_token,
                          "auth.admin_token", err);
    const char *path = cfg->auth.admin_token_file;
    if (!path || !path[0])
        return imago_error_set(err, IMAGO_ERR_INVALID,
                               "auth: neither auth.admin_token nor auth.admin_token_file is set");
    rc = read_token_file(path, auth->admin, sizeof auth->admin, err);
    if (rc == IMAGO_ERR_NOT_FOUND)
        return generate_token(path, auth->admin, sizeof auth->admin, err);
    if (rc == 0)
        IMAGO_INFO("auth", "admin token read from %s", path);
    return rc;
}
