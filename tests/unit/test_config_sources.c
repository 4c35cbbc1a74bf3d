/* Unit tests for config/: precedence of the sources (defaults < file < env <
 * flags), recorded sources and origins, env and flag syntax (ints, bools,
 * byte sizes, lists), aliases, pass-through of command flags. */
#include "test_config_util.h"

static imago_config *load_env1(const char *var, int *rc)
{
    imago_error err;
    const char *env[] = {var, NULL};
    return tc_load(NULL, env, rc, &err);
}

int main(void)
{
    imago_error err;
    int rc;
    char *file = tc_temp_file(
        "{\"_comment\": \"comments are keys starting with _\",\n"
        " \"server\": {\"port\": 9000, \"threads\": 3, \"listen\": \"127.0.0.1\"},\n"
        " \"engine\": {\"max_batch\": 4, \"scales\": [1, 0.5], \"max_image_bytes\": \"2MiB\"},\n"
        " \"index\": {\"_help\": {\"dba\": \"x\"}, \"dba\": true, \"dba_beta\": 2.5,\n"
        "           \"factory\": \"HNSW32\"},\n"
        " \"ingest\": {\"roots\": [\"/srv/a\", \"/srv/b\"], \"extensions\": [\".jpg\"]},\n"
        " \"engine.queue_depth\": 77}\n");
    char cfg_flag[600];
    snprintf(cfg_flag, sizeof cfg_flag, "--config=%s", file);

    /* ---- precedence and recorded sources ---- */
    const char *env[] = {"PATH=/usr/bin",
                         "IMAGO_SOURCE_ROOT=/not/an/option",
                         "IMAGO_ENGINE_MAX_BATCH=16",
                         "IMAGO_SERVER_THREADS=5",
                         "IMAGO_INDEX_QE=1",
                         NULL};
    imago_config *cfg = tc_load(TC_ARGS(cfg_flag, "--server.threads", "7"), env, &rc, &err);
    is_int(rc, 0, "load file + env + flags: %s", err.msg);
    tc_diag_errors(cfg);
    const char *origin;
    is_int(cfg->server.port, 9000, "file sets server.port");
    is_int(imago_config_source_of(cfg, "server.port", &origin), IMAGO_CONFIG_SRC_FILE,
           "server.port source file");
    is_str(origin, file, "origin is the file path");
    is_int(cfg->engine.max_batch, 16, "env beats file");
    is_int(imago_config_source_of(cfg, "engine.max_batch", &origin), IMAGO_CONFIG_SRC_ENV,
           "engine.max_batch source env");
    is_str(origin, "IMAGO_ENGINE_MAX_BATCH", "origin is the variable");
    is_int(cfg->server.threads, 7, "flag beats env and file");
    is_int(imago_config_source_of(cfg, "server.threads", &origin), IMAGO_CONFIG_SRC_FLAG,
           "server.threads source flag");
    is_str(origin, "--server.threads", "origin is the flag");
    is_int(cfg->index.qe, 1, "env bool 1");
    is_int(cfg->engine.max_side, 1024, "untouched key keeps its default");
    is_int(imago_config_source_of(cfg, "engine.max_side", NULL), IMAGO_CONFIG_SRC_DEFAULT,
           "untouched key source default");
    is_str(cfg->server.listen, "127.0.0.1", "file string");
    is_int(cfg->index.dba, 1, "file bool");
    is_close(cfg->index.dba_beta, 2.5, 0, "file double");
    is_str(cfg->index.factory, "HNSW32", "file factory");
    is_int(cfg->engine.max_image_bytes, 2 << 20, "file byte size as a string");
    is_int(cfg->engine.queue_depth, 77, "flat \"section.key\" form in the file");
    is_int(cfg->engine.scales.n, 2, "file number list");
    if (cfg->engine.scales.n == 2)
        ok(cfg->engine.scales.items[0] == 1.0 && cfg->engine.scales.items[1] == 0.5,
           "file scales values");
    is_int(cfg->ingest.roots.n, 2, "file string list");
    if (cfg->ingest.roots.n == 2) {
        is_str(cfg->ingest.roots.items[0], "/srv/a", "root 1");
        is_str(cfg->ingest.roots.items[1], "/srv/b", "root 2");
    }
    is_int(cfg->ingest.extensions.n, 1, "file list replaces the default list");
    imago_config_free(cfg);

    /* ---- IMAGO_CONFIG names the file; --config wins over it ---- */
    char var[600];
    snprintf(var, sizeof var, "IMAGO_CONFIG=%s", file);
    const char *env_cfg[] = {var, NULL};
    cfg = tc_load(NULL, env_cfg, &rc, &err);
    is_int(rc, 0, "IMAGO_CONFIG loads the file");
    is_int(cfg->server.port, 9000, "value from $IMAGO_CONFIG file");
    imago_config_free(cfg);
    const char *env_bad_cfg[] = {"IMAGO_CONFIG=/nonexistent/imago.json", NULL};
    cfg = tc_load(TC_ARGS("--config", file), env_bad_cfg, &rc, &err);
    is_int(rc, 0, "--config FILE (separate value) overrides $IMAGO_CONFIG");
    is_int(cfg->server.port, 9000, "value from --config file");
    imago_config_free(cfg);

    /* ---- env parsing ---- */
    static const struct {
        const char *text;
        int want;
    } bools[] = {{"true", 1}, {"false", 0}, {"1", 1},  {"0", 0},
                 {"TRUE", 1}, {"no", 0},    {"on", 1}, {"off", 0}};
    for (size_t i = 0; i < sizeof bools / sizeof bools[0]; i++) {
        char v[64];
        snprintf(v, sizeof v, "IMAGO_SERVER_WEB=%s", bools[i].text);
        cfg = load_env1(v, &rc);
        ok(rc == 0 && cfg->server.web == bools[i].want, "env bool \"%s\" -> %d", bools[i].text,
           bools[i].want);
        imago_config_free(cfg);
    }
    cfg = load_env1("IMAGO_ENGINE_QUEUE_DEPTH= 42 ", &rc);
    ok(rc == 0 && cfg->engine.queue_depth == 42, "env int with spaces");
    imago_config_free(cfg);
    cfg = load_env1("IMAGO_SERVER_MAX_BODY_BYTES=64MiB", &rc);
    ok(rc == 0 && cfg->server.max_body_bytes == 64LL << 20, "env bytes 64MiB");
    imago_config_free(cfg);
    cfg = load_env1("IMAGO_SERVER_MAX_BODY_BYTES=2k", &rc);
    ok(rc == 0 && cfg->server.max_body_bytes == 2048, "env bytes 2k");
    imago_config_free(cfg);
    cfg = load_env1("IMAGO_SERVER_MAX_BODY_BYTES=1 G", &rc);
    ok(rc == 0 && cfg->server.max_body_bytes == 1LL << 30, "env bytes '1 G'");
    imago_config_free(cfg);
    cfg = load_env1("IMAGO_INDEX_QE_ALPHA=3.5", &rc);
    ok(rc == 0 && cfg->index.qe_alpha == 3.5, "env double");
    imago_config_free(cfg);
    cfg = load_env1("IMAGO_ENGINE_SCALES=1, 0.5,0.25", &rc);
    ok(rc == 0 && cfg->engine.scales.n == 3 && cfg->engine.scales.items[2] == 0.25,
       "env comma list of numbers");
    imago_config_free(cfg);
    cfg = load_env1("IMAGO_ENGINE_SCALES=[0.5, 1.5]", &rc);
    ok(rc == 0 && cfg->engine.scales.n == 2 && cfg->engine.scales.items[1] == 1.5,
       "env JSON list of numbers");
    imago_config_free(cfg);
    cfg = load_env1("IMAGO_INGEST_ROOTS=[\"/data/a,b\", \"/data/c\"]", &rc);
    ok(rc == 0 && cfg->ingest.roots.n == 2 && strcmp(cfg->ingest.roots.items[0], "/data/a,b") == 0,
       "env JSON list keeps commas inside items");
    imago_config_free(cfg);
    cfg = load_env1("IMAGO_INGEST_EXTENSIONS=.png, .webp", &rc);
    ok(rc == 0 && cfg->ingest.extensions.n == 2 &&
           strcmp(cfg->ingest.extensions.items[1], ".webp") == 0,
       "env comma list of strings, trimmed");
    imago_config_free(cfg);
    cfg = load_env1("IMAGO_INGEST_EXTENSIONS=", &rc);
    ok(rc == 0 && cfg->ingest.extensions.n == 0, "env empty string = empty list");
    imago_config_free(cfg);
    cfg = load_env1("IMAGO_ENGINE_DEMO_ARCH=resnet101-agem", &rc);
    ok(rc == 0 && strcmp(cfg->engine.demo_arch, "resnet101-agem") == 0, "env enum");
    imago_config_free(cfg);
    cfg = load_env1("imago_engine_max_batch=3", &rc);
    ok(rc == 0 && cfg->engine.max_batch == 8, "lower-case variables are not config variables");
    imago_config_free(cfg);

    /* ---- flag syntax ---- */
    cfg = tc_load(TC_ARGS("--engine.max-batch", "5"), NULL, &rc, &err);
    ok(rc == 0 && cfg->engine.max_batch == 5, "--engine.max-batch 5");
    imago_config_free(cfg);
    cfg = tc_load(TC_ARGS("--engine.max_batch=6"), NULL, &rc, &err);
    ok(rc == 0 && cfg->engine.max_batch == 6, "--engine.max_batch=6");
    imago_config_source_of(cfg, "engine.max_batch", &origin);
    is_str(origin, "--engine.max_batch", "origin is the flag as written");
    imago_config_free(cfg);
    cfg = tc_load(TC_ARGS("--port", "0", "--model=/m/a.safetensors", "--data-dir", "/var/x"), NULL,
                  &rc, &err);
    ok(rc == 0 && cfg->server.port == 0, "--port alias (0 = pick a free port)");
    is_str(cfg->engine.model, "/m/a.safetensors", "--model alias");
    is_str(cfg->index.data_dir, "/var/x", "--data-dir alias");
    is_str(cfg->auth.admin_token_file, "/var/x/admin.token", "token file follows data_dir");
    imago_config_source_of(cfg, "server.port", &origin);
    is_str(origin, "--port", "alias origin");
    imago_config_free(cfg);
    cfg = tc_load(TC_ARGS("--index.dba"), NULL, &rc, &err);
    ok(rc == 0 && cfg->index.dba == 1, "bare bool flag = true");
    imago_config_free(cfg);
    cfg = tc_load(TC_ARGS("--server.web=false"), NULL, &rc, &err);
    ok(rc == 0 && cfg->server.web == 0, "--server.web=false");
    imago_config_free(cfg);
    cfg = tc_load(TC_ARGS("--server.web", "false"), NULL, &rc, &err);
    ok(rc == 0 && cfg->server.web == 0, "--server.web false");
    imago_config_free(cfg);
    cfg = tc_load(TC_ARGS("--engine.scales", "1,0.5"), NULL, &rc, &err);
    ok(rc == 0 && cfg->engine.scales.n == 2, "list flag");
    imago_config_free(cfg);
    cfg = tc_load(TC_ARGS("--engine.max-batch=2", "--engine.max-batch=3"), NULL, &rc, &err);
    ok(rc == 0 && cfg->engine.max_batch == 3, "the last of repeated flags wins");
    imago_config_free(cfg);
    const char *env_tf[] = {"IMAGO_AUTH_ADMIN_TOKEN_FILE=/etc/imago/token",
                            "IMAGO_INDEX_DATA_DIR=/d/", NULL};
    cfg = tc_load(NULL, env_tf, &rc, &err);
    is_str(cfg->auth.admin_token_file, "/etc/imago/token", "explicit token file is kept");
    imago_config_free(cfg);
    const char *env_dd[] = {"IMAGO_INDEX_DATA_DIR=/d/", NULL};
    cfg = tc_load(NULL, env_dd, &rc, &err);
    is_str(cfg->auth.admin_token_file, "/d/admin.token", "no double slash in derived path");
    imago_config_free(cfg);

    char *file_tf = tc_temp_file("{\"auth\": {\"admin_token_file\": \"\"},"
                                 " \"index\": {\"data_dir\": \"/from-file\"}}");
    const char *env_dd2[] = {"IMAGO_INDEX_DATA_DIR=/from-env", NULL};
    cfg = tc_load(TC_ARGS("--config", file_tf), env_dd2, &rc, &err);
    is_str(cfg->auth.admin_token_file, "/from-env/admin.token",
           "token file given as \"\" in the file is derived from the final data_dir");
    imago_config_free(cfg);
    tc_unlink(file_tf);

    /* ---- rest arguments and command flags ---- */
    static const imago_config_flag cmd_flags[] = {
        {"dump-config", IMAGO_CONFIG_ARG_OPTIONAL}, {"k", IMAGO_CONFIG_ARG_REQUIRED}, {NULL}};
    char *argv[] = {"--dump-config", "img.jpg", "--k", "5", "--engine.max-batch", "3", "-", "--",
                    "--port",        NULL};
    cfg = imago_config_new();
    int n_rest = -1;
    char **rest = NULL;
    rc = imago_config_load(cfg, 9, argv, NULL, cmd_flags, &n_rest, &rest, &err);
    is_int(rc, 0, "load with command flags");
    is_int(n_rest, 6, "rest count");
    if (n_rest == 6) {
        is_str(rest[0], "--dump-config", "rest 0: command flag");
        is_str(rest[1], "img.jpg", "rest 1: positional");
        is_str(rest[2], "--k", "rest 2: command flag");
        is_str(rest[3], "5", "rest 3: its value");
        is_str(rest[4], "-", "rest 4: a lone dash is positional");
        is_str(rest[5], "--port", "rest 5: after --, positional");
        ok(rest[6] == NULL, "rest is NULL-terminated");
    }
    is_int(cfg->engine.max_batch, 3, "config flag among command flags");
    is_int(cfg->server.port, 8080, "--port after -- is not a flag");
    free(rest);
    imago_config_free(cfg);

    /* ---- imago_config_set ---- */
    cfg = imago_config_new();
    is_int(imago_config_set(cfg, "engine.max_batch", "12", &err), 0, "set");
    is_int(cfg->engine.max_batch, 12, "set value");
    is_int(imago_config_source_of(cfg, "engine.max_batch", NULL), IMAGO_CONFIG_SRC_API,
           "set source api");
    is_int(imago_config_set(cfg, "index.data-dir", "/q", &err), 0, "set with dashes");
    is_str(cfg->auth.admin_token_file, "/q/admin.token", "set re-derives the token file");
    imago_error_clear(&err);
    is_int(imago_config_set(cfg, "engine.max_bach", "1", &err), IMAGO_ERR_NOT_FOUND,
           "set unknown option");
    ok(strstr(err.msg, "did you mean engine.max_batch") != NULL, "set suggests: %s", err.msg);
    imago_error_clear(&err);
    is_int(imago_config_set(cfg, "engine.max_batch", "0", &err), IMAGO_ERR_INVALID,
           "set out of range");
    is_int(cfg->engine.max_batch, 12, "bad set keeps the old value");
    imago_config_free(cfg);

    tc_unlink(file);
    return tap_done();
}
