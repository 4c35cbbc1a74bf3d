/* Unit tests for config/: the built-in defaults and the consistency of the
 * option table (names, env/flag names, help, defaults, offsets). */
#include "test_config_util.h"

#include <ctype.h>

int main(void)
{
    imago_config *cfg = imago_config_new();

    /* defaults, typed */
    is_str(cfg->server.listen, "0.0.0.0", "server.listen default");
    is_int(cfg->server.port, 8080, "server.port default");
    is_int(cfg->server.threads, 0, "server.threads default (0 = cores)");
    is_int(cfg->server.max_body_bytes, 32LL << 20, "server.max_body_bytes default 32 MiB");
    is_int(cfg->server.max_connections, 1024, "server.max_connections default");
    is_int(cfg->server.web, 1, "server.web default on");
    is_str(cfg->server.log_level, "info", "server.log_level default");
    is_str(cfg->server.log_format, "text", "server.log_format default");
    is_str(cfg->server.tls_cert, "", "server.tls_cert default empty, not NULL");
    is_str(cfg->auth.admin_token, "", "auth.admin_token default empty");
    is_str(cfg->auth.admin_token_file, "./imago-data/admin.token",
           "auth.admin_token_file derived from index.data_dir");
    is_str(cfg->engine.model, "", "engine.model default = demo model");
    is_str(cfg->engine.demo_arch, "resnet50-gem", "engine.demo_arch default");
    is_str(cfg->engine.backend, "auto", "engine.backend default");
    is_str(cfg->engine.precision, "fp32", "engine.precision default");
    is_int(cfg->engine.max_side, 1024, "engine.max_side default");
    is_int(cfg->engine.scales.n, 3, "engine.scales has 3 items");
    if (cfg->engine.scales.n == 3) {
        is_close(cfg->engine.scales.items[0], 1.0, 0, "scale 1");
        is_close(cfg->engine.scales.items[1], 0.70710678, 0, "scale 1/sqrt(2)");
        is_close(cfg->engine.scales.items[2], 0.5, 0, "scale 1/2");
    }
    is_int(cfg->engine.max_batch, 8, "engine.max_batch default");
    is_int(cfg->engine.max_pixels, 100000000, "engine.max_pixels default 100 MP");
    is_int(cfg->engine.max_image_bytes, 32LL << 20, "engine.max_image_bytes default");
    is_str(cfg->index.data_dir, "./imago-data", "index.data_dir default");
    is_str(cfg->index.factory, "Flat", "index.factory default");
    is_int(cfg->index.dba, 0, "index.dba off");
    is_int(cfg->index.dba_k, 2, "index.dba_k 2");
    is_close(cfg->index.dba_beta, 1.0, 0, "index.dba_beta 1");
    is_int(cfg->index.qe, 0, "index.qe off");
    is_int(cfg->index.qe_k, 2, "index.qe_k 2");
    is_close(cfg->index.qe_alpha, 0.0, 0, "index.qe_alpha 0");
    is_str(cfg->index.durability, "normal", "index.durability default");
    is_str(cfg->index.precision, "fp32", "index.precision default");
    is_int(cfg->ingest.roots.n, 0, "ingest.roots empty");
    is_int(cfg->ingest.extensions.n, 3, "ingest.extensions has 3 items");
    if (cfg->ingest.extensions.n == 3) {
        is_str(cfg->ingest.extensions.items[0], ".jpg", "ext 1");
        is_str(cfg->ingest.extensions.items[1], ".jpeg", "ext 2");
        is_str(cfg->ingest.extensions.items[2], ".png", "ext 3");
    }
    is_int(cfg->ingest.recursive, 1, "ingest.recursive default on");
    is_int(imago_config_error_count(cfg), 0, "no errors");

    /* every option starts from its default source */
    int n = imago_config_option_count();
    ok(n >= 45, "the table has all the keys (%d)", n);
    int all_default = 1;
    for (int i = 0; i < n; i++) {
        const char *origin = "x";
        all_default &= imago_config_source_of(cfg, imago_config_option_at(i)->name, &origin) ==
                           IMAGO_CONFIG_SRC_DEFAULT &&
                       origin[0] == '\0';
    }
    ok(all_default, "all sources are 'default' with no origin");
    ok(imago_config_option_at(n) == NULL && imago_config_option_at(-1) == NULL,
       "option_at out of range is NULL");

    /* table consistency */
    int bad_name = 0, no_help = 0, bad_find = 0, dup_env = 0, dup_offset = 0, bad_enum = 0;
    int bad_bounds = 0;
    static const char *const sections[] = {"server", "auth", "engine", "index", "ingest"};
    for (int i = 0; i < n; i++) {
        const imago_config_option *o = imago_config_option_at(i);
        const char *dot = strchr(o->name, '.');
        int sec_ok = 0;
        for (int s = 0; s < 5; s++)
            sec_ok |= dot && strlen(sections[s]) == (size_t)(dot - o->name) &&
                      strncmp(o->name, sections[s], (size_t)(dot - o->name)) == 0;
        for (const char *p = o->name; *p; p++)
            sec_ok &=
                islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '_' || *p == '.';
        sec_ok &= dot && strchr(dot + 1, '.') == NULL;
        if (!sec_ok) {
            bad_name++;
            tap_diag("bad name %s", o->name);
        }
        if (!o->help || strlen(o->help) < 10) {
            no_help++;
            tap_diag("no help for %s", o->name);
        }
        if (imago_config_find(o->name) != o)
            bad_find++;
        char dashed[128];
        snprintf(dashed, sizeof dashed, "%s", o->name);
        for (char *p = dashed; *p; p++)
            if (*p == '_')
                *p = '-';
        if (imago_config_find(dashed) != o)
            bad_find++;
        if (o->type == IMAGO_CONFIG_ENUM) {
            int found = 0;
            for (int k = 0; o->choices && o->choices[k]; k++)
                found |= strcmp(o->choices[k], o->def) == 0;
            bad_enum += !found;
        }
        if ((o->type == IMAGO_CONFIG_INT || o->type == IMAGO_CONFIG_INT64 ||
             o->type == IMAGO_CONFIG_DOUBLE || o->type == IMAGO_CONFIG_NUMLIST) &&
            !(o->min < o->max))
            bad_bounds++;
        char env_i[128], env_j[128];
        imago_config_env_name(o, env_i, sizeof env_i);
        for (int j = 0; j < i; j++) {
            const imago_config_option *p = imago_config_option_at(j);
            imago_config_env_name(p, env_j, sizeof env_j);
            dup_env += strcmp(env_i, env_j) == 0;
            dup_offset += p->offset == o->offset;
        }
    }
    is_int(bad_name, 0, "every name is section.key in lower case");
    is_int(no_help, 0, "every option has help text");
    is_int(bad_find, 0, "find() returns each option by its name and dashed name");
    is_int(bad_enum, 0, "every enum default is an allowed value");
    is_int(bad_bounds, 0, "every numeric option has min < max");
    is_int(dup_env, 0, "environment names are unique");
    is_int(dup_offset, 0, "every option has its own field");
    ok(imago_config_find("engine.nope") == NULL && imago_config_find(NULL) == NULL,
       "find() of unknown names is NULL");

    char buf[128];
    imago_config_env_name(imago_config_find("engine.max_batch"), buf, sizeof buf);
    is_str(buf, "IMAGO_ENGINE_MAX_BATCH", "env name");
    imago_config_flag_name(imago_config_find("engine.max_batch"), buf, sizeof buf);
    is_str(buf, "--engine.max-batch", "flag name");
    imago_config_env_name(imago_config_find("engine.max_batch"), buf, 8);
    is_str(buf, "IMAGO_E", "env name truncated to the buffer");

    ok((imago_config_find("auth.admin_token")->flags & IMAGO_CONFIG_F_SECRET) &&
           (imago_config_find("auth.search_token")->flags & IMAGO_CONFIG_F_SECRET),
       "tokens are secret");
    ok(imago_config_find("server.max_body_bytes")->flags & IMAGO_CONFIG_F_BYTES,
       "byte sizes are flagged");

    /* loading nothing keeps the defaults */
    imago_error err;
    int rc;
    imago_config *c2 = tc_load(NULL, NULL, &rc, &err);
    is_int(rc, 0, "load with no args and no env");
    is_int(c2->engine.max_batch, 8, "still the default");
    is_int(imago_config_source_of(c2, "engine.max_batch", NULL), IMAGO_CONFIG_SRC_DEFAULT,
           "source still default");
    imago_config_free(c2);

    imago_config_free(cfg);
    imago_config_free(NULL);
    return tap_done();
}
