/* index/faiss_ext.h: FAISS C API functions imago needs that Debian's 1.7.3
 * c_api headers do not declare. The first group follows the signatures of
 * later upstream FAISS C API releases (SearchParameters, search_with_params,
 * IDSelectorBitmap/Not); the imago_faiss_* ones are imago's own additions.
 * Implemented in index/faiss_c.cpp together with the declared c_api
 * functions. Private to index/.
 */
#ifndef IMAGO_FAISS_EXT_H
#define IMAGO_FAISS_EXT_H

#include <faiss/c_api/Index_c.h>
#include <faiss/c_api/faiss_c.h>
#include <faiss/c_api/impl/AuxIndexStructures_c.h>

#ifdef __cplusplus
extern "C" {
#endif

FAISS_DECLARE_CLASS(SearchParameters)
FAISS_DECLARE_DESTRUCTOR(SearchParameters)
int faiss_SearchParameters_new(FaissSearchParameters **p_sp, FaissIDSelector *sel);

FAISS_DECLARE_CLASS_INHERITED(SearchParametersIVF, SearchParameters)
int faiss_SearchParametersIVF_new_with(FaissSearchParametersIVF **p_sp, FaissIDSelector *sel,
                                       size_t nprobe, size_t max_codes);

int faiss_Index_search_with_params(const FaissIndex *index, idx_t n, const float *x, idx_t k,
                                   const FaissSearchParameters *params, float *distances,
                                   idx_t *labels);

FAISS_DECLARE_CLASS(IDSelectorNot)
int faiss_IDSelectorNot_new(FaissIDSelectorNot **p_sel, const FaissIDSelector *sel);
FAISS_DECLARE_CLASS(IDSelectorBitmap)
int faiss_IDSelectorBitmap_new(FaissIDSelectorBitmap **p_sel, size_t n, const uint8_t *bitmap);

/* imago additions ------------------------------------------------------- */

/* SearchParametersHNSW with a selector (may be NULL) and efSearch. */
int imago_faiss_SearchParametersHNSW_new(FaissSearchParameters **p_sp, FaissIDSelector *sel,
                                         int ef_search);
/* An IDSelector that calls fn(label, user) (nonzero = member). fn must be
 * thread-safe: FAISS may call it from OpenMP threads. */
typedef int (*imago_faiss_member_fn)(int64_t label, void *user);
int imago_faiss_IDSelectorCallback_new(FaissIDSelector **p_sel, imago_faiss_member_fn fn,
                                       void *user);
/* 1 when the index (or the index inside an IndexPreTransform / IDMap) is an
 * IndexHNSW, 2 when an IndexIVF, 0 otherwise. */
int imago_faiss_index_family(const FaissIndex *index);
/* Sets IndexHNSW::hnsw.efSearch: FAISS 1.7.3's IndexHNSW::search ignores
 * SearchParametersHNSW::efSearch (only its selector is used), so the field
 * is what takes effect. Not thread-safe against searches of that index. */
int imago_faiss_hnsw_set_ef(FaissIndex *index, int ef_search);
/* IndexIVFPQ from the factory trains a polysemous code ordering (minutes of
 * simulated annealing) unless the string ends in "np"; imago never runs
 * polysemous search, so it switches that training off. Returns 1 when the
 * index is an IVFPQ, else 0. */
int imago_faiss_no_polysemous_training(FaissIndex *index);
/* Frees a selector created by any *_new above (they all derive from IDSelector). */
void imago_faiss_selector_free(void *sel);
/* Serialises the index into a malloc'ed buffer (*buf, *len). */
int imago_faiss_write_to_buffer(const FaissIndex *index, uint8_t **buf, size_t *len);
/* Reads an index from memory. */
int imago_faiss_read_from_buffer(const uint8_t *buf, size_t len, FaissIndex **p_out);

#ifdef __cplusplus
}
#endif

#endif
