/* st_sparse_weight: the only way layers reach a prunable weight.
 * It has two forms:
 *  - dense: values (rows, cols) with a mask whose masked entries are held at
 *    exactly 0.0 (initialisation, mask sampling, saliency, dense execution);
 *  - packed: CSR over rows holding only the kept values (row_ptr, col,
 *    values[kept]); no dense array exists. Sparse execution (model.c, the
 *    direct sparse kernels) uses this form, and so do the parameter's
 *    gradient and optimiser state, which are then `kept` floats long.
 * st_sparse_weight_pack converts once; scatter / gather convert any array
 * between the stored form and the dense (rows, cols) form (checkpoints). */
#ifndef ST_SPARSE_WEIGHT_H
#define ST_SPARSE_WEIGHT_H

#include <stdint.h>

#include "sparsetrain.h"

typedef struct st_sparse_weight {
    int rows;          /* output channels / output features */
    int64_t cols;      /* in_channels*kh*kw / input features */
    float *values;     /* (rows, cols) row-major; masked entries are exactly 0 */
    uint8_t *mask;     /* (rows, cols), 1 = kept; NULL while the weight is dense */
    int64_t kept;      /* number of kept entries (rows*cols when dense) */
    int packed;        /* 1: values hold the `kept` values in CSR order */
    int64_t *row_ptr;  /* packed: rows + 1 */
    int32_t *col;      /* packed: kept column indices, increasing within a row */
    uint64_t version;  /* changes whenever the mask (or the form) changes: plans built from it compare it */
} st_sparse_weight;

st_status st_sparse_weight_init(st_sparse_weight *w, int rows, int64_t cols);
void st_sparse_weight_release(st_sparse_weight *w);
static inline int64_t st_sparse_weight_numel(const st_sparse_weight *w) { return (int64_t)w->rows * w->cols; }
static inline int st_sparse_weight_is_masked(const st_sparse_weight *w) { return w->mask != 0; }

/* Floats in an array of the stored form (values, gradient, optimiser state). */
static inline int64_t st_sparse_weight_stored(const st_sparse_weight *w) {
    return w->packed ? w->kept : (int64_t)w->rows * w->cols;
}
/* Converts to the packed form; *grad (a dense gradient buffer of the weight,
 * may be NULL) is replaced by a zeroed `kept`-float buffer. */
st_status st_sparse_weight_pack(st_sparse_weight *w, float **grad);
/* A new weight with `mask` (rows*cols bytes, nonzero = kept) and zeroed
 * values: packed (CSR) or dense form with the mask. */
st_status st_sparse_weight_new_packed(int rows, int64_t cols, const uint8_t *mask, st_sparse_weight *out);
st_status st_sparse_weight_new_masked(int rows, int64_t cols, const uint8_t *mask, st_sparse_weight *out);
/* A copy of w's structure (form, mask or CSR, kept count, version) without values. */
st_status st_sparse_weight_copy_structure(const st_sparse_weight *w, st_sparse_weight *out);
/* dense (rows, cols) <- stored form, zeros at masked positions */
void st_sparse_weight_scatter(const st_sparse_weight *w, const float *stored, float *dense);
/* stored form <- dense (rows, cols) (values at masked positions are dropped) */
void st_sparse_weight_gather(const st_sparse_weight *w, const float *dense, float *stored);
/* stored form += dense (rows, cols) at the kept positions */
void st_sparse_weight_gather_add(const st_sparse_weight *w, const float *dense, float *stored);
/* 1 when the stored form is the dense (rows, cols) row-major array itself
 * (no mask, or packed with every position kept). */
static inline int st_sparse_weight_stored_is_dense(const st_sparse_weight *w) {
    return w->packed ? w->kept == st_sparse_weight_numel(w) : !w->mask;
}
/* The mask as a dense (rows, cols) array of 0/1. */
void st_sparse_weight_mask_dense(const st_sparse_weight *w, uint8_t *mask);

/* Installs a copy of `mask` (1 = kept) and zeroes the masked values. */
st_status st_sparse_weight_set_mask(st_sparse_weight *w, const uint8_t *mask);
/* Zeroes the masked positions of an array shaped like the weight (values,
 * gradient, optimiser state). No-op for a dense or packed weight. */
void st_sparse_weight_apply_mask(const st_sparse_weight *w, float *array);

/* Dense execution, for layers that hand the weight to a dense backend
 * (oneDNN): the values as a dense (rows, cols) row-major array whose masked
 * entries are exactly 0, and dw += grad restricted to the kept positions for
 * a dense gradient `grad` computed by such a backend. */
static inline const float *st_sparse_weight_dense_values(const st_sparse_weight *w) { return w->values; }
void st_sparse_weight_accumulate_dense_grad(const st_sparse_weight *w, const float *grad, float *dw);

/* Column form (convolutions: activations as (cols, n) / (rows, n) matrices,
 * row-major with leading dimension n). Single-threaded; callers parallelise
 * over independent images.
 *   y  = W x           x: (cols, n)  y: (rows, n)   (overwrites y)
 *   dx = W^T dy        dy: (rows, n) dx: (cols, n)  (overwrites dx)
 *   dw += dy x^T       at kept positions only       */
void st_sparse_weight_matmul(const st_sparse_weight *w, const float *x, int64_t n, float *y);
void st_sparse_weight_matmul_transposed(const st_sparse_weight *w, const float *dy, int64_t n, float *dx);
void st_sparse_weight_accumulate_grad(const st_sparse_weight *w, const float *dy, const float *x, int64_t n, float *dw);

/* Row form (linear layers: activations as (n, cols) / (n, rows)); may use
 * several threads internally.
 *   y  = x W^T  (overwrites)    dx += dy W    dw += dy^T x (kept positions) */
void st_sparse_weight_matmul_rows(const st_sparse_weight *w, const float *x, int64_t n, float *y);
void st_sparse_weight_accumulate_input_grad_rows(const st_sparse_weight *w, const float *dy, int64_t n, float *dx);
void st_sparse_weight_accumulate_grad_rows(const st_sparse_weight *w, const float *dy, const float *x, int64_t n, float *dw);

#endif
