/* server-private: the HTTP request metrics (metrics.c), Prometheus counters
 * and latency histograms. */
#ifndef IMAGO_SERVER_METRICS_H
#define IMAGO_SERVER_METRICS_H

typedef struct imago_metrics imago_metrics;

imago_metrics *imago_metrics_new(void);
void imago_metrics_free(imago_metrics *m);

/* Records one finished request. route is a static string (the route pattern,
 * or "unmatched"). Thread-safe. */
void imago_metrics_observe(imago_metrics *m, const char *route, const char *method, int status,
                           double seconds);

/* Prometheus text exposition format 0.0.4 (new string, caller frees).
 * in_flight is the current number of requests being served. Thread-safe. */
char *imago_metrics_render(imago_metrics *m, long in_flight);

#endif /* IMAGO_SERVER_METRICS_H */
