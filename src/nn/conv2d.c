/* 2-D convolution (square kernel, stride, zero padding).
 * Reference path (st_conv2d_forward/backward): im2col + matrix product
 * through st_sparse_weight, one image at a time, images split statically over
 * OpenMP threads; weight gradients go to per-thread accumulators reduced in
 * fixed thread order, so a given thread count gives bit-identical results.
 * Plans (st_conv2d_plan_*): the same operation with a backend chosen once per
 * shape, today oneDNN for dense execution (see kernels/conv_onednn.h). */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/runtime.h"
#include "core/status.h"
#include "kernels/conv_onednn.h"
#include "kernels/im2col.h"
#include "nn/layers.h"

void st_conv2d_shape_init(st_conv2d_shape *s, int batch, int in_channels, int in_h, int in_w, int out_channels,
                          int kernel, int stride, int padding) {
    s->batch = batch;
    s->in_channels = in_channels;
    s->in_h = in_h;
    s->in_w = in_w;
    s->out_channels = out_channels;
    s->kernel = kernel;
    s->stride = stride;
    s->padding = padding;
    s->out_h = (in_h + 2 * padding - kernel) / stride + 1;
    s->out_w = (in_w + 2 * padding - kernel) / stride + 1;
}

/* A 1x1, stride-1, unpadded convolution reads the image itself as its column matrix. */
static int conv_is_pointwise(const st_conv2d_shape *s) {
    return s->kernel == 1 && s->stride == 1 && s->padding == 0;
}

static size_t round_up16(size_t n) { return (n + 15) & ~(size_t)15; }

/* Offsets (floats) inside one thread's slice of the workspace:
 * [col: im2col of x | dcol: W^T dy | grad: dw accumulator]. */
typedef struct conv_workspace_layout {
    size_t col, dcol, grad, per_thread;
} conv_workspace_layout;

static conv_workspace_layout conv_layout(const st_conv2d_shape *s) {
    size_t cols = (size_t)s->in_channels * s->kernel * s->kernel;
    size_t pixels = (size_t)s->out_h * s->out_w;
    conv_workspace_layout l;
    l.col = 0;
    l.dcol = conv_is_pointwise(s) ? 0 : round_up16(cols * pixels);
    l.grad = l.dcol + round_up16(cols * pixels);
    l.per_thread = l.grad + round_up16((size_t)s->out_channels * cols);
    return l;
}

size_t st_conv2d_workspace_floats(const st_conv2d_shape *s, int threads) {
    if (threads < 1) threads = 1;
    return conv_layout(s).per_thread * (size_t)threads;
}

/* Images [*begin, *end) of thread `tid` out of `nt`: a fixed contiguous block. */
static void image_block(int batch, int tid, int nt, int *begin, int *end) {
    *begin = (int)((int64_t)batch * tid / nt);
    *end = (int)((int64_t)batch * (tid + 1) / nt);
}

/* dbias += per-channel sums of dy, in double, images in fixed order.
 * Work-shares over channels when called inside a parallel region. */
static void conv_bias_grad(const st_conv2d_shape *s, const float *dy, float *dbias) {
    const size_t pixels = (size_t)s->out_h * s->out_w;
    const size_t out_size = (size_t)s->out_channels * pixels;
#pragma omp for schedule(static)
    for (int o = 0; o < s->out_channels; o++) {
        double sum = 0.0;
        for (int n = 0; n < s->batch; n++) {
            const float *row = dy + (size_t)n * out_size + (size_t)o * pixels;
            float part = 0.0f;
#pragma omp simd reduction(+ : part)
            for (size_t p = 0; p < pixels; p++) part += row[p];
            sum += part;
        }
        dbias[o] += (float)sum;
    }
}

void st_conv2d_forward(const st_conv2d_shape *s, const float *x, const st_sparse_weight *w, const float *bias,
                       float *y, float *workspace) {
    const conv_workspace_layout l = conv_layout(s);
    const int pointwise = conv_is_pointwise(s);
    const size_t in_size = (size_t)s->in_channels * s->in_h * s->in_w;
    const size_t pixels = (size_t)s->out_h * s->out_w;
    const size_t out_size = (size_t)s->out_channels * pixels;
    const int threads = omp_get_max_threads();
#pragma omp parallel num_threads(threads)
    {
        const int tid = omp_get_thread_num(), nt = omp_get_num_threads();
        float *col = workspace + (size_t)tid * l.per_thread + l.col;
        int begin, end;
        image_block(s->batch, tid, nt, &begin, &end);
        for (int n = begin; n < end; n++) {
            const float *xi = x + (size_t)n * in_size;
            float *yi = y + (size_t)n * out_size;
            if (!pointwise) {
                st_im2col(xi, s->in_channels, s->in_h, s->in_w, s->kernel, s->stride, s->padding, s->out_h, s->out_w,
                          col);
                xi = col;
            }
            st_sparse_weight_matmul(w, xi, (int64_t)pixels, yi);
            if (bias) {
                for (int o = 0; o < s->out_channels; o++) {
                    float *restrict row = yi + (size_t)o * pixels;
                    const float b = bias[o];
#pragma omp simd
                    for (size_t p = 0; p < pixels; p++) row[p] += b;
                }
            }
        }
    }
}

void st_conv2d_backward(const st_conv2d_shape *s, const float *x, const st_sparse_weight *w, const float *dy,
                        float *dx, float *dw, float *dbias, float *workspace) {
    const conv_workspace_layout l = conv_layout(s);
    const int pointwise = conv_is_pointwise(s);
    const size_t in_size = (size_t)s->in_channels * s->in_h * s->in_w;
    const size_t pixels = (size_t)s->out_h * s->out_w;
    const size_t out_size = (size_t)s->out_channels * pixels;
    const size_t weight_size = (size_t)st_sparse_weight_numel(w);
    const int threads = omp_get_max_threads();
#pragma omp parallel num_threads(threads)
    {
        const int tid = omp_get_thread_num(), nt = omp_get_num_threads();
        float *slice = workspace + (size_t)tid * l.per_thread;
        float *col = slice + l.col, *dcol = slice + l.dcol, *grad = slice + l.grad;
        int begin, end;
        image_block(s->batch, tid, nt, &begin, &end);
        if (dw) memset(grad, 0, sizeof(float) * weight_size);
        for (int n = begin; n < end; n++) {
            const float *xi = x + (size_t)n * in_size;
            const float *dyi = dy + (size_t)n * out_size;
            if (dw) {
                const float *xcol = xi;
                if (!pointwise) {
                    st_im2col(xi, s->in_channels, s->in_h, s->in_w, s->kernel, s->stride, s->padding, s->out_h,
                              s->out_w, col);
                    xcol = col;
                }
                st_sparse_weight_accumulate_grad(w, dyi, xcol, (int64_t)pixels, grad);
            }
            if (dx) {
                float *dxi = dx + (size_t)n * in_size;
                st_sparse_weight_matmul_transposed(w, dyi, (int64_t)pixels, dcol);
                if (pointwise) {
#pragma omp simd
                    for (size_t i = 0; i < in_size; i++) dxi[i] += dcol[i];
                } else {
                    st_col2im_add(dcol, s->in_channels, s->in_h, s->in_w, s->kernel, s->stride, s->padding, s->out_h,
                                  s->out_w, dxi);
                }
            }
        }
        if (dw) {
#pragma omp barrier
            /* Each thread owns one fixed range of elements; element j becomes
             * ((g0 + g1) + g2) + ... in thread order: deterministic. */
            const size_t j0 = weight_size * (size_t)tid / (size_t)nt;
            const size_t j1 = weight_size * (size_t)(tid + 1) / (size_t)nt;
            float *restrict grad0 = workspace + l.grad;
            for (int t = 1; t < nt; t++) {
                const float *restrict other = workspace + (size_t)t * l.per_thread + l.grad;
#pragma omp simd
                for (size_t j = j0; j < j1; j++) grad0[j] += other[j];
            }
#pragma omp simd
            for (size_t j = j0; j < j1; j++) dw[j] += grad0[j];
        }
        if (dbias) conv_bias_grad(s, dy, dbias);
    }
}

/* ------------------------------------------------------------------ plans */

/* conv_bias_grad for dy in channel blocks of B: (N, C/B, H*W, B). */
static void conv_bias_grad_blocked(const st_conv2d_shape *s, int B, const float *dy, float *dbias) {
    const size_t pixels = (size_t)s->out_h * s->out_w, blocks = (size_t)(s->out_channels / B);
#pragma omp parallel for schedule(static)
    for (int o = 0; o < s->out_channels; o++) {
        double sum = 0.0;
        for (int n = 0; n < s->batch; n++) {
            const float *t = dy + (((size_t)n * blocks + (size_t)(o / B)) * pixels) * (size_t)B + (size_t)(o % B);
            float part = 0.0f;
            for (size_t p = 0; p < pixels; p++) part += t[p * (size_t)B];
            sum += part;
        }
        dbias[o] += (float)sum;
    }
}

struct st_conv2d_plan {
    st_conv2d_shape shape;
    int has_bias;
    st_conv2d_backend backend; /* REFERENCE or ONEDNN, never AUTO */
    int output_block;          /* layout of y: 1 = NCHW, B = channel blocks of B */
    st_onednn_conv *onednn;
};

/* AUTO: the caller's process-wide choice (core/runtime.h). */
static st_conv2d_backend backend_from_runtime(void) { return (st_conv2d_backend)st_runtime_get()->conv_backend; }

st_status st_conv2d_plan_create(const st_conv2d_shape *s, int has_bias, st_conv2d_backend backend,
                                st_conv2d_plan **out) {
    return st_conv2d_plan_create_blocked(s, has_bias, backend, 1, 1, out);
}

st_status st_conv2d_plan_create_blocked(const st_conv2d_shape *s, int has_bias, st_conv2d_backend backend,
                                        int x_block, int y_block, st_conv2d_plan **out) {
    *out = NULL;
    st_conv2d_plan *p = st_calloc(1, sizeof *p, "convolution plan");
    if (!p) return ST_ERR_NOMEM;
    p->shape = *s;
    p->has_bias = has_bias;
    if (backend == ST_CONV2D_AUTO) backend = backend_from_runtime();
    p->backend = ST_CONV2D_REFERENCE;
    p->output_block = 1;
    const int plain = x_block == 1 && y_block == 1;
    if (backend != ST_CONV2D_REFERENCE) {
        st_status status = st_onednn_conv_create(s->batch, s->in_channels, s->in_h, s->in_w, s->out_channels,
                                                 s->kernel, s->stride, s->padding, has_bias, x_block, y_block,
                                                 &p->onednn);
        if (status == ST_OK) {
            p->backend = ST_CONV2D_ONEDNN;
            p->output_block = st_onednn_conv_output_block(p->onednn);
        } else if (backend == ST_CONV2D_ONEDNN || status == ST_ERR_NOMEM || !plain) {
            free(p); /* asked for explicitly, or a layout only oneDNN has: report why it failed */
            return status;
        }
    } else if (!plain) {
        free(p);
        return st_fail(ST_ERR_ARGUMENT, "convolution: the reference backend works on NCHW activations only");
    }
    *out = p;
    return ST_OK;
}

void st_conv2d_plan_free(st_conv2d_plan *p) {
    if (!p) return;
    st_onednn_conv_free(p->onednn);
    free(p);
}

const st_conv2d_shape *st_conv2d_plan_shape(const st_conv2d_plan *p) { return &p->shape; }
st_conv2d_backend st_conv2d_plan_backend(const st_conv2d_plan *p) { return p->backend; }
int st_conv2d_plan_output_block(const st_conv2d_plan *p) { return p->output_block; }

const char *st_conv2d_plan_implementation(const st_conv2d_plan *p, int which) {
    return p->backend == ST_CONV2D_ONEDNN ? st_onednn_conv_implementation(p->onednn, which) : "reference";
}

/* ONEDNN workspace: [dense weight gradient | oneDNN's blocked copies and scratchpads]. */
static size_t dense_grad_floats(const st_conv2d_shape *s) {
    return round_up16((size_t)s->out_channels * s->in_channels * s->kernel * s->kernel);
}

size_t st_conv2d_plan_workspace_floats(const st_conv2d_plan *p, int threads) {
    if (p->backend == ST_CONV2D_ONEDNN) return dense_grad_floats(&p->shape) + st_onednn_conv_workspace_floats(p->onednn);
    return st_conv2d_workspace_floats(&p->shape, threads);
}

void st_conv2d_plan_forward(st_conv2d_plan *p, const float *x, const st_sparse_weight *w, const float *bias, float *y,
                            float *workspace) {
    if (p->backend != ST_CONV2D_ONEDNN) {
        st_conv2d_forward(&p->shape, x, w, bias, y, workspace);
        return;
    }
    ST_ASSERT(!bias == !p->has_bias);
    st_status s = st_onednn_conv_forward(p->onednn, x, st_sparse_weight_dense_values(w), bias, y,
                                         workspace + dense_grad_floats(&p->shape));
    ST_ASSERT(s == ST_OK);
}

void st_conv2d_plan_backward(st_conv2d_plan *p, const float *x, const st_sparse_weight *w, const float *dy, float *dx,
                             int dx_accumulate, float *dw, float *dbias, float *workspace) {
    if (p->backend != ST_CONV2D_ONEDNN) {
        if (dx && !dx_accumulate) {
            const st_conv2d_shape *s = &p->shape;
            memset(dx, 0, sizeof(float) * (size_t)s->batch * s->in_channels * s->in_h * s->in_w);
        }
        st_conv2d_backward(&p->shape, x, w, dy, dx, dw, dbias, workspace);
        return;
    }
    float *grad = workspace; /* the dense gradient, masked on its way into dw */
    st_status s = st_onednn_conv_backward(p->onednn, x, st_sparse_weight_dense_values(w), dy, dx, dx_accumulate,
                                          dw ? grad : NULL, workspace + dense_grad_floats(&p->shape));
    ST_ASSERT(s == ST_OK);
    if (dw) st_sparse_weight_accumulate_dense_grad(w, grad, dw);
    if (dbias && p->output_block == 1) {
#pragma omp parallel
        conv_bias_grad(&p->shape, dy, dbias);
    } else if (dbias) {
        conv_bias_grad_blocked(&p->shape, p->output_block, dy, dbias);
    }
}
