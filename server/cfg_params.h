/* Engine, batcher and index parameters built from the config: the one
 * translation used by `imago serve` (engine_slot.c, index_slot.c) and by the
 * offline stack of `imago index` / `imago search` (cmd_index.c).
 */
#ifndef IMAGO_SERVER_CFG_PARAMS_H
#define IMAGO_SERVER_CFG_PARAMS_H

#include "config/config.h"
#include "engine/engine.h"
#include "index/index.h"

/* At most this many test-time scales are taken from engine.scales. */
#define IMAGO_CFG_MAX_SCALES 8

/* Fills *ep from cfg->engine. scales: caller-owned storage for the scales,
 * which ep->scales points into (keep it alive until the engine is open); ep
 * also borrows strings from cfg. Cannot fail; thread-safe (no shared state). */
void imago_cfg_engine_params(const imago_config *cfg, float scales[IMAGO_CFG_MAX_SCALES],
                             imago_engine_params *ep);

/* Fills *bp from cfg->engine (decode threads, batching, input limits). */
void imago_cfg_batcher_params(const imago_config *cfg, imago_batcher_params *bp);

/* Fills *p from cfg->index for the model m (fingerprint and dimension); p
 * borrows strings from cfg and m. */
void imago_cfg_index_params(const imago_config *cfg, const imago_model_info *m,
                            imago_index_params *p);

#endif
