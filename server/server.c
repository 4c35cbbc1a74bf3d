/* The server's lifetime: open (tokens, metrics, signals, the HTTP transport
 * on the route table), the background start of the engine and index slots,
 * the graceful shutdown, and what handlers read of the server (app.h).
 *
 * DESIGN: the main thread opens the server, starts the slots and blocks in
 * run() on a self-pipe that SIGTERM/SIGINT, imago_server_stop() or a slot
 * that failed to load write to. Shutdown order: stop accepting, drain the
 * requests in flight (bounded by drain_s), stop the jobs runner, cancel the
 * batcher (suspended searches get their 503 and resume), stop the daemon,
 * snapshot and close the index.
 */
#include "app.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct imago_server {
    const imago_config *cfg;
    imago_auth auth;
    imago_metrics *metrics;
    imago_http *http;
    atomic_int load_failed;
    /* set by the main thread while the HTTP workers already answer /readyz:
     * atomic, so a worker that sees the pointer sees the slot it points to */
    _Atomic(imago_engine_slot *) slot;
    _Atomic(imago_index_slot *) islot;
    atomic_int index_failed;
    int stop_pipe[2];
};

static imago_server *volatile signal_target;
static struct sigaction old_term, old_int;

static void on_signal(int sig)
{
    (void)sig;
    imago_server *s = signal_target;
    if (s)
        imago_server_stop(s);
}

int imago_server_open(const imago_config *cfg, imago_server **out, imago_error *err)
{
    imago_server *s = imago_xcalloc(1, sizeof *s);
    s->cfg = cfg;
    s->stop_pipe[0] = s->stop_pipe[1] = -1;
    atomic_init(&s->load_failed, 0);
    int rc = imago_auth_init(&s->auth, cfg, err);
    if (rc)
        goto fail;
    s->metrics = imago_metrics_new();
    if (pipe2(s->stop_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
        rc = imago_error_set(err, IMAGO_ERR_IO, "pipe: %s", strerror(errno));
        goto fail;
    }
    /* SIGTERM/SIGINT only wake run(); installed before the daemon starts so
     * a signal that arrives before run() is not lost or fatal */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    signal_target = s;
    sigaction(SIGTERM, &sa, &old_term);
    sigaction(SIGINT, &sa, &old_int);
    signal(SIGPIPE, SIG_IGN);
    rc = imago_http_open(cfg, imago_api_routes, imago_api_route_count, &s->auth, s->metrics, s,
                         &s->http, err);
    if (rc)
        goto fail;
    *out = s;
    return 0;
fail:
    imago_server_free(s);
    return rc;
}

imago_server *imago_app_server(const imago_http_request *r)
{
    return imago_http_app(r);
}

int imago_server_port(const imago_server *s)
{
    return imago_http_port(s->http);
}
const imago_config *imago_server_config(const imago_server *s)
{
    return s->cfg;
}
imago_metrics *imago_server_metrics(const imago_server *s)
{
    return s->metrics;
}
long imago_server_in_flight(const imago_server *s)
{
    return imago_http_in_flight(s->http);
}
int imago_server_ready(const imago_server *s)
{
    return imago_engine_slot_state(s->slot, NULL) == IMAGO_SLOT_READY &&
           imago_index_slot_state(s->islot, NULL) == IMAGO_SLOT_READY;
}

imago_index_slot *imago_server_index(const imago_server *s)
{
    return s->islot;
}

static void on_index_failed(void *ctx)
{
    imago_server *s = ctx;
    atomic_store(&s->index_failed, 1);
    imago_server_stop(s);
}

imago_engine_slot *imago_server_engine(const imago_server *s)
{
    return s->slot;
}

static void on_load_failed(void *ctx)
{
    imago_server *s = ctx;
    atomic_store(&s->load_failed, 1);
    imago_server_stop(s);
}

int imago_server_start_engine(imago_server *s, imago_error *err)
{
    if (s->slot)
        return 0;
    imago_engine_slot *slot = NULL;
    imago_index_slot *islot = NULL;
    int rc = imago_engine_slot_start(s->cfg, on_load_failed, s, &slot, err);
    if (rc != 0)
        return rc;
    atomic_store_explicit(&s->slot, slot, memory_order_release);
    rc = imago_index_slot_start(s->cfg, slot, on_index_failed, s, &islot, err);
    if (rc == 0)
        atomic_store_explicit(&s->islot, islot, memory_order_release);
    return rc;
}

void imago_server_stop(imago_server *s)
{
    int saved = errno;
    char c = 1;
    if (s->stop_pipe[1] >= 0 && write(s->stop_pipe[1], &c, 1) < 0) {
        /* full pipe: a stop is already pending */
    }
    errno = saved;
}

/* Waits until no request is in flight or the deadline (imago_now_us) passes. */
static void wait_in_flight(const imago_server *s, int64_t deadline)
{
    while (imago_server_in_flight(s) > 0 && imago_now_us() < deadline) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

int imago_server_run(imago_server *s, int drain_s, imago_error *err)
{
    struct pollfd pfd = {.fd = s->stop_pipe[0], .events = POLLIN};
    for (;;) {
        int n = poll(&pfd, 1, -1);
        if (n > 0)
            break;
        if (n < 0 && errno != EINTR)
            break;
    }
    IMAGO_INFO("http", "shutting down: no new connections, draining %ld request%s in flight",
               imago_server_in_flight(s), imago_server_in_flight(s) == 1 ? "" : "s");
    imago_http_quiesce(s->http);
    wait_in_flight(s, imago_now_us() + (int64_t)drain_s * 1000000);
    long left = imago_server_in_flight(s);
    if (left > 0)
        IMAGO_WARN("http", "%ld request%s still in flight after %d s: cancelling them", left,
                   left == 1 ? "" : "s", drain_s);
    /* the jobs runner first: its items in flight finish through the
     * batcher, the rest stay pending for the next start */
    imago_index_slot_stop_jobs(s->islot);
    /* cancelled images get their callbacks (503) and resume their
     * connections: none may stay suspended when the daemon stops */
    imago_engine_slot_close(s->slot, 0);
    wait_in_flight(s, imago_now_us() + 2000000);
    imago_http_free(s->http); /* stops the daemon */
    s->http = NULL;
    /* graceful shutdown snapshots the index (docs/architecture.md, where the rules live) */
    char index_msg[IMAGO_ERROR_MSG_MAX];
    const char *imsg = NULL;
    imago_index_slot_state(s->islot, &imsg);
    snprintf(index_msg, sizeof index_msg, "%s", imsg ? imsg : "the index failed to open");
    imago_index_slot_free(s->islot);
    s->islot = NULL;
    IMAGO_INFO("http", "stopped");
    if (atomic_load(&s->index_failed))
        return imago_error_set(err, IMAGO_ERR_BACKEND, "%s", index_msg);
    if (atomic_load(&s->load_failed)) {
        const char *msg = NULL;
        imago_engine_slot_state(s->slot, &msg);
        return imago_error_set(err, IMAGO_ERR_BACKEND, "%s", msg ? msg : "model failed to load");
    }
    return 0;
}

void imago_server_free(imago_server *s)
{
    if (!s)
        return;
    if (s->http) {
        imago_index_slot_stop_jobs(s->islot);
        imago_engine_slot_close(s->slot, 0);
        imago_http_free(s->http);
    }
    imago_index_slot_free(s->islot);
    imago_engine_slot_free(s->slot);
    if (signal_target == s) {
        signal_target = NULL;
        sigaction(SIGTERM, &old_term, NULL);
        sigaction(SIGINT, &old_int, NULL);
    }
    if (s->stop_pipe[0] >= 0)
        close(s->stop_pipe[0]);
    if (s->stop_pipe[1] >= 0)
        close(s->stop_pipe[1]);
    imago_metrics_free(s->metrics);
    free(s);
}
