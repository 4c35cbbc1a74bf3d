/* server-private: the `imago` command line. main.c dispatches argv[1] to a
 * row of the command table (server/commands.c); each command is a function
 * taking the arguments after its name and returning the exit status.
 *
 * Not thread-safe: commands run on the main thread before any other starts.
 */
#ifndef IMAGO_SERVER_CLI_H
#define IMAGO_SERVER_CLI_H

#include <stdio.h>

#include "config/config.h"

/* Exit statuses shared by every command. */
enum {
    IMAGO_EXIT_OK = 0,
    IMAGO_EXIT_FAILURE = 1, /* the command ran and failed */
    IMAGO_EXIT_USAGE = 2    /* bad arguments or configuration */
};

typedef struct imago_cli_command {
    const char *name;    /* "serve" */
    const char *summary; /* one line for `imago help` */
    const char *usage;   /* full text for `imago help NAME` (may span lines) */
    /* argv[0 .. argc-1] are the arguments after the command name. */
    int (*run)(int argc, char **argv);
    int config_options; /* 1: `imago help NAME` also lists the config options */
} imago_cli_command;

/* The table (commands.c), terminated by a row with name == NULL. */
extern const imago_cli_command imago_cli_commands[];

/* The command called name, or NULL (cli.c). */
const imago_cli_command *imago_cli_find(const char *name);

/* Prints `imago help [NAME]` to out; returns the exit status. */
int imago_cli_help(FILE *out, const char *name);

/* Loads the config of command cmd from its arguments and the process
 * environment (see imago_config_load), then configures logging from
 * server.log_level / server.log_format. On failure prints every error as
 * "imago CMD: config error: ..." to stderr, frees everything and returns
 * IMAGO_EXIT_USAGE; on success returns 0 with *cfg (free with
 * imago_config_free) and the rest arguments (free the array with free()). */
int imago_cli_load_config(const char *cmd, int argc, char **argv,
                          const imago_config_flag *command_flags, imago_config **cfg,
                          int *rest_argc, char ***rest_argv);

/* Commands (one file each). */
int imago_cmd_serve(int argc, char **argv);   /* cmd_serve.c */
int imago_cmd_version(int argc, char **argv); /* cli.c */
int imago_cmd_help(int argc, char **argv);    /* cli.c */

#endif /* IMAGO_SERVER_CLI_H */
