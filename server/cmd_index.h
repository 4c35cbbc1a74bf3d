/* server-private: `imago index` (cmd_index.c) and `imago search`
 * (cmd_search.c), and the offline stack they share: the engine, its batcher
 * and the collection opened in-process exactly as `imago serve` opens them.
 */
#ifndef IMAGO_SERVER_CMD_INDEX_H
#define IMAGO_SERVER_CMD_INDEX_H

#include "config/config.h"
#include "engine/engine.h"
#include "index/index.h"

typedef struct imago_stack {
    imago_engine *engine;
    imago_batcher *batcher;
    imago_index *index;
    imago_model_info model;
} imago_stack;

/* Opens the engine (cfg->engine), a batcher and the index (cfg->index with
 * the model's fingerprint and dim). On error everything opened is closed. */
int imago_stack_open(const imago_config *cfg, imago_stack *st, imago_error *err);

/* Drains the batcher, snapshots and closes the index, frees the engine. */
void imago_stack_close(imago_stack *st);

/* argv[0] is the first argument after the command name; returns an
 * IMAGO_EXIT_* status. */
int imago_cmd_index(int argc, char **argv);
int imago_cmd_search(int argc, char **argv);
int imago_cmd_whiten(int argc, char **argv); /* cmd_whiten.c */

#endif
