/* Dense-with-mask implementation of st_sparse_weight, on OpenBLAS sgemm.
 * Gradients are masked right after each product so that masked weights,
 * their gradients and their optimiser state all stay exactly 0. */
#include "sparse/sparse_weight.h"

#include <cblas.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"

st_status st_sparse_weight_init(st_sparse_weight *w, int rows, int64_t cols) {
    memset(w, 0, sizeof *w);
    if (rows <= 0 || cols <= 0) return st_fail(ST_ERR_ARGUMENT, "weight shape (%d, %lld) is empty", rows, (long long)cols);
    w->rows = rows;
    w->cols = cols;
    w->values = st_calloc((size_t)rows * (size_t)cols, sizeof(float), "weight values");
    if (!w->values) return ST_ERR_NOMEM;
    w->kept = (int64_t)rows * cols;
    return ST_OK;
}

void st_sparse_weight_release(st_sparse_weight *w) {
    if (!w) return;
    free(w->values);
    free(w->mask);
    free(w->row_ptr);
    free(w->col);
    memset(w, 0, sizeof *w);
}

st_status st_sparse_weight_pack(st_sparse_weight *w, float **grad) {
    if (w->packed) return ST_OK;
    const int64_t n = st_sparse_weight_numel(w);
    int64_t kept = 0;
    for (int64_t k = 0; k < n; k++) kept += !w->mask || w->mask[k];
    if (w->cols > INT32_MAX) return st_fail(ST_ERR_ARGUMENT, "weight rows of %lld columns are too long to pack", (long long)w->cols);
    int64_t *row_ptr = st_malloc(sizeof(int64_t) * ((size_t)w->rows + 1), "packed weight");
    int32_t *col = st_malloc(sizeof(int32_t) * (size_t)(kept ? kept : 1), "packed weight");
    float *values = st_malloc(sizeof(float) * (size_t)(kept ? kept : 1), "packed weight");
    float *g = grad ? st_calloc((size_t)(kept ? kept : 1), sizeof(float), "packed weight gradient") : NULL;
    if (!row_ptr || !col || !values || (grad && !g)) {
        free(row_ptr), free(col), free(values), free(g);
        return ST_ERR_NOMEM;
    }
    int64_t e = 0;
    for (int r = 0; r < w->rows; r++) {
        row_ptr[r] = e;
        for (int64_t c = 0; c < w->cols; c++) {
            const int64_t k = (int64_t)r * w->cols + c;
            if (w->mask && !w->mask[k]) continue;
            col[e] = (int32_t)c;
            values[e++] = w->values[k];
        }
    }
    row_ptr[w->rows] = e;
    free(w->values);
    free(w->mask);
    w->values = values;
    w->mask = NULL;
    w->row_ptr = row_ptr;
    w->col = col;
    w->kept = kept;
    w->packed = 1;
    w->version++;
    if (grad) {
        free(*grad);
        *grad = g;
    }
    return ST_OK;
}

void st_sparse_weight_scatter(const st_sparse_weight *w, const float *stored, float *dense) {
    if (!w->packed) {
        memcpy(dense, stored, sizeof(float) * (size_t)st_sparse_weight_numel(w));
        return;
    }
    memset(dense, 0, sizeof(float) * (size_t)st_sparse_weight_numel(w));
    for (int r = 0; r < w->rows; r++)
        for (int64_t e = w->row_ptr[r]; e < w->row_ptr[r + 1]; e++) dense[(int64_t)r * w->cols + w->col[e]] = stored[e];
}

void st_sparse_weight_gather(const st_sparse_weight *w, const float *dense, float *stored) {
    if (!w->packed) {
        memcpy(stored, dense, sizeof(float) * (size_t)st_sparse_weight_numel(w));
        st_sparse_weight_apply_mask(w, stored);
        return;
    }
    for (int r = 0; r < w->rows; r++)
        for (int64_t e = w->row_ptr[r]; e < w->row_ptr[r + 1]; e++) stored[e] = dense[(int64_t)r * w->cols + w->col[e]];
}

void st_sparse_weight_gather_add(const st_sparse_weight *w, const float *dense, float *stored) {
    if (!w->packed) {
        const int64_t n = st_sparse_weight_numel(w);
        for (int64_t i = 0; i < n; i++) stored[i] += w->mask && !w->mask[i] ? 0.0f : dense[i];
        return;
    }
    for (int r = 0; r < w->rows; r++)
        for (int64_t e = w->row_ptr[r]; e < w->row_ptr[r + 1]; e++) stored[e] += dense[(int64_t)r * w->cols + w->col[e]];
}

void st_sparse_weight_mask_dense(const st_sparse_weight *w, uint8_t *mask) {
    const int64_t n = st_sparse_weight_numel(w);
    if (!w->packed) {
        for (int64_t k = 0; k < n; k++) mask[k] = w->mask ? w->mask[k] : 1;
        return;
    }
    memset(mask, 0, (size_t)n);
    for (int r = 0; r < w->rows; r++)
        for (int64_t e = w->row_ptr[r]; e < w->row_ptr[r + 1]; e++) mask[(int64_t)r * w->cols + w->col[e]] = 1;
}

st_status st_sparse_weight_set_mask(st_sparse_weight *w, const uint8_t *mask) {
    if (w->packed) return st_fail(ST_ERR_ARGUMENT, "cannot change the mask of a packed weight");
    int64_t n = st_sparse_weight_numel(w);
    if (!w->mask) {
        w->mask = st_malloc((size_t)n, "weight mask");
        if (!w->mask) return ST_ERR_NOMEM;
    }
    int64_t kept = 0;
    for (int64_t i = 0; i < n; i++) {
        w->mask[i] = mask[i] ? 1 : 0;
        kept += w->mask[i];
    }
    w->kept = kept;
    w->version++;
    st_sparse_weight_apply_mask(w, w->values);
    return ST_OK;
}

st_status st_sparse_weight_new_packed(int rows, int64_t cols, const uint8_t *mask, st_sparse_weight *out) {
    memset(out, 0, sizeof *out);
    if (rows <= 0 || cols <= 0 || cols > INT32_MAX)
        return st_fail(ST_ERR_ARGUMENT, "weight shape (%d, %lld) cannot be packed", rows, (long long)cols);
    const int64_t n = (int64_t)rows * cols;
    int64_t kept = 0;
    for (int64_t k = 0; k < n; k++) kept += mask[k] != 0;
    out->rows = rows;
    out->cols = cols;
    out->kept = kept;
    out->packed = 1;
    out->row_ptr = st_malloc(sizeof(int64_t) * ((size_t)rows + 1), "packed weight");
    out->col = st_malloc(sizeof(int32_t) * (size_t)(kept ? kept : 1), "packed weight");
    out->values = st_calloc((size_t)(kept ? kept : 1), sizeof(float), "packed weight");
    if (!out->row_ptr || !out->col || !out->values) {
        st_sparse_weight_release(out);
        return ST_ERR_NOMEM;
    }
    int64_t e = 0;
    for (int r = 0; r < rows; r++) {
        out->row_ptr[r] = e;
        for (int64_t c = 0; c < cols; c++)
            if (mask[(int64_t)r * cols + c]) out->col[e++] = (int32_t)c;
    }
    out->row_ptr[rows] = e;
    return ST_OK;
}

st_status st_sparse_weight_new_masked(int rows, int64_t cols, const uint8_t *mask, st_sparse_weight *out) {
    ST_TRY(st_sparse_weight_init(out, rows, cols));
    st_status s = st_sparse_weight_set_mask(out, mask);
    if (s != ST_OK) st_sparse_weight_release(out);
    return s;
}

st_status st_sparse_weight_copy_structure(const st_sparse_weight *w, st_sparse_weight *out) {
    *out = *w;
    out->values = NULL;
    out->mask = NULL;
    out->row_ptr = NULL;
    out->col = NULL;
    const int64_t n = st_sparse_weight_numel(w);
    if (w->packed) {
        out->row_ptr = st_malloc(sizeof(int64_t) * ((size_t)w->rows + 1), "weight structure");
        out->col = st_malloc(sizeof(int32_t) * (size_t)(w->kept ? w->kept : 1), "weight structure");
        if (!out->row_ptr || !out->col) {
            st_sparse_weight_release(out);
            return ST_ERR_NOMEM;
        }
        memcpy(out->row_ptr, w->row_ptr, sizeof(int64_t) * ((size_t)w->rows + 1));
        memcpy(out->col, w->col, sizeof(int32_t) * (size_t)w->kept);
    } else if (w->mask) {
        out->mask = st_malloc((size_t)n, "weight structure");
        if (!out->mask) return ST_ERR_NOMEM;
        memcpy(out->mask, w->mask, (size_t)n);
    }
    return ST_OK;
}

void st_sparse_weight_apply_mask(const st_sparse_weight *w, float *array) {
    if (!w->mask || !array) return;
    int64_t n = st_sparse_weight_numel(w);
    for (int64_t i = 0; i < n; i++)
        if (!w->mask[i]) array[i] = 0.0f;
}

void st_sparse_weight_accumulate_dense_grad(const st_sparse_weight *w, const float *grad, float *dw) {
    const int64_t n = st_sparse_weight_numel(w);
    if (w->mask) {
        const uint8_t *restrict mask = w->mask;
        for (int64_t i = 0; i < n; i++) dw[i] += mask[i] ? grad[i] : 0.0f;
    } else {
        for (int64_t i = 0; i < n; i++) dw[i] += grad[i];
    }
}

void st_sparse_weight_matmul(const st_sparse_weight *w, const float *x, int64_t n, float *y) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, w->rows, (int)n, (int)w->cols, 1.0f, w->values,
                (int)w->cols, x, (int)n, 0.0f, y, (int)n);
}

void st_sparse_weight_matmul_transposed(const st_sparse_weight *w, const float *dy, int64_t n, float *dx) {
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)w->cols, (int)n, w->rows, 1.0f, w->values,
                (int)w->cols, dy, (int)n, 0.0f, dx, (int)n);
}

void st_sparse_weight_accumulate_grad(const st_sparse_weight *w, const float *dy, const float *x, int64_t n, float *dw) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, w->rows, (int)w->cols, (int)n, 1.0f, dy, (int)n, x, (int)n,
                1.0f, dw, (int)w->cols);
    st_sparse_weight_apply_mask(w, dw);
}

void st_sparse_weight_matmul_rows(const st_sparse_weight *w, const float *x, int64_t n, float *y) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, w->rows, (int)w->cols, 1.0f, x, (int)w->cols,
                w->values, (int)w->cols, 0.0f, y, w->rows);
}

void st_sparse_weight_accumulate_input_grad_rows(const st_sparse_weight *w, const float *dy, int64_t n, float *dx) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)w->cols, w->rows, 1.0f, dy, w->rows,
                w->values, (int)w->cols, 1.0f, dx, (int)w->cols);
}

void st_sparse_weight_accumulate_grad_rows(const st_sparse_weight *w, const float *dy, const float *x, int64_t n,
                                           float *dw) {
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, w->rows, (int)w->cols, (int)n, 1.0f, dy, w->rows, x,
                (int)w->cols, 1.0f, dw, (int)w->cols);
    st_sparse_weight_apply_mask(w, dw);
}
