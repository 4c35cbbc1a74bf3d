/* engine-private: the GLAM head (Song, Han, Avrithis 2021; docs/models.md) on the
 * fp32 NHWC layer4 map F, as plain C + OpenBLAS (engine/glam.c).
 *
 * The backend runs the backbone (fp32 or bf16) and hands the fp32 map to
 * imago_glam_run, which applies the four attention forms, the fusion, GeM
 * with pool.p and the FC with BatchNorm1d folded, and writes the 512-d
 * vector before L2N (the backend contract: "pooled" features). The head
 * itself always runs in fp32.
 *
 * Prepared weights: the local spatial branch (1x1 reduce -> 1x1 / 3x3
 * dilation 1, 2, 3 -> concat -> 1x1 to one map, with no activation anywhere)
 * is linear in F, so it is folded at load time (in double) into 25 c-vectors,
 * one per distinct tap offset, plus a per-tap bias that applies where the tap
 * reads inside the map (zero padding) and one constant.
 *
 * Memory per image (hw positions, c channels, c' = global width): the c x c
 * channel attention, three hw x c maps, hw x 3c' + hw x c' for Q/K/V and the
 * attention output, and the spatial attention computed in blocks of
 * IMAGO_GLAM_BLOCK query positions (hw x block floats), so nothing is
 * hw x hw. Peak at 1024x768 (hw = 768, c = 2048, c' = 256): 33 MB (16.8 MB of
 * it the c x c attention); at 1448x1086 (hw = 1564): 51 MB. The full hw x hw
 * matrix would be 2.4 MB at hw = 768 but 9.8 MB at 1564 and grows as hw^2.
 *
 * Thread safety: a prepared imago_glam is immutable; imago_glam_run and
 * imago_glam_forward may be called from any number of threads at once.
 */
#ifndef IMAGO_ENGINE_GLAM_H
#define IMAGO_ENGINE_GLAM_H

#include "common/common.h"
#include "model.h"

#define IMAGO_GLAM_BLOCK 256 /* query positions per spatial-attention block */
#define IMAGO_GLAM_MAX_SPECS 32

typedef struct imago_glam imago_glam;

/* Validates every glam.* tensor of m for a c-channel map (names and shapes;
 * the widths c'_local (ls_reduce), c'_global (gs_q), the output dimension
 * (fc) and the odd 1-D kernel size (lc_conv) are read from the shapes and
 * must agree across tensors) and prepares the weights (folded local spatial
 * branch, fused Q/K/V matrix, FC with BatchNorm1d folded). Errors name the
 * tensor: IMAGO_ERR_NOT_FOUND, IMAGO_ERR_FORMAT. *out owned by the caller
 * (imago_glam_free). */
int imago_glam_new(const imago_model *m, int c, imago_glam **out, imago_error *err);
void imago_glam_free(imago_glam *g);

int imago_glam_out_dim(const imago_glam *g);  /* FC output width (512) */
int imago_glam_channels(const imago_glam *g); /* c */

/* Optional per-stage outputs of one image (NULL = not wanted), for tests. */
typedef struct imago_glam_trace {
    float *a_lc;   /* c: local channel attention */
    float *s;      /* hw: local spatial map */
    float *Ac;     /* c x c: global channel attention A[i][j] (softmax over i) */
    float *As;     /* hw x hw: global spatial attention A[m][n] (softmax over m) */
    float *Fc, *Fl, *Gc, *Gs, *Fg, *Fgl; /* hw x c each (NHWC) */
    float *pooled; /* c: GeM(F_gl) */
} imago_glam_trace;

/* One image: x is the h x w x c NHWC map (borrowed); y receives the out_dim
 * values BN(FC(GeM_p(F_gl))) before L2N. threads bounds the OpenMP team of
 * the element-wise parts (0 = all cores; the GEMMs use OpenBLAS's threads).
 * tr may be NULL. IMAGO_ERR_INVALID (empty map), IMAGO_ERR_TOO_LARGE /
 * IMAGO_ERR_NOMEM (buffers). */
int imago_glam_forward(const imago_glam *g, const float *x, int h, int w, float p, int threads,
                       float *y, imago_glam_trace *tr, imago_error *err);

/* n images (n x h x w x c NHWC, fp32) -> n x out_dim into out. */
int imago_glam_run(const imago_glam *g, const float *fm, int n, int h, int w, float p,
                   int threads, float *out, imago_error *err);

/* Tensor specs of a synthetic GLAM head (c channels, widths cl / cg, output
 * out_dim, kernel 3) for the demo model: convs He-normal, biases and fusion
 * zero, BatchNorm1d identity statistics. Writes at most IMAGO_GLAM_MAX_SPECS
 * entries into specs (names are static strings) and returns the count. */
int imago_glam_specs(int c, int cl, int cg, int out_dim, imago_tensor_spec *specs);

#endif
