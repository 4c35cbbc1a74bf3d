/* Runs the real `imago` binary (path in argv[1]): --version, help, serve
 * --dump-config with a config file + env override + flag, bad values (exit 2
 * naming the key and the range), unknown names, and serve without the HTTP
 * server (exits non-zero saying so). */
#include "tap.h"

#include "imago_build.h"

#include <ftw.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *g_imago;
static char g_dir[512];

typedef struct result {
    int status; /* exit status, or -1 when it did not exit normally */
    int signal; /* the signal that ended it, or 0 */
    char *out, *err;
} result;

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return strdup("");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *buf = malloc((size_t)n + 1);
    size_t got = fread(buf, 1, (size_t)n, f);
    buf[got] = '\0';
    fclose(f);
    return buf;
}

/* Runs imago with args (NULL-terminated, without argv[0]) and exactly the
 * environment env (NULL-terminated). */
static result run_for(const char *const *args, const char *const *env, unsigned watchdog_s)
{
    char out_path[600], err_path[600];
    snprintf(out_path, sizeof out_path, "%s/stdout", g_dir);
    snprintf(err_path, sizeof err_path, "%s/stderr", g_dir);
    char *argv[32];
    int n = 0;
    argv[n++] = (char *)g_imago;
    for (int i = 0; args[i]; i++)
        argv[n++] = (char *)args[i];
    argv[n] = NULL;
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        tap_bail("fork failed");
    if (pid == 0) {
        if (!freopen(out_path, "wb", stdout) || !freopen(err_path, "wb", stderr))
            _exit(126);
        /* the pending alarm survives execve: a command that does not end is
         * killed instead of hanging the test */
        alarm(watchdog_s);
        execve(g_imago, argv, (char **)env);
        _exit(127);
    }
    int st;
    waitpid(pid, &st, 0);
    result r = {WIFEXITED(st) ? WEXITSTATUS(st) : -1, WIFSIGNALED(st) ? WTERMSIG(st) : 0,
                slurp(out_path), slurp(err_path)};
    /* shown as TAP comments, so a failure says what the binary printed */
    for (char *line = r.err, *nl; line && *line; line = nl ? nl + 1 : NULL) {
        nl = strchr(line, '\n');
        tap_diag("  %s stderr: %.*s", args[0] ? args[0] : "",
                 nl ? (int)(nl - line) : (int)strlen(line), line);
    }
    return r;
}

static result run(const char *const *args, const char *const *env)
{
    return run_for(args, env, 60);
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Removes the test directory and whatever a real `imago serve` wrote there. */
static void remove_tree(const char *dir)
{
    nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void result_free(result *r)
{
    free(r->out);
    free(r->err);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0)
        tap_bail("cannot write the config file");
}

static json_t *get(json_t *root, const char *sec, const char *key, const char *field)
{
    return json_object_get(json_object_get(json_object_get(root, sec), key), field);
}

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})
static const char *const no_env[] = {NULL};

int main(int argc, char **argv)
{
    if (argc < 2)
        tap_skip_all("usage: test_config_cli PATH_TO_IMAGO (meson passes it)");
    g_imago = argv[1];
    if (access(g_imago, X_OK) != 0)
        tap_bail("the imago binary is not executable");
    const char *tmp = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/imago-cli-test-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(g_dir))
        tap_bail("mkdtemp failed");

    /* --version */
    result r = run(ARGS("--version"), no_env);
    is_int(r.status, 0, "--version exits 0");
    ok(strncmp(r.out, "imago " IMAGO_VERSION "\n", strlen("imago " IMAGO_VERSION "\n")) == 0,
       "--version prints the version");
    ok(strstr(r.out, IMAGO_HAVE_CUDA ? "cuda=yes" : "cuda=no") != NULL, "--version lists features");
    result_free(&r);

    /* help */
    r = run(ARGS("help"), no_env);
    ok(r.status == 0 && strstr(r.out, "serve") && strstr(r.out, "version"), "help lists commands");
    result_free(&r);
    r = run(ARGS("help", "serve"), no_env);
    ok(r.status == 0 && strstr(r.out, "--dump-config") && strstr(r.out, "--engine.max-batch") &&
           strstr(r.out, "IMAGO_ENGINE_MAX_BATCH"),
       "help serve shows usage and the config options");
    result_free(&r);
    r = run(ARGS("serv"), no_env);
    ok(r.status == 2 && strstr(r.err, "unknown command 'serv'") &&
           strstr(r.err, "did you mean 'serve'"),
       "unknown command: exit 2 with a suggestion");
    result_free(&r);
    r = run(ARGS("help", "nope"), no_env);
    is_int(r.status, 2, "help of an unknown command exits 2");
    result_free(&r);
    r = run((const char *const[]){NULL}, no_env);
    ok(r.status == 2 && strstr(r.err, "usage: imago"), "no command: usage, exit 2");
    result_free(&r);

    /* serve --dump-config: file + env + flag */
    char cfg_path[700];
    snprintf(cfg_path, sizeof cfg_path, "%s/imago.json", g_dir);
    write_file(cfg_path, "{\"server\": {\"port\": 9000, \"threads\": 2},\n"
                         " \"engine\": {\"max_batch\": 4},\n"
                         " \"index\": {\"factory\": \"HNSW32\"},\n"
                         " \"auth\": {\"admin_token\": \"file-token-abcdef\"}}\n");
    const char *env[] = {"IMAGO_ENGINE_MAX_BATCH=16", "IMAGO_SERVER_THREADS=3",
                         "IMAGO_SOURCE_ROOT=/ignored", NULL};
    r = run(ARGS("serve", "--config", cfg_path, "--server.threads=5", "--dump-config"), env);
    is_int(r.status, 0, "serve --dump-config exits 0");
    json_error_t jerr;
    json_t *root = json_loads(r.out, 0, &jerr);
    ok(root != NULL, "stdout is JSON");
    is_int(json_integer_value(get(root, "server", "port", "value")), 9000, "port from file");
    is_str(json_string_value(get(root, "server", "port", "source")), "file", "port source");
    is_str(json_string_value(get(root, "server", "port", "from")), cfg_path, "port from path");
    is_int(json_integer_value(get(root, "engine", "max_batch", "value")), 16, "env beats file");
    is_str(json_string_value(get(root, "engine", "max_batch", "source")), "env",
           "max_batch source");
    is_int(json_integer_value(get(root, "server", "threads", "value")), 5, "flag beats env");
    is_str(json_string_value(get(root, "server", "threads", "source")), "flag", "threads source");
    is_str(json_string_value(get(root, "index", "factory", "value")), "HNSW32", "file string");
    is_str(json_string_value(get(root, "engine", "max_side", "source")), "default",
           "untouched key is default");
    is_str(json_string_value(get(root, "auth", "admin_token", "value")), "<redacted>",
           "token redacted");
    ok(strstr(r.out, "file-token-abcdef") == NULL, "the token never appears");
    json_decref(root);
    result_free(&r);

    /* text and values formats */
    r = run(ARGS("serve", "--dump-config=text", "--port", "0"), no_env);
    ok(r.status == 0 && strstr(r.out, "server.port = 0") && strstr(r.out, "# flag --port"),
       "--dump-config=text");
    result_free(&r);
    r = run(ARGS("serve", "--dump-config=values", "--engine.max-batch", "32"), no_env);
    is_int(r.status, 0, "--dump-config=values");
    char values_path[700];
    snprintf(values_path, sizeof values_path, "%s/values.json", g_dir);
    write_file(values_path, r.out);
    result_free(&r);
    r = run(ARGS("serve", "--dump-config", "--config", values_path), no_env);
    root = json_loads(r.out, 0, &jerr);
    ok(r.status == 0 && json_integer_value(get(root, "engine", "max_batch", "value")) == 32,
       "the values dump loads back with --config");
    json_decref(root);
    result_free(&r);
    r = run(ARGS("serve", "--dump-config=yaml"), no_env);
    ok(r.status == 2 && strstr(r.err, "unknown format"), "unknown dump format: exit 2");
    result_free(&r);

    /* bad values: exit 2, every error with its key and range */
    const char *env_bad[] = {"IMAGO_SERVER_PORT=70000", NULL};
    r = run(ARGS("serve", "--dump-config", "--engine.max-batch", "0"), env_bad);
    is_int(r.status, 2, "bad values exit 2");
    ok(strstr(r.err, "engine.max_batch") && strstr(r.err, "[1, 1024]") &&
           strstr(r.err, "flag --engine.max-batch"),
       "stderr names the key, the range and the flag");
    ok(strstr(r.err, "server.port") && strstr(r.err, "[0, 65535]") &&
           strstr(r.err, "IMAGO_SERVER_PORT"),
       "and the env error in the same run");
    ok(strstr(r.err, "2 configuration errors") != NULL, "counts the errors");
    is_str(r.out, "", "nothing on stdout");
    result_free(&r);
    write_file(cfg_path, "{\"engine\": {\"backend\": \"gpu\", \"max_bach\": 3}}");
    r = run(ARGS("serve", "--config", cfg_path, "--dump-config"), no_env);
    ok(r.status == 2 && strstr(r.err, "engine.backend") && strstr(r.err, "auto, cpu, cuda") &&
           strstr(r.err, "did you mean engine.max_batch"),
       "file errors: enum values and a suggestion");
    result_free(&r);
    const char *env_unknown[] = {"IMAGO_ENGINE_MAX_BACH=3", NULL};
    r = run(ARGS("serve", "--dump-config"), env_unknown);
    ok(r.status == 2 && strstr(r.err, "did you mean IMAGO_ENGINE_MAX_BATCH"),
       "unknown env variable: exit 2 with a suggestion");
    result_free(&r);
    r = run(ARGS("serve", "--dump-confg"), no_env);
    ok(r.status == 2 && strstr(r.err, "did you mean --dump-config"),
       "unknown flag: suggestion among the command's flags");
    result_free(&r);
    r = run(ARGS("serve", "extra-arg"), no_env);
    ok(r.status == 2 && strstr(r.err, "unexpected argument 'extra-arg'"),
       "positional argument to serve: exit 2");
    result_free(&r);

    /* logging is configured from server.log_format before the command runs */
    r = run(
        ARGS("serve", "--server.log-format=json", "--server.log-level=debug", "--dump-config=text"),
        no_env);
    ok(r.status == 0 && strstr(r.out, "server.log_format = \"json\""), "log flags accepted");
    result_free(&r);

    char p[700];
    snprintf(p, sizeof p, "%s/stdout", g_dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/stderr", g_dir);
    unlink(p);
    unlink(cfg_path);
    unlink(values_path);
    remove_tree(g_dir);
    return tap_done();
}
