/* The server's engine slot: loads the model and starts the batcher in a
 * background thread at start (the HTTP server answers /healthz at once and
 * 503 not_ready on /readyz and the model endpoints until the load is done),
 * and closes them at shutdown.
 *
 * DESIGN: states LOADING -> READY | FAILED, published with release/acquire
 * atomics; the engine and batcher pointers are written once by the loader
 * before READY and read by request threads only after seeing READY. close()
 * joins the loader first, so a shutdown during the load waits for it.
 */
#include "app.h"

#include "cfg_params.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

struct imago_engine_slot {
    const imago_config *cfg;
    pthread_t loader;
    int loader_started;
    _Atomic int state;
    imago_engine *engine;
    imago_batcher *batcher;
    imago_model_info info;
    char message[IMAGO_ERROR_MSG_MAX + 32];
    int closed;
    void (*on_fail)(void *ctx);
    void *on_fail_ctx;
};

static void *loader_main(void *arg)
{
    imago_engine_slot *slot = arg;
    const imago_config *cfg = slot->cfg;
    imago_error err;
    imago_error_clear(&err);
    int64_t t0 = imago_now_us();

    imago_engine_params ep;
    float scales[IMAGO_CFG_MAX_SCALES];
    imago_cfg_engine_params(cfg, scales, &ep);
    imago_engine *engine = NULL;
    int rc = imago_engine_open(&ep, &engine, &err);
    imago_batcher *batcher = NULL;
    if (rc == 0) {
        imago_batcher_params bp;
        imago_cfg_batcher_params(cfg, &bp);
        rc = imago_batcher_new(engine, &bp, &batcher, &err);
    }
    if (rc != 0) {
        imago_engine_free(engine);
        snprintf(slot->message, sizeof slot->message, "model failed to load: %s", err.msg);
        IMAGO_ERROR("engine", "%s", slot->message);
        atomic_store_explicit(&slot->state, IMAGO_SLOT_FAILED, memory_order_release);
        if (slot->on_fail)
            slot->on_fail(slot->on_fail_ctx);
        return NULL;
    }
    slot->engine = engine;
    slot->batcher = batcher;
    imago_engine_describe(engine, &slot->info);
    IMAGO_INFO("engine", "model %s (%s + %s, dim %d) on %s/%s (%s) loaded in %.1f s",
               slot->info.name, slot->info.backbone, slot->info.head, slot->info.dim,
               slot->info.backend, slot->info.precision, slot->info.device,
               (double)(imago_now_us() - t0) / 1e6);
    if (slot->info.backend_note[0])
        IMAGO_INFO("engine", "%s", slot->info.backend_note);
    if (!slot->info.trained)
        IMAGO_WARN("engine", "serving the demo model: random weights from a fixed seed, not a "
                             "trained retrieval model (it finds near-duplicates only); set "
                             "engine.model to a converted model (tools/convert.py)");
    atomic_store_explicit(&slot->state, IMAGO_SLOT_READY, memory_order_release);
    return NULL;
}

int imago_engine_slot_start(const imago_config *cfg, void (*on_fail)(void *ctx), void *ctx,
                            imago_engine_slot **out, imago_error *err)
{
    imago_engine_slot *slot = imago_xcalloc(1, sizeof *slot);
    slot->cfg = cfg;
    slot->on_fail = on_fail;
    slot->on_fail_ctx = ctx;
    snprintf(slot->message, sizeof slot->message, "the model is loading");
    atomic_init(&slot->state, IMAGO_SLOT_LOADING);
    int prc = pthread_create(&slot->loader, NULL, loader_main, slot);
    if (prc != 0) {
        free(slot);
        return imago_error_set(err, IMAGO_ERR_BACKEND, "cannot start the model loader: %s",
                               strerror(prc));
    }
    slot->loader_started = 1;
    *out = slot;
    return 0;
}

imago_slot_state imago_engine_slot_state(const imago_engine_slot *slot, const char **message)
{
    if (!slot) {
        if (message)
            *message = "no model is configured for this server";
        return IMAGO_SLOT_FAILED;
    }
    int st = atomic_load_explicit(&((imago_engine_slot *)slot)->state, memory_order_acquire);
    if (message)
        *message = slot->message;
    return (imago_slot_state)st;
}

imago_batcher *imago_engine_slot_batcher(const imago_engine_slot *slot)
{
    if (imago_engine_slot_state(slot, NULL) != IMAGO_SLOT_READY || slot->closed)
        return NULL;
    return slot->batcher;
}

const imago_model_info *imago_engine_slot_model(const imago_engine_slot *slot)
{
    return imago_engine_slot_state(slot, NULL) == IMAGO_SLOT_READY ? &slot->info : NULL;
}

void imago_engine_slot_close(imago_engine_slot *slot, int drain)
{
    if (!slot)
        return;
    if (slot->loader_started) {
        pthread_join(slot->loader, NULL);
        slot->loader_started = 0;
    }
    if (slot->batcher)
        imago_batcher_close(slot->batcher, drain);
    slot->closed = 1;
}

void imago_engine_slot_free(imago_engine_slot *slot)
{
    if (!slot)
        return;
    imago_engine_slot_close(slot, 0);
    imago_batcher_free(slot->batcher);
    imago_engine_free(slot->engine);
    free(slot);
}
