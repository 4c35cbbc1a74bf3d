/* tools/bench_index.c: the C side of tools/bench_index (the script drives it
 * and runs the python3-faiss peer). Subcommands, all on a collection dir:
 *
 *   bench_index build  DIR FACTORY DATA.f32 N DIM [TRAIN_N] [BATCH]
 *       adds N vectors (raw float32 file) through imago_index_add in batches;
 *       when TRAIN_N > 0, reindexes after TRAIN_N (training IVF/PQ from the
 *       store) before adding the rest; writes a snapshot. Prints JSON.
 *   bench_index search DIR QUERIES.f32 NQ DIM K [NPROBE] [EF] OUT.i64 [BATCH] [LAT.f64]
 *       single-query (or BATCH-query) searches; p50/p99 latency; result ids;
 *       LAT.f64 receives each search's seconds in query order.
 *   bench_index dba    DIR DIM
 *       full DBA pass (reindex with DBA on); prints seconds.
 * IMAGO_BENCH_PRECISION=fp16|bf16 selects the Flat storage precision.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "index/index.h"

static float *read_f32(const char *path, size_t count)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    float *v = NULL;
    if (imago_alloc_array(count, sizeof(float), 0, (void **)&v, NULL) == 0 &&
        fread(v, sizeof(float), count, f) != count) {
        imago_free_aligned(v);
        v = NULL;
    }
    fclose(f);
    return v;
}

static imago_index *open_ix(const char *dir, const char *factory, int dim, int force)
{
    imago_index_params p = imago_index_params_default();
    p.data_dir = dir;
    p.model_fingerprint = "bench";
    p.dim = dim;
    p.factory = factory;
    p.force_factory = force;
    p.snapshot_interval = 0;
    /* Flat storage precision (fp32 | fp16 | bf16); build and search must agree */
    const char *prec = getenv("IMAGO_BENCH_PRECISION");
    if (prec && *prec)
        p.precision = prec;
    imago_index *ix = NULL;
    imago_error err;
    imago_error_clear(&err);
    if (imago_index_open(&p, &ix, &err)) {
        fprintf(stderr, "open: %s\n", err.msg);
        exit(1);
    }
    return ix;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Progress on stderr (the script passes it through; stdout is the JSON line):
 * one line per 100k vectors, so a long build shows it is moving. */
static int add_range(imago_index *ix, const float *X, size_t from, size_t to, int dim, size_t batch)
{
    const size_t every = 100000;
    double t0 = imago_now_s();
    size_t next = from + every;
    imago_index_item *it = calloc(batch, sizeof *it);
    char(*names)[24] = calloc(batch, 24);
    imago_error err;
    imago_error_clear(&err);
    for (size_t b = from; b < to; b += batch) {
        size_t m = to - b < batch ? to - b : batch;
        for (size_t i = 0; i < m; i++) {
            snprintf(names[i], 24, "v%zu", b + i);
            it[i].external_id = names[i];
            it[i].vector = X + (b + i) * (size_t)dim;
        }
        if (imago_index_add(ix, it, m, NULL, &err)) {
            fprintf(stderr, "add: %s\n", err.msg);
            return 1;
        }
        if (b + m >= next || (b + m == to && to - from >= every)) {
            double dt = imago_now_s() - t0;
            fprintf(stderr, "#   added %zu/%zu (%.0f vec/s over this range, %.0f s)\n", b + m, to,
                    (double)(b + m - from) / (dt > 0 ? dt : 1e-9), dt);
            while (next <= b + m)
                next += every;
        }
    }
    free(it);
    free(names);
    return 0;
}

int main(int argc, char **argv)
{
    /* the DBA pass logs its steps (load, kNN + DBA, build) at INFO */
    int dba = argc > 1 && strcmp(argv[1], "dba") == 0;
    imago_log_setup(dba ? IMAGO_LOG_INFO : IMAGO_LOG_WARN, IMAGO_LOG_TEXT, stderr);
    if (argc >= 6 && strcmp(argv[1], "build") == 0) {
        const char *dir = argv[2], *factory = argv[3];
        size_t n = strtoull(argv[5], NULL, 10);
        int dim = atoi(argv[6]);
        size_t train_n = argc > 7 ? strtoull(argv[7], NULL, 10) : 0;
        size_t batch = argc > 8 ? strtoull(argv[8], NULL, 10) : 1000;
        float *X = read_f32(argv[4], n * (size_t)dim);
        if (!X) {
            fprintf(stderr, "cannot read %s\n", argv[4]);
            return 1;
        }
        imago_index *ix = open_ix(dir, factory, dim, 1);
        double t0 = imago_now_s(), t_train = 0;
        size_t first = train_n > 0 && train_n < n ? train_n : 0;
        if (first) {
            if (add_range(ix, X, 0, first, dim, batch))
                return 1;
            double tr = imago_now_s();
            fprintf(stderr, "#   reindex (training '%s' on the %zu stored vectors)...\n", factory,
                    first);
            imago_error err;
            imago_error_clear(&err);
            if (imago_index_reindex(ix, NULL, &err)) {
                fprintf(stderr, "reindex: %s\n", err.msg);
                return 1;
            }
            t_train = imago_now_s() - tr;
            fprintf(stderr, "#   reindex done in %.1f s\n", t_train);
        }
        double ta = imago_now_s();
        if (add_range(ix, X, first, n, dim, batch))
            return 1;
        double t_add = imago_now_s() - ta;
        double ts = imago_now_s();
        imago_error err;
        imago_error_clear(&err);
        if (imago_index_snapshot(ix, &err)) {
            fprintf(stderr, "snapshot: %s\n", err.msg);
            return 1;
        }
        double t_snap = imago_now_s() - ts;
        imago_index_stats st;
        imago_index_stats_get(ix, &st, NULL);
        printf("{\"n\": %zu, \"type\": \"%s\", \"total_s\": %.3f, \"train_reindex_s\": %.3f, "
               "\"add_s\": %.3f, \"add_per_s\": %.1f, \"snapshot_s\": %.3f}\n",
               n, st.type, imago_now_s() - t0, t_train, t_add,
               (double)(n - first) / (t_add > 0 ? t_add : 1e-9), t_snap);
        imago_index_free(ix);
        imago_free_aligned(X);
        return 0;
    }
    if (argc >= 10 && strcmp(argv[1], "search") == 0) {
        const char *dir = argv[2];
        size_t nq = strtoull(argv[4], NULL, 10);
        int dim = atoi(argv[5]), k = atoi(argv[6]);
        int nprobe = atoi(argv[7]), ef = atoi(argv[8]);
        const char *out = argv[9];
        size_t batch = argc > 10 ? strtoull(argv[10], NULL, 10) : 1;
        float *Q = read_f32(argv[3], nq * (size_t)dim);
        if (!Q)
            return 1;
        double t0 = imago_now_s();
        imago_index *ix = open_ix(dir, "Flat", dim, 0);
        double t_open = imago_now_s() - t0;
        imago_index_search_params sp = imago_index_search_params_default();
        sp.k = k;
        sp.nprobe = nprobe;
        sp.ef_search = ef;
        imago_index_hit *h = malloc(batch * (size_t)k * sizeof *h);
        int64_t *ids = malloc(nq * (size_t)k * sizeof *ids);
        double *lat = malloc(nq * sizeof *lat);
        imago_error err;
        imago_error_clear(&err);
        /* warm-up */
        imago_index_search(ix, Q, 1, &sp, h, NULL, NULL, &err);
        size_t nb = 0;
        double tt = imago_now_s();
        for (size_t b = 0; b < nq; b += batch) {
            size_t m = nq - b < batch ? nq - b : batch;
            double s = imago_now_s();
            if (imago_index_search(ix, Q + b * (size_t)dim, m, &sp, h, NULL, NULL, &err)) {
                fprintf(stderr, "search: %s\n", err.msg);
                return 1;
            }
            lat[nb++] = imago_now_s() - s;
            for (size_t i = 0; i < m * (size_t)k; i++)
                ids[b * (size_t)k + i] = h[i].id;
        }
        double total = imago_now_s() - tt;
        if (argc > 11) {
            FILE *lf = fopen(argv[11], "wb");
            if (!lf || fwrite(lat, sizeof *lat, nb, lf) != nb)
                return 1;
            fclose(lf);
        }
        qsort(lat, nb, sizeof *lat, cmp_d);
        FILE *f = fopen(out, "wb");
        if (!f || fwrite(ids, sizeof *ids, nq * (size_t)k, f) != nq * (size_t)k)
            return 1;
        fclose(f);
        imago_index_stats st;
        imago_index_stats_get(ix, &st, NULL);
        printf("{\"type\": \"%s\", \"open_s\": %.3f, \"nq\": %zu, \"batch\": %zu, "
               "\"p50_ms\": %.4f, \"p99_ms\": %.4f, \"qps\": %.1f}\n",
               st.type, t_open, nq, batch, 1e3 * lat[nb / 2],
               1e3 * lat[(size_t)(0.99 * (double)(nb - 1))], (double)nq / total);
        imago_index_free(ix);
        return 0;
    }
    if (argc >= 4 && strcmp(argv[1], "dba") == 0) {
        imago_index *ix = open_ix(argv[2], "Flat", atoi(argv[3]), 0);
        imago_index_reindex_params rp = imago_index_reindex_params_default();
        rp.dba = 1;
        imago_error err;
        imago_error_clear(&err);
        double t0 = imago_now_s();
        if (imago_index_reindex(ix, &rp, &err)) {
            fprintf(stderr, "reindex: %s\n", err.msg);
            return 1;
        }
        printf("{\"dba_reindex_s\": %.3f}\n", imago_now_s() - t0);
        imago_index_free(ix);
        return 0;
    }
    fprintf(stderr, "usage: see the comment at the top of tools/bench_index.c\n");
    return 2;
}
