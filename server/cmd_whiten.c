/* `imago whiten DATA_DIR`: learns (or removes) a collection's PCA whitening
 * offline, in-process, with the same index code as the server's job (a
 * reindex of the data dir), and a progress bar of the learning on a
 * terminal (plain lines otherwise).
 */
#include "cmd_index.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static const imago_config_flag whiten_flags[] = {
    {"dim", IMAGO_CONFIG_ARG_REQUIRED},    {"power", IMAGO_CONFIG_ARG_REQUIRED},
    {"sample", IMAGO_CONFIG_ARG_REQUIRED}, {"force", IMAGO_CONFIG_ARG_NONE},
    {"remove", IMAGO_CONFIG_ARG_NONE},     {"help", IMAGO_CONFIG_ARG_NONE},
    {NULL, IMAGO_CONFIG_ARG_NONE},
};

typedef struct bar_state {
    int tty;
    char stage[32];
    int last_pct;
} bar_state;

static void on_progress(void *user, const char *stage, double frac)
{
    bar_state *b = user;
    int pct = (int)(frac * 100 + 0.5);
    int new_stage = strcmp(b->stage, stage) != 0;
    if (!new_stage && pct == b->last_pct)
        return;
    if (b->tty) {
        if (new_stage && b->stage[0])
            printf("\n");
        int width = 30, fill = (int)(frac * width);
        char bar[40];
        for (int i = 0; i < width; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[width] = '\0';
        printf("\r%-20s [%s] %3d%%", stage, bar, pct);
        fflush(stdout);
    } else if (new_stage || pct / 25 != b->last_pct / 25) {
        printf("%s: %d%%\n", stage, pct);
        fflush(stdout);
    }
    snprintf(b->stage, sizeof b->stage, "%s", stage);
    b->last_pct = pct;
}

/* "--name V" or "--name=V": the value of flag name at rest[*i], or NULL. */
static const char *flag_value(char **rest, int n, int *i, const char *name)
{
    size_t l = strlen(name);
    const char *a = rest[*i];
    if (strncmp(a, "--", 2) != 0 || strncmp(a + 2, name, l) != 0)
        return NULL;
    if (a[2 + l] == '=')
        return a + 3 + l;
    if (a[2 + l] == '\0' && *i + 1 < n)
        return rest[++*i];
    return NULL;
}

static int parse_num(const char *s, double lo, double hi, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !(v >= lo && v <= hi))
        return -1;
    *out = v;
    return 0;
}

int imago_cmd_whiten(int argc, char **argv)
{
    for (int i = 0; i < argc && strcmp(argv[i], "--") != 0; i++)
        if (strcmp(argv[i], "--help") == 0)
            return imago_cli_help(stdout, "whiten");
    imago_config *cfg = NULL;
    char **rest = NULL;
    int n_rest = 0;
    int rc = imago_cli_load_config("whiten", argc, argv, whiten_flags, &cfg, &n_rest, &rest);
    if (rc != 0)
        return rc;
    imago_whiten_params wp = imago_whiten_params_default();
    int remove = 0;
    const char *dir = NULL;
    for (int i = 0; i < n_rest; i++) {
        const char *v;
        double x;
        if ((v = flag_value(rest, n_rest, &i, "dim"))) {
            if (parse_num(v, 1, 65536, &x) || x != (int)x) {
                fprintf(stderr, "imago whiten: --dim: an integer in 1..65536\n");
                rc = IMAGO_EXIT_USAGE;
                goto out;
            }
            wp.dim = (int)x;
        } else if ((v = flag_value(rest, n_rest, &i, "power"))) {
            if (parse_num(v, 0, 1, &wp.power)) {
                fprintf(stderr, "imago whiten: --power: a number in [0, 1]\n");
                rc = IMAGO_EXIT_USAGE;
                goto out;
            }
        } else if ((v = flag_value(rest, n_rest, &i, "sample"))) {
            if (parse_num(v, 0, 1e8, &x) || x != (long)x || x == 1) {
                fprintf(stderr, "imago whiten: --sample: 0 (all rows) or an integer >= 2\n");
                rc = IMAGO_EXIT_USAGE;
                goto out;
            }
            wp.sample = (long)x;
        } else if (strcmp(rest[i], "--force") == 0) {
            wp.force = 1;
        } else if (strcmp(rest[i], "--remove") == 0) {
            remove = 1;
        } else if (strncmp(rest[i], "--", 2) != 0 && !dir) {
            dir = rest[i];
        } else {
            fprintf(stderr, "imago whiten: unexpected argument '%s'\n", rest[i]);
            rc = IMAGO_EXIT_USAGE;
            goto out;
        }
    }
    if (!dir) {
        fprintf(stderr, "imago whiten: which data dir? usage: imago whiten DATA_DIR [--dim D] "
                        "[--power P] [--sample N] [--force] | --remove\n");
        rc = IMAGO_EXIT_USAGE;
        goto out;
    }
    imago_error err;
    imago_error_clear(&err);
    if (access(dir, F_OK) != 0) {
        fprintf(stderr, "imago whiten: %s: no such data dir\n", dir);
        rc = IMAGO_EXIT_FAILURE;
        goto out;
    }
    if (imago_config_set(cfg, "index.data_dir", dir, &err) != 0) {
        fprintf(stderr, "imago whiten: %s\n", err.msg);
        rc = IMAGO_EXIT_USAGE;
        goto out;
    }
    {
        imago_stack st;
        if (imago_stack_open(cfg, &st, &err) != 0) {
            fprintf(stderr, "imago whiten: %s\n", err.msg);
            rc = IMAGO_EXIT_FAILURE;
            goto out;
        }
        imago_index_stats ist;
        imago_index_stats_get(st.index, &ist, &err);
        if (remove && !ist.has_whitening) {
            printf("the collection in %s has no learned whitening: nothing to remove\n", dir);
            imago_stack_close(&st);
            rc = IMAGO_EXIT_OK;
            goto out;
        }
        bar_state bs = {isatty(STDOUT_FILENO), "", -1};
        wp.progress = on_progress;
        wp.progress_user = &bs;
        imago_index_reindex_params rp = imago_index_reindex_params_default();
        rp.whiten = remove ? 0 : 1;
        rp.whiten_params = &wp;
        if (!remove)
            printf("learning a whitening from the %lld images of %s (%d-d descriptors)\n",
                   (long long)ist.count, dir, ist.dim);
        double t0 = imago_now_s();
        int rrc = imago_index_reindex(st.index, &rp, &err);
        if (bs.tty && bs.stage[0])
            printf("\n");
        if (rrc != 0) {
            fprintf(stderr, "imago whiten: %s\n", err.msg);
            rc = IMAGO_EXIT_FAILURE;
        } else if (imago_index_stats_get(st.index, &ist, &err) == 0 && ist.has_whitening) {
            printf("whitening v%lld: %d -> %d dims, power %g, trained on %lld of %lld rows, "
                   "fingerprint %s; the index was rebuilt in %.1f s\n",
                   (long long)ist.whitening.version, ist.whitening.dim_in, ist.whitening.dim,
                   ist.whitening.power, (long long)ist.whitening.n_trained,
                   (long long)ist.whitening.n_rows, ist.whitening.fingerprint, imago_now_s() - t0);
            rc = IMAGO_EXIT_OK;
        } else {
            printf("whitening removed: the index holds the %d-d model descriptors again\n",
                   ist.index_dim);
            rc = IMAGO_EXIT_OK;
        }
        imago_stack_close(&st);
    }
out:
    free(rest);
    imago_config_free(cfg);
    return rc;
}
