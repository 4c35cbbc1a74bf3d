/* Listing the source of an ingest job (the first free runner thread does it,
 * jobs.c): a folder (sorted, recursive, only regular files with the wanted
 * extensions, symlinks out of the roots skipped) or a manifest (JSON lines,
 * each read into a bounded buffer), into the items of the job.
 */
#include "jobs.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proto/proto.h"

/* one manifest line: a path, an external id and up to 64 KiB of metadata */
#define MANIFEST_LINE_MAX (128 * 1024)

/* ---- the source ------------------------------------------------------------------------ */

/* Resolves a source path (symlinks, ..), confines it to the roots and checks
 * its type. */
int imago_ingest_resolve_source(const imago_config_strlist *roots, const char *path, int want_dir,
                                char *real_out, char *root_out, imago_error *err)
{
    int rc = imago_ingest_confine(roots, path, IMAGO_ERR_UNSUPPORTED, real_out, root_out, err);
    if (rc != 0)
        return rc;
    struct stat st;
    if (stat(real_out, &st) != 0)
        return imago_error_set(err, IMAGO_ERR_UNSUPPORTED, "%s: %s", path, strerror(errno));
    if (want_dir && !S_ISDIR(st.st_mode))
        return imago_error_set(err, IMAGO_ERR_UNSUPPORTED, "%s is not a directory", path);
    if (!want_dir && !S_ISREG(st.st_mode))
        return imago_error_set(err, IMAGO_ERR_UNSUPPORTED, "%s is not a regular file", path);
    return 0;
}

/* ---- the folder and the manifest
 * ----------------------------------------------------------------------- */

static void list_add(imago_ingest_list *l, char *src, char *ext)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 256;
        l->src = imago_xrealloc(l->src, l->cap * sizeof *l->src);
        l->ext = imago_xrealloc(l->ext, l->cap * sizeof *l->ext);
    }
    l->src[l->n] = src;
    l->ext[l->n] = ext;
    l->n++;
}

void imago_ingest_list_free(imago_ingest_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->src[i]);
        free(l->ext[i]);
    }
    free(l->src);
    free(l->ext);
}

static int has_ext(const char *name, const imago_job_request *req, const imago_config *cfg)
{
    const char *dot = strrchr(name, '.');
    if (!dot || dot == name)
        return 0;
    if (req->n_extensions > 0) {
        for (int i = 0; i < req->n_extensions; i++)
            if (strcasecmp(dot + 1, req->extensions[i]) == 0)
                return 1;
        return 0;
    }
    for (int i = 0; i < cfg->ingest.extensions.n; i++) {
        const char *e = cfg->ingest.extensions.items[i];
        if (strcasecmp(dot, e) == 0 || (e[0] != '.' && strcasecmp(dot + 1, e) == 0))
            return 1;
    }
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void imago_ingest_list_dir(const imago_config *cfg, const imago_config_strlist *roots,
                           const char *dir, const char *root, const imago_job_request *req,
                           imago_ingest_list *l, int depth)
{
    DIR *d = opendir(dir);
    if (!d) {
        IMAGO_WARN("jobs", "%s: %s (skipped)", dir, strerror(errno));
        return;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue; /* ., .., hidden files */
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            names = imago_xrealloc(names, cap * sizeof *names);
        }
        names[n++] = imago_xstrdup(e->d_name);
    }
    closedir(d);
    if (n > 1)
        qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n; i++) {
        char path[PATH_MAX], real[PATH_MAX];
        int pl = snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        struct stat st;
        if (pl < 0 || (size_t)pl >= sizeof path || !realpath(path, real) || stat(real, &st) != 0) {
            free(names[i]);
            continue;
        }
        /* a symlink out of the roots is not followed */
        imago_error e2;
        char r2[PATH_MAX];
        if (imago_ingest_root_of(roots, real, r2, &e2) != 0) {
            IMAGO_WARN("jobs", "%s resolves outside ingest.roots (skipped)", path);
        } else if (S_ISDIR(st.st_mode)) {
            if (req->recursive && depth < 64)
                imago_ingest_list_dir(cfg, roots, path, root, req, l, depth + 1);
        } else if (S_ISREG(st.st_mode) && has_ext(names[i], req, cfg)) {
            /* external id: the path relative to its ingest root */
            list_add(l, imago_xstrdup(path), imago_xstrdup(path + strlen(root) + 1));
        }
        free(names[i]);
    }
    free(names);
}

/* Items of a manifest: "PATH\nMETADATA" sources when a line has metadata. */
int imago_ingest_list_manifest(const imago_config_strlist *roots, const char *manifest,
                               const char *root, imago_ingest_list *l, imago_error *err)
{
    struct stat st;
    int fd = imago_ingest_open_regular(manifest, manifest, &st, err);
    if (fd < 0)
        return fd;
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        close(fd);
        return imago_error_set(err, IMAGO_ERR_IO, "%s: %s", manifest, strerror(errno));
    }
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", manifest);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    /* lines are read into a bounded buffer: a huge line is an error, not an
     * allocation of its size */
    char *line = imago_xmalloc(MANIFEST_LINE_MAX + 2);
    long lineno = 0;
    int rc = 0;
    while (fgets(line, MANIFEST_LINE_MAX + 2, f)) {
        lineno++;
        size_t n = strlen(line);
        if (n == MANIFEST_LINE_MAX + 1 && line[n - 1] != '\n') {
            rc = imago_error_set(err, IMAGO_ERR_UNSUPPORTED, "%s line %ld: longer than %d bytes",
                                 manifest, lineno, MANIFEST_LINE_MAX);
            break;
        }
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' '))
            line[--n] = '\0';
        if (n == 0)
            continue;
        char *p = NULL, *e = NULL, *m = NULL;
        imago_error perr;
        imago_error_clear(&perr);
        if (imago_manifest_line_parse(line, (size_t)n, &p, &e, &m, &perr) != 0) {
            rc = imago_error_set(err, IMAGO_ERR_UNSUPPORTED, "%s line %ld: %s", manifest, lineno,
                                 perr.msg);
            break;
        }
        char path[PATH_MAX];
        int pl = p[0] == '/' ? snprintf(path, sizeof path, "%s", p)
                             : snprintf(path, sizeof path, "%s/%s", dir, p);
        if (pl < 0 || (size_t)pl >= sizeof path) {
            free(p);
            free(e);
            free(m);
            rc = imago_error_set(err, IMAGO_ERR_UNSUPPORTED, "%s line %ld: path too long", manifest,
                                 lineno);
            break;
        }
        char *ext = e;
        if (!ext) {
            char real[PATH_MAX], r2[PATH_MAX];
            imago_error e2;
            if (realpath(path, real) && imago_ingest_root_of(roots, real, r2, &e2) == 0)
                ext = imago_xstrdup(real + strlen(r2) + 1);
            else
                ext = imago_xstrdup(path);
        }
        char *src;
        if (m) {
            size_t sl = strlen(path) + strlen(m) + 2;
            src = imago_xcalloc(1, sl);
            snprintf(src, sl, "%s\n%s", path, m);
        } else {
            src = imago_xstrdup(path);
        }
        list_add(l, src, ext);
        free(p);
        free(m);
    }
    free(line);
    fclose(f);
    (void)root;
    return rc;
}
