/* index/core.c: the in-memory search index ("core"): positions 0..n-1 hold
 * vectors (augmented when DBA is on) with their image ids and a tombstone
 * bitmap. Flat keeps one contiguous fp32/fp16/bf16 array scored by flat.c;
 * the other types are a FAISS index built from the factory string whose
 * labels are the positions (imago keeps the position -> id map, so deletes
 * are tombstones filtered with an IDSelector and no IDMap is needed).
 * Also the snapshot file format (atomic write, checked read).
 * A core is mutated only by the index writer; see the DESIGN note on
 * struct imago_index (index_int.h) for locking.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <omp.h>
#include <unistd.h>

#include <faiss/c_api/IndexIVF_c.h>
#include <faiss/c_api/Index_c.h>
#include <faiss/c_api/error_c.h>
#include <faiss/c_api/index_factory_c.h>

#include "core.h"
#include "faiss_ext.h"

#define MOD "index"

static int faiss_err(int rc, imago_error *err, const char *what)
{
    return imago_error_set(err, IMAGO_ERR_BACKEND, "faiss: %s: %s (code %d)", what,
                           faiss_get_last_error(), rc);
}

void ix_core_free(ix_core *c)
{
    if (!c)
        return;
    imago_free_aligned(c->vecs);
    free(c->ids);
    free(c->dead);
    free(c->pos_of);
    if (c->fidx)
        faiss_Index_free(c->fidx);
    pthread_rwlock_destroy(&c->ef_lock);
    imago_whiten_free(c->wh);
    free(c);
}

ix_core *ix_core_new(int dim, int prec, const char *factory)
{
    ix_core *c = imago_xcalloc(1, sizeof *c);
    c->dim = dim;
    c->prec = prec;
    snprintf(c->factory, sizeof c->factory, "%s", factory);
    c->kind = IX_CORE_FLAT;
    c->seq = 0;
    pthread_rwlock_init(&c->ef_lock, NULL);
    return c;
}

int ix_core_set_defaults(ix_core *c, int nprobe, int ef, imago_error *err)
{
    if (c->kind != IX_CORE_FAISS)
        return 0;
    FaissIndexIVF *ivf = faiss_IndexIVF_cast(c->fidx);
    if (ivf)
        faiss_IndexIVF_set_nprobe(ivf, (size_t)(nprobe > 0 ? nprobe : 1));
    if (c->family == 1) {
        int frc = imago_faiss_hnsw_set_ef(c->fidx, ef);
        if (frc)
            return faiss_err(frc, err, "set efSearch");
        c->ef_default = ef;
    }
    return 0;
}

int ix_factory_is_flat(const char *f)
{
    return strcmp(f, "Flat") == 0;
}

static int reserve(ix_core *c, size_t need, imago_error *err)
{
    if (need <= c->cap)
        return 0;
    size_t cap = c->cap ? c->cap : 1024;
    while (cap < need)
        cap *= 2;
    if (c->kind == IX_CORE_FLAT) {
        void *nv = NULL;
        int rc = imago_alloc_array(cap, (size_t)c->dim * ix_prec_size(c->prec), 0, &nv, err);
        if (rc)
            return rc;
        if (c->n)
            memcpy(nv, c->vecs, c->n * (size_t)c->dim * ix_prec_size(c->prec));
        imago_free_aligned(c->vecs);
        c->vecs = nv;
    }
    c->ids = imago_xrealloc(c->ids, cap * sizeof *c->ids);
    size_t old_bytes = (c->cap + 7) / 8, new_bytes = (cap + 7) / 8;
    c->dead = imago_xrealloc(c->dead, new_bytes);
    memset(c->dead + old_bytes, 0, new_bytes - old_bytes);
    c->cap = cap;
    return 0;
}

static void pos_map_set(ix_core *c, int64_t id, int64_t pos)
{
    if ((size_t)id >= c->pos_cap) {
        size_t cap = c->pos_cap ? c->pos_cap : 1024;
        while (cap <= (size_t)id)
            cap *= 2;
        c->pos_of = imago_xrealloc(c->pos_of, cap * sizeof *c->pos_of);
        for (size_t i = c->pos_cap; i < cap; i++)
            c->pos_of[i] = -1;
        c->pos_cap = cap;
    }
    c->pos_of[id] = pos;
}

int64_t ix_core_pos(const ix_core *c, int64_t id)
{
    if (id < 0 || (size_t)id >= c->pos_cap)
        return -1;
    return c->pos_of[id];
}

void ix_core_tombstone(ix_core *c, int64_t id)
{
    int64_t pos = ix_core_pos(c, id);
    if (pos < 0)
        return;
    c->dead[pos >> 3] |= (uint8_t)(1u << (pos & 7));
    c->n_dead++;
    c->pos_of[id] = -1;
}

int ix_core_append(ix_core *c, const int64_t *ids, const float *vecs, size_t n, imago_error *err)
{
    if (n == 0)
        return 0;
    int rc = reserve(c, c->n + n, err);
    if (rc)
        return rc;
    if (c->kind == IX_CORE_FLAT) {
        size_t es = ix_prec_size(c->prec);
        ix_to_prec(vecs, c->prec, n * (size_t)c->dim, (char *)c->vecs + c->n * (size_t)c->dim * es);
    } else {
        if ((size_t)faiss_Index_ntotal(c->fidx) != c->n)
            return imago_error_set(err, IMAGO_ERR_INTERNAL, "faiss index out of step");
        /* HNSW insertion is OpenMP-parallel work; IVF assignment is BLAS
         * work that an OpenMP team only slows down (see ix_core_build) */
        int prev = omp_get_max_threads();
        if (c->family == 2)
            omp_set_num_threads(1);
        int frc = faiss_Index_add(c->fidx, (idx_t)n, vecs);
        if (c->family == 2)
            omp_set_num_threads(prev);
        if (frc)
            return faiss_err(frc, err, "add");
    }
    for (size_t i = 0; i < n; i++) {
        ix_core_tombstone(c, ids[i]); /* a replaced image: its old position dies */
        c->ids[c->n] = ids[i];
        pos_map_set(c, ids[i], (int64_t)c->n);
        c->n++;
    }
    return 0;
}

int ix_core_vector(const ix_core *c, int64_t pos, float *out, imago_error *err)
{
    if (pos < 0 || (size_t)pos >= c->n)
        return imago_error_set(err, IMAGO_ERR_INTERNAL, "bad position %lld", (long long)pos);
    if (c->kind == IX_CORE_FLAT) {
        ix_from_prec((const char *)c->vecs + (size_t)pos * c->dim * ix_prec_size(c->prec), c->prec,
                     (size_t)c->dim, out);
        return 0;
    }
    int frc = faiss_Index_reconstruct(c->fidx, pos, out);
    return frc ? faiss_err(frc, err, "reconstruct") : 0;
}

/* ---- building ------------------------------------------------------------ */

int ix_core_build(int dim, int prec, const char *factory, const int64_t *ids, const float *X,
                  size_t n, int nprobe, ix_core **out, imago_error *err)
{
    ix_core *c = ix_core_new(dim, prec, factory);
    int rc = 0;
    if (!ix_factory_is_flat(factory)) {
        FaissIndex *f = NULL;
        int frc = faiss_index_factory(&f, dim, factory, METRIC_INNER_PRODUCT);
        if (frc) {
            rc = imago_error_set(err, IMAGO_ERR_INVALID, "index type '%s': %s", factory,
                                 faiss_get_last_error());
            ix_core_free(c);
            return rc;
        }
        imago_faiss_no_polysemous_training(f);
        int trained = faiss_Index_is_trained(f);
        if (!trained && n > 0) {
            /* IVF/PQ training is BLAS-bound; an OpenMP team on top of OpenBLAS's
             * own threads only spins (measured 10x slower on 2 busy cores) */
            int prev = omp_get_max_threads();
            omp_set_num_threads(1);
            frc = faiss_Index_train(f, (idx_t)n, X);
            omp_set_num_threads(prev);
            if (frc == 0)
                trained = 1;
            else
                IMAGO_WARN(MOD,
                           "cannot train '%s' on %zu vectors (%s): using exact search until a "
                           "reindex with more vectors",
                           factory, n, faiss_get_last_error());
        } else if (!trained) {
            IMAGO_INFO(MOD, "'%s' needs training vectors: using exact search until a reindex",
                       factory);
        }
        if (trained) {
            FaissIndexIVF *ivf = faiss_IndexIVF_cast(f);
            if (ivf) {
                faiss_IndexIVF_set_nprobe(ivf, (size_t)(nprobe > 0 ? nprobe : 1));
                /* reconstruct() (for QE) needs the direct map */
                frc = faiss_IndexIVF_make_direct_map(ivf, 1);
                if (frc) {
                    rc = faiss_err(frc, err, "make_direct_map");
                    faiss_Index_free(f);
                    ix_core_free(c);
                    return rc;
                }
            }
            c->kind = IX_CORE_FAISS;
            c->fidx = f;
            c->family = imago_faiss_index_family(f);
        } else {
            faiss_Index_free(f);
            c->untrained = 1;
        }
    }
    rc = ix_core_append(c, ids, X, n, err);
    if (rc) {
        ix_core_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

/* ---- search -------------------------------------------------------------- */

typedef struct sel_ctx {
    const ix_core *c;
    const ix_filter *f;
} sel_ctx;

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static inline int pos_ok(const ix_core *c, const ix_filter *f, size_t pos)
{
    if (c->dead[pos >> 3] & (1u << (pos & 7)))
        return 0;
    if (!f)
        return 1;
    int64_t id = c->ids[pos];
    if (id == f->exclude_id)
        return 0;
    if (f->allow && !bsearch(&id, f->allow, f->n_allow, sizeof *f->allow, cmp_i64))
        return 0;
    if (f->fn && !f->fn(id, f->user))
        return 0;
    return 1;
}

static int sel_member(int64_t label, void *user)
{
    sel_ctx *s = user;
    if (label < 0 || (size_t)label >= s->c->n)
        return 0;
    return pos_ok(s->c, s->f, (size_t)label);
}

int ix_filter_active(const ix_filter *f)
{
    return f && (f->allow || f->fn || f->exclude_id >= 0);
}

static int search_flat(const ix_core *c, const float *q, size_t nq, int k, const ix_filter *f,
                       imago_index_hit *hits, int *counts, imago_error *err)
{
    const size_t n = c->n;
    float *scores = NULL;
    size_t cols = n ? n : 1;
    int rc = imago_alloc_array(cols, nq * sizeof(float), 0, (void **)&scores, err);
    if (rc)
        return rc;
    ix_scores_batch(c->vecs, c->prec, n, c->dim, q, nq, scores);
    float *hs = imago_xmalloc((size_t)k * sizeof *hs);
    int64_t *hk = imago_xmalloc((size_t)k * sizeof *hk);
    int filt = ix_filter_active(f);
    for (size_t j = 0; j < nq; j++) {
        ix_topk t;
        ix_topk_init(&t, k, hs, hk);
        if (nq == 1 && !filt && c->n_dead == 0) {
            for (size_t i = 0; i < n; i++)
                ix_topk_push(&t, scores[i], (int64_t)i);
        } else {
            for (size_t i = 0; i < n; i++) {
                float s = scores[i * nq + j];
                if (t.n == t.k && !(s > t.score[0]))
                    continue; /* cheap reject before the filters */
                if (pos_ok(c, filt ? f : NULL, i))
                    ix_topk_push(&t, s, (int64_t)i);
            }
        }
        ix_topk_sort(&t);
        imago_index_hit *h = hits + j * (size_t)k;
        for (int i = 0; i < k; i++) {
            h[i].id = i < t.n ? c->ids[t.key[i]] : -1;
            h[i].score = i < t.n ? t.score[i] : 0.0f;
        }
        if (counts)
            counts[j] = t.n;
    }
    free(hs);
    free(hk);
    imago_free_aligned(scores);
    return 0;
}

static int search_faiss(const ix_core *c, const float *q, size_t nq, int k, const ix_filter *f,
                        int nprobe, int ef, imago_index_hit *hits, int *counts, imago_error *err)
{
    sel_ctx sc = {c, f};
    FaissIDSelector *sel = NULL;
    void *bitmap_sel = NULL;
    int frc = 0;
    if (ix_filter_active(f)) {
        frc = imago_faiss_IDSelectorCallback_new(&sel, sel_member, &sc);
    } else if (c->n_dead) {
        FaissIDSelectorBitmap *bm = NULL;
        frc = faiss_IDSelectorBitmap_new(&bm, (c->n + 7) / 8, c->dead); /* n = bytes */
        if (frc == 0) {
            FaissIDSelectorNot *nt = NULL;
            frc = faiss_IDSelectorNot_new(&nt, (const FaissIDSelector *)bm);
            if (frc == 0)
                sel = (FaissIDSelector *)nt;
            else
                bitmap_sel = bm;
        }
    }
    if (frc) {
        imago_faiss_selector_free(bitmap_sel);
        return faiss_err(frc, err, "selector");
    }
    FaissSearchParameters *sp = NULL;
    if (c->family == 1)
        frc = imago_faiss_SearchParametersHNSW_new(&sp, sel, ef);
    else if (c->family == 2)
        frc = faiss_SearchParametersIVF_new_with((FaissSearchParametersIVF **)&sp, sel,
                                                 (size_t)(nprobe > 0 ? nprobe : 1), 0);
    else if (sel)
        frc = faiss_SearchParameters_new(&sp, sel);
    if (frc) {
        imago_faiss_selector_free(sel);
        return faiss_err(frc, err, "search parameters");
    }
    float *D = imago_xmalloc(nq * (size_t)k * sizeof *D);
    idx_t *L = imago_xmalloc(nq * (size_t)k * sizeof *L);
    int ef_override = c->family == 1 && ef > 0 && ef != c->ef_default;
    if (c->family == 1) {
        ix_core *mc = (ix_core *)c; /* the lock is the only mutable part */
        if (ef_override) {
            pthread_rwlock_wrlock(&mc->ef_lock);
            imago_faiss_hnsw_set_ef(mc->fidx, ef);
        } else {
            pthread_rwlock_rdlock(&mc->ef_lock);
        }
    }
    /* FAISS parallelises over queries: one query gains nothing from the
     * OpenMP team and pays its fork/join (milliseconds on a busy machine) */
    int prev_threads = omp_get_max_threads();
    if (nq == 1)
        omp_set_num_threads(1);
    if (sp)
        frc = faiss_Index_search_with_params(c->fidx, (idx_t)nq, q, k, sp, D, L);
    else
        frc = faiss_Index_search(c->fidx, (idx_t)nq, q, k, D, L);
    if (nq == 1)
        omp_set_num_threads(prev_threads);
    if (c->family == 1) {
        ix_core *mc = (ix_core *)c;
        if (ef_override)
            imago_faiss_hnsw_set_ef(mc->fidx, c->ef_default);
        pthread_rwlock_unlock(&mc->ef_lock);
    }
    faiss_SearchParameters_free(sp);
    imago_faiss_selector_free(sel);
    int rc = 0;
    if (frc)
        rc = faiss_err(frc, err, "search");
    for (size_t j = 0; rc == 0 && j < nq; j++) {
        int m = 0;
        imago_index_hit *h = hits + j * (size_t)k;
        for (int i = 0; i < k; i++) {
            idx_t l = L[j * (size_t)k + i];
            /* FAISS has already filtered; re-check covers an unfiltered IVF/PQ edge */
            if (l < 0 || (size_t)l >= c->n || !pos_ok(c, ix_filter_active(f) ? f : NULL, (size_t)l))
                continue;
            h[m].id = c->ids[l];
            h[m].score = D[j * (size_t)k + i];
            m++;
        }
        for (int i = m; i < k; i++) {
            h[i].id = -1;
            h[i].score = 0.0f;
        }
        if (counts)
            counts[j] = m;
    }
    free(D);
    free(L);
    return rc;
}

int ix_core_search(const ix_core *c, const float *q, size_t nq, int k, const ix_filter *f,
                   int nprobe, int ef, imago_index_hit *hits, int *counts, imago_error *err)
{
    if (c->kind == IX_CORE_FLAT)
        return search_flat(c, q, nq, k, f, hits, counts, err);
    return search_faiss(c, q, nq, k, f, nprobe, ef, hits, counts, err);
}

/* ---- snapshots ---------------------------------------------------------- */

#define SNAP_MAGIC "IMAGOSN1"

typedef struct snap_hdr {
    char magic[8];
    uint32_t version, kind;
    int32_t dim, prec, dba, dba_k;
    double dba_beta;
    char factory[64];
    char fingerprint[72];
    int64_t seq;
    uint64_t n, n_dead, payload_len;
    uint64_t body_hash;
    uint64_t hdr_hash; /* of the bytes above */
} snap_hdr;

typedef struct hasher {
    uint64_t h;
    uint8_t tail[8];
    int nt;
} hasher;

static void hash_init(hasher *s)
{
    s->h = 0x9e3779b97f4a7c15ull;
    s->nt = 0;
}

static inline uint64_t mix(uint64_t h, uint64_t w)
{
    h ^= w * 0xff51afd7ed558ccdull;
    h = (h << 27) | (h >> 37);
    return h * 0x100000001b3ull + 0xc4ceb9fe1a85ec53ull;
}

static void hash_update(hasher *s, const void *data, size_t len)
{
    const uint8_t *p = data;
    while (s->nt && len) {
        s->tail[s->nt++] = *p++;
        len--;
        if (s->nt == 8) {
            uint64_t w;
            memcpy(&w, s->tail, 8);
            s->h = mix(s->h, w);
            s->nt = 0;
        }
    }
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        s->h = mix(s->h, w);
        p += 8;
        len -= 8;
    }
    while (len--)
        s->tail[s->nt++] = *p++;
}

static uint64_t hash_final(hasher *s)
{
    uint64_t w = 0;
    memcpy(&w, s->tail, (size_t)s->nt);
    return mix(mix(s->h, w), (uint64_t)s->nt);
}

static int write_all(int fd, const void *buf, size_t len, const char *path, imago_error *err)
{
    const char *p = buf;
    while (len) {
        ssize_t w = write(fd, p, len > ((size_t)1 << 30) ? ((size_t)1 << 30) : len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return imago_error_set(err, IMAGO_ERR_IO, "write %s: %s", path, strerror(errno));
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

static int read_all(int fd, void *buf, size_t len, const char *path, imago_error *err)
{
    char *p = buf;
    while (len) {
        ssize_t r = read(fd, p, len > ((size_t)1 << 30) ? ((size_t)1 << 30) : len);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return imago_error_set(err, IMAGO_ERR_IO, "read %s: %s", path, strerror(errno));
        }
        if (r == 0)
            return imago_error_set(err, IMAGO_ERR_FORMAT, "%s is truncated", path);
        p += r;
        len -= (size_t)r;
    }
    return 0;
}

int ix_snapshot_write(const ix_core *c, const ix_snap_meta *m, const char *path, imago_error *err)
{
    uint8_t *fbuf = NULL;
    size_t flen = 0;
    const void *payload;
    size_t payload_len;
    if (c->kind == IX_CORE_FAISS) {
        int frc = imago_faiss_write_to_buffer(c->fidx, &fbuf, &flen);
        if (frc)
            return faiss_err(frc, err, "serialise index");
        payload = fbuf;
        payload_len = flen;
    } else {
        payload = c->vecs;
        payload_len = c->n * (size_t)c->dim * ix_prec_size(c->prec);
    }
    snap_hdr h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, SNAP_MAGIC, 8);
    h.version = 1;
    h.kind = (uint32_t)c->kind;
    h.dim = c->dim;
    h.prec = c->prec;
    h.dba = m->dba;
    h.dba_k = m->dba_k;
    h.dba_beta = m->dba_beta;
    snprintf(h.factory, sizeof h.factory, "%s", c->factory);
    snprintf(h.fingerprint, sizeof h.fingerprint, "%s", m->fingerprint);
    h.seq = c->seq;
    h.n = c->n;
    h.n_dead = c->n_dead;
    h.payload_len = payload_len;
    size_t bm = (c->n + 7) / 8;
    hasher hs;
    hash_init(&hs);
    hash_update(&hs, c->ids, c->n * sizeof *c->ids);
    hash_update(&hs, c->dead, bm);
    hash_update(&hs, payload, payload_len);
    h.body_hash = hash_final(&hs);
    hash_init(&hs);
    hash_update(&hs, &h, offsetof(snap_hdr, hdr_hash));
    h.hdr_hash = hash_final(&hs);

    size_t tl = strlen(path) + 8;
    char *tmp = imago_xmalloc(tl);
    snprintf(tmp, tl, "%s.tmp", path);
    int rc = 0;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0) {
        rc = imago_error_set(err, IMAGO_ERR_IO, "create %s: %s", tmp, strerror(errno));
        goto out;
    }
    rc = write_all(fd, &h, sizeof h, tmp, err);
    if (rc == 0)
        rc = write_all(fd, c->ids, c->n * sizeof *c->ids, tmp, err);
    if (rc == 0)
        rc = write_all(fd, c->dead, bm, tmp, err);
    if (rc == 0)
        rc = write_all(fd, payload, payload_len, tmp, err);
    if (rc == 0 && fsync(fd) != 0)
        rc = imago_error_set(err, IMAGO_ERR_IO, "fsync %s: %s", tmp, strerror(errno));
    if (close(fd) != 0 && rc == 0)
        rc = imago_error_set(err, IMAGO_ERR_IO, "close %s: %s", tmp, strerror(errno));
    if (rc == 0 && rename(tmp, path) != 0)
        rc = imago_error_set(err, IMAGO_ERR_IO, "rename %s: %s", tmp, strerror(errno));
    if (rc == 0) {
        /* make the rename itself durable */
        char *dir = imago_xstrdup(path);
        char *slash = strrchr(dir, '/');
        if (slash)
            *slash = 0;
        int dfd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            if (fsync(dfd) != 0)
                rc = imago_error_set(err, IMAGO_ERR_IO, "fsync dir of %s: %s", path,
                                     strerror(errno));
            close(dfd);
        }
        free(dir);
    } else {
        unlink(tmp);
    }
out:
    free(tmp);
    free(fbuf);
    return rc;
}

int ix_snapshot_read(const char *path, const ix_snap_meta *want, int nprobe, ix_core **out,
                     imago_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return imago_error_set(err, IMAGO_ERR_NOT_FOUND, "no snapshot %s", path);
        return imago_error_set(err, IMAGO_ERR_IO, "open %s: %s", path, strerror(errno));
    }
    struct stat sb;
    snap_hdr h;
    ix_core *c = NULL;
    uint8_t *fbuf = NULL;
    int rc = 0;
    if (fstat(fd, &sb) != 0) {
        rc = imago_error_set(err, IMAGO_ERR_IO, "stat %s: %s", path, strerror(errno));
        goto fail;
    }
    if ((size_t)sb.st_size < sizeof h) {
        rc = imago_error_set(err, IMAGO_ERR_FORMAT, "snapshot is truncated (%lld bytes)",
                             (long long)sb.st_size);
        goto fail;
    }
    if ((rc = read_all(fd, &h, sizeof h, path, err)))
        goto fail;
    hasher hs;
    hash_init(&hs);
    hash_update(&hs, &h, offsetof(snap_hdr, hdr_hash));
    if (memcmp(h.magic, SNAP_MAGIC, 8) != 0 || h.version != 1 || hash_final(&hs) != h.hdr_hash) {
        rc = imago_error_set(err, IMAGO_ERR_FORMAT, "snapshot header is corrupt");
        goto fail;
    }
    h.factory[sizeof h.factory - 1] = 0;
    h.fingerprint[sizeof h.fingerprint - 1] = 0;
    if (h.dim != want->dim || strcmp(h.fingerprint, want->fingerprint) != 0 ||
        strcmp(h.factory, want->factory) != 0 || h.prec != want->prec || h.dba != want->dba ||
        (want->dba && (h.dba_k != want->dba_k || h.dba_beta != want->dba_beta))) {
        rc = imago_error_set(err, IMAGO_ERR_CONFLICT,
                             "snapshot settings differ (type %s, dim %d, dba %d, precision %s)",
                             h.factory, h.dim, h.dba, ix_prec_name(h.prec));
        goto fail;
    }
    if (h.kind > IX_CORE_FAISS || h.n > ((uint64_t)1 << 40) || h.n_dead > h.n) {
        rc = imago_error_set(err, IMAGO_ERR_FORMAT, "snapshot header values out of range");
        goto fail;
    }
    uint64_t bm = (h.n + 7) / 8;
    uint64_t expect_flat = h.n * (uint64_t)h.dim * ix_prec_size(h.prec);
    if (h.kind == IX_CORE_FLAT && h.payload_len != expect_flat) {
        rc = imago_error_set(err, IMAGO_ERR_FORMAT, "snapshot payload size mismatch");
        goto fail;
    }
    uint64_t total = sizeof h + h.n * 8 + bm + h.payload_len;
    if ((uint64_t)sb.st_size != total) {
        rc = imago_error_set(err, IMAGO_ERR_FORMAT,
                             "snapshot size %lld differs from the expected %llu (truncated?)",
                             (long long)sb.st_size, (unsigned long long)total);
        goto fail;
    }
    c = ix_core_new(h.dim, h.prec, h.factory);
    c->kind = (int)h.kind;
    c->untrained = c->kind == IX_CORE_FLAT && !ix_factory_is_flat(h.factory);
    if ((rc = reserve(c, h.n ? h.n : 1, err)))
        goto fail;
    c->n = h.n;
    c->n_dead = h.n_dead;
    c->seq = h.seq;
    if ((rc = read_all(fd, c->ids, h.n * 8, path, err)) ||
        (rc = read_all(fd, c->dead, bm, path, err)))
        goto fail;
    void *payload;
    if (c->kind == IX_CORE_FLAT) {
        payload = c->vecs;
    } else {
        fbuf = malloc(h.payload_len ? h.payload_len : 1);
        if (!fbuf) {
            rc = imago_error_set(err, IMAGO_ERR_NOMEM, "snapshot payload of %llu bytes",
                                 (unsigned long long)h.payload_len);
            goto fail;
        }
        payload = fbuf;
    }
    if ((rc = read_all(fd, payload, h.payload_len, path, err)))
        goto fail;
    hash_init(&hs);
    hash_update(&hs, c->ids, h.n * 8);
    hash_update(&hs, c->dead, bm);
    hash_update(&hs, payload, h.payload_len);
    if (hash_final(&hs) != h.body_hash) {
        rc = imago_error_set(err, IMAGO_ERR_FORMAT, "snapshot checksum mismatch (corrupt)");
        goto fail;
    }
    if (c->kind == IX_CORE_FAISS) {
        int frc = imago_faiss_read_from_buffer(fbuf, h.payload_len, &c->fidx);
        if (frc) {
            rc = imago_error_set(err, IMAGO_ERR_FORMAT, "snapshot index unreadable: %s",
                                 faiss_get_last_error());
            goto fail;
        }
        if ((uint64_t)faiss_Index_ntotal(c->fidx) != h.n || faiss_Index_d(c->fidx) != h.dim) {
            rc = imago_error_set(err, IMAGO_ERR_FORMAT, "snapshot index size mismatch");
            goto fail;
        }
        c->family = imago_faiss_index_family(c->fidx);
        FaissIndexIVF *ivf = faiss_IndexIVF_cast(c->fidx);
        if (ivf)
            faiss_IndexIVF_set_nprobe(ivf, (size_t)(nprobe > 0 ? nprobe : 1));
        free(fbuf);
        fbuf = NULL;
    }
    /* rebuild id -> position for live positions; dead ones were tombstoned */
    size_t dead_count = 0;
    for (size_t i = 0; i < c->n; i++) {
        if (c->dead[i >> 3] & (1u << (i & 7))) {
            dead_count++;
            continue;
        }
        if (c->ids[i] < 0 || ix_core_pos(c, c->ids[i]) >= 0) {
            rc = imago_error_set(err, IMAGO_ERR_FORMAT, "snapshot has a bad or duplicate id");
            goto fail;
        }
        pos_map_set(c, c->ids[i], (int64_t)i);
    }
    if (dead_count != c->n_dead) {
        rc = imago_error_set(err, IMAGO_ERR_FORMAT, "snapshot tombstone count mismatch");
        goto fail;
    }
    close(fd);
    *out = c;
    return 0;
fail:
    close(fd);
    free(fbuf);
    ix_core_free(c);
    return rc;
}
