// index/faiss_c.cpp: the thin extern "C" implementation of the FAISS C API
// functions imago uses. Debian's libfaiss 1.7.3 ships the c_api headers but
// not their implementation, so this file implements the declared
// signatures (included from /usr/include/faiss/c_api) plus the few
// additions in faiss_ext.h, translating every C++ exception into the
// FaissErrorCode convention with the message kept for faiss_get_last_error()
// (thread-local, like upstream).

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <string>

#include <faiss/AutoTune.h>
#include <faiss/Index.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIDMap.h>
#include <faiss/IndexIVF.h>
#include <faiss/IndexIVFPQ.h>
#include <faiss/IndexPreTransform.h>
#include <faiss/impl/AuxIndexStructures.h>
#include <faiss/impl/FaissException.h>
#include <faiss/impl/IDSelector.h>
#include <faiss/impl/io.h>
#include <faiss/index_factory.h>
#include <faiss/index_io.h>

#include <faiss/c_api/IndexIVF_c.h>
#include <faiss/c_api/Index_c.h>
#include <faiss/c_api/MetaIndexes_c.h>
#include <faiss/c_api/error_c.h>
#include <faiss/c_api/impl/AuxIndexStructures_c.h>
#include <faiss/c_api/index_factory_c.h>
#include <faiss/c_api/index_io_c.h>

#include "faiss_ext.h"

// error_impl.h declares this; defined here so that code following the
// upstream convention links.
thread_local std::exception_ptr faiss_last_exception;
static thread_local std::string last_error_msg;

#define FX_TRY try {
#define FX_CATCH                                                                                   \
    }                                                                                              \
    catch (faiss::FaissException & e)                                                              \
    {                                                                                              \
        last_error_msg = e.what();                                                                 \
        faiss_last_exception = std::current_exception();                                           \
        return FAISS_EXCEPT;                                                                       \
    }                                                                                              \
    catch (std::exception & e)                                                                     \
    {                                                                                              \
        last_error_msg = e.what();                                                                 \
        faiss_last_exception = std::current_exception();                                           \
        return STD_EXCEPT;                                                                         \
    }                                                                                              \
    catch (...)                                                                                    \
    {                                                                                              \
        last_error_msg = "unknown C++ exception";                                                  \
        faiss_last_exception = std::current_exception();                                           \
        return UNKNOWN_EXCEPT;                                                                     \
    }                                                                                              \
    return OK;

namespace
{

faiss::Index *IX(FaissIndex *p)
{
    return reinterpret_cast<faiss::Index *>(p);
}
const faiss::Index *IX(const FaissIndex *p)
{
    return reinterpret_cast<const faiss::Index *>(p);
}

struct CallbackSelector : faiss::IDSelector {
    imago_faiss_member_fn fn;
    void *user;
    CallbackSelector(imago_faiss_member_fn f, void *u) : fn(f), user(u)
    {
    }
    bool is_member(idx_t id) const override
    {
        return fn(id, user) != 0;
    }
};

// IDSelectorNot does not own its argument; this one does.
struct OwningNot : faiss::IDSelector {
    const faiss::IDSelector *sel;
    explicit OwningNot(const faiss::IDSelector *s) : sel(s)
    {
    }
    bool is_member(idx_t id) const override
    {
        return !sel->is_member(id);
    }
};

const faiss::Index *unwrap(const faiss::Index *ix)
{
    for (;;) {
        if (auto pt = dynamic_cast<const faiss::IndexPreTransform *>(ix))
            ix = pt->index;
        else if (auto m = dynamic_cast<const faiss::IndexIDMap *>(ix))
            ix = m->index;
        else if (auto m2 = dynamic_cast<const faiss::IndexIDMap2 *>(ix))
            ix = m2->index;
        else
            return ix;
    }
}

} // namespace

extern "C" {

const char *faiss_get_last_error()
{
    return last_error_msg.c_str();
}

// ---- Index ---------------------------------------------------------------

void faiss_Index_free(FaissIndex *obj)
{
    delete IX(obj);
}
int faiss_Index_d(const FaissIndex *obj)
{
    return IX(obj)->d;
}
int faiss_Index_is_trained(const FaissIndex *obj)
{
    return IX(obj)->is_trained;
}
idx_t faiss_Index_ntotal(const FaissIndex *obj)
{
    return IX(obj)->ntotal;
}
FaissMetricType faiss_Index_metric_type(const FaissIndex *obj)
{
    return static_cast<FaissMetricType>(IX(obj)->metric_type);
}
int faiss_Index_verbose(const FaissIndex *obj)
{
    return IX(obj)->verbose;
}
void faiss_Index_set_verbose(FaissIndex *obj, int v)
{
    IX(obj)->verbose = v != 0;
}

int faiss_Index_train(FaissIndex *index, idx_t n, const float *x)
{
    FX_TRY IX(index)->train(n, x);
    FX_CATCH
}

int faiss_Index_add(FaissIndex *index, idx_t n, const float *x)
{
    FX_TRY IX(index)->add(n, x);
    FX_CATCH
}

int faiss_Index_add_with_ids(FaissIndex *index, idx_t n, const float *x, const idx_t *xids)
{
    FX_TRY IX(index)->add_with_ids(n, x, xids);
    FX_CATCH
}

int faiss_Index_search(const FaissIndex *index, idx_t n, const float *x, idx_t k, float *distances,
                       idx_t *labels)
{
    FX_TRY IX(index)->search(n, x, k, distances, labels);
    FX_CATCH
}

int faiss_Index_reset(FaissIndex *index)
{
    FX_TRY IX(index)->reset();
    FX_CATCH
}

int faiss_Index_remove_ids(FaissIndex *index, const FaissIDSelector *sel, size_t *n_removed)
{
    FX_TRY size_t n = IX(index)->remove_ids(*reinterpret_cast<const faiss::IDSelector *>(sel));
    if (n_removed)
        *n_removed = n;
    FX_CATCH
}

int faiss_Index_reconstruct(const FaissIndex *index, idx_t key, float *recons)
{
    FX_TRY IX(index)->reconstruct(key, recons);
    FX_CATCH
}

int faiss_Index_reconstruct_n(const FaissIndex *index, idx_t i0, idx_t ni, float *recons)
{
    FX_TRY IX(index)->reconstruct_n(i0, ni, recons);
    FX_CATCH
}

// ---- factory and I/O ---------------------------------------------------

int faiss_index_factory(FaissIndex **p_index, int d, const char *description,
                        FaissMetricType metric)
{
    FX_TRY *p_index = reinterpret_cast<FaissIndex *>(
        faiss::index_factory(d, description, static_cast<faiss::MetricType>(metric)));
    FX_CATCH
}

int faiss_write_index(const FaissIndex *idx, FILE *f)
{
    FX_TRY faiss::write_index(IX(idx), f);
    FX_CATCH
}

int faiss_write_index_fname(const FaissIndex *idx, const char *fname)
{
    FX_TRY faiss::write_index(IX(idx), fname);
    FX_CATCH
}

int faiss_read_index(FILE *f, int io_flags, FaissIndex **p_out)
{
    FX_TRY *p_out = reinterpret_cast<FaissIndex *>(faiss::read_index(f, io_flags));
    FX_CATCH
}

int faiss_read_index_fname(const char *fname, int io_flags, FaissIndex **p_out)
{
    FX_TRY *p_out = reinterpret_cast<FaissIndex *>(faiss::read_index(fname, io_flags));
    FX_CATCH
}

// ---- IVF -----------------------------------------------------------------

FaissIndexIVF *faiss_IndexIVF_cast(FaissIndex *index)
{
    return reinterpret_cast<FaissIndexIVF *>(dynamic_cast<faiss::IndexIVF *>(IX(index)));
}
size_t faiss_IndexIVF_nlist(const FaissIndexIVF *obj)
{
    return reinterpret_cast<const faiss::IndexIVF *>(obj)->nlist;
}
size_t faiss_IndexIVF_nprobe(const FaissIndexIVF *obj)
{
    return reinterpret_cast<const faiss::IndexIVF *>(obj)->nprobe;
}
void faiss_IndexIVF_set_nprobe(FaissIndexIVF *obj, size_t v)
{
    reinterpret_cast<faiss::IndexIVF *>(obj)->nprobe = v;
}
int faiss_IndexIVF_make_direct_map(FaissIndexIVF *index, int new_maintain_direct_map)
{
    FX_TRY reinterpret_cast<faiss::IndexIVF *>(index)->make_direct_map(new_maintain_direct_map !=
                                                                       0);
    FX_CATCH
}

// ---- IDMap2 ----------------------------------------------------------------

int faiss_IndexIDMap2_new(FaissIndexIDMap2 **p_index, FaissIndex *index)
{
    FX_TRY auto *m = new faiss::IndexIDMap2(IX(index));
    *p_index = reinterpret_cast<FaissIndexIDMap2 *>(m);
    FX_CATCH
}

// ---- ID selectors ----------------------------------------------------------

void faiss_IDSelector_free(FaissIDSelector *obj)
{
    delete reinterpret_cast<faiss::IDSelector *>(obj);
}

int faiss_IDSelector_is_member(const FaissIDSelector *sel, idx_t id)
{
    return reinterpret_cast<const faiss::IDSelector *>(sel)->is_member(id);
}

int faiss_IDSelectorRange_new(FaissIDSelectorRange **p_sel, idx_t imin, idx_t imax)
{
    FX_TRY *p_sel =
        reinterpret_cast<FaissIDSelectorRange *>(new faiss::IDSelectorRange(imin, imax));
    FX_CATCH
}

int faiss_IDSelectorBatch_new(FaissIDSelectorBatch **p_sel, size_t n, const idx_t *indices)
{
    FX_TRY *p_sel =
        reinterpret_cast<FaissIDSelectorBatch *>(new faiss::IDSelectorBatch(n, indices));
    FX_CATCH
}

int faiss_IDSelectorNot_new(FaissIDSelectorNot **p_sel, const FaissIDSelector *sel)
{
    FX_TRY *p_sel = reinterpret_cast<FaissIDSelectorNot *>(
        new OwningNot(reinterpret_cast<const faiss::IDSelector *>(sel)));
    FX_CATCH
}

int faiss_IDSelectorBitmap_new(FaissIDSelectorBitmap **p_sel, size_t n, const uint8_t *bitmap)
{
    FX_TRY *p_sel =
        reinterpret_cast<FaissIDSelectorBitmap *>(new faiss::IDSelectorBitmap(n, bitmap));
    FX_CATCH
}

int imago_faiss_IDSelectorCallback_new(FaissIDSelector **p_sel, imago_faiss_member_fn fn,
                                       void *user)
{
    FX_TRY *p_sel = reinterpret_cast<FaissIDSelector *>(new CallbackSelector(fn, user));
    FX_CATCH
}

void imago_faiss_selector_free(void *sel)
{
    if (!sel)
        return;
    auto *s = reinterpret_cast<faiss::IDSelector *>(sel);
    if (auto *n = dynamic_cast<OwningNot *>(s))
        delete n->sel;
    delete s;
}

// ---- search parameters ---------------------------------------------------

void faiss_SearchParameters_free(FaissSearchParameters *obj)
{
    delete reinterpret_cast<faiss::SearchParameters *>(obj);
}

int faiss_SearchParameters_new(FaissSearchParameters **p_sp, FaissIDSelector *sel)
{
    FX_TRY auto *p = new faiss::SearchParameters();
    p->sel = reinterpret_cast<faiss::IDSelector *>(sel);
    *p_sp = reinterpret_cast<FaissSearchParameters *>(p);
    FX_CATCH
}

int faiss_SearchParametersIVF_new_with(FaissSearchParametersIVF **p_sp, FaissIDSelector *sel,
                                       size_t nprobe, size_t max_codes)
{
    FX_TRY auto *p = new faiss::SearchParametersIVF();
    p->sel = reinterpret_cast<faiss::IDSelector *>(sel);
    p->nprobe = nprobe;
    p->max_codes = max_codes;
    *p_sp = reinterpret_cast<FaissSearchParametersIVF *>(p);
    FX_CATCH
}

int imago_faiss_SearchParametersHNSW_new(FaissSearchParameters **p_sp, FaissIDSelector *sel,
                                         int ef_search)
{
    FX_TRY auto *p = new faiss::SearchParametersHNSW();
    p->sel = reinterpret_cast<faiss::IDSelector *>(sel);
    if (ef_search > 0)
        p->efSearch = ef_search;
    *p_sp = reinterpret_cast<FaissSearchParameters *>(p);
    FX_CATCH
}

int faiss_Index_search_with_params(const FaissIndex *index, idx_t n, const float *x, idx_t k,
                                   const FaissSearchParameters *params, float *distances,
                                   idx_t *labels)
{
    FX_TRY IX(index)->search(n, x, k, distances, labels,
                             reinterpret_cast<const faiss::SearchParameters *>(params));
    FX_CATCH
}

int imago_faiss_index_family(const FaissIndex *index)
{
    const faiss::Index *ix = unwrap(IX(index));
    if (dynamic_cast<const faiss::IndexHNSW *>(ix))
        return 1;
    if (dynamic_cast<const faiss::IndexIVF *>(ix))
        return 2;
    return 0;
}

int imago_faiss_no_polysemous_training(FaissIndex *index)
{
    auto *pq = dynamic_cast<faiss::IndexIVFPQ *>(const_cast<faiss::Index *>(unwrap(IX(index))));
    if (pq)
        pq->do_polysemous_training = false;
    return pq != nullptr;
}

int imago_faiss_hnsw_set_ef(FaissIndex *index, int ef_search)
{
    auto *h = dynamic_cast<faiss::IndexHNSW *>(const_cast<faiss::Index *>(unwrap(IX(index))));
    if (!h) {
        last_error_msg = "not an HNSW index";
        return FAISS_EXCEPT;
    }
    h->hnsw.efSearch = ef_search;
    return OK;
}

// ---- in-memory serialisation ------------------------------------------------

int imago_faiss_write_to_buffer(const FaissIndex *index, uint8_t **buf, size_t *len)
{
    FX_TRY faiss::VectorIOWriter w;
    faiss::write_index(IX(index), &w);
    uint8_t *p = static_cast<uint8_t *>(std::malloc(w.data.size() ? w.data.size() : 1));
    if (!p)
        throw std::bad_alloc();
    if (!w.data.empty())
        std::memcpy(p, w.data.data(), w.data.size());
    *buf = p;
    *len = w.data.size();
    FX_CATCH
}

int imago_faiss_read_from_buffer(const uint8_t *buf, size_t len, FaissIndex **p_out)
{
    FX_TRY faiss::VectorIOReader r;
    r.data.assign(buf, buf + len);
    *p_out = reinterpret_cast<FaissIndex *>(faiss::read_index(&r));
    FX_CATCH
}

} // extern "C"
