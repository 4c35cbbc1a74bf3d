/* index snapshots: written at close and loaded at open; rows committed after
 * the snapshot are replayed; a corrupt, truncated, mismatched or
 * pre-compaction snapshot is detected, logged and rebuilt from the store. */
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "index/index.h"
#include "tap.h"

#define D 24

static char dir[256], snap[400];
static FILE *logfp;
static long log_mark;

static void log_begin(void)
{
    fflush(logfp);
    fseek(logfp, 0, SEEK_END);
    log_mark = ftell(logfp);
}
static int log_has(const char *what)
{
    fflush(logfp);
    fseek(logfp, log_mark, SEEK_SET);
    char line[1024];
    int found = 0;
    while (fgets(line, sizeof line, logfp))
        if (strstr(line, what))
            found = 1;
    fseek(logfp, 0, SEEK_END);
    return found;
}

static imago_index *open_ix(const char *factory, const char *prec, int snap_close)
{
    imago_index_params p = imago_index_params_default();
    p.data_dir = dir;
    p.model_fingerprint = "fp-snap";
    p.dim = D;
    p.factory = factory;
    p.force_factory = 1;
    p.precision = prec;
    p.snapshot_on_close = snap_close;
    p.snapshot_interval = 0;
    imago_index *ix = NULL;
    imago_error err;
    imago_error_clear(&err);
    if (imago_index_open(&p, &ix, &err))
        tap_diag("open: %s", err.msg);
    return ix;
}

static int counter;
static void add_some(imago_index *ix, int n)
{
    imago_index_item *it = calloc((size_t)n, sizeof *it);
    float *v = malloc((size_t)n * D * sizeof *v);
    char(*names)[16] = calloc((size_t)n, 16);
    for (int i = 0; i < n; i++) {
        double s = 0;
        for (int j = 0; j < D; j++) {
            v[i * D + j] = (float)sin(counter * 1.3 + j * 0.7 + (counter % 7) * j);
            s += v[i * D + j] * v[i * D + j];
        }
        for (int j = 0; j < D; j++)
            v[i * D + j] = (float)(v[i * D + j] / sqrt(s));
        snprintf(names[i], 16, "s%d", counter++);
        it[i].external_id = names[i];
        it[i].vector = v + i * D;
    }
    imago_error err;
    imago_error_clear(&err);
    if (imago_index_add(ix, it, (size_t)n, NULL, &err))
        tap_diag("add: %s", err.msg);
    free(it);
    free(v);
    free(names);
}

static void check(imago_index *ix, long long count, const char *what)
{
    imago_error err;
    imago_error_clear(&err);
    imago_index_stats st;
    imago_index_stats_get(ix, &st, NULL);
    is_int(st.count, count, "%s: count", what);
    is_int(imago_index_verify(ix, &err), 0, "%s: index agrees with the store %s", what, err.msg);
}

static void corrupt(long offset_from_end, int truncate_to)
{
    if (truncate_to >= 0) {
        if (truncate(snap, truncate_to) != 0)
            tap_diag("truncate failed");
        return;
    }
    int fd = open(snap, O_RDWR);
    struct stat sb;
    fstat(fd, &sb);
    off_t at = sb.st_size - offset_from_end;
    unsigned char b;
    if (pread(fd, &b, 1, at) == 1) {
        b ^= 0x5a;
        if (pwrite(fd, &b, 1, at) != 1)
            tap_diag("pwrite failed");
    }
    close(fd);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/imago_test_snap_XXXXXX");
    if (!mkdtemp(dir))
        tap_bail("mkdtemp");
    snprintf(snap, sizeof snap, "%s/index.snap", dir);
    logfp = tmpfile();
    imago_log_setup(IMAGO_LOG_INFO, IMAGO_LOG_TEXT, logfp);

    const char *types[2] = {"Flat", "HNSW32"};
    for (int t = 0; t < 2; t++) {
        const char *ty = types[t];
        char cmd[1000];
        snprintf(cmd, sizeof cmd, "rm -rf %s/*", dir);
        if (system(cmd) != 0)
            tap_diag("clean failed");
        counter = 0;
        imago_index *ix = open_ix(ty, "fp32", 1);
        add_some(ix, 300);
        imago_index_free(ix); /* snapshot at close */
        struct stat sb;
        ok(stat(snap, &sb) == 0 && sb.st_size > 300 * D * 4, "%s: snapshot written at close", ty);

        log_begin();
        ix = open_ix(ty, "fp32", 0);
        ok(log_has("loaded"), "%s: snapshot loaded at open", ty);
        check(ix, 300, ty);
        add_some(ix, 40); /* committed, not in the snapshot */
        imago_error err;
        imago_error_clear(&err);
        imago_index_delete(ix, 5, &err);
        imago_index_free(ix); /* no snapshot: like a crash */

        log_begin();
        ix = open_ix(ty, "fp32", 0);
        ok(log_has("41 newer store rows replayed"), "%s: newer rows replayed", ty);
        check(ix, 339, "after replay");
        imago_index_snapshot(ix, &err);
        imago_index_free(ix);

        corrupt(100, -1);
        log_begin();
        ix = open_ix(ty, "fp32", 0);
        ok(log_has("checksum mismatch") && log_has("rebuilding"),
           "%s: corrupt snapshot detected and rebuilt", ty);
        check(ix, 339, "after corruption");
        imago_index_free(ix);

        corrupt(0, 1000);
        log_begin();
        ix = open_ix(ty, "fp32", 0);
        ok(log_has("truncated") && log_has("rebuilding"), "%s: truncated snapshot rebuilt", ty);
        check(ix, 339, "after truncation");
        imago_index_free(ix);

        unlink(snap);
        log_begin();
        ix = open_ix(ty, "fp32", 0);
        ok(log_has("no snapshot"), "%s: missing snapshot built from the store", ty);
        check(ix, 339, "missing snapshot");
        imago_index_free(ix);

        if (t == 0) {
            log_begin();
            ix = open_ix(ty, "fp16", 0); /* other settings than the snapshot */
            ok(log_has("settings differ") && log_has("rebuilding"),
               "settings mismatch detected and rebuilt");
            check(ix, 339, "after precision change");
            imago_index_free(ix);
        }

        /* a snapshot from before a compaction must not be used */
        ix = open_ix(ty, t == 0 ? "fp16" : "fp32", 0);
        imago_index_snapshot(ix, &err);
        snprintf(cmd, sizeof cmd, "cp %s %s.old", snap, snap);
        ok(system(cmd) == 0, "copy snapshot");
        imago_index_delete(ix, 7, &err);
        is_int(imago_index_reindex(ix, NULL, &err), 0, "%s: compaction", ty);
        imago_index_free(ix);
        snprintf(cmd, sizeof cmd, "mv %s.old %s", snap, snap);
        ok(system(cmd) == 0, "restore the old snapshot");
        log_begin();
        ix = open_ix(ty, t == 0 ? "fp16" : "fp32", 0);
        ok(log_has("outside the store") && log_has("rebuilding"),
           "%s: pre-compaction snapshot refused and rebuilt", ty);
        check(ix, 338, "after compaction");
        imago_index_free(ix);
    }
    char cmd[1000];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        tap_diag("cleanup failed");
    return tap_done();
}
