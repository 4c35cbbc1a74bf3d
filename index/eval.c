/* index/eval.c: the revisited Oxford/Paris evaluation (Radenovic et al.
 * 2018, revisitop's compute_map): per protocol positives and junk, junk
 * removed from the ranking before AP, trapezoidal AP, precision at
 * {1, 5, 10} with revisitop's kq = min(max(pos), k), and queries without
 * positives skipped in the means. Ground truth from the JSON that
 * tools/gnd_to_json.py writes from the official gnd_*.pkl.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "index.h"

typedef struct gnd_q {
    int64_t *easy, *hard, *junk;
    size_t n_easy, n_hard, n_junk;
    double bbx[4];
    int has_bbx;
} gnd_q;

struct imago_gnd {
    char **imlist, **qimlist;
    size_t n_im, n_q;
    gnd_q *q;
};

void imago_gnd_free(imago_gnd *g)
{
    if (!g)
        return;
    for (size_t i = 0; i < g->n_im; i++)
        free(g->imlist[i]);
    for (size_t i = 0; i < g->n_q; i++) {
        free(g->qimlist[i]);
        free(g->q[i].easy);
        free(g->q[i].hard);
        free(g->q[i].junk);
    }
    free(g->imlist);
    free(g->qimlist);
    free(g->q);
    free(g);
}

static int str_list(json_t *a, const char *name, char ***out, size_t *n, imago_error *err)
{
    if (!json_is_array(a))
        return imago_error_set(err, IMAGO_ERR_FORMAT, "gnd: '%s' must be an array", name);
    size_t m = json_array_size(a);
    char **v = imago_xcalloc(m ? m : 1, sizeof *v);
    for (size_t i = 0; i < m; i++) {
        json_t *s = json_array_get(a, i);
        if (!json_is_string(s)) {
            for (size_t j = 0; j < i; j++)
                free(v[j]);
            free(v);
            return imago_error_set(err, IMAGO_ERR_FORMAT, "gnd: %s[%zu] is not a string", name, i);
        }
        v[i] = imago_xstrdup(json_string_value(s));
    }
    *out = v;
    *n = m;
    return 0;
}

static int idx_list(json_t *obj, const char *key, size_t q, size_t n_im, int64_t **out, size_t *n,
                    imago_error *err)
{
    json_t *a = json_object_get(obj, key);
    *out = NULL;
    *n = 0;
    if (!a)
        return 0; /* revisitop treats a missing list as empty */
    if (!json_is_array(a))
        return imago_error_set(err, IMAGO_ERR_FORMAT, "gnd[%zu].%s must be an array", q, key);
    size_t m = json_array_size(a);
    int64_t *v = imago_xmalloc((m ? m : 1) * sizeof *v);
    for (size_t i = 0; i < m; i++) {
        json_t *e = json_array_get(a, i);
        if (!json_is_integer(e) || json_integer_value(e) < 0 ||
            (size_t)json_integer_value(e) >= n_im) {
            free(v);
            return imago_error_set(err, IMAGO_ERR_FORMAT,
                                   "gnd[%zu].%s[%zu] is not an index into imlist", q, key, i);
        }
        v[i] = json_integer_value(e);
    }
    *out = v;
    *n = m;
    return 0;
}

static int gnd_from_json(json_t *root, imago_gnd **out, imago_error *err)
{
    if (!json_is_object(root))
        return imago_error_set(err, IMAGO_ERR_FORMAT, "gnd: top level must be an object");
    imago_gnd *g = imago_xcalloc(1, sizeof *g);
    int rc = str_list(json_object_get(root, "imlist"), "imlist", &g->imlist, &g->n_im, err);
    if (rc == 0)
        rc = str_list(json_object_get(root, "qimlist"), "qimlist", &g->qimlist, &g->n_q, err);
    json_t *ga = json_object_get(root, "gnd");
    if (rc == 0 && (!json_is_array(ga) || json_array_size(ga) != g->n_q))
        rc = imago_error_set(err, IMAGO_ERR_FORMAT,
                             "gnd: 'gnd' must be an array with one entry per query (%zu)", g->n_q);
    if (rc) {
        imago_gnd_free(g);
        return rc;
    }
    g->q = imago_xcalloc(g->n_q ? g->n_q : 1, sizeof *g->q);
    for (size_t q = 0; rc == 0 && q < g->n_q; q++) {
        json_t *e = json_array_get(ga, q);
        if (!json_is_object(e)) {
            rc = imago_error_set(err, IMAGO_ERR_FORMAT, "gnd[%zu] must be an object", q);
            break;
        }
        gnd_q *gq = &g->q[q];
        rc = idx_list(e, "easy", q, g->n_im, &gq->easy, &gq->n_easy, err);
        if (rc == 0)
            rc = idx_list(e, "hard", q, g->n_im, &gq->hard, &gq->n_hard, err);
        if (rc == 0)
            rc = idx_list(e, "junk", q, g->n_im, &gq->junk, &gq->n_junk, err);
        json_t *b = json_object_get(e, "bbx");
        if (rc == 0 && json_is_array(b) && json_array_size(b) == 4) {
            gq->has_bbx = 1;
            for (int i = 0; i < 4; i++) {
                json_t *x = json_array_get(b, (size_t)i);
                if (!json_is_number(x)) {
                    gq->has_bbx = 0;
                    break;
                }
                gq->bbx[i] = json_number_value(x);
            }
        }
    }
    if (rc) {
        imago_gnd_free(g);
        return rc;
    }
    *out = g;
    return 0;
}

int imago_gnd_parse(const char *text, size_t len, imago_gnd **out, imago_error *err)
{
    json_error_t je;
    json_t *root = json_loadb(text, len, 0, &je);
    if (!root)
        return imago_error_set(err, IMAGO_ERR_FORMAT, "gnd: line %d: %s", je.line, je.text);
    int rc = gnd_from_json(root, out, err);
    json_decref(root);
    return rc;
}

int imago_gnd_load(const char *path, imago_gnd **out, imago_error *err)
{
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root)
        return imago_error_set(err, IMAGO_ERR_FORMAT, "gnd %s: line %d: %s", path, je.line,
                               je.text);
    int rc = gnd_from_json(root, out, err);
    json_decref(root);
    if (rc)
        imago_error_prefix(err, "%s", path);
    return rc;
}

size_t imago_gnd_n_images(const imago_gnd *g)
{
    return g->n_im;
}
size_t imago_gnd_n_queries(const imago_gnd *g)
{
    return g->n_q;
}
const char *imago_gnd_image_name(const imago_gnd *g, size_t i)
{
    return i < g->n_im ? g->imlist[i] : NULL;
}
const char *imago_gnd_query_name(const imago_gnd *g, size_t q)
{
    return q < g->n_q ? g->qimlist[q] : NULL;
}

int imago_gnd_query_bbox(const imago_gnd *g, size_t q, double bbox[4])
{
    if (q >= g->n_q || !g->q[q].has_bbx)
        return IMAGO_ERR_NOT_FOUND;
    memcpy(bbox, g->q[q].bbx, sizeof g->q[q].bbx);
    return 0;
}

double imago_eval_ap(const int64_t *pos, size_t n_pos, size_t npos)
{
    double ap = 0, recall_step = 1.0 / (double)npos;
    for (size_t j = 0; j < n_pos; j++) {
        double rank = (double)pos[j];
        double p0 = pos[j] == 0 ? 1.0 : (double)j / rank;
        double p1 = (double)(j + 1) / (rank + 1);
        ap += (p0 + p1) * recall_step / 2.0;
    }
    return ap;
}

/* membership marks: 1 = positive, 2 = junk */
int imago_eval_compute(const imago_gnd *g, imago_eval_protocol protocol, const int64_t *ranks,
                       size_t n_queries, size_t n_ranked, imago_eval_result *out, imago_error *err)
{
    if (n_queries != g->n_q)
        return imago_error_set(err, IMAGO_ERR_INVALID,
                               "eval: %zu ranked queries, the ground truth has %zu", n_queries,
                               g->n_q);
    if ((int)protocol < 0 || (int)protocol > 2)
        return imago_error_set(err, IMAGO_ERR_INVALID, "eval: bad protocol");
    static const int kappas[3] = {1, 5, 10};
    uint8_t *mark = imago_xcalloc(g->n_im ? g->n_im : 1, 1);
    int64_t *pos = imago_xmalloc((n_ranked ? n_ranked : 1) * sizeof *pos);
    double map = 0, pr[3] = {0, 0, 0};
    int n_eval = 0;
    int rc = 0;
    for (size_t q = 0; q < n_queries; q++) {
        const gnd_q *gq = &g->q[q];
        const int64_t *ok_a = NULL, *ok_b = NULL, *jk_a = gq->junk, *jk_b = NULL;
        size_t n_ok_a = 0, n_ok_b = 0, n_jk_a = gq->n_junk, n_jk_b = 0;
        switch (protocol) {
        case IMAGO_EVAL_EASY:
            ok_a = gq->easy, n_ok_a = gq->n_easy;
            jk_b = gq->hard, n_jk_b = gq->n_hard;
            break;
        case IMAGO_EVAL_MEDIUM:
            ok_a = gq->easy, n_ok_a = gq->n_easy;
            ok_b = gq->hard, n_ok_b = gq->n_hard;
            break;
        case IMAGO_EVAL_HARD:
            ok_a = gq->hard, n_ok_a = gq->n_hard;
            jk_b = gq->easy, n_jk_b = gq->n_easy;
            break;
        }
        size_t n_ok = n_ok_a + n_ok_b; /* len(qgnd), duplicates counted as revisitop does */
        if (n_ok == 0)
            continue;
        /* np.in1d tests each list separately: an image in both lists is both */
        for (size_t i = 0; i < n_jk_a; i++)
            mark[jk_a[i]] |= 2;
        for (size_t i = 0; i < n_jk_b; i++)
            mark[jk_b[i]] |= 2;
        for (size_t i = 0; i < n_ok_a; i++)
            mark[ok_a[i]] |= 1;
        for (size_t i = 0; i < n_ok_b; i++)
            mark[ok_b[i]] |= 1;
        /* positions of positives, shifted by the junk ranked before them */
        size_t np = 0;
        int64_t junk_before = 0;
        const int64_t *row = ranks + q * n_ranked;
        for (size_t r = 0; r < n_ranked; r++) {
            int64_t im = row[r];
            if (im < 0 || (size_t)im >= g->n_im) {
                rc = imago_error_set(err, IMAGO_ERR_INVALID,
                                     "eval: rank %zu of query %zu is %lld, not an image index", r,
                                     q, (long long)im);
                break;
            }
            if (mark[im] & 1)
                pos[np++] = (int64_t)r - junk_before;
            if (mark[im] & 2)
                junk_before++;
        }
        /* (a positive that is also junk is shifted only by junk strictly before
         * it, as revisitop's pos[ip] > junk[ij]: junk_before grows after use) */
        for (size_t i = 0; i < n_jk_a; i++)
            mark[jk_a[i]] = 0;
        for (size_t i = 0; i < n_jk_b; i++)
            mark[jk_b[i]] = 0;
        for (size_t i = 0; i < n_ok_a; i++)
            mark[ok_a[i]] = 0;
        for (size_t i = 0; i < n_ok_b; i++)
            mark[ok_b[i]] = 0;
        if (rc)
            break;
        double ap = imago_eval_ap(pos, np, n_ok);
        map += ap;
        n_eval++;
        int64_t maxpos = 0;
        for (size_t i = 0; i < np; i++)
            if (pos[i] + 1 > maxpos)
                maxpos = pos[i] + 1;
        for (int j = 0; j < 3; j++) {
            int64_t kq = maxpos < kappas[j] ? maxpos : kappas[j];
            if (kq == 0)
                continue; /* no positive ranked at all: precision 0 */
            int64_t cnt = 0;
            for (size_t i = 0; i < np; i++)
                if (pos[i] + 1 <= kq)
                    cnt++;
            pr[j] += (double)cnt / (double)kq;
        }
    }
    free(mark);
    free(pos);
    if (rc)
        return rc;
    out->n_evaluated = n_eval;
    out->map = n_eval ? map / n_eval : 0.0;
    for (int j = 0; j < 3; j++)
        out->mp[j] = n_eval ? pr[j] / n_eval : 0.0;
    return 0;
}
