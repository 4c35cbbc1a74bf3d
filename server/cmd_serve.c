/* `imago serve`: loads the configuration and runs the HTTP server
 * (server/server.c) until SIGTERM/SIGINT; --dump-config prints the effective
 * configuration instead. */
#include "cli.h"
#include "server.h"

#include <stdlib.h>
#include <string.h>

static const imago_config_flag serve_flags[] = {
    {"dump-config", IMAGO_CONFIG_ARG_OPTIONAL},
    {"help", IMAGO_CONFIG_ARG_NONE},
    {NULL, IMAGO_CONFIG_ARG_NONE},
};

static int dump(const imago_config *cfg, const char *format)
{
    imago_error err = {0};
    int rc;
    if (strcmp(format, "text") == 0) {
        rc = imago_config_dump_text(cfg, stdout, &err);
    } else {
        imago_config_dump_mode mode = strcmp(format, "values") == 0    ? IMAGO_CONFIG_DUMP_VALUES
                                      : strcmp(format, "example") == 0 ? IMAGO_CONFIG_DUMP_EXAMPLE
                                                                       : IMAGO_CONFIG_DUMP_SOURCES;
        char *s = NULL;
        rc = imago_config_dump_json(cfg, mode, &s, &err);
        if (rc == 0 && fputs(s, stdout) < 0)
            rc = imago_error_set(&err, IMAGO_ERR_IO, "writing to stdout failed");
        free(s);
    }
    if (rc == 0 && fflush(stdout) != 0)
        rc = imago_error_set(&err, IMAGO_ERR_IO, "writing to stdout failed");
    if (rc != 0) {
        fprintf(stderr, "imago serve: --dump-config: %s\n", err.msg);
        return IMAGO_EXIT_FAILURE;
    }
    return IMAGO_EXIT_OK;
}

int imago_cmd_serve(int argc, char **argv)
{
    /* --help and a bad --dump-config format are checked before the config so
     * that they work even with a broken configuration */
    const char *format = NULL;
    for (int i = 0; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (strcmp(argv[i], "--help") == 0)
            return imago_cli_help(stdout, "serve");
        if (strcmp(argv[i], "--dump-config") == 0) {
            format = "json";
        } else if (strncmp(argv[i], "--dump-config=", 14) == 0) {
            format = argv[i] + 14;
            if (strcmp(format, "json") != 0 && strcmp(format, "text") != 0 &&
                strcmp(format, "values") != 0 && strcmp(format, "example") != 0) {
                fprintf(stderr,
                        "imago serve: --dump-config=%s: unknown format (json, text, "
                        "values, example)\n",
                        format);
                return IMAGO_EXIT_USAGE;
            }
        }
    }

    imago_config *cfg = NULL;
    char **rest = NULL;
    int n_rest = 0;
    int rc = imago_cli_load_config("serve", argc, argv, serve_flags, &cfg, &n_rest, &rest);
    if (rc != 0)
        return rc;
    for (int i = 0; i < n_rest; i++) {
        if (strncmp(rest[i], "--", 2) != 0) {
            fprintf(stderr, "imago serve: unexpected argument '%s'\n", rest[i]);
            rc = IMAGO_EXIT_USAGE;
            goto out;
        }
    }
    if (format) {
        rc = dump(cfg, format);
        goto out;
    }
    {
        /* The HTTP transport (server/http.c) listens at once; the model
         * loads in the background (engine_slot.c), then the index opens
         * (index_slot.c) and the jobs runner resumes unfinished jobs
         * (/readyz is 503 until both are ready). A store built with another
         * model stops the server with the message. Shutdown drains the
         * requests, stops the jobs and the batcher, snapshots the index
         * (server.c). */
        imago_server *srv = NULL;
        imago_error err = {0};
        if (imago_server_open(cfg, &srv, &err) != 0 || imago_server_start_engine(srv, &err) != 0) {
            fprintf(stderr, "imago serve: %s\n", err.msg);
            imago_server_free(srv);
            rc = IMAGO_EXIT_FAILURE;
            goto out;
        }
        int drain_s = cfg->server.request_timeout_s > 0 ? cfg->server.request_timeout_s : 30;
        rc = imago_server_run(srv, drain_s, &err) == 0 ? IMAGO_EXIT_OK : IMAGO_EXIT_FAILURE;
        if (rc != IMAGO_EXIT_OK)
            fprintf(stderr, "imago serve: %s\n", err.msg);
        imago_server_free(srv);
    }
out:
    free(rest);
    imago_config_free(cfg);
    return rc;
}
