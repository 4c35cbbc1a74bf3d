/* index eval: revisitop mAP / mP@{1,5,10} by hand on small cases, and equal
 * to a Python port of revisitop's compute_map (tools/revisitop_ref.py)
 * on random rankings with queries without positives and junk ranked before
 * positives, for the Easy / Medium / Hard protocols; tools/gnd_to_json.py
 * converts a .pkl ground truth that imago_gnd_load reads back. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "index/index.h"
#include "tap.h"

static unsigned long long rng = 0x9E3779B97F4A7C15ull;
static unsigned rnd(unsigned n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (unsigned)(rng % n);
}

static char dir[256];

int main(void)
{
    imago_log_setup(IMAGO_LOG_WARN, IMAGO_LOG_TEXT, stderr);
    /* AP by hand */
    int64_t p1[] = {0, 2};
    is_close(imago_eval_ap(p1, 2, 2), 0.5 + (0.5 + 2.0 / 3) / 4, 1e-12, "AP of ranks {0,2}");
    int64_t p2[] = {1};
    is_close(imago_eval_ap(p2, 1, 3), (0.0 + 0.5) / 2 / 3, 1e-12,
             "AP with positives missing from the ranking");

    const char *small =
        "{\"imlist\": [\"a\",\"b\",\"c\",\"d\",\"e\"], \"qimlist\": [\"q0\", \"q1\"],"
        " \"gnd\": [{\"easy\": [0, 1], \"hard\": [2], \"junk\": [3], \"bbx\": [1, 2, 30.5, 40]},"
        "           {\"easy\": [], \"hard\": [], \"junk\": [4]}]}";
    imago_gnd *g = NULL;
    imago_error err;
    imago_error_clear(&err);
    is_int(imago_gnd_parse(small, strlen(small), &g, &err), 0, "parse small gnd");
    if (g) {
        is_int(imago_gnd_n_queries(g), 2, "2 queries");
        is_str(imago_gnd_image_name(g, 4), "e", "image name");
        double bb[4];
        ok(imago_gnd_query_bbox(g, 0, bb) == 0 && bb[2] == 30.5, "bbox");
        int64_t ranks[10] = {3, 0, 4, 2, 1, 0, 1, 2, 3, 4};
        imago_eval_result r;
        is_int(imago_eval_compute(g, IMAGO_EVAL_MEDIUM, ranks, 2, 5, &r, &err), 0, "medium");
        is_close(r.map, 55.0 / 72.0, 1e-12, "medium mAP with junk ranked first (55/72)");
        is_int(r.n_evaluated, 1, "query without positives skipped");
        is_close(r.mp[0], 1.0, 1e-12, "mP@1");
        is_close(r.mp[1], 3.0 / 4.0, 1e-12, "mP@5 = 3 of kq = min(max pos 4, 5)");
        is_int(imago_eval_compute(g, IMAGO_EVAL_HARD, ranks, 2, 5, &r, &err), 0, "hard");
        /* hard: positive {2}, junk {3, 0, 1}: c at 3 - 2 junk before = 1 */
        is_close(r.map, (0.0 + 0.5) / 2, 1e-12, "hard mAP");
        int64_t badr[10] = {3, 0, 4, 2, 9, 0, 1, 2, 3, 4};
        imago_error_clear(&err);
        is_int(imago_eval_compute(g, IMAGO_EVAL_EASY, badr, 2, 5, &r, &err), IMAGO_ERR_INVALID,
               "rank outside imlist refused");
        imago_gnd_free(g);
    }
    g = NULL;
    imago_error_clear(&err);
    ok(imago_gnd_parse("{\"imlist\": [\"a\"], \"qimlist\": [\"q\"], \"gnd\": [{\"easy\": [3]}]}",
                       70, &g, &err) == IMAGO_ERR_FORMAT,
       "index outside imlist refused: %s", err.msg);

    const char *py = getenv("IMAGO_PYTHON");
    const char *src = getenv("IMAGO_SOURCE_ROOT");
    char chk[600];
    snprintf(chk, sizeof chk, "%s -c 'import numpy' 2>/dev/null", py ? py : "false");
    if (!py || !src || system(chk) != 0) {
        tap_skip(2, "no reference python with numpy (IMAGO_PYTHON)");
        return tap_done();
    }
    snprintf(dir, sizeof dir, "/tmp/imago_test_eval_XXXXXX");
    if (!mkdtemp(dir))
        tap_bail("mkdtemp");

    /* random ground truth and rankings */
    enum { NI = 300, NQ = 40 };
    json_t *root = json_object(), *im = json_array(), *qi = json_array(), *ga = json_array();
    for (int i = 0; i < NI; i++) {
        char b[16];
        snprintf(b, sizeof b, "im%d", i);
        json_array_append_new(im, json_string(b));
    }
    static int64_t ranks[NQ][NI];
    for (int q = 0; q < NQ; q++) {
        char b[16];
        snprintf(b, sizeof b, "q%d", q);
        json_array_append_new(qi, json_string(b));
        /* disjoint random sets; some queries have no easy or no hard at all */
        int perm[NI];
        for (int i = 0; i < NI; i++)
            perm[i] = i;
        for (int i = NI - 1; i > 0; i--) {
            int j = (int)rnd((unsigned)i + 1), t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
        }
        int ne = q % 5 == 0 ? 0 : 1 + (int)rnd(12);
        int nh = q % 7 == 0 ? 0 : (int)rnd(10);
        int nj = (int)rnd(15);
        json_t *e = json_array(), *h = json_array(), *j = json_array();
        int o = 0;
        for (int i = 0; i < ne; i++)
            json_array_append_new(e, json_integer(perm[o++]));
        for (int i = 0; i < nh; i++)
            json_array_append_new(h, json_integer(perm[o++]));
        for (int i = 0; i < nj; i++)
            json_array_append_new(j, json_integer(perm[o++]));
        json_t *gq = json_object();
        json_object_set_new(gq, "easy", e);
        json_object_set_new(gq, "hard", h);
        json_object_set_new(gq, "junk", j);
        json_array_append_new(ga, gq);
        /* ranking: a random permutation, with junk pulled to the front in
         * half of the queries so that junk precedes positives */
        for (int i = 0; i < NI; i++)
            ranks[q][i] = i;
        for (int i = NI - 1; i > 0; i--) {
            int jj = (int)rnd((unsigned)i + 1);
            int64_t t = ranks[q][i];
            ranks[q][i] = ranks[q][jj];
            ranks[q][jj] = t;
        }
        if (q % 2 == 0) {
            for (int i = 0; i < nj; i++) {
                int64_t want = perm[ne + nh + i];
                for (int r = 0; r < NI; r++)
                    if (ranks[q][r] == want) {
                        int64_t t = ranks[q][i * 3];
                        ranks[q][i * 3] = want;
                        ranks[q][r] = t;
                        break;
                    }
            }
        }
    }
    json_object_set_new(root, "imlist", im);
    json_object_set_new(root, "qimlist", qi);
    json_object_set_new(root, "gnd", ga);
    char gpath[400], rpath[400], opath[400];
    snprintf(gpath, sizeof gpath, "%s/gnd.json", dir);
    snprintf(rpath, sizeof rpath, "%s/ranks.i64", dir);
    snprintf(opath, sizeof opath, "%s/ref.json", dir);
    json_dump_file(root, gpath, 0);
    json_decref(root);
    FILE *f = fopen(rpath, "wb");
    fwrite(ranks, sizeof ranks, 1, f);
    fclose(f);

    char cmd[2000];
    snprintf(cmd, sizeof cmd, "%s %s/tools/revisitop_ref.py %s %s %d %d %s", py, src, gpath,
             rpath, NQ, NI, opath);
    int prc = system(cmd);
    is_int(prc, 0, "python revisitop port ran");
    json_error_t je;
    json_t *ref = json_load_file(opath, 0, &je);
    g = NULL;
    imago_error_clear(&err);
    is_int(imago_gnd_load(gpath, &g, &err), 0, "load random gnd %s", err.msg);
    const char *names[3] = {"easy", "medium", "hard"};
    for (int p = 0; p < 3 && ref && g; p++) {
        imago_eval_result r;
        imago_error_clear(&err);
        int rc = imago_eval_compute(g, (imago_eval_protocol)p, &ranks[0][0], NQ, NI, &r, &err);
        json_t *o = json_object_get(ref, names[p]);
        double want = json_real_value(json_object_get(o, "map"));
        is_int(rc, 0, "%s computed", names[p]);
        is_close(r.map, want, 1e-9, "%s mAP equals revisitop's compute_map", names[p]);
        for (int k = 0; k < 3; k++)
            is_close(r.mp[k], json_real_value(json_array_get(json_object_get(o, "mp"), (size_t)k)),
                     1e-9, "%s mP@%d equals revisitop", names[p],
                     k == 0   ? 1
                     : k == 1 ? 5
                              : 10);
    }
    json_decref(ref);
    imago_gnd_free(g);

    /* gnd_to_json.py on a pickle shaped like the official files (numpy arrays) */
    char pkl[400], js[400];
    snprintf(pkl, sizeof pkl, "%s/gnd_test.pkl", dir);
    snprintf(js, sizeof js, "%s/gnd_test.json", dir);
    snprintf(cmd, sizeof cmd,
             "%s -c \"import pickle, numpy as np; pickle.dump({'imlist': ['a','b','c'], "
             "'qimlist': ['q'], 'gnd': [{'easy': np.array([0, 2]), 'hard': np.array([], "
             "dtype=np.int64), 'junk': np.array([1]), 'bbx': np.array([1.5, 2, 3, 4])}]}, "
             "open('%s', 'wb'))\" && %s %s/tools/gnd_to_json.py %s %s 2>/dev/null",
             py, pkl, py, src, pkl, js);
    is_int(system(cmd), 0, "gnd_to_json.py converts a pickle");
    g = NULL;
    imago_error_clear(&err);
    is_int(imago_gnd_load(js, &g, &err), 0, "converted JSON loads %s", err.msg);
    if (g) {
        double bb[4];
        ok(imago_gnd_query_bbox(g, 0, bb) == 0 && bb[0] == 1.5, "bbx converted");
        int64_t rk[3] = {1, 2, 0};
        imago_eval_result r;
        imago_eval_compute(g, IMAGO_EVAL_EASY, rk, 1, 3, &r, &err);
        /* positives {0,2}, junk {1}: c at 1-1 = 0, a at 2-1 = 1: AP 1 */
        is_close(r.map, 1.0, 1e-12, "converted ground truth evaluates");
        imago_gnd_free(g);
    }
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        tap_diag("cleanup failed");
    return tap_done();
}
