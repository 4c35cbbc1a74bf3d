/* The one-image ingest path (POST /v1/images, the jobs, `imago index`) and
 * the confinement of ingest paths to ingest.roots (docs/architecture.md,
 * "Where the rules live").
 */
#include "jobs.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- one image ------------------------------------------------------------------ */

static void sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

int imago_ingest_image(imago_batcher *b, imago_index *ix, const imago_ingest_one *in,
                       imago_ingest_result *out, imago_error *err)
{
    uint8_t digest[32];
    char hex[65];
    imago_sha256(in->bytes, in->len, digest);
    imago_sha256_hex(digest, hex);
    char ext_buf[80];
    const char *ext = in->external_id;
    if (!ext) {
        snprintf(ext_buf, sizeof ext_buf, "sha256:%s", hex);
        ext = ext_buf;
    }
    imago_ingest_result res = {0, 0, 0};
    imago_image_info *old = NULL;
    imago_error e2;
    imago_error_clear(&e2);
    if (imago_index_get_by_external(ix, ext, &old, &e2) == 0) {
        if (old->sha256 && strcmp(old->sha256, hex) == 0) {
            res.id = old->id;
            res.unchanged = 1;
            imago_image_info_free(old);
            *out = res;
            return 0;
        }
        res.replaced = 1;
        imago_image_info_free(old);
    }

    int dim = imago_batcher_dim(b);
    float *vec = imago_xcalloc((size_t)dim, sizeof *vec);
    int rc;
    long backoff = 1000;
    for (;;) {
        rc = imago_batcher_embed_sync(b, in->bytes, in->len, NULL, vec, NULL, err);
        if (rc != IMAGO_ERR_BUSY || !in->retry_busy)
            break;
        if (in->stop && atomic_load(in->stop)) {
            rc = imago_error_set(err, IMAGO_ERR_CANCELLED, "stopped while waiting for the engine");
            break;
        }
        /* backpressure: the batcher is full; wait for it, never drop */
        sleep_us(backoff);
        if (backoff < 50000)
            backoff *= 2;
    }
    if (rc != 0) {
        free(vec);
        return rc;
    }
    int w = 0, h = 0;
    imago_image_format fmt;
    imago_image_probe(in->bytes, in->len, &fmt, &w, &h, NULL);
    imago_decode_params limits;
    imago_batcher_decode_params(b, &limits);
    void *thumb = NULL;
    size_t thumb_len = 0;
    imago_error terr;
    imago_error_clear(&terr);
    if (imago_thumb_make(in->bytes, in->len, &limits, IMAGO_THUMB_MAX_SIDE, &thumb, &thumb_len,
                         &terr) != 0)
        IMAGO_WARN("ingest", "%s: no thumbnail: %s", ext, terr.msg);
    imago_index_item item;
    memset(&item, 0, sizeof item);
    item.external_id = ext;
    item.sha256 = hex;
    item.uri = in->uri;
    item.width = w;
    item.height = h;
    item.metadata_json = in->metadata_json;
    item.thumbnail = thumb;
    item.thumbnail_len = thumb_len;
    item.vector = vec;
    rc = imago_index_add(ix, &item, 1, &res.id, err);
    free(thumb);
    free(vec);
    if (rc == 0)
        *out = res;
    return rc;
}

/* ---- ingest confinement ---------------------------------------------------------- */

/* Whether real path p is root or below it. */
static int below(const char *p, const char *root)
{
    size_t n = strlen(root);
    if (n == 1 && root[0] == '/')
        return 1;
    return strncmp(p, root, n) == 0 && (p[n] == '\0' || p[n] == '/');
}

/* The real path of the root that holds real path p, into root_out; 0 or
 * IMAGO_ERR_AUTH. */
int imago_ingest_root_of(const imago_config_strlist *roots, const char *p, char *root_out,
                         imago_error *err)
{
    if (!roots || roots->n == 0)
        return imago_error_set(err, IMAGO_ERR_AUTH,
                               "no ingest.roots are configured: bulk jobs are refused");
    for (int i = 0; i < roots->n; i++) {
        char rr[PATH_MAX];
        if (!realpath(roots->items[i], rr))
            continue;
        if (below(p, rr)) {
            snprintf(root_out, PATH_MAX, "%s", rr);
            return 0;
        }
    }
    return imago_error_set(err, IMAGO_ERR_AUTH, "%s is outside ingest.roots", p);
}

/* Confines an absolute path to the ingest roots without revealing what
 * exists outside them. The path is resolved as far as it exists (the real
 * path of its deepest existing ancestor, then the rest as written, which may
 * not hold a ".." component), and that is checked against the roots. Outside
 * the roots, existing or not, the answer is the same IMAGO_ERR_AUTH naming
 * the path as given; inside them, a path that does not exist is
 * missing_code. On success real_out is the real path and root_out the real
 * path of its root. */
int imago_ingest_confine(const imago_config_strlist *roots, const char *path, int missing_code,
                         char *real_out, char *root_out, imago_error *err)
{
    imago_error quiet;
    if (!roots || roots->n == 0)
        /* "no ingest.roots are configured" */
        return imago_ingest_root_of(roots, path, root_out, err);
    if (path[0] != '/' || strlen(path) >= PATH_MAX)
        return imago_error_set(err, IMAGO_ERR_AUTH, "%s is outside ingest.roots", path);
    if (realpath(path, real_out)) {
        if (imago_ingest_root_of(roots, real_out, root_out, &quiet) != 0)
            return imago_error_set(err, IMAGO_ERR_AUTH, "%s is outside ingest.roots", path);
        return 0;
    }
    int why = errno;
    char head[PATH_MAX];
    snprintf(head, sizeof head, "%s", path);
    const char *rest = path; /* set by the loop below */
    char real[PATH_MAX];
    for (;;) {
        char *slash = strrchr(head, '/');
        if (!slash)
            return imago_error_set(err, IMAGO_ERR_AUTH, "%s is outside ingest.roots", path);
        *slash = '\0';
        rest = path + (slash - head) + 1;
        if (realpath(head[0] ? head : "/", real))
            break;
    }
    /* the first missing component may be a dangling symlink: where it points
     * is not to be told, so it is outside */
    char first[PATH_MAX];
    size_t fl = strcspn(rest, "/");
    struct stat lst;
    size_t hl = strlen(head);
    int fits = hl + 1 + fl < sizeof first;
    if (fits) {
        memcpy(first, head, hl);
        first[hl] = '/';
        memcpy(first + hl + 1, rest, fl);
        first[hl + 1 + fl] = '\0';
    }
    if (fits && lstat(first, &lst) == 0 && S_ISLNK(lst.st_mode))
        return imago_error_set(err, IMAGO_ERR_AUTH, "%s is outside ingest.roots", path);
    /* the part that does not exist is taken as written: no ".." in it */
    for (const char *c = rest; c && *c;) {
        const char *e = strchr(c, '/');
        size_t n = e ? (size_t)(e - c) : strlen(c);
        if (n == 2 && c[0] == '.' && c[1] == '.')
            return imago_error_set(err, IMAGO_ERR_AUTH, "%s is outside ingest.roots", path);
        c = e ? e + 1 : c + n;
    }
    size_t rl = strlen(real);
    int pl = snprintf(real_out, PATH_MAX, "%s%s%s", real, rl && real[rl - 1] == '/' ? "" : "/",
                      rest);
    if (pl < 0 || pl >= PATH_MAX || imago_ingest_root_of(roots, real_out, root_out, &quiet) != 0)
        return imago_error_set(err, IMAGO_ERR_AUTH, "%s is outside ingest.roots", path);
    return imago_error_set(err, missing_code, "%s: %s", path, strerror(why));
}

/* Opens a confined path for reading without ever blocking: O_NONBLOCK, so
 * a FIFO or a device cannot hang the thread, then fstat on the open file
 * (no race with the check) and only a regular file is accepted. Returns the
 * fd (>= 0) or a negative code. */
int imago_ingest_open_regular(const char *shown, const char *real, struct stat *st,
                              imago_error *err)
{
    int fd = open(real, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return imago_error_set(err, errno == ENOENT ? IMAGO_ERR_NOT_FOUND : IMAGO_ERR_IO,
                               "%s: %s", shown, strerror(errno));
    if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode)) {
        close(fd);
        return imago_error_set(err, IMAGO_ERR_UNSUPPORTED, "%s is not a regular file", shown);
    }
    /* a regular file: blocking reads from here on */
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    return fd;
}

