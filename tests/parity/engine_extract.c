/* Parity/benchmark driver: `imago extract` without the rest of the server
 * (the tests and tools/bench_extract run it until the imago executable
 * carries the command). */
#include "server/cmd_extract.h"

int main(int argc, char **argv)
{
    return imago_cmd_extract(argc - 1, argv + 1);
}
