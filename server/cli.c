/* Shared pieces of the `imago` command line: lookup in the command table
 * (commands.c), help and version output, and loading the configuration for
 * a command (errors printed, logging set up). */
#include "cli.h"

#include "imago_build.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const imago_cli_command *imago_cli_find(const char *name)
{
    for (const imago_cli_command *c = imago_cli_commands; name && c->name; c++)
        if (strcmp(c->name, name) == 0)
            return c;
    return NULL;
}

int imago_cli_help(FILE *out, const char *name)
{
    if (!name) {
        fprintf(out, "usage: imago COMMAND [ARGS]\n\ncommands:\n");
        for (const imago_cli_command *c = imago_cli_commands; c->name; c++)
            fprintf(out, "  %-10s %s\n", c->name, c->summary);
        fprintf(out, "\n`imago help COMMAND` shows the usage of one command; "
                     "`imago --version` the version.\n");
        return IMAGO_EXIT_OK;
    }
    const imago_cli_command *c = imago_cli_find(name);
    if (!c) {
        fprintf(stderr, "imago help: unknown command '%s'\n", name);
        return IMAGO_EXIT_USAGE;
    }
    fprintf(out, "usage: %s\n", c->usage);
    if (c->config_options) {
        fprintf(out, "\nconfiguration options (flag, environment variable):\n");
        imago_config_print_help(out);
    }
    return IMAGO_EXIT_OK;
}

int imago_cmd_help(int argc, char **argv)
{
    if (argc > 1) {
        fprintf(stderr, "usage: imago help [COMMAND]\n");
        return IMAGO_EXIT_USAGE;
    }
    return imago_cli_help(stdout, argc == 1 ? argv[0] : NULL);
}

int imago_cmd_version(int argc, char **argv)
{
    (void)argv;
    if (argc > 0) {
        fprintf(stderr, "usage: imago version\n");
        return IMAGO_EXIT_USAGE;
    }
    printf("imago %s\n", IMAGO_VERSION);
    printf("features: cuda=%s cudnn=%s nvcc=%s dnnl=%s tls=%s\n", IMAGO_HAVE_CUDA ? "yes" : "no",
           IMAGO_HAVE_CUDNN ? "yes" : "no", IMAGO_HAVE_NVCC ? "yes" : "no",
           IMAGO_HAVE_DNNL ? "yes" : "no", IMAGO_HAVE_TLS ? "yes" : "no");
    return IMAGO_EXIT_OK;
}

int imago_cli_load_config(const char *cmd, int argc, char **argv,
                          const imago_config_flag *command_flags, imago_config **cfg_out,
                          int *rest_argc, char ***rest_argv)
{
    imago_config *cfg = imago_config_new();
    imago_error err = {0};
    char **rest = NULL;
    int n_rest = 0;
    if (imago_config_load(cfg, argc, argv, environ, command_flags, &n_rest, &rest, &err) != 0) {
        int n = imago_config_error_count(cfg);
        for (int i = 0; i < n; i++)
            fprintf(stderr, "imago %s: config error: %s\n", cmd, imago_config_error_at(cfg, i));
        if (n == 0)
            fprintf(stderr, "imago %s: config error: %s\n", cmd, err.msg);
        fprintf(stderr, "imago %s: %d configuration error%s; see `imago help %s`\n", cmd, n ? n : 1,
                n > 1 ? "s" : "", cmd);
        free(rest);
        imago_config_free(cfg);
        return IMAGO_EXIT_USAGE;
    }
    imago_log_level level = IMAGO_LOG_INFO;
    imago_log_level_parse(cfg->server.log_level, &level); /* validated by the table */
    imago_log_setup(
        level, strcmp(cfg->server.log_format, "json") == 0 ? IMAGO_LOG_JSON : IMAGO_LOG_TEXT, NULL);
    *cfg_out = cfg;
    *rest_argc = n_rest;
    *rest_argv = rest;
    return 0;
}
