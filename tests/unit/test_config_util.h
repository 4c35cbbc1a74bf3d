/* Helpers shared by the tests/unit/test_config_*.c executables: temporary
 * files and a one-call load. Header-only (static functions). */
#ifndef IMAGO_TEST_CONFIG_UTIL_H
#define IMAGO_TEST_CONFIG_UTIL_H

#include "config/config.h"
#include "tap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Writes text to a new temporary file; returns its malloc'ed path. */
static inline char *tc_temp_file(const char *text)
{
    const char *dir = getenv("TMPDIR");
    char *path = malloc(512);
    snprintf(path, 512, "%s/imago-config-test-XXXXXX.json", dir && *dir ? dir : "/tmp");
    int fd = mkstemps(path, 5);
    if (fd < 0)
        tap_bail("mkstemps failed");
    size_t len = strlen(text);
    if (write(fd, text, len) != (ssize_t)len)
        tap_bail("write failed");
    close(fd);
    return path;
}

static inline void tc_unlink(char *path)
{
    if (path)
        unlink(path);
    free(path);
}

/* Loads a fresh config from args (NULL-terminated) and env (NULL-terminated,
 * may be NULL); returns the config and the load status in *rc. */
static inline imago_config *tc_load(const char *const *args, const char *const *env, int *rc,
                                    imago_error *err)
{
    char *argv[64];
    int argc = 0;
    for (; args && args[argc]; argc++)
        argv[argc] = (char *)args[argc];
    argv[argc] = NULL;
    imago_config *cfg = imago_config_new();
    imago_error_clear(err);
    *rc = imago_config_load(cfg, argc, argv, (char **)env, NULL, NULL, NULL, err);
    return cfg;
}

/* Whether any collected error contains all of the given substrings
 * (NULL-terminated). */
static inline int tc_has_error(const imago_config *cfg, const char *const *parts)
{
    for (int i = 0; i < imago_config_error_count(cfg); i++) {
        const char *e = imago_config_error_at(cfg, i);
        int all = 1;
        for (int k = 0; parts[k]; k++)
            all &= strstr(e, parts[k]) != NULL;
        if (all)
            return 1;
    }
    return 0;
}

static inline void tc_diag_errors(const imago_config *cfg)
{
    for (int i = 0; i < imago_config_error_count(cfg); i++)
        tap_diag("  error: %s", imago_config_error_at(cfg, i));
}

#define TC_PARTS(...) ((const char *const[]){__VA_ARGS__, NULL})
#define TC_ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

#endif
