/* Unit tests for config/: bad values (type, bounds, enum, lists, checks) from
 * every source, all errors reported at once, unknown keys/sections/variables/
 * flags with suggestions, broken files, cross-option checks, retired keys
 * (accepted with a warning). */
#include "test_config_util.h"

#include "imago_build.h"

/* Loads with the given file text (may be NULL), env and args; returns cfg. */
static imago_config *load3(const char *file_text, const char *const *env,
                           const char *const *extra_args, int *rc, imago_error *err,
                           char **path_out)
{
    const char *args[32];
    int n = 0;
    char *path = NULL;
    if (file_text) {
        path = tc_temp_file(file_text);
        args[n++] = "--config";
        args[n++] = path;
    }
    for (int i = 0; extra_args && extra_args[i]; i++)
        args[n++] = extra_args[i];
    args[n] = NULL;
    imago_config *cfg = tc_load(args, env, rc, err);
    if (path_out)
        *path_out = path;
    else
        tc_unlink(path);
    return cfg;
}

#define EXPECT(cfg, what, ...)                                                                     \
    do {                                                                                           \
        if (!ok(tc_has_error(cfg, TC_PARTS(__VA_ARGS__)), "%s", what))                             \
            tc_diag_errors(cfg);                                                                   \
    } while (0)

int main(void)
{
    imago_error err;
    int rc;
    imago_config *cfg;

    /* ---- bad values from env and flags ---- */
    const char *env_abc[] = {"IMAGO_ENGINE_MAX_BATCH=abc", NULL};
    cfg = tc_load(NULL, env_abc, &rc, &err);
    is_int(rc, IMAGO_ERR_INVALID, "non-integer env fails");
    is_int(err.code, IMAGO_ERR_INVALID, "err code invalid");
    EXPECT(cfg, "message names key, value, source and range", "engine.max_batch", "\"abc\"",
           "env IMAGO_ENGINE_MAX_BATCH", "not an integer", "[1, 1024]");
    is_int(cfg->engine.max_batch, 8, "bad value keeps the default");
    ok(strstr(err.msg, "engine.max_batch") != NULL, "err.msg quotes the error: %s", err.msg);
    imago_config_free(cfg);

    cfg = tc_load(TC_ARGS("--engine.max-batch", "0"), NULL, &rc, &err);
    is_int(rc, IMAGO_ERR_INVALID, "out-of-range flag fails");
    EXPECT(cfg, "range error from a flag", "engine.max_batch", "flag --engine.max-batch",
           "out of range", "[1, 1024]");
    imago_config_free(cfg);

    cfg = tc_load(TC_ARGS("--server.port=99999999999999999999999"), NULL, &rc, &err);
    EXPECT(cfg, "integer overflow is out of range", "server.port", "out of range", "[0, 65535]");
    imago_config_free(cfg);

    cfg = tc_load(TC_ARGS("--engine.backend", "gpu"), NULL, &rc, &err);
    EXPECT(cfg, "enum lists the allowed values", "engine.backend", "\"gpu\"",
           "one of auto, cpu, cuda");
    imago_config_free(cfg);

    const char *env_bool[] = {"IMAGO_SERVER_WEB=maybe", NULL};
    cfg = tc_load(NULL, env_bool, &rc, &err);
    EXPECT(cfg, "bad bool", "server.web", "\"maybe\"", "not a boolean");
    imago_config_free(cfg);

    const char *env_size[] = {"IMAGO_SERVER_MAX_BODY_BYTES=12XB", NULL};
    cfg = tc_load(NULL, env_size, &rc, &err);
    EXPECT(cfg, "bad size suffix", "server.max_body_bytes", "unknown size suffix", "KiB");
    imago_config_free(cfg);

    const char *env_dbl[] = {"IMAGO_INDEX_QE_ALPHA=nan", NULL};
    cfg = tc_load(NULL, env_dbl, &rc, &err);
    EXPECT(cfg, "nan is not a number", "index.qe_alpha", "not a number", "[0, 100]");
    imago_config_free(cfg);

    /* lists */
    cfg = tc_load(TC_ARGS("--engine.scales", "1,,0.5"), NULL, &rc, &err);
    EXPECT(cfg, "empty list item", "engine.scales", "empty item");
    imago_config_free(cfg);
    cfg = tc_load(TC_ARGS("--engine.scales", "1,3"), NULL, &rc, &err);
    EXPECT(cfg, "list item out of range", "engine.scales", "out of range", "[0.0625, 2]");
    imago_config_free(cfg);
    cfg = tc_load(TC_ARGS("--engine.scales", "1,1,1,1,1,1,1,1,1"), NULL, &rc, &err);
    EXPECT(cfg, "too many items", "engine.scales", "too many items", "1 to 8");
    imago_config_free(cfg);
    cfg = tc_load(TC_ARGS("--engine.scales", ""), NULL, &rc, &err);
    EXPECT(cfg, "scales must not be empty", "engine.scales", "is empty");
    imago_config_free(cfg);
    cfg = tc_load(TC_ARGS("--engine.scales", "[1, \"x\"]"), NULL, &rc, &err);
    EXPECT(cfg, "JSON list with a string item", "engine.scales", "array of numbers");
    imago_config_free(cfg);
    cfg = tc_load(TC_ARGS("--ingest.extensions", "jpg,.png"), NULL, &rc, &err);
    EXPECT(cfg, "extension check", "ingest.extensions", "\"jpg\"", "must look like \".jpg\"");
    imago_config_free(cfg);
    cfg = tc_load(TC_ARGS("--server.listen", "my-host"), NULL, &rc, &err);
    EXPECT(cfg, "listen check", "server.listen", "\"my-host\"", "IPv4 or IPv6");
    imago_config_free(cfg);
    cfg = tc_load(TC_ARGS("--server.listen", "::1"), NULL, &rc, &err);
    is_int(rc, 0, "IPv6 listen address accepted");
    imago_config_free(cfg);
    cfg = tc_load(TC_ARGS("--index.data-dir="), NULL, &rc, &err);
    EXPECT(cfg, "empty data dir", "index.data_dir", "must not be empty");
    imago_config_free(cfg);

    /* ---- wrong JSON types in the file ---- */
    char *path = NULL;
    cfg = load3("{\"engine\": {\"max_batch\": \"8\", \"scales\": 1, \"backend\": 3},\n"
                " \"server\": {\"web\": 1, \"port\": 80.5}, \"index\": {\"dba_beta\": true}}",
                NULL, NULL, &rc, &err, &path);
    is_int(rc, IMAGO_ERR_INVALID, "wrong JSON types fail");
    is_int(imago_config_error_count(cfg), 6, "one error per wrong value");
    EXPECT(cfg, "string for an integer", "engine.max_batch", path,
           "expected an integer, got a string");
    EXPECT(cfg, "number for a list", "engine.scales", "expected an array of numbers");
    EXPECT(cfg, "number for an enum", "engine.backend", "expected a string, got an integer");
    EXPECT(cfg, "integer for a bool", "server.web", "expected true or false");
    EXPECT(cfg, "real for an integer", "server.port", "got a real number");
    EXPECT(cfg, "bool for a number", "index.dba_beta", "expected a number");
    imago_config_free(cfg);
    tc_unlink(path);

    /* ---- several errors from several sources, all at once ---- */
    const char *env_two[] = {"IMAGO_SERVER_PORT=70000", "IMAGO_ENGINE_PRECISION=fp64", NULL};
    cfg = load3("{\"engine\": {\"max_batch\": 0}, \"index\": {\"dba_k\": -1}}", env_two,
                TC_ARGS("--engine.queue-depth", "-5"), &rc, &err, NULL);
    is_int(rc, IMAGO_ERR_INVALID, "load fails");
    is_int(imago_config_error_count(cfg), 5, "all 5 errors are reported");
    tc_diag_errors(cfg);
    ok(strncmp(err.msg, "5 configuration errors: ", 24) == 0, "err.msg counts them: %s", err.msg);
    EXPECT(cfg, "file error", "engine.max_batch", "file ", "[1, 1024]");
    EXPECT(cfg, "second file error", "index.dba_k", "[1, 64]");
    EXPECT(cfg, "env error", "server.port", "env IMAGO_SERVER_PORT", "[0, 65535]");
    EXPECT(cfg, "env enum error", "engine.precision", "one of fp32, bf16, fp16");
    EXPECT(cfg, "flag error", "engine.queue_depth", "flag --engine.queue-depth");
    imago_config_free(cfg);

    /* ---- unknown keys, sections, variables, flags ---- */
    cfg = load3("{\"engine\": {\"max_bach\": 8}, \"engin\": {}, \"server\": {\"max_batch\": 8},"
                " \"bogus\": 1, \"x.y\": 2}",
                NULL, NULL, &rc, &err, NULL);
    is_int(imago_config_error_count(cfg), 5, "five unknown names");
    EXPECT(cfg, "unknown key with suggestion", "engine.max_bach", "unknown key",
           "did you mean engine.max_batch?");
    EXPECT(cfg, "unknown section with suggestion", "engin", "unknown section",
           "did you mean engine?");
    EXPECT(cfg, "key in the wrong section", "server.max_batch", "did you mean engine.max_batch?");
    EXPECT(cfg, "unknown section without suggestion", "bogus: unknown section");
    EXPECT(cfg, "unknown dotted key", "x.y", "unknown key");
    imago_config_free(cfg);

    const char *env_unknown[] = {"IMAGO_ENGINE_MAX_BACH=8", "IMAGO_INDEX_NOTHING_LIKE_IT=1",
                                 "IMAGO_SOURCE_ROOT=/src", "IMAGO_PYTHON=/usr/bin/python3", NULL};
    cfg = tc_load(NULL, env_unknown, &rc, &err);
    is_int(imago_config_error_count(cfg), 2, "two unknown variables, other IMAGO_* ignored");
    EXPECT(cfg, "unknown env with suggestion", "IMAGO_ENGINE_MAX_BACH",
           "unknown environment variable", "did you mean IMAGO_ENGINE_MAX_BATCH?");
    EXPECT(cfg, "unknown env", "IMAGO_INDEX_NOTHING_LIKE_IT", "unknown environment variable");
    imago_config_free(cfg);

    cfg = tc_load(TC_ARGS("--engine.max-bach", "8", "--prot=1", "--frobnicate"), NULL, &rc, &err);
    is_int(imago_config_error_count(cfg), 3, "three unknown flags");
    EXPECT(cfg, "unknown flag with suggestion", "--engine.max-bach", "unknown flag",
           "did you mean --engine.max-batch?");
    EXPECT(cfg, "alias suggestion", "--prot=1", "did you mean --port?");
    EXPECT(cfg, "unknown flag", "--frobnicate: unknown flag");
    imago_config_free(cfg);

    cfg = tc_load(TC_ARGS("--engine.max-batch"), NULL, &rc, &err);
    EXPECT(cfg, "flag without its value", "--engine.max-batch", "needs a value");
    imago_config_free(cfg);
    cfg = tc_load(TC_ARGS("--config"), NULL, &rc, &err);
    EXPECT(cfg, "--config without a file", "--config", "needs a file name");
    imago_config_free(cfg);

    /* ---- broken files ---- */
    cfg = load3("{\"engine\": {\"max_batch\": 8,}}", NULL, NULL, &rc, &err, NULL);
    is_int(rc, IMAGO_ERR_INVALID, "syntax error fails");
    EXPECT(cfg, "syntax error with position", "config file", "line 1");
    imago_config_free(cfg);
    cfg = load3("{\"engine\": {\"max_batch\": 8, \"max_batch\": 9}}", NULL, NULL, &rc, &err, NULL);
    EXPECT(cfg, "duplicate keys rejected", "config file", "duplicate");
    imago_config_free(cfg);
    cfg = load3("[1, 2]", NULL, NULL, &rc, &err, NULL);
    EXPECT(cfg, "top level must be an object", "top level must be an object");
    imago_config_free(cfg);
    cfg = load3("{\"engine\": [1]}", NULL, NULL, &rc, &err, NULL);
    EXPECT(cfg, "section must be an object", "engine: section", "must be an object");
    imago_config_free(cfg);
    cfg = tc_load(TC_ARGS("--config", "/nonexistent/dir/imago.json"), NULL, &rc, &err);
    is_int(rc, IMAGO_ERR_INVALID, "missing file fails");
    EXPECT(cfg, "missing file named", "/nonexistent/dir/imago.json");
    imago_config_free(cfg);

    /* ---- cross-option checks ---- */
    cfg = tc_load(TC_ARGS("--server.tls-cert", "/etc/cert.pem"), NULL, &rc, &err);
    EXPECT(cfg, "cert without key", "server.tls_cert", "without server.tls_key");
    imago_config_free(cfg);
    cfg = tc_load(TC_ARGS("--server.tls-cert", "/c.pem", "--server.tls-key", "/k.pem"), NULL, &rc,
                  &err);
    is_int(rc, IMAGO_HAVE_TLS ? 0 : IMAGO_ERR_INVALID, "cert + key (TLS built: %d)",
           IMAGO_HAVE_TLS);
    imago_config_free(cfg);
    cfg = tc_load(TC_ARGS("--engine.backend=cpu", "--engine.precision=fp16"), NULL, &rc, &err);
    EXPECT(cfg, "fp16 on cpu", "engine.precision", "fp16", "flag --engine.precision", "fp32, bf16");
    imago_config_free(cfg);
    cfg = tc_load(TC_ARGS("--engine.backend=cuda"), NULL, &rc, &err);
    is_int(rc, IMAGO_HAVE_CUDNN ? 0 : IMAGO_ERR_INVALID, "backend cuda (CUDA backend built: %d)",
           IMAGO_HAVE_CUDNN);
    imago_config_free(cfg);

    /* the same rules after imago_config_set */
    cfg = imago_config_new();
    is_int(imago_config_set(cfg, "server.tls_key", "/k.pem", &err), 0, "set tls_key alone");
    imago_error_clear(&err);
    is_int(imago_config_check(cfg, &err), IMAGO_ERR_INVALID, "check: key without cert");
    EXPECT(cfg, "check names the key and its source", "server.tls_key", "api",
           "without server.tls_cert");
    imago_config_set(cfg, "server.tls_key", "", NULL);
    is_int(imago_config_check(cfg, NULL), 0, "check passes again");
    imago_config_free(cfg);

    /* a good value after a bad one from an earlier source still reports the bad one */
    const char *env_fix[] = {"IMAGO_ENGINE_MAX_BATCH=4", NULL};
    cfg = load3("{\"engine\": {\"max_batch\": 5000}}", env_fix, NULL, &rc, &err, NULL);
    is_int(rc, IMAGO_ERR_INVALID, "bad file value is an error even when env overrides it");
    is_int(cfg->engine.max_batch, 4, "the env value applies");
    imago_config_free(cfg);

    /* a new load clears the previous errors */
    cfg = imago_config_new();
    char *a1[] = {"--engine.max-batch=0", NULL};
    imago_config_load(cfg, 1, a1, NULL, NULL, NULL, NULL, &err);
    is_int(imago_config_error_count(cfg), 1, "one error");
    is_int(imago_config_set(cfg, "engine.max_batch", "9", NULL), 0, "set with NULL err");
    is_int(imago_config_error_count(cfg), 0, "errors cleared by the next call");
    ok(imago_config_error_at(cfg, 0) == NULL, "error_at out of range is NULL");
    imago_config_free(cfg);

    /* ---- retired keys: accepted from every source, ignored, one warning each ---- */
    ok(imago_config_find("index.snapshot_interval_s") == NULL, "snapshot_interval_s is retired");
    FILE *log = tmpfile();
    imago_log_setup(IMAGO_LOG_WARN, IMAGO_LOG_TEXT, log);
    const char *env_retired[] = {"IMAGO_INDEX_SNAPSHOT_INTERVAL_S=60", NULL};
    cfg = load3("{\"index\": {\"snapshot_interval_s\": 300, \"nprobe\": 7},"
                " \"index.snapshot_interval_s\": 300}",
                env_retired,
                TC_ARGS("--index.snapshot-interval-s", "120", "--index.snapshot_interval_s=5",
                        "--engine.max-batch", "9"),
                &rc, &err, NULL);
    is_int(rc, 0, "a config with the retired key loads");
    if (!ok(imago_config_error_count(cfg) == 0, "no error for a retired key"))
        tc_diag_errors(cfg);
    is_int(cfg->index.nprobe, 7, "the rest of the file applies");
    is_int(cfg->engine.max_batch, 9, "the retired flag took its separate value, not the next flag");
    imago_config_free(cfg);
    imago_log_setup(IMAGO_LOG_INFO, IMAGO_LOG_TEXT, NULL);
    char logbuf[4096] = "";
    rewind(log);
    size_t nlog = fread(logbuf, 1, sizeof logbuf - 1, log);
    logbuf[nlog] = '\0';
    fclose(log);
    int warnings = 0;
    for (const char *q = logbuf; (q = strstr(q, "index.snapshot_interval_s (")); q++)
        warnings++;
    is_int(warnings, 5, "one warning per retired key given (2 file, 1 env, 2 flags)");
    ok(strstr(logbuf, "deprecated and ignored") && strstr(logbuf, "env IMAGO_INDEX_SNAPSHOT") &&
           strstr(logbuf, "flag --index.snapshot-interval-s"),
       "the warning names the source: %s", logbuf);

    return tap_done();
}
