/* index crash safety: a child process adds (and sometimes deletes) images in
 * a loop with frequent automatic snapshots and reports every acknowledged
 * write through a pipe; the parent SIGKILLs it at a random moment, reopens
 * the collection and checks that every acknowledged image is present and
 * finds itself as the top hit, every acknowledged delete is gone, and the
 * index agrees with the store. Several rounds (Flat, then HNSW), then a
 * corrupted snapshot is detected and rebuilt. Bounded: ~0.1-0.4 s per round.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "index/index.h"
#include "tap.h"

#define D 32
#define PENDING ((int64_t)1 << 40) /* pipe code: -(id) - PENDING = delete about to run */

static char dir[256];

static imago_index_params params(const char *factory)
{
    imago_index_params p = imago_index_params_default();
    p.data_dir = dir;
    p.model_fingerprint = "fp-crash";
    p.dim = D;
    p.factory = factory;
    p.force_factory = 1;
    p.snapshot_interval = 37; /* snapshots often, so kills land inside them too */
    p.snapshot_on_close = 0;
    return p;
}

static void child(int fd, int round, const char *factory)
{
    imago_log_setup(IMAGO_LOG_ERROR, IMAGO_LOG_TEXT, stderr);
    imago_index_params p = params(factory);
    imago_index *ix = NULL;
    imago_error err;
    imago_error_clear(&err);
    if (imago_index_open(&p, &ix, &err)) {
        fprintf(stderr, "child open: %s\n", err.msg);
        _exit(3);
    }
    unsigned seed = (unsigned)(round * 7919 + 1);
    int64_t last_id = -1;
    for (long i = 0;; i++) {
        int n = 1 + (int)(rand_r(&seed) % 4);
        imago_index_item it[4];
        float v[4][D];
        char names[4][32];
        for (int b = 0; b < n; b++) {
            double s = 0;
            for (int j = 0; j < D; j++) {
                v[b][j] = (float)(rand_r(&seed) / (double)RAND_MAX - 0.5);
                s += v[b][j] * v[b][j];
            }
            for (int j = 0; j < D; j++)
                v[b][j] = (float)(v[b][j] / sqrt(s));
            snprintf(names[b], 32, "r%d_%ld_%d", round, i, b);
            it[b] = (imago_index_item){
                .external_id = names[b], .vector = v[b], .metadata_json = "{\"k\":1}"};
        }
        int64_t ids[4];
        if (imago_index_add(ix, it, (size_t)n, ids, &err)) {
            fprintf(stderr, "child add: %s\n", err.msg);
            _exit(4);
        }
        if (write(fd, ids, (size_t)n * sizeof ids[0]) < 0)
            _exit(5);
        if (i % 9 == 8 && last_id > 0) {
            /* announce first: a delete may commit and the kill land before its ack */
            int64_t intent = -last_id - PENDING;
            if (write(fd, &intent, sizeof intent) < 0)
                _exit(5);
            if (imago_index_delete(ix, last_id, &err) == 0) {
                int64_t neg = -last_id;
                if (write(fd, &neg, sizeof neg) < 0)
                    _exit(5);
            }
        }
        last_id = ids[0];
    }
}

static int64_t *acked;
static size_t n_acked, cap_acked;
static unsigned char *deleted; /* by id */
static size_t del_cap;

static void note(int64_t v)
{
    if (v < 0) {
        int mark = 1;
        if (v <= -PENDING) {
            v += PENDING;
            mark = 2; /* maybe deleted */
        }
        size_t id = (size_t)-v;
        if (id >= del_cap) {
            size_t nc = (id + 1) * 2;
            deleted = realloc(deleted, nc);
            memset(deleted + del_cap, 0, nc - del_cap);
            del_cap = nc;
        }
        if (deleted[id] != 1)
            deleted[id] = (unsigned char)mark;
        return;
    }
    if (n_acked == cap_acked) {
        cap_acked = cap_acked ? cap_acked * 2 : 1024;
        acked = realloc(acked, cap_acked * sizeof *acked);
    }
    acked[n_acked++] = v;
}

static int is_deleted(int64_t id)
{
    return (size_t)id < del_cap && deleted[id] == 1;
}
static int maybe_deleted(int64_t id)
{
    return (size_t)id < del_cap && deleted[id] == 2;
}

static void check_all(const char *factory, int round)
{
    imago_index_params p = params(factory);
    p.snapshot_on_close = 1;
    imago_index *ix = NULL;
    imago_error err;
    imago_error_clear(&err);
    int rc = imago_index_open(&p, &ix, &err);
    is_int(rc, 0, "round %d (%s): reopen after SIGKILL %s", round, factory, err.msg);
    if (rc)
        return;
    size_t present = 0, searchable = 0, live = 0, gone = 0, n_del = 0;
    float v[D];
    imago_index_search_params sp = imago_index_search_params_default();
    sp.k = 1;
    for (size_t i = 0; i < n_acked; i++) {
        int64_t id = acked[i];
        imago_image_info *info = NULL;
        imago_error_clear(&err);
        int got = imago_index_get(ix, id, &info, &err) == 0;
        imago_image_info_free(info);
        if (is_deleted(id)) {
            n_del++;
            gone += !got;
            continue;
        }
        if (maybe_deleted(id))
            continue; /* delete committed or not: both are correct */
        live++;
        present += got;
        /* search check: the last 150 acknowledged (the ones at risk) and every
         * 7th before them, to bound the time on HNSW */
        int probe = i + 150 >= n_acked || i % 7 == 0;
        if (!probe) {
            searchable++;
            continue;
        }
        if (got && imago_index_get_vector(ix, id, v, &err) == 0) {
            imago_index_hit h;
            int cnt = 0;
            if (imago_index_search(ix, v, 1, &sp, &h, &cnt, NULL, &err) == 0 && cnt == 1 &&
                h.id == id && h.score > 0.999f)
                searchable++;
        }
    }
    is_int(present, live, "round %d: all %zu acknowledged images present", round, live);
    is_int(searchable, live, "round %d: all probed acknowledged images are their own top hit",
           round);
    is_int(gone, n_del, "round %d: all %zu acknowledged deletes gone", round, n_del);
    imago_error_clear(&err);
    is_int(imago_index_verify(ix, &err), 0, "round %d: index agrees with the store %s", round,
           err.msg);
    imago_index_stats st;
    imago_index_stats_get(ix, &st, NULL);
    ok(st.count >= (int64_t)live, "round %d: store count %lld >= acknowledged live %zu", round,
       (long long)st.count, live);
    imago_index_free(ix);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/imago_test_crash_XXXXXX");
    if (!mkdtemp(dir))
        tap_bail("mkdtemp");
    imago_log_setup(IMAGO_LOG_WARN, IMAGO_LOG_TEXT, stderr);
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    const int rounds = 8;
    for (int r = 0; r < rounds; r++) {
        const char *factory = r < rounds / 2 ? "Flat" : "HNSW32";
        int fds[2];
        if (pipe(fds) != 0)
            tap_bail("pipe");
        pid_t pid = fork();
        if (pid == 0) {
            close(fds[0]);
            child(fds[1], r, factory);
            _exit(0);
        }
        close(fds[1]);
        fcntl(fds[0], F_SETFL, O_NONBLOCK);
        long kill_after_us = 80000 + rand() % 320000;
        struct timespec t0, t;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        int64_t buf[256];
        for (;;) {
            ssize_t got = read(fds[0], buf, sizeof buf);
            if (got > 0) {
                for (ssize_t i = 0; i < got / (ssize_t)sizeof buf[0]; i++)
                    note(buf[i]);
                /* partial int64 reads cannot happen: writes <= PIPE_BUF are atomic */
            }
            clock_gettime(CLOCK_MONOTONIC, &t);
            long el = (t.tv_sec - t0.tv_sec) * 1000000L + (t.tv_nsec - t0.tv_nsec) / 1000;
            if (el >= kill_after_us)
                break;
            if (got <= 0)
                usleep(200);
        }
        kill(pid, SIGKILL);
        int status = 0;
        waitpid(pid, &status, 0);
        ssize_t got;
        while ((got = read(fds[0], buf, sizeof buf)) > 0)
            for (ssize_t i = 0; i < got / (ssize_t)sizeof buf[0]; i++)
                note(buf[i]);
        close(fds[0]);
        ok(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
           "round %d: child killed after %ld ms with %zu acknowledged adds", r,
           kill_after_us / 1000, n_acked);
        check_all(factory, r);
    }
    /* a corrupted snapshot is detected and rebuilt, nothing lost */
    char snap[400];
    snprintf(snap, sizeof snap, "%s/index.snap", dir);
    int fd = open(snap, O_RDWR);
    ok(fd >= 0, "snapshot exists");
    if (fd >= 0) {
        struct stat sb;
        fstat(fd, &sb);
        unsigned char b = 0;
        if (pread(fd, &b, 1, sb.st_size / 2) == 1) {
            b ^= 0xff;
            if (pwrite(fd, &b, 1, sb.st_size / 2) != 1)
                tap_diag("pwrite failed");
        }
        close(fd);
    }
    check_all("HNSW32", rounds);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        tap_diag("cleanup failed");
    free(acked);
    free(deleted);
    return tap_done();
}
