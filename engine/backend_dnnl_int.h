/* engine-private: what the two halves of the oneDNN CPU backend share:
 * backend_dnnl.c (state, weights, contexts, run, pooling) and
 * backend_dnnl_plan.c (the per-shape plans: primitives, activation slots,
 * scratchpad). The DESIGN note on threads is at the top of backend_dnnl.c.
 *
 * Thread safety: imago_dnnl_weights takes b->lock; the rest works on one
 * execution context, owned by the calling thread for the run.
 */
#ifndef IMAGO_ENGINE_BACKEND_DNNL_INT_H
#define IMAGO_ENGINE_BACKEND_DNNL_INT_H

#include "backend.h"
#include "ctx_pool.h"
#include "plan_lru.h"

#include <pthread.h>

#include <oneapi/dnnl/dnnl.h>

#define DN_MAX_ARGS 10

typedef struct dn_variant {
    dnnl_memory_desc_t md;
    dnnl_memory_t mem;
} dn_variant;

typedef struct dn_layer {
    float *w; /* folded fp32 weights, plain oihw / goihw */
    float *bias;
    dnnl_memory_desc_t w_md; /* the plain layout of w */
    dnnl_memory_t w_mem;
    dnnl_memory_t bias_mem;
    int n_var; /* layouts asked for so far (a handful: oneDNN picks among few) */
    dn_variant *var;
} dn_layer;

/* A tensor of a plan: activations live in slots (buffers reused by liveness),
 * weights in shared fixed memories, the input in the caller's buffer. */
enum { DN_SLOT_FIXED = -1, DN_SLOT_INPUT = -2 };

typedef struct dn_tensor {
    dnnl_memory_desc_t md;
    int slot;
    dnnl_memory_t fixed; /* DN_SLOT_FIXED */
    dnnl_memory_t mem;   /* created at finalize (not for FIXED) */
} dn_tensor;

typedef struct dn_slot {
    size_t size;
    int busy;
    void *ptr;
} dn_slot;

typedef struct dn_step {
    dnnl_primitive_t prim;
    int nargs;
    int arg[DN_MAX_ARGS];
    int tensor[DN_MAX_ARGS];
    dnnl_exec_arg_t exec[DN_MAX_ARGS + 1];
    dnnl_memory_desc_t scratch_md;
    dnnl_memory_t scratch_mem;
} dn_step;

typedef struct dn_plan {
    int n, h, w;
    dn_step *steps;
    int n_steps, cap_steps;
    dn_tensor *tensors;
    int n_tensors, cap_tensors;
    dn_slot *slots;
    int n_slots, cap_slots;
    void *scratch;
    int input_tensor, output_tensor;
    int att_tensor; /* AP-GeM / GLAP attention (plain nhwc fp32), -1 without */
    int out_h, out_w;
} dn_plan;

typedef struct dn_ctx {
    dnnl_stream_t stream;
    imago_plan_lru plans;
} dn_ctx;

struct imago_backend {
    imago_backend_params p;
    dnnl_engine_t eng;
    dnnl_data_type_t act_dt;
    const imago_net *net; /* borrowed from the engine; outlives the backend */
    dn_layer *layers;     /* one per op; only conv ops use theirs */
    pthread_mutex_t lock; /* weight variants */
    imago_ctx_pool pool;  /* idle execution contexts */
};

#define DN_TRY(call, what, where)                                                                  \
    do {                                                                                           \
        dnnl_status_t st_ = (call);                                                                \
        if (st_ != dnnl_success) {                                                                 \
            rc = imago_dnnl_fail(err, st_, what, where);                                           \
            goto fail;                                                                             \
        }                                                                                          \
    } while (0)

/* Sets err to "oneDNN <what> failed for <where>: <status>"; returns
 * IMAGO_ERR_BACKEND. */
int imago_dnnl_fail(imago_error *err, dnnl_status_t st, const char *what, const char *where);

/* The dims of conv op's weights: oihw (*nd = 4) or goihw when grouped (5). */
void imago_dnnl_weight_dims(const imago_net_op *op, dnnl_dims_t d, int *nd);

/* The weights of layer i in layout want (reordered on stream the first time,
 * then shared by every context; the memory stays the backend's). */
int imago_dnnl_weights(imago_backend *b, dnnl_stream_t stream, int i,
                       const dnnl_memory_desc_t *want, dnnl_memory_t *out, imago_error *err);

/* Builds the plan of ctx for an n x h x w batch (*out is the caller's,
 * freed with imago_dnnl_plan_free). */
int imago_dnnl_plan_build(imago_backend *b, dn_ctx *ctx, int n, int h, int w, dn_plan **out,
                          imago_error *err);
/* Accepts NULL. */
void imago_dnnl_plan_free(dn_plan *pl);

#endif /* IMAGO_ENGINE_BACKEND_DNNL_INT_H */
