/* Unit tests for server/metrics.c: counts and cumulative histogram buckets
 * in the Prometheus text format. */
#include "server/server.h"
#include "tap.h"

#include <stdlib.h>
#include <string.h>

int main(void)
{
    imago_metrics *m = imago_metrics_new();
    static const char *const route = "/v1/search";
    imago_metrics_observe(m, route, "POST", 200, 0.004);
    imago_metrics_observe(m, route, "POST", 200, 0.2);
    imago_metrics_observe(m, route, "POST", 200, 30.0);
    imago_metrics_observe(m, route, "POST", 400, 0.0005);
    imago_metrics_observe(m, "unmatched", "BREW", 404, 0.0001);
    char *t = imago_metrics_render(m, 3);
    ok(strstr(t, "imago_http_requests_in_flight 3\n") != NULL, "in-flight gauge");
    ok(strstr(t,
              "imago_http_requests_total{route=\"/v1/search\",method=\"POST\",status=\"200\"} 3\n"),
       "count by route/method/status");
    ok(strstr(t,
              "imago_http_requests_total{route=\"/v1/search\",method=\"POST\",status=\"400\"} 1\n"),
       "400 counted separately");
    ok(strstr(t,
              "imago_http_requests_total{route=\"unmatched\",method=\"OTHER\",status=\"404\"} 1\n"),
       "unknown method folded to OTHER");
    ok(strstr(t, "{route=\"/v1/search\",method=\"POST\",status=\"200\",le=\"0.0025\"} 0\n"),
       "bucket 0.0025 holds none");
    ok(strstr(t, "{route=\"/v1/search\",method=\"POST\",status=\"200\",le=\"0.005\"} 1\n"),
       "bucket 0.005 holds 1");
    ok(strstr(t, "{route=\"/v1/search\",method=\"POST\",status=\"200\",le=\"0.25\"} 2\n"),
       "bucket 0.25 cumulative 2");
    ok(strstr(t, "{route=\"/v1/search\",method=\"POST\",status=\"200\",le=\"10\"} 2\n"),
       "30 s is above the last finite bucket");
    ok(strstr(t, "{route=\"/v1/search\",method=\"POST\",status=\"200\",le=\"+Inf\"} 3\n"),
       "+Inf holds all");
    ok(strstr(t, "imago_http_request_duration_seconds_sum{route=\"/v1/search\",method=\"POST\","
                 "status=\"200\"} 30.204\n"),
       "sum");
    ok(strstr(t, "# TYPE imago_http_request_duration_seconds histogram\n") != NULL, "TYPE line");
    /* every line is a comment or "name{labels} value" */
    int bad = 0, lines = 0;
    for (char *line = strtok(t, "\n"); line; line = strtok(NULL, "\n")) {
        lines++;
        if (line[0] == '#')
            continue;
        char *sp = strrchr(line, ' ');
        if (!sp || strncmp(line, "imago_", 6) != 0 || sp[1] == '\0')
            bad++;
    }
    is_int(bad, 0, "all %d lines well-formed", lines);
    free(t);
    imago_metrics_free(m);
    return tap_done();
}
