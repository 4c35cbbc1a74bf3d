/* Unit tests for config/: the JSON dumps (values + sources, plain values,
 * example), redaction of secrets, the text dump, the help, and that
 * config/imago.example.json matches the option table. */
#include "test_config_util.h"

#include <jansson.h>

static json_t *entry(json_t *root, const char *sec, const char *key)
{
    return json_object_get(json_object_get(root, sec), key);
}

static char *read_all(FILE *f)
{
    fflush(f);
    rewind(f);
    char *buf = NULL;
    size_t cap = 0, n = 0;
    int c;
    while ((c = fgetc(f)) != EOF) {
        if (n + 2 > cap)
            buf = realloc(buf, cap = cap ? 2 * cap : 4096);
        buf[n++] = (char)c;
    }
    if (!buf)
        buf = malloc(1);
    buf[n] = '\0';
    return buf;
}

int main(void)
{
    imago_error err;
    int rc;
    char *file = tc_temp_file("{\"server\": {\"port\": 9000}, \"index\": {\"factory\": \"HNSW32\"},"
                              " \"auth\": {\"search_token\": \"file-secret-123\"}}");
    const char *env[] = {"IMAGO_ENGINE_MAX_BATCH=16", "IMAGO_AUTH_ADMIN_TOKEN=env-secret-456",
                         NULL};
    imago_config *cfg = tc_load(TC_ARGS("--config", file, "--engine.scales=1,0.5"), env, &rc, &err);
    is_int(rc, 0, "load: %s", err.msg);

    /* ---- sources mode ---- */
    char *s = NULL;
    is_int(imago_config_dump_json(cfg, IMAGO_CONFIG_DUMP_SOURCES, &s, &err), 0, "dump sources");
    json_error_t jerr;
    json_t *root = json_loads(s, 0, &jerr);
    ok(root != NULL, "dump is valid JSON");
    ok(s[strlen(s) - 1] == '\n', "dump ends with a newline");
    json_t *e = entry(root, "engine", "max_batch");
    is_int(json_integer_value(json_object_get(e, "value")), 16, "max_batch value");
    is_str(json_string_value(json_object_get(e, "source")), "env", "max_batch source");
    is_str(json_string_value(json_object_get(e, "from")), "IMAGO_ENGINE_MAX_BATCH",
           "max_batch from");
    e = entry(root, "server", "port");
    is_int(json_integer_value(json_object_get(e, "value")), 9000, "port value");
    is_str(json_string_value(json_object_get(e, "source")), "file", "port source");
    is_str(json_string_value(json_object_get(e, "from")), file, "port from = file path");
    e = entry(root, "engine", "scales");
    ok(json_array_size(json_object_get(e, "value")) == 2 &&
           json_real_value(json_array_get(json_object_get(e, "value"), 1)) == 0.5,
       "scales as a JSON array");
    is_str(json_string_value(json_object_get(e, "source")), "flag", "scales source");
    e = entry(root, "server", "listen");
    is_str(json_string_value(json_object_get(e, "value")), "0.0.0.0", "listen default");
    is_str(json_string_value(json_object_get(e, "source")), "default", "listen source default");
    ok(json_object_get(e, "from") == NULL, "no 'from' for defaults");
    e = entry(root, "auth", "admin_token_file");
    is_str(json_string_value(json_object_get(e, "value")), "./imago-data/admin.token",
           "derived value shown resolved");
    is_str(json_string_value(json_object_get(entry(root, "auth", "admin_token"), "value")),
           "<redacted>", "admin token redacted");
    is_str(json_string_value(json_object_get(entry(root, "auth", "search_token"), "value")),
           "<redacted>", "search token redacted");
    ok(strstr(s, "env-secret-456") == NULL && strstr(s, "file-secret-123") == NULL,
       "no secret anywhere in the dump");
    is_str(json_string_value(json_object_get(entry(root, "ingest", "recursive"), "source")),
           "default", "bools have entries");
    int keys = 0;
    const char *sec;
    json_t *body;
    json_object_foreach(root, sec, body) keys += (int)json_object_size(body);
    is_int(keys, imago_config_option_count(), "one entry per option");
    is_int((int)json_object_size(root), 5, "five sections");
    json_decref(root);
    free(s);

    /* ---- values mode: loadable, and loads back to the same values ---- */
    is_int(imago_config_dump_json(cfg, IMAGO_CONFIG_DUMP_VALUES, &s, &err), 0, "dump values");
    root = json_loads(s, 0, &jerr);
    is_int(json_integer_value(entry(root, "engine", "max_batch")), 16, "values: max_batch");
    is_str(json_string_value(entry(root, "auth", "admin_token")), "<redacted>",
           "values: secrets redacted");
    is_str(json_string_value(entry(root, "auth", "admin_token_file")), "",
           "values: derived default written raw");
    ok(strstr(s, "\"scales\": [\n") != NULL || strstr(s, "\"scales\": [1.0, 0.5]") != NULL,
       "values: scales is an array");
    json_decref(root);
    free(s);

    imago_config *cfg2 = tc_load(NULL, NULL, &rc, &err);
    imago_config_set(cfg2, "engine.scales", "1,0.70710678,0.25", NULL);
    imago_config_set(cfg2, "index.dba_beta", "0.1", NULL);
    imago_config_set(cfg2, "ingest.roots", "/a,/b c", NULL);
    imago_config_set(cfg2, "server.max_body_bytes", "3MiB", NULL);
    char *v1 = NULL, *v2 = NULL;
    imago_config_dump_json(cfg2, IMAGO_CONFIG_DUMP_VALUES, &v1, &err);
    char *file2 = tc_temp_file(v1);
    imago_config *cfg3 = tc_load(TC_ARGS("--config", file2), NULL, &rc, &err);
    is_int(rc, 0, "values dump loads with --config: %s", err.msg);
    imago_config_dump_json(cfg3, IMAGO_CONFIG_DUMP_VALUES, &v2, &err);
    is_str(v2, v1, "round trip gives the same values");
    ok(cfg3->index.dba_beta == 0.1 && cfg3->engine.scales.items[1] == 0.70710678,
       "doubles survive the round trip exactly");
    is_int(imago_config_source_of(cfg3, "engine.threads", NULL), IMAGO_CONFIG_SRC_FILE,
           "every key of the values dump comes from the file");
    free(v1);
    free(v2);
    tc_unlink(file2);
    imago_config_free(cfg2);
    imago_config_free(cfg3);

    /* ---- text form ---- */
    FILE *f = tmpfile();
    is_int(imago_config_dump_text(cfg, f, &err), 0, "dump text");
    char *text = read_all(f);
    fclose(f);
    ok(strstr(text, "engine.max_batch = 16") != NULL, "text: value");
    ok(strstr(text, "# env IMAGO_ENGINE_MAX_BATCH") != NULL, "text: source and origin");
    ok(strstr(text, "auth.admin_token = \"<redacted>\"") != NULL, "text: redacted");
    ok(strstr(text, "env-secret-456") == NULL, "text: no secret");
    ok(strstr(text, "engine.scales = [1.0,0.5]") != NULL, "text: list");
    int lines = 0;
    for (char *p = text; *p; p++)
        lines += *p == '\n';
    is_int(lines, imago_config_option_count(), "text: one line per option");
    free(text);

    /* ---- help ---- */
    f = tmpfile();
    imago_config_print_help(f);
    text = read_all(f);
    fclose(f);
    int missing = 0;
    for (int i = 0; i < imago_config_option_count(); i++) {
        char flag[128], envname[128];
        imago_config_flag_name(imago_config_option_at(i), flag, sizeof flag);
        imago_config_env_name(imago_config_option_at(i), envname, sizeof envname);
        missing += strstr(text, flag) == NULL || strstr(text, envname) == NULL;
    }
    is_int(missing, 0, "help lists every flag and variable");
    ok(strstr(text, "allowed: auto|cpu|cuda") != NULL, "help shows enum values");
    ok(strstr(text, "allowed: 1..1024") != NULL, "help shows ranges");
    free(text);
    imago_config_free(cfg);
    tc_unlink(file);

    /* ---- config/imago.example.json is loadable and matches the table ---- */
    const char *src = getenv("IMAGO_SOURCE_ROOT");
    if (!src) {
        tap_skip(5, "IMAGO_SOURCE_ROOT is not set (run through meson test)");
    } else {
        char path[1024];
        snprintf(path, sizeof path, "%s/config/imago.example.json", src);
        cfg = tc_load(TC_ARGS("--config", path), NULL, &rc, &err);
        is_int(rc, 0, "the example file loads: %s", err.msg);
        int from_file = 0;
        for (int i = 0; i < imago_config_option_count(); i++)
            from_file += imago_config_source_of(cfg, imago_config_option_at(i)->name, NULL) ==
                         IMAGO_CONFIG_SRC_FILE;
        is_int(from_file, imago_config_option_count(), "the example sets every key");
        is_str(cfg->auth.admin_token_file, "./imago-data/admin.token",
               "the example's empty token file resolves under data_dir");
        imago_config_free(cfg);

        json_t *in_file = json_load_file(path, 0, &jerr);
        cfg = imago_config_new();
        imago_config_dump_json(cfg, IMAGO_CONFIG_DUMP_EXAMPLE, &s, &err);
        json_t *generated = json_loads(s, 0, &jerr);
        ok(in_file && generated && json_equal(in_file, generated),
           "example file == `imago serve --dump-config=example` of the defaults (regenerate "
           "it after changing the table)");
        ok(json_is_string(entry(generated, "engine", "_help")
                              ? json_object_get(entry(generated, "engine", "_help"), "max_batch")
                              : NULL),
           "example has per-section help");
        json_decref(in_file);
        json_decref(generated);
        free(s);
        imago_config_free(cfg);
    }
    return tap_done();
}
