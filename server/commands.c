/* The command table of the `imago` executable.
 *
 * To add a command: write `int imago_cmd_NAME(int argc, char **argv)` in its
 * own file (argv holds the arguments after the command name; return an
 * IMAGO_EXIT_* status), declare it in a header, add the file to
 * imago_cli_sources in server/meson.build, and add one row below, e.g.
 *
 *     {"extract", "image files -> descriptors (.npy or JSON lines)",
 *      "imago extract IMAGE... [--model F] [--out file.npy|-]", imago_cmd_extract, 0},
 *
 * Commands that read the server configuration call imago_cli_load_config()
 * (server/cli.h) and set the last field to 1 so `imago help NAME` lists the
 * config options. Rows appear in `imago help` in this order.
 */
#include "cli.h"
#include "cmd_eval.h"
#include "cmd_extract.h"
#include "cmd_index.h"


const imago_cli_command imago_cli_commands[] = {
    {"serve", "run the HTTP image-search server",
     "imago serve [--config FILE] [--SECTION.KEY VALUE]... [--dump-config[=FORMAT]]\n"
     "\n"
     "  Loads the configuration (defaults < --config FILE < IMAGO_* environment <\n"
     "  flags) and runs the server.\n"
     "  --dump-config[=FORMAT]  print the effective configuration and exit; FORMAT is\n"
     "                          json (default: value, source and origin of every key),\n"
     "                          text, values (loadable with --config) or example\n"
     "                          (values plus \"_help\", as config/imago.example.json)",
     imago_cmd_serve, 1},
    {"extract", "image files -> descriptors (.npy or JSON lines)",
     "imago extract IMAGE... [--model F | --demo ARCH] [--backend auto|cpu|cuda]\n"
     "              [--precision fp32|bf16|fp16] [--scales a,b,...] [--max-side N]\n"
     "              [--box x1,y1,x2,y2] [--threads N] [--out file.npy|-] [--batch B]\n"
     "              [--time N]\n"
     "\n"
     "  Computes the global descriptor of each IMAGE (JPEG/PNG; a .npy is a raw\n"
     "  normalised float32 NCHW tensor) with the engine (--backend, default auto:\n"
     "  CUDA when a device is present; --engine.backend is the same option);\n"
     "  without --model, the built-in demo model (random weights). --out - (default)\n"
     "  prints JSON lines.",
     imago_cmd_extract, 0},
    {"eval", "revisited Oxford/Paris mAP, mP@1,5,10 of a ranking or of descriptors",
     "imago eval --gnd GND.json (--ranks RANKS | --db DB.npy --queries Q.npy)\n"
     "           [--protocol easy|medium|hard|all] [--dba K,BETA] [--qe N,ALPHA]\n"
     "           [--whiten DIM,POWER [--whiten-force]] [--json]\n"
     "\n"
     "  --whiten learns a PCA whitening from the --db descriptors (DIM 0: min(D, N-1)) and\n"
     "  applies it to the database and the queries before DBA and QE, as a collection's\n"
     "  learned whitening (POST /v1/admin/whitening) does.",
     imago_cmd_eval, 0},
    {"index", "bulk-index a folder offline into the data dir (resumable)",
     "imago index DIR [--data-dir D] [--SECTION.KEY VALUE]...\n"
     "\n"
     "  Indexes the JPEG/PNG files below DIR (ingest.recursive, ingest.extensions)\n"
     "  with the engine and the index in-process, as an ingest job of the data dir;\n"
     "  a progress bar (rate, ETA) on a terminal, periodic lines otherwise. Files\n"
     "  already indexed with the same bytes are skipped, so a rerun resumes.",
     imago_cmd_index, 1},
    {"whiten", "learn (or remove) a collection's PCA whitening offline",
     "imago whiten DATA_DIR [--dim D] [--power P] [--sample N] [--force] | --remove\n"
     "             [--SECTION.KEY VALUE]...\n"
     "\n"
     "  Learns a PCA whitening from the raw descriptors of the collection in\n"
     "  DATA_DIR (all, or a uniform sample of --sample rows, default 200000):\n"
     "  P = diag((lambda + eps)^-power) U_d^T, power default 0.25, d default\n"
     "  min(D, rows - 1); refused with fewer than 2 x d rows unless --force. The\n"
     "  index is rebuilt with L2N(P (x - m)) and searches are whitened the same\n"
     "  way, as POST /v1/admin/whitening does; --remove goes back to the raw\n"
     "  descriptors. The model (engine.model) must be the collection's. Do not\n"
     "  run it on a data dir a server has open.",
     imago_cmd_whiten, 1},
    {"search", "query with an image: a running server or a data dir",
     "imago search IMAGE [--server http://HOST:PORT | --data-dir D] [-k N]\n"
     "                   [--box x1,y1,x2,y2] [--token T]\n"
     "\n"
     "  With --server, POSTs IMAGE to /v1/search and prints the JSON answer\n"
     "  (token: --token, else auth.search_token, else auth.admin_token); without,\n"
     "  opens the data dir in-process and prints rank, score, id, external id, uri.",
     imago_cmd_search, 1},
    {"help", "show the commands, or the usage of one", "imago help [COMMAND]", imago_cmd_help, 0},
    {"version", "print the version and the compiled-in features (also --version)", "imago version",
     imago_cmd_version, 0},
    {NULL, NULL, NULL, NULL, 0},
};
