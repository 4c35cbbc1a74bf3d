/* POST /v1/search and POST /v1/extract: the image goes to the engine's
 * batcher and the connection is suspended meanwhile.
 *
 * DESIGN (threads): neither endpoint blocks an MHD thread. The batcher
 * callback (a forward thread) answers: /v1/extract with the descriptor,
 * /v1/search after the index search and the metadata join, which take well
 * under a millisecond per hit on the exact index, then resumes the
 * connection. Slow index types would be better served by a hand-off; the
 * callback is where the descriptor is, so it is also the simplest place.
 */
#include "app.h"

#include <stdlib.h>
#include <string.h>

/* The decode parameters of a search or extract: the bbox crop, if any. */
static imago_decode_params decode_params(const imago_search_params *sp)
{
    imago_decode_params dp = imago_decode_params_default();
    if (sp->has_bbox) {
        dp.has_box = 1;
        memcpy(dp.box, sp->bbox, sizeof dp.box);
    }
    return dp;
}

/* ---- search ---------------------------------------------------------------------------- */

typedef struct search_ctx {
    imago_http_request *r;
    imago_index_slot *slot;
    imago_search_params sp;
    int64_t t0;
} search_ctx;

static int meta_filter(int64_t id, const char *metadata_json, void *user)
{
    (void)id;
    const imago_search_params *sp = user;
    return imago_filter_match(sp->filter, sp->n_filter, metadata_json);
}

static void search_done(void *user_data, int status, const char *message, const float *descriptor,
                        int dim, const imago_batch_timings *t)
{
    (void)dim;
    search_ctx *c = user_data;
    imago_http_response resp;
    memset(&resp, 0, sizeof resp);
    imago_index *ix = imago_index_slot_index(c->slot);
    if (status != 0) {
        imago_app_batch_error(&resp, status, message);
    } else if (!ix) {
        imago_http_error(&resp, IMAGO_API_NOT_READY, "the index is not ready");
    } else {
        imago_index_search_params p = imago_index_search_params_default();
        p.k = c->sp.k;
        p.qe = c->sp.qe;
        p.qe_n = c->sp.qe_k;
        p.qe_alpha = c->sp.has_qe_alpha ? c->sp.qe_alpha : -1;
        if (c->sp.n_filter > 0) {
            p.meta_filter = meta_filter;
            p.filter_user = &c->sp;
        }
        imago_index_hit *hits = imago_xcalloc((size_t)p.k, sizeof *hits);
        int nh = 0;
        int64_t seq = 0;
        imago_error err;
        imago_error_clear(&err);
        int64_t ts0 = imago_now_us();
        int rc = imago_index_search(ix, descriptor, 1, &p, hits, &nh, &seq, &err);
        int64_t ts1 = imago_now_us();
        imago_search_hit *out = imago_xcalloc((size_t)(nh > 0 ? nh : 1), sizeof *out);
        imago_image_info **infos = imago_xcalloc((size_t)(nh > 0 ? nh : 1), sizeof *infos);
        int n = 0;
        for (int i = 0; rc == 0 && i < nh; i++) {
            imago_image_info *info = NULL;
            imago_error e2;
            imago_error_clear(&e2);
            /* an image deleted since the search is left out */
            if (imago_index_get(ix, hits[i].id, &info, &e2) != 0)
                continue;
            infos[n] = info;
            out[n].id = hits[i].id;
            out[n].external_id = info->external_id;
            out[n].score = hits[i].score;
            out[n].uri = info->uri;
            out[n].metadata_json = info->metadata_json;
            n++;
        }
        int64_t ts2 = imago_now_us();
        if (rc != 0) {
            imago_http_error(&resp, imago_api_error_from_code(rc, IMAGO_API_CTX_GENERIC), err.msg);
        } else {
            imago_search_response sr;
            memset(&sr, 0, sizeof sr);
            sr.n_results = n;
            sr.results = out;
            sr.index_seq = (uint64_t)(seq > 0 ? seq : 0);
            sr.with_metadata = c->sp.with_metadata;
            sr.timings.decode_ms = (double)t->decode_us / 1e3;
            sr.timings.queue_ms = (double)t->queue_us / 1e3;
            sr.timings.forward_ms = (double)t->forward_us / 1e3;
            /* the index runs QE inside the same call: search_ms includes it */
            sr.timings.search_ms = (double)(ts1 - ts0) / 1e3;
            sr.timings.qe_ms = 0;
            sr.timings.metadata_ms = (double)(ts2 - ts1) / 1e3;
            sr.timings.total_ms = (double)(ts2 - c->t0) / 1e3;
            char *json = NULL;
            if (imago_search_response_to_json(&sr, &json, &err) == 0)
                imago_http_json(&resp, 200, json);
            else
                imago_http_error(&resp, IMAGO_API_INTERNAL, err.msg);
            double v[IMAGO_SEARCH_STAGES] = {sr.timings.decode_ms,  sr.timings.queue_ms,
                                             sr.timings.forward_ms, sr.timings.search_ms,
                                             sr.timings.qe_ms,      sr.timings.metadata_ms,
                                             sr.timings.total_ms};
            imago_index_slot_count_search(c->slot, v);
        }
        for (int i = 0; i < n; i++)
            imago_image_info_free(infos[i]);
        free(infos);
        free(out);
        free(hits);
    }
    imago_http_request *r = c->r;
    imago_search_params_clear(&c->sp);
    free(c);
    imago_http_complete(r, &resp);
}

int imago_api_search(imago_http_request *r, imago_http_response *resp)
{
    imago_upload u;
    if (imago_upload_read(r, resp, IMAGO_UPLOAD_SEARCH, &u) != 0 ||
        imago_app_need_model(r, resp) != 0 || !imago_app_need_index(r, resp)) {
        imago_upload_clear(&u);
        return IMAGO_HTTP_DONE;
    }
    imago_index_slot *slot = imago_server_index(imago_app_server(r));
    imago_batcher *b = imago_engine_slot_batcher(imago_server_engine(imago_app_server(r)));
    if (!b) {
        imago_upload_clear(&u);
        return imago_http_fail(resp, IMAGO_API_NOT_READY, "the model is not loaded");
    }
    search_ctx *c = imago_xcalloc(1, sizeof *c);
    c->r = r;
    c->slot = slot;
    c->t0 = imago_now_us();
    c->sp = u.search; /* takes the filter terms */
    u.search = imago_search_params_default();
    imago_decode_params dp = decode_params(&c->sp);
    imago_http_defer(r);
    imago_error err;
    imago_error_clear(&err);
    int rc = imago_batcher_submit(b, u.image, u.image_len, IMAGO_BATCHER_COPY, &dp, search_done, c,
                                  &err);
    imago_upload_clear(&u);
    if (rc != 0) {
        imago_search_params_clear(&c->sp);
        free(c);
        imago_http_complete_error(r, imago_api_error_from_code(rc, IMAGO_API_CTX_IMAGE), err.msg);
    }
    return IMAGO_HTTP_DEFERRED;
}

/* ---- extract ---------------------------------------------------------------------------- */

/* Batcher callback of /v1/extract (a batcher thread): answer and resume. */
static void extract_done(void *user_data, int status, const char *message, const float *descriptor,
                         int dim, const imago_batch_timings *timings)
{
    (void)timings;
    imago_http_request *r = user_data;
    imago_http_response resp;
    memset(&resp, 0, sizeof resp);
    if (status == 0) {
        char *out = NULL;
        imago_error err;
        imago_error_clear(&err);
        if (imago_extract_response_to_json(descriptor, dim, &out, &err) == 0)
            imago_http_json(&resp, 200, out);
        else
            imago_http_error(&resp, IMAGO_API_INTERNAL, err.msg);
    } else {
        imago_app_batch_error(&resp, status, message);
    }
    imago_http_complete(r, &resp);
}

int imago_api_extract(imago_http_request *r, imago_http_response *resp)
{
    imago_upload u;
    if (imago_upload_read(r, resp, IMAGO_UPLOAD_SEARCH, &u) != 0 ||
        imago_app_need_model(r, resp) != 0) {
        imago_upload_clear(&u);
        return IMAGO_HTTP_DONE;
    }
    imago_batcher *b = imago_engine_slot_batcher(imago_server_engine(imago_app_server(r)));
    imago_decode_params dp = decode_params(&u.search);
    /* suspend first: the callback may run before submit returns */
    imago_http_defer(r);
    imago_error err;
    imago_error_clear(&err);
    int rc = b ? imago_batcher_submit(b, u.image, u.image_len, IMAGO_BATCHER_COPY, &dp,
                                      extract_done, r, &err)
               : imago_error_set(&err, IMAGO_ERR_NOT_READY, "the model is not loaded");
    imago_upload_clear(&u);
    if (rc != 0) {
        imago_http_complete_error(r, imago_api_error_from_code(rc, IMAGO_API_CTX_IMAGE), err.msg);
    }
    return IMAGO_HTTP_DEFERRED;
}
