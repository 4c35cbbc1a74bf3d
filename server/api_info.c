/* The probes and the descriptions of the server: GET /healthz, /readyz,
 * /v1/info and /metrics (the HTTP counters of metrics.c, then the engine's
 * batcher, then the index, jobs and search stages of index_slot.c).
 */
#include "app.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imago_build.h"

int imago_api_healthz(imago_http_request *r, imago_http_response *resp)
{
    (void)r;
    imago_http_json(resp, 200, imago_xstrdup("{\"status\":\"ok\"}"));
    return IMAGO_HTTP_DONE;
}

int imago_api_readyz(imago_http_request *r, imago_http_response *resp)
{
    /* ready = the model is loaded and the index is open */
    if (imago_app_need_model(r, resp))
        return IMAGO_HTTP_DONE;
    const char *msg = NULL;
    if (imago_index_slot_state(imago_server_index(imago_app_server(r)), &msg) != IMAGO_SLOT_READY)
        return imago_http_fail(resp, IMAGO_API_NOT_READY, msg);
    imago_http_json(resp, 200,
                    imago_xstrdup("{\"status\":\"ready\",\"model\":\"loaded\","
                                  "\"index\":\"ready\"}"));
    return IMAGO_HTTP_DONE;
}

int imago_api_info(imago_http_request *r, imago_http_response *resp)
{
    if (imago_app_no_query(r, resp))
        return IMAGO_HTTP_DONE;
    imago_info info;
    memset(&info, 0, sizeof info);
    info.version = IMAGO_VERSION;
    info.ready = imago_server_ready(imago_app_server(r));
    char index_type[80];
    imago_index_slot_info(imago_server_index(imago_app_server(r)), index_type, sizeof index_type,
                          &info.index_size, &info.index_seq);
    info.index_type = index_type[0] ? index_type : NULL;
    imago_whitening_desc wd;
    char wfp[40];
    info.whitening = imago_index_slot_whitening(imago_server_index(imago_app_server(r)), &wd, wfp,
                                                &info.index_dim);
    const imago_model_info *m = imago_engine_slot_model(imago_server_engine(imago_app_server(r)));
    if (m) {
        info.model_name = m->name;
        info.backbone = m->backbone;
        info.head = m->head;
        info.dim = m->dim;
        info.fingerprint = m->fingerprint;
        info.trained = m->trained;
        info.backend = m->backend;
        info.precision = m->precision;
        info.device = m->device;
        info.backend_note = m->backend_note;
    }
    char *out = NULL;
    imago_error err;
    imago_error_clear(&err);
    imago_info_to_json(&info, &out, &err);
    return imago_app_json_ok(resp, 200, out, &err);
}

int imago_api_metrics(imago_http_request *r, imago_http_response *resp)
{
    imago_server *s = imago_app_server(r);
    /* this scrape is in flight itself; report the others */
    char *text = imago_metrics_render(imago_server_metrics(s), imago_server_in_flight(s) - 1);
    imago_batcher *b = imago_engine_slot_batcher(imago_server_engine(s));
    if (b) {
        imago_batcher_stats st;
        imago_batcher_stats_get(b, &st);
        char extra[2048];
        snprintf(
            extra, sizeof extra,
            "# HELP imago_engine_queued Images waiting for decode or a batch.\n"
            "# TYPE imago_engine_queued gauge\nimago_engine_queued %lld\n"
            "# HELP imago_engine_in_forward Images in running forward passes.\n"
            "# TYPE imago_engine_in_forward gauge\nimago_engine_in_forward %lld\n"
            "# HELP imago_engine_images_total Images by outcome.\n"
            "# TYPE imago_engine_images_total counter\n"
            "imago_engine_images_total{outcome=\"completed\"} %llu\n"
            "imago_engine_images_total{outcome=\"failed_decode\"} %llu\n"
            "imago_engine_images_total{outcome=\"failed_engine\"} %llu\n"
            "imago_engine_images_total{outcome=\"cancelled\"} %llu\n"
            "imago_engine_images_total{outcome=\"rejected_busy\"} %llu\n"
            "# HELP imago_engine_batches_total Successful forward passes.\n"
            "# TYPE imago_engine_batches_total counter\nimago_engine_batches_total %llu\n"
            "# HELP imago_engine_seconds_total Time spent per stage, summed over images "
            "(decode, queue) or calls (forward).\n"
            "# TYPE imago_engine_seconds_total counter\n"
            "imago_engine_seconds_total{stage=\"decode\"} %.6f\n"
            "imago_engine_seconds_total{stage=\"queue\"} %.6f\n"
            "imago_engine_seconds_total{stage=\"forward\"} %.6f\n"
            "# HELP imago_engine_images_per_second Completed images per second (recent window).\n"
            "# TYPE imago_engine_images_per_second gauge\nimago_engine_images_per_second %.3f\n",
            (long long)st.queued, (long long)st.in_flight, (unsigned long long)st.completed,
            (unsigned long long)st.failed_decode, (unsigned long long)st.failed_engine,
            (unsigned long long)st.cancelled, (unsigned long long)st.rejected_busy,
            (unsigned long long)st.batches, st.decode_s_total, st.queue_s_total, st.forward_s_total,
            st.images_per_s);
        size_t a = strlen(text), e = strlen(extra);
        text = imago_xrealloc(text, a + e + 1);
        memcpy(text + a, extra, e + 1);
    }
    char *ix = imago_index_slot_metrics(imago_server_index(s));
    size_t a = strlen(text), e = strlen(ix);
    text = imago_xrealloc(text, a + e + 1);
    memcpy(text + a, ix, e + 1);
    free(ix);
    resp->status = 200;
    resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
    resp->body = text;
    resp->body_len = strlen(text);
    return IMAGO_HTTP_DONE;
}
