/* server-private: the `imago eval` command (server/cmd_eval.c).
 *
 *   imago eval --gnd GND.json (--ranks RANKS | --db DB.npy --queries Q.npy)
 *              [--protocol easy|medium|hard|all] [--dba K,BETA] [--qe N,ALPHA] [--json]
 *
 * Revisited Oxford/Paris mAP and mP@{1,5,10} (index/index.h, imago_eval_*).
 * RANKS is an integer .npy (one row per query, database indices best first)
 * or a text file (one line per query, indices or imlist names). With --db /
 * --queries (float32 .npy in imlist / qimlist order, e.g. from imago
 * extract) the ranking is computed with imago's exact search, optionally
 * with DBA and alpha-QE.
 */
#ifndef IMAGO_SERVER_CMD_EVAL_H
#define IMAGO_SERVER_CMD_EVAL_H

/* argv[0] is the first argument after "eval". Returns 0, 1 (runtime error)
 * or 2 (usage). Writes stdout. */
int imago_cmd_eval(int argc, char **argv);

#endif
