/* HTTP metrics in the Prometheus text format: request counts and latency
 * histograms by route, method and status. One mutex: a request takes it once
 * to observe, a scrape once to render; both are short. */
#include "metrics.h"

#include "common/common.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "imago_build.h"

static const double buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                 0.25,  0.5,    1,     2.5,  5,     10};
#define N_BUCKETS (sizeof buckets / sizeof buckets[0])

typedef struct series {
    const char *route; /* static */
    char method[8];
    int status;
    uint64_t count;
    double sum;
    uint64_t bucket[N_BUCKETS]; /* non-cumulative; summed when rendering */
} series;

struct imago_metrics {
    pthread_mutex_t lock;
    int n, cap;
    series *s;
};

imago_metrics *imago_metrics_new(void)
{
    imago_metrics *m = imago_xcalloc(1, sizeof *m);
    pthread_mutex_init(&m->lock, NULL);
    return m;
}

void imago_metrics_free(imago_metrics *m)
{
    if (!m)
        return;
    pthread_mutex_destroy(&m->lock);
    free(m->s);
    free(m);
}

void imago_metrics_observe(imago_metrics *m, const char *route, const char *method, int status,
                           double seconds)
{
    /* methods outside the routes table are folded to bound the label set */
    static const char *const known[] = {"GET", "POST", "DELETE", "HEAD", "OPTIONS", "PUT"};
    const char *meth = "OTHER";
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(method, known[i]) == 0)
            meth = known[i];
    pthread_mutex_lock(&m->lock);
    series *s = NULL;
    for (int i = 0; i < m->n; i++) {
        if (m->s[i].route == route && m->s[i].status == status &&
            strcmp(m->s[i].method, meth) == 0) {
            s = &m->s[i];
            break;
        }
    }
    if (!s) {
        if (m->n == m->cap) {
            m->cap = m->cap ? 2 * m->cap : 32;
            m->s = imago_xrealloc(m->s, (size_t)m->cap * sizeof *m->s);
        }
        s = &m->s[m->n++];
        memset(s, 0, sizeof *s);
        s->route = route;
        snprintf(s->method, sizeof s->method, "%s", meth);
        s->status = status;
    }
    s->count++;
    s->sum += seconds;
    for (size_t b = 0; b < N_BUCKETS; b++) {
        if (seconds <= buckets[b]) {
            s->bucket[b]++;
            break;
        }
    }
    pthread_mutex_unlock(&m->lock);
}

typedef struct sbuf {
    char *p;
    size_t n, cap;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_printf(sbuf *b, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int w = vsnprintf(b->p + b->n, b->cap - b->n, fmt, ap);
        va_end(ap);
        if (w < 0)
            return;
        if ((size_t)w < b->cap - b->n) {
            b->n += (size_t)w;
            return;
        }
        b->cap = b->cap * 2 + (size_t)w;
        b->p = imago_xrealloc(b->p, b->cap);
    }
}

char *imago_metrics_render(imago_metrics *m, long in_flight)
{
    sbuf b = {imago_xmalloc(4096), 0, 4096};
    b.p[0] = '\0';
    sb_printf(&b,
              "# HELP imago_build_info imago version.\n# TYPE imago_build_info gauge\n"
              "imago_build_info{version=\"%s\"} 1\n",
              IMAGO_VERSION);
    sb_printf(&b,
              "# HELP imago_http_requests_in_flight Requests being served.\n"
              "# TYPE imago_http_requests_in_flight gauge\n"
              "imago_http_requests_in_flight %ld\n",
              in_flight);
    pthread_mutex_lock(&m->lock);
    sb_printf(&b, "# HELP imago_http_requests_total HTTP requests by route, method and status.\n"
                  "# TYPE imago_http_requests_total counter\n");
    for (int i = 0; i < m->n; i++) {
        const series *s = &m->s[i];
        sb_printf(&b, "imago_http_requests_total{route=\"%s\",method=\"%s\",status=\"%d\"} %llu\n",
                  s->route, s->method, s->status, (unsigned long long)s->count);
    }
    sb_printf(&b, "# HELP imago_http_request_duration_seconds Time from the request line to "
                  "the last response byte queued.\n"
                  "# TYPE imago_http_request_duration_seconds histogram\n");
    for (int i = 0; i < m->n; i++) {
        const series *s = &m->s[i];
        uint64_t cum = 0;
        for (size_t k = 0; k < N_BUCKETS; k++) {
            cum += s->bucket[k];
            sb_printf(&b,
                      "imago_http_request_duration_seconds_bucket{route=\"%s\",method=\"%s\","
                      "status=\"%d\",le=\"%g\"} %llu\n",
                      s->route, s->method, s->status, buckets[k], (unsigned long long)cum);
        }
        sb_printf(&b,
                  "imago_http_request_duration_seconds_bucket{route=\"%s\",method=\"%s\","
                  "status=\"%d\",le=\"+Inf\"} %llu\n",
                  s->route, s->method, s->status, (unsigned long long)s->count);
        sb_printf(&b,
                  "imago_http_request_duration_seconds_sum{route=\"%s\",method=\"%s\","
                  "status=\"%d\"} %.9g\n",
                  s->route, s->method, s->status, s->sum);
        sb_printf(&b,
                  "imago_http_request_duration_seconds_count{route=\"%s\",method=\"%s\","
                  "status=\"%d\"} %llu\n",
                  s->route, s->method, s->status, (unsigned long long)s->count);
    }
    pthread_mutex_unlock(&m->lock);
    return b.p;
}
