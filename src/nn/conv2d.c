/* 2-D convolution (square kernel, stride, zero padding) as im2col + matrix
 * product through st_sparse_weight, one image at a time, images split
 * statically over OpenMP threads. Weight gradients go to per-thread
 * accumulators reduced in fixed thread order, so a given thread count always
 * gives bit-identical results. */
#include <omp.h>
#include <string.h>

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
        if (dbias) {
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
    }
}
