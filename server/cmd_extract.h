/* server-private: the `imago extract` command (server/cmd_extract.c).
 *
 *   imago extract IMAGE... [--model F | --demo ARCH] [--backend auto|cpu|cuda] [--precision P]
 *                 [--scales a,b,...] [--max-side N] [--box x1,y1,x2,y2]
 *                 [--threads N] [--out file.npy|-] [--time N]
 *
 * Writes the descriptors as a float32 .npy (N x dim) or, with --out - (the
 * default), as JSON lines on stdout. An INPUT ending in .npy is a raw
 * float32 NCHW (1x3xHxW or 3xHxW) tensor that is already normalised: it
 * skips decoding, so the engine and tools/reference.py see identical inputs.
 */
#ifndef IMAGO_SERVER_CMD_EXTRACT_H
#define IMAGO_SERVER_CMD_EXTRACT_H

/* argv[0] is the first argument after "extract". Returns the process exit
 * status (0 ok, 1 runtime error, 2 usage). Not thread-safe (writes stdout). */
int imago_cmd_extract(int argc, char **argv);

#endif
