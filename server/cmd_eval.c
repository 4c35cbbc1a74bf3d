/* server/cmd_eval.c: `imago eval`, the revisited Oxford/Paris evaluation
 * (mAP and mP@1,5,10 for Easy / Medium / Hard) of a ranking, or of
 * descriptors ranked with imago's exact search (+ DBA / alpha-QE).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cmd_eval.h"
#include "common/common.h"
#include "index/index.h"

static const char usage[] =
    "usage: imago eval --gnd GND.json (--ranks RANKS | --db DB.npy --queries Q.npy)\n"
    "                  [--protocol easy|medium|hard|all] [--dba K,BETA] [--qe N,ALPHA]\n"
    "                  [--whiten DIM,POWER [--whiten-force]] [--json]\n"
    "  --whiten learns a PCA whitening from the database descriptors (DIM 0: min(D, N-1);\n"
    "  as POST /v1/admin/whitening) and applies it to the database and the queries\n"
    "  before DBA / QE.\n";

/* ---- a minimal .npy reader (v1/v2/v3, C order, 2-D or 1-D) --------------- */

typedef struct npy {
    char dtype[8]; /* "<f4", "<i8", "<i4" */
    size_t rows, cols;
    void *data;
} npy;

static int npy_read(const char *path, npy *out, imago_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return imago_error_set(err, IMAGO_ERR_IO, "%s: %s", path, strerror(errno));
    unsigned char pre[10];
    int rc = 0;
    char *hdr = NULL;
    if (fread(pre, 1, 10, f) != 10 || memcmp(pre, "\x93NUMPY", 6) != 0) {
        rc = imago_error_set(err, IMAGO_ERR_FORMAT, "%s: not a .npy file", path);
        goto out;
    }
    size_t hl;
    if (pre[6] == 1) {
        hl = (size_t)pre[8] | ((size_t)pre[9] << 8);
    } else {
        unsigned char more[2];
        if (fread(more, 1, 2, f) != 2) {
            rc = imago_error_set(err, IMAGO_ERR_FORMAT, "%s: truncated header", path);
            goto out;
        }
        hl = (size_t)pre[8] | ((size_t)pre[9] << 8) | ((size_t)more[0] << 16) |
             ((size_t)more[1] << 24);
    }
    if (hl > 65536) {
        rc = imago_error_set(err, IMAGO_ERR_FORMAT, "%s: header too long", path);
        goto out;
    }
    hdr = imago_xmalloc(hl + 1);
    if (fread(hdr, 1, hl, f) != hl) {
        rc = imago_error_set(err, IMAGO_ERR_FORMAT, "%s: truncated header", path);
        goto out;
    }
    hdr[hl] = 0;
    const char *d = strstr(hdr, "'descr':");
    const char *fo = strstr(hdr, "'fortran_order':");
    const char *sh = strstr(hdr, "'shape':");
    if (!d || !fo || !sh || strstr(fo, "True") == fo + 17) {
        rc = imago_error_set(err, IMAGO_ERR_UNSUPPORTED, "%s: need a C-order array", path);
        goto out;
    }
    if (sscanf(d, "'descr': '%7[^']'", out->dtype) != 1) {
        rc = imago_error_set(err, IMAGO_ERR_FORMAT, "%s: bad descr", path);
        goto out;
    }
    unsigned long long r = 0, c = 1;
    int got = sscanf(sh, "'shape': (%llu, %llu)", &r, &c);
    if (got < 1) {
        rc = imago_error_set(err, IMAGO_ERR_FORMAT, "%s: bad shape", path);
        goto out;
    }
    if (got == 1)
        c = 1;
    size_t es = strcmp(out->dtype, "<f4") == 0 || strcmp(out->dtype, "<i4") == 0 ? 4
                : strcmp(out->dtype, "<i8") == 0                                 ? 8
                                                                                 : 0;
    if (!es) {
        rc = imago_error_set(err, IMAGO_ERR_UNSUPPORTED, "%s: dtype %s (need <f4, <i4, <i8)", path,
                             out->dtype);
        goto out;
    }
    size_t bytes;
    if (imago_size_mul3((size_t)r, (size_t)c, es, &bytes)) {
        rc = imago_error_set(err, IMAGO_ERR_TOO_LARGE, "%s: too large", path);
        goto out;
    }
    out->data = malloc(bytes ? bytes : 1);
    if (!out->data) {
        rc = imago_error_set(err, IMAGO_ERR_NOMEM, "%s: %zu bytes", path, bytes);
        goto out;
    }
    if (fread(out->data, 1, bytes, f) != bytes) {
        free(out->data);
        out->data = NULL;
        rc = imago_error_set(err, IMAGO_ERR_FORMAT, "%s: truncated data", path);
        goto out;
    }
    out->rows = (size_t)r;
    out->cols = (size_t)c;
out:
    free(hdr);
    fclose(f);
    return rc;
}

/* ranks as text: one line per query, whitespace-separated database indices
 * or image names (from imlist) */
static int ranks_text(const char *path, const imago_gnd *g, int64_t **out, size_t *nr,
                      imago_error *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return imago_error_set(err, IMAGO_ERR_IO, "%s: %s", path, strerror(errno));
    size_t nq = imago_gnd_n_queries(g), ni = imago_gnd_n_images(g);
    int64_t *ranks = NULL;
    size_t width = 0, q = 0;
    char *line = NULL;
    size_t cap = 0;
    int rc = 0;
    while (rc == 0 && getline(&line, &cap, f) >= 0) {
        size_t n = 0;
        int64_t *row = imago_xmalloc((ni ? ni : 1) * sizeof *row);
        for (char *tok = strtok(line, " \t\r\n"); tok; tok = strtok(NULL, " \t\r\n")) {
            if (n >= ni) {
                rc = imago_error_set(err, IMAGO_ERR_FORMAT, "%s:%zu: more ranks than images", path,
                                     q + 1);
                break;
            }
            char *end;
            long long v = strtoll(tok, &end, 10);
            if (*end) {
                v = -1;
                for (size_t i = 0; i < ni; i++)
                    if (strcmp(imago_gnd_image_name(g, i), tok) == 0) {
                        v = (long long)i;
                        break;
                    }
                if (v < 0) {
                    rc = imago_error_set(err, IMAGO_ERR_FORMAT, "%s:%zu: unknown image '%s'", path,
                                         q + 1, tok);
                    break;
                }
            }
            row[n++] = v;
        }
        if (rc == 0 && n == 0) {
            free(row);
            continue;
        }
        if (rc == 0 && q == 0) {
            width = n;
            ranks = imago_xmalloc((nq ? nq : 1) * width * sizeof *ranks);
        }
        if (rc == 0 && (n != width || q >= nq))
            rc = imago_error_set(err, IMAGO_ERR_FORMAT,
                                 "%s:%zu: every line must rank the same number of images, "
                                 "one line per query (%zu)",
                                 path, q + 1, nq);
        if (rc == 0)
            memcpy(ranks + q++ * width, row, width * sizeof *row);
        free(row);
    }
    free(line);
    fclose(f);
    if (rc == 0 && q != nq)
        rc = imago_error_set(err, IMAGO_ERR_FORMAT, "%s: %zu lines for %zu queries", path, q, nq);
    if (rc) {
        free(ranks);
        return rc;
    }
    *out = ranks;
    *nr = width;
    return 0;
}

static int parse_pair(const char *s, int max, int *a, double *b)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*end != ',' || v < 1 || v > max)
        return -1;
    double x = strtod(end + 1, &end);
    if (*end || !(x >= 0))
        return -1;
    *a = (int)v;
    *b = x;
    return 0;
}

int imago_cmd_eval(int argc, char **argv)
{
    const char *gnd_path = NULL, *ranks_path = NULL, *db_path = NULL, *q_path = NULL;
    const char *protocol = "all";
    int json = 0;
    imago_eval_rank_params rp = imago_eval_rank_params_default();
    imago_whiten_params wp = imago_whiten_params_default();
    int whiten = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--json") == 0) {
            json = 1;
            continue;
        }
        if (strcmp(a, "--whiten-force") == 0) {
            wp.force = 1;
            continue;
        }
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(usage, stdout);
            return IMAGO_EXIT_OK;
        }
        if (!v) {
            fprintf(stderr, "imago eval: %s needs a value\n%s", a, usage);
            return IMAGO_EXIT_USAGE;
        }
        i++;
        if (strcmp(a, "--gnd") == 0)
            gnd_path = v;
        else if (strcmp(a, "--ranks") == 0)
            ranks_path = v;
        else if (strcmp(a, "--db") == 0)
            db_path = v;
        else if (strcmp(a, "--queries") == 0)
            q_path = v;
        else if (strcmp(a, "--protocol") == 0)
            protocol = v;
        else if (strcmp(a, "--dba") == 0) {
            if (parse_pair(v, IMAGO_DBA_K_MAX, &rp.dba_k, &rp.dba_beta)) {
                fprintf(stderr, "imago eval: --dba wants K,BETA (e.g. 2,1)\n");
                return IMAGO_EXIT_USAGE;
            }
            rp.dba = 1;
        } else if (strcmp(a, "--qe") == 0) {
            if (parse_pair(v, IMAGO_QE_K_MAX, &rp.qe_n, &rp.qe_alpha)) {
                fprintf(stderr, "imago eval: --qe wants N,ALPHA (e.g. 2,0)\n");
                return IMAGO_EXIT_USAGE;
            }
            rp.qe = 1;
        } else if (strcmp(a, "--whiten") == 0) {
            char *end;
            long d = strtol(v, &end, 10);
            double pw = *end == ',' ? strtod(end + 1, &end) : -1;
            if (*end || end == v || d < 0 || d > 65536 || !(pw >= 0) || pw > 1) {
                fprintf(stderr, "imago eval: --whiten wants DIM,POWER (e.g. 64,0.25; DIM 0 = "
                                "all components)\n");
                return IMAGO_EXIT_USAGE;
            }
            wp.dim = (int)d;
            wp.power = pw;
            whiten = 1;
        } else {
            fprintf(stderr, "imago eval: unknown option %s\n%s", a, usage);
            return IMAGO_EXIT_USAGE;
        }
    }
    int want[3] = {1, 1, 1};
    if (strcmp(protocol, "all") != 0) {
        want[0] = strcmp(protocol, "easy") == 0;
        want[1] = strcmp(protocol, "medium") == 0;
        want[2] = strcmp(protocol, "hard") == 0;
        if (!want[0] && !want[1] && !want[2]) {
            fprintf(stderr, "imago eval: --protocol must be easy, medium, hard or all\n");
            return IMAGO_EXIT_USAGE;
        }
    }
    if (!gnd_path || (!ranks_path == !(db_path && q_path)) || (ranks_path && (db_path || q_path))) {
        fputs(usage, stderr);
        return IMAGO_EXIT_USAGE;
    }
    if (ranks_path && (rp.dba || rp.qe || whiten)) {
        fprintf(stderr,
                "imago eval: --dba / --qe / --whiten apply to --db/--queries, not to --ranks\n");
        return IMAGO_EXIT_USAGE;
    }
    imago_error err;
    imago_error_clear(&err);
    imago_gnd *g = NULL;
    int64_t *ranks = NULL;
    size_t nr = 0;
    int rc = imago_gnd_load(gnd_path, &g, &err);
    size_t nq = g ? imago_gnd_n_queries(g) : 0, ni = g ? imago_gnd_n_images(g) : 0;
    if (rc == 0 && ranks_path) {
        size_t pl = strlen(ranks_path);
        if (pl > 4 && strcmp(ranks_path + pl - 4, ".npy") == 0) {
            npy a = {{0}, 0, 0, NULL};
            rc = npy_read(ranks_path, &a, &err);
            if (rc == 0 && (a.rows != nq || a.dtype[1] != 'i'))
                rc = imago_error_set(&err, IMAGO_ERR_FORMAT,
                                     "%s: want an integer array with one row per query (%zu)",
                                     ranks_path, nq);
            if (rc == 0) {
                nr = a.cols;
                ranks = imago_xmalloc((nq * nr + 1) * sizeof *ranks);
                for (size_t i = 0; i < nq * nr; i++)
                    ranks[i] = a.dtype[2] == '8' ? ((int64_t *)a.data)[i] : ((int32_t *)a.data)[i];
            }
            free(a.data);
        } else {
            rc = ranks_text(ranks_path, g, &ranks, &nr, &err);
        }
    } else if (rc == 0) {
        npy db = {{0}, 0, 0, NULL}, qs = {{0}, 0, 0, NULL};
        rc = npy_read(db_path, &db, &err);
        if (rc == 0)
            rc = npy_read(q_path, &qs, &err);
        if (rc == 0 && (strcmp(db.dtype, "<f4") || strcmp(qs.dtype, "<f4") || db.cols != qs.cols))
            rc = imago_error_set(&err, IMAGO_ERR_FORMAT,
                                 "--db and --queries must be float32 with the same width");
        if (rc == 0 && (db.rows != ni || qs.rows != nq))
            rc = imago_error_set(&err, IMAGO_ERR_FORMAT,
                                 "--db has %zu rows for %zu images, --queries %zu for %zu "
                                 "queries (rows in imlist / qimlist order)",
                                 db.rows, ni, qs.rows, nq);
        size_t dim = db.cols;
        if (rc == 0 && whiten) {
            imago_whiten *w = NULL;
            rc = imago_whiten_learn(db.data, ni, (int)db.cols, &wp, &w, &err);
            imago_whiten_info wi;
            float *wdb = NULL, *wq = NULL;
            if (rc == 0) {
                imago_whiten_get_info(w, &wi);
                dim = (size_t)wi.dim;
                wdb = imago_xmalloc((ni ? ni : 1) * dim * sizeof *wdb);
                wq = imago_xmalloc((nq ? nq : 1) * dim * sizeof *wq);
                rc = imago_whiten_apply(w, db.data, ni, wdb, &err);
            }
            if (rc == 0)
                rc = imago_whiten_apply(w, qs.data, nq, wq, &err);
            if (rc == 0 && !json)
                fprintf(stderr,
                        "whitening learned from the %zu database rows: %d -> %d dims, "
                        "power %g\n",
                        ni, wi.dim_in, wi.dim, wi.power);
            imago_whiten_free(w);
            free(db.data);
            free(qs.data);
            db.data = wdb;
            qs.data = wq;
        }
        if (rc == 0) {
            nr = ni;
            ranks = imago_xmalloc((nq * nr + 1) * sizeof *ranks);
            double t0 = imago_now_s();
            rc = imago_eval_rank(db.data, ni, qs.data, nq, (int)dim, nr, &rp, ranks, &err);
            if (rc == 0 && !json)
                fprintf(stderr, "ranked %zu queries over %zu images (dim %zu) in %.2f s\n", nq, ni,
                        dim, imago_now_s() - t0);
        }
        free(db.data);
        free(qs.data);
    }
    static const char *names[3] = {"easy", "medium", "hard"};
    imago_eval_result res[3];
    for (int p = 0; rc == 0 && p < 3; p++)
        if (want[p])
            rc = imago_eval_compute(g, (imago_eval_protocol)p, ranks, nq, nr, &res[p], &err);
    if (rc) {
        fprintf(stderr, "imago eval: %s\n", err.msg);
        free(ranks);
        imago_gnd_free(g);
        return IMAGO_EXIT_FAILURE;
    }
    if (json) {
        printf("{");
        int first = 1;
        for (int p = 0; p < 3; p++) {
            if (!want[p])
                continue;
            printf("%s\"%s\": {\"map\": %.4f, \"mp@1\": %.4f, \"mp@5\": %.4f, \"mp@10\": %.4f, "
                   "\"queries\": %d}",
                   first ? "" : ", ", names[p], 100 * res[p].map, 100 * res[p].mp[0],
                   100 * res[p].mp[1], 100 * res[p].mp[2], res[p].n_evaluated);
            first = 0;
        }
        printf("}\n");
    } else {
        printf("%-8s %7s %7s %7s %7s %8s\n", "protocol", "mAP", "mP@1", "mP@5", "mP@10", "queries");
        for (int p = 0; p < 3; p++)
            if (want[p])
                printf("%-8s %7.2f %7.2f %7.2f %7.2f %8d\n", names[p], 100 * res[p].map,
                       100 * res[p].mp[0], 100 * res[p].mp[1], 100 * res[p].mp[2],
                       res[p].n_evaluated);
    }
    free(ranks);
    imago_gnd_free(g);
    return IMAGO_EXIT_OK;
}
