/* `imago index DIR`: bulk-indexes a folder offline, with the same engine,
 * batcher, jobs runner and store as `imago serve` (an ingest job in the data
 * dir: an interrupted run resumes where it stopped when started again). A
 * progress bar with rate and ETA on a terminal; plain periodic lines when
 * stdout is not one. Also the offline stack shared with `imago search`.
 */
#include "cmd_index.h"

#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cfg_params.h"
#include "cli.h"
#include "jobs.h"

int imago_stack_open(const imago_config *cfg, imago_stack *st, imago_error *err)
{
    memset(st, 0, sizeof *st);
    imago_engine_params ep;
    float scales[IMAGO_CFG_MAX_SCALES];
    imago_cfg_engine_params(cfg, scales, &ep);
    int rc = imago_engine_open(&ep, &st->engine, err);
    if (rc != 0)
        return rc;
    imago_engine_describe(st->engine, &st->model);
    imago_batcher_params bp;
    imago_cfg_batcher_params(cfg, &bp);
    rc = imago_batcher_new(st->engine, &bp, &st->batcher, err);
    if (rc == 0) {
        imago_index_params p;
        imago_cfg_index_params(cfg, &st->model, &p);
        rc = imago_index_open(&p, &st->index, err);
    }
    if (rc != 0)
        imago_stack_close(st);
    return rc;
}

void imago_stack_close(imago_stack *st)
{
    if (st->batcher)
        imago_batcher_close(st->batcher, 1);
    imago_batcher_free(st->batcher);
    imago_index_free(st->index); /* snapshots when dirty */
    imago_engine_free(st->engine);
    memset(st, 0, sizeof *st);
}

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

static void fmt_eta(double s, char *buf, size_t cap)
{
    if (s < 0)
        snprintf(buf, cap, "--:--");
    else if (s < 3600)
        snprintf(buf, cap, "%02d:%02d", (int)s / 60, (int)s % 60);
    else
        snprintf(buf, cap, "%dh%02d", (int)s / 3600, ((int)s % 3600) / 60);
}

static const imago_config_flag index_flags[] = {
    {"help", IMAGO_CONFIG_ARG_NONE},
    {NULL, IMAGO_CONFIG_ARG_NONE},
};

int imago_cmd_index(int argc, char **argv)
{
    for (int i = 0; i < argc && strcmp(argv[i], "--") != 0; i++)
        if (strcmp(argv[i], "--help") == 0)
            return imago_cli_help(stdout, "index");
    imago_config *cfg = NULL;
    char **rest = NULL;
    int n_rest = 0;
    int rc = imago_cli_load_config("index", argc, argv, index_flags, &cfg, &n_rest, &rest);
    if (rc != 0)
        return rc;
    const char *dir = NULL;
    for (int i = 0; i < n_rest; i++) {
        if (strncmp(rest[i], "--", 2) == 0 || dir) {
            fprintf(stderr, "imago index: unexpected argument '%s'\n", rest[i]);
            rc = IMAGO_EXIT_USAGE;
            goto out;
        }
        dir = rest[i];
    }
    if (!dir) {
        fprintf(stderr, "imago index: which folder? usage: imago index DIR [--data-dir D]\n");
        rc = IMAGO_EXIT_USAGE;
        goto out;
    }
    char real[PATH_MAX];
    if (!realpath(dir, real)) {
        fprintf(stderr, "imago index: %s: not found\n", dir);
        rc = IMAGO_EXIT_FAILURE;
        goto out;
    }
    {
        imago_error err;
        imago_error_clear(&err);
        imago_stack st;
        if (imago_stack_open(cfg, &st, &err) != 0) {
            fprintf(stderr, "imago index: %s\n", err.msg);
            rc = IMAGO_EXIT_FAILURE;
            goto out;
        }
        /* the folder given on the command line is the only root */
        char *root_items[1] = {real};
        imago_config_strlist roots = {1, root_items};
        imago_jobs *jobs = NULL;
        int64_t id = 0;
        if (imago_jobs_new(cfg, &roots, st.index, st.batcher, &jobs, &err) != 0 ||
            imago_jobs_submit_ingest(jobs, real, 0, cfg->ingest.recursive, NULL, 0, &id, &err) !=
                0) {
            fprintf(stderr, "imago index: %s\n", err.msg);
            imago_jobs_free(jobs);
            imago_stack_close(&st);
            rc = IMAGO_EXIT_FAILURE;
            goto out;
        }
        struct sigaction sa, old;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_sigint;
        sigaction(SIGINT, &sa, &old);
        int tty = isatty(STDOUT_FILENO);
        int64_t last_line = 0;
        imago_jobs_progress pr;
        memset(&pr, 0, sizeof pr);
        for (;;) {
            struct timespec ts = {0, 200 * 1000 * 1000};
            nanosleep(&ts, NULL);
            imago_job_info_clear(&pr.info);
            if (imago_jobs_progress_get(jobs, id, &pr, &err) != 0)
                break;
            int final = pr.info.state != IMAGO_JOB_PENDING && pr.info.state != IMAGO_JOB_RUNNING;
            int64_t fin = pr.info.done + pr.info.failed;
            char eta[32];
            fmt_eta(pr.eta_s, eta, sizeof eta);
            if (tty) {
                int width = 30;
                int fill = pr.info.total > 0 ? (int)(width * fin / pr.info.total) : 0;
                char bar[64];
                for (int i = 0; i < width; i++)
                    bar[i] = i < fill ? '#' : '.';
                bar[width] = '\0';
                printf("\r[%s] %lld/%lld  %.1f img/s  ETA %s  failed %lld ", bar, (long long)fin,
                       (long long)pr.info.total, pr.rate, eta, (long long)pr.info.failed);
                fflush(stdout);
            } else if (final || imago_now_us() - last_line > 5000000) {
                printf("indexed %lld/%lld (%lld failed), %.1f img/s, ETA %s\n", (long long)fin,
                       (long long)pr.info.total, (long long)pr.info.failed, pr.rate, eta);
                fflush(stdout);
                last_line = imago_now_us();
            }
            if (final || interrupted)
                break;
        }
        if (tty)
            printf("\n");
        sigaction(SIGINT, &old, NULL);
        imago_job_item *items = NULL;
        size_t n = 0;
        if (imago_job_errors(st.index, id, 10, &items, &n, &err) == 0) {
            for (size_t i = 0; i < n; i++)
                fprintf(stderr, "imago index: %s: %s\n", items[i].source,
                        items[i].error ? items[i].error : "failed");
            imago_job_items_free(items, n);
        }
        if (interrupted) {
            printf("interrupted: %lld of %lld done; run the same command again to resume\n",
                   (long long)(pr.info.done + pr.info.failed), (long long)pr.info.total);
            rc = IMAGO_EXIT_FAILURE;
        } else if (pr.info.state == IMAGO_JOB_DONE) {
            imago_index_stats ist;
            if (imago_index_stats_get(st.index, &ist, &err) == 0)
                printf("done: %lld images indexed, %lld failed; the collection holds %lld "
                       "images (%s)\n",
                       (long long)pr.info.done, (long long)pr.info.failed, (long long)ist.count,
                       ist.type);
            rc = IMAGO_EXIT_OK;
        } else {
            fprintf(stderr, "imago index: job %s: %s\n",
                    imago_job_state_name((imago_job_state)pr.info.state),
                    pr.info.error ? pr.info.error : "");
            rc = IMAGO_EXIT_FAILURE;
        }
        imago_job_info_clear(&pr.info);
        imago_jobs_free(jobs);
        imago_stack_close(&st);
    }
out:
    free(rest);
    imago_config_free(cfg);
    return rc;
}
