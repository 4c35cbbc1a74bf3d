/* main() of the `imago` executable: dispatches to the command table in
 * server/commands.c. */
#include "cli.h"

#include <string.h>

static int edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 31 || lb > 31)
        return 100;
    int d[32][32];
    for (size_t i = 0; i <= la; i++)
        d[i][0] = (int)i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        for (size_t j = 1; j <= lb; j++) {
            int sub = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            int del = d[i - 1][j] + 1, ins = d[i][j - 1] + 1;
            d[i][j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
    }
    return d[la][lb];
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        imago_cli_help(stderr, NULL);
        return IMAGO_EXIT_USAGE;
    }
    const char *name = argv[1];
    if (strcmp(name, "--version") == 0 || strcmp(name, "-V") == 0)
        name = "version";
    else if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0)
        name = "help";
    const imago_cli_command *cmd = imago_cli_find(name);
    if (!cmd) {
        const char *best = NULL;
        int best_d = 3;
        for (const imago_cli_command *c = imago_cli_commands; c->name; c++) {
            int d = edit_distance(name, c->name);
            if (d < best_d) {
                best_d = d;
                best = c->name;
            }
        }
        fprintf(stderr, "imago: unknown command '%s'", name);
        if (best)
            fprintf(stderr, " (did you mean '%s'?)", best);
        fprintf(stderr, "; `imago help` lists the commands\n");
        return IMAGO_EXIT_USAGE;
    }
    return cmd->run(argc - 2, argv + 2);
}
