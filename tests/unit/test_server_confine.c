/* Ingest confinement (server/jobs.c): paths below ingest.roots, "..",
 * symlinks out of a root (to files and folders, existing and dangling),
 * missing paths inside and outside (the same answer outside, whether or not
 * the path exists), relative paths, no roots; and the non-blocking open that
 * refuses FIFOs and folders. */
#include "server/jobs.h"
#include "tap.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char base[PATH_MAX];

static void path_of(char *out, const char *rel)
{
    if (snprintf(out, PATH_MAX, "%s/%s", base, rel) >= PATH_MAX)
        tap_bail("path too long");
}

static void touch(const char *rel)
{
    char p[PATH_MAX];
    path_of(p, rel);
    FILE *f = fopen(p, "wb");
    if (!f)
        tap_bail("cannot create");
    fputs("x", f);
    fclose(f);
}

static void link_to(const char *target_rel, const char *rel)
{
    char t[PATH_MAX], p[PATH_MAX];
    path_of(t, target_rel);
    path_of(p, rel);
    if (symlink(t, p) != 0)
        tap_bail("symlink");
}

/* Confines path as given. */
static int conf_raw(const imago_config_strlist *roots, const char *path, char *real,
                    imago_error *err)
{
    char root[PATH_MAX];
    imago_error_clear(err);
    return imago_ingest_confine(roots, path, IMAGO_ERR_NOT_FOUND, real, root, err);
}

/* Confines base/rel. */
static int conf(const imago_config_strlist *roots, const char *rel, char *real, imago_error *err)
{
    char p[PATH_MAX];
    path_of(p, rel);
    return conf_raw(roots, p, real, err);
}

static void on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "Bail out! an open blocked (a FIFO?)\n";
    (void)!write(1, msg, sizeof msg - 1);
    _exit(1);
}

int main(void)
{
    char tmpl[] = "/tmp/imago-confine-XXXXXX";
    if (!mkdtemp(tmpl))
        tap_bail("mkdtemp");
    if (!realpath(tmpl, base))
        tap_bail("realpath");
    char rootdir[PATH_MAX], p[PATH_MAX];
    path_of(rootdir, "root");
    mkdir(rootdir, 0755);
    path_of(p, "root/sub");
    mkdir(p, 0755);
    path_of(p, "outside");
    mkdir(p, 0755);
    touch("root/a.jpg");
    touch("outside/secret.jpg");
    link_to("outside", "root/dirlink");
    link_to("outside/secret.jpg", "root/filelink");
    link_to("outside/nothere.jpg", "root/dangling");
    link_to("root/a.jpg", "root/sub/inlink");
    path_of(p, "root/pipe.jpg");
    if (mkfifo(p, 0644) != 0)
        tap_bail("mkfifo");

    char *items[] = {rootdir};
    imago_config_strlist roots = {.items = items, .n = 1};
    imago_error err;
    char real[PATH_MAX], want[PATH_MAX + 64];

    /* inside */
    is_int(conf(&roots, "root/a.jpg", real, &err), 0, "a file below the root");
    path_of(want, "root/a.jpg");
    is_str(real, want, "its real path");
    is_int(conf(&roots, "root/sub/../a.jpg", real, &err), 0, "'..' that stays inside");
    is_int(conf(&roots, "root/sub/inlink", real, &err), 0, "a symlink to a file inside");
    is_str(real, want, "resolved to its target");
    is_int(conf(&roots, "root", real, &err), 0, "the root itself");

    /* missing inside: the caller's code */
    is_int(conf(&roots, "root/missing.jpg", real, &err), IMAGO_ERR_NOT_FOUND,
           "a missing file inside -> missing_code");
    is_int(conf(&roots, "root/nodir/missing.jpg", real, &err), IMAGO_ERR_NOT_FOUND,
           "a missing folder inside -> missing_code");

    /* outside: one answer, existing or not */
    char shown[PATH_MAX], msg1[IMAGO_ERROR_MSG_MAX], msg2[IMAGO_ERROR_MSG_MAX];
    is_int(conf(&roots, "outside/secret.jpg", real, &err), IMAGO_ERR_AUTH,
           "an existing file outside");
    snprintf(msg1, sizeof msg1, "%s", err.msg);
    path_of(shown, "outside/secret.jpg");
    snprintf(want, sizeof want, "%s is outside ingest.roots", shown);
    is_str(msg1, want, "message names the path as given");
    is_int(conf(&roots, "outside/nothere.jpg", real, &err), IMAGO_ERR_AUTH,
           "a missing file outside: the same code");
    path_of(shown, "outside/nothere.jpg");
    snprintf(want, sizeof want, "%s is outside ingest.roots", shown);
    snprintf(msg2, sizeof msg2, "%s", err.msg);
    is_str(msg2, want, "... and the same message");
    is_int(conf(&roots, "root/../outside/secret.jpg", real, &err), IMAGO_ERR_AUTH,
           "'..' out of the root (existing)");
    is_int(conf(&roots, "root/../outside/nothere.jpg", real, &err), IMAGO_ERR_AUTH,
           "'..' out of the root (missing)");
    is_int(conf(&roots, "root/nodir/../../outside/secret.jpg", real, &err), IMAGO_ERR_AUTH,
           "'..' in the missing part");
    is_int(conf(&roots, "root/dirlink/secret.jpg", real, &err), IMAGO_ERR_AUTH,
           "through a folder symlink out of the root (existing)");
    is_int(conf(&roots, "root/dirlink/nothere.jpg", real, &err), IMAGO_ERR_AUTH,
           "through a folder symlink out of the root (missing)");
    is_int(conf(&roots, "root/filelink", real, &err), IMAGO_ERR_AUTH,
           "a file symlink out of the root");
    is_int(conf(&roots, "root/dangling", real, &err), IMAGO_ERR_AUTH,
           "a dangling symlink (its target is not told)");
    path_of(shown, "root/dangling");
    snprintf(want, sizeof want, "%s is outside ingest.roots", shown);
    is_str(err.msg, want, "... as outside, naming the link");
    is_int(conf_raw(&roots, "/etc/passwd", real, &err), IMAGO_ERR_AUTH, "/etc/passwd");
    is_int(conf_raw(&roots, "a.jpg", real, &err), IMAGO_ERR_AUTH, "a relative path");
    is_int(conf_raw(&roots, "", real, &err), IMAGO_ERR_AUTH, "an empty path");
    char rootslash[PATH_MAX + 64];
    snprintf(rootslash, sizeof rootslash, "%s-evil/x.jpg", rootdir);
    is_int(conf_raw(&roots, rootslash, real, &err), IMAGO_ERR_AUTH,
           "a sibling whose name starts with the root's");

    /* no roots */
    imago_config_strlist none = {.items = NULL, .n = 0};
    is_int(conf(&none, "root/a.jpg", real, &err), IMAGO_ERR_AUTH, "no roots: refused");
    ok(strstr(err.msg, "no ingest.roots") != NULL, "... saying so (%s)", err.msg);

    /* opening: never blocks, only regular files */
    signal(SIGALRM, on_alarm);
    alarm(20);
    struct stat st;
    path_of(p, "root/pipe.jpg");
    imago_error_clear(&err);
    is_int(imago_ingest_open_regular("pipe.jpg", p, &st, &err), IMAGO_ERR_UNSUPPORTED,
           "a FIFO is refused without blocking");
    is_str(err.msg, "pipe.jpg is not a regular file", "... as not a regular file");
    imago_error_clear(&err);
    is_int(imago_ingest_open_regular("sub", rootdir, &st, &err), IMAGO_ERR_UNSUPPORTED,
           "a folder is refused");
    path_of(p, "root/a.jpg");
    imago_error_clear(&err);
    int fd = imago_ingest_open_regular("a.jpg", p, &st, &err);
    ok(fd >= 0 && st.st_size == 1, "a regular file opens (fd %d, %lld bytes)", fd,
       (long long)st.st_size);
    char c = 0;
    ok(fd >= 0 && read(fd, &c, 1) == 1 && c == 'x', "... and reads");
    if (fd >= 0)
        close(fd);
    path_of(p, "root/missing.jpg");
    imago_error_clear(&err);
    is_int(imago_ingest_open_regular("missing.jpg", p, &st, &err), IMAGO_ERR_NOT_FOUND,
           "a missing file -> not found");
    alarm(0);

    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
    (void)!system(cmd);
    return tap_done();
}
