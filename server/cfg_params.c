/* The config -> engine / batcher / index parameter translation shared by the
 * server and the offline commands (see cfg_params.h).
 */
#include "cfg_params.h"

void imago_cfg_engine_params(const imago_config *cfg, float scales[IMAGO_CFG_MAX_SCALES],
                             imago_engine_params *ep)
{
    *ep = imago_engine_params_default();
    ep->model_path = cfg->engine.model[0] ? cfg->engine.model : NULL;
    ep->demo_arch = cfg->engine.demo_arch;
    ep->backend = cfg->engine.backend;
    ep->cuda_plugin = cfg->engine.cuda_plugin[0] ? cfg->engine.cuda_plugin : NULL;
    ep->precision = cfg->engine.precision;
    ep->threads = cfg->engine.threads;
    ep->max_side = cfg->engine.max_side;
    int n_scales =
        cfg->engine.scales.n < IMAGO_CFG_MAX_SCALES ? cfg->engine.scales.n : IMAGO_CFG_MAX_SCALES;
    for (int i = 0; i < n_scales; i++)
        scales[i] = (float)cfg->engine.scales.items[i];
    if (n_scales > 0) {
        ep->scales = scales;
        ep->n_scales = n_scales;
    }
}

void imago_cfg_batcher_params(const imago_config *cfg, imago_batcher_params *bp)
{
    *bp = imago_batcher_params_default();
    bp->decode_threads = cfg->engine.decode_threads;
    bp->max_batch = cfg->engine.max_batch;
    bp->max_delay_us = cfg->engine.max_delay_us;
    bp->queue_depth = cfg->engine.queue_depth;
    bp->max_bytes = (size_t)cfg->engine.max_image_bytes;
    bp->max_pixels = (uint64_t)cfg->engine.max_pixels;
}

void imago_cfg_index_params(const imago_config *cfg, const imago_model_info *m,
                            imago_index_params *p)
{
    *p = imago_index_params_default();
    p->data_dir = cfg->index.data_dir;
    p->model_fingerprint = m->fingerprint;
    p->dim = m->dim;
    p->factory = cfg->index.factory;
    p->precision = cfg->index.precision;
    p->durability = cfg->index.durability;
    p->dba = cfg->index.dba;
    p->dba_k = cfg->index.dba_k;
    p->dba_beta = cfg->index.dba_beta;
    p->qe = cfg->index.qe;
    p->qe_n = cfg->index.qe_k;
    p->qe_alpha = cfg->index.qe_alpha;
    p->nprobe = cfg->index.nprobe;
    p->ef_search = cfg->index.ef_search;
}
