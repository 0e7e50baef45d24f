/* Pooling on CHWN activations (see chwn_ops.h). Threads split channels. */
#include "kernels/chwn_ops.h"

#include <stdlib.h>
#include <string.h>

#define PARALLEL_MIN_ELEMENTS 32768

void st_chwn_global_avgpool_forward(int channels, int spatial, int batch, const float *x, float *y) {
    const double inv = 1.0 / (double)spatial;
#pragma omp parallel for schedule(static) if ((int64_t)channels * spatial * batch > PARALLEL_MIN_ELEMENTS)
    for (int c = 0; c < channels; c++) {
        double *sum = calloc((size_t)batch, sizeof(double));
        const float *xc = x + (int64_t)c * spatial * batch;
        if (sum) {
            for (int s = 0; s < spatial; s++)
                for (int n = 0; n < batch; n++) sum[n] += xc[(int64_t)s * batch + n];
            for (int n = 0; n < batch; n++) y[(int64_t)c * batch + n] = (float)(sum[n] * inv);
        } else { /* no scratch: the same sums, one image at a time */
            for (int n = 0; n < batch; n++) {
                double t = 0.0;
                for (int s = 0; s < spatial; s++) t += xc[(int64_t)s * batch + n];
                y[(int64_t)c * batch + n] = (float)(t * inv);
            }
        }
        free(sum);
    }
}

void st_chwn_global_avgpool_backward(int channels, int spatial, int batch, const float *dy, float *dx, int accumulate) {
    const float inv = 1.0f / (float)spatial;
#pragma omp parallel for schedule(static) if ((int64_t)channels * spatial * batch > PARALLEL_MIN_ELEMENTS)
    for (int c = 0; c < channels; c++) {
        const float *g = dy + (int64_t)c * batch;
        for (int s = 0; s < spatial; s++) {
            float *d = dx + ((int64_t)c * spatial + s) * batch;
            if (accumulate)
                for (int n = 0; n < batch; n++) d[n] += g[n] * inv;
            else
                for (int n = 0; n < batch; n++) d[n] = g[n] * inv;
        }
    }
}

void st_chwn_pool_init(st_chwn_pool *p, int channels, int height, int width, int batch, int kernel, int stride,
                       int padding) {
    p->channels = channels, p->height = height, p->width = width, p->batch = batch;
    p->kernel = kernel, p->stride = stride, p->padding = padding;
    p->out_h = (height + 2 * padding - kernel) / stride + 1;
    p->out_w = (width + 2 * padding - kernel) / stride + 1;
}

static int64_t pool_elements(const st_chwn_pool *p) { return (int64_t)p->channels * p->height * p->width * p->batch; }

void st_chwn_maxpool_forward(const st_chwn_pool *p, const float *x, float *y, int32_t *argmax) {
    const int N = p->batch, W = p->width;
#pragma omp parallel for schedule(static) if (pool_elements(p) > PARALLEL_MIN_ELEMENTS)
    for (int c = 0; c < p->channels; c++) {
        const float *xc = x + (int64_t)c * p->height * W * N;
        for (int oh = 0; oh < p->out_h; oh++) {
            /* the window clipped to the image (padding <= kernel / 2 keeps it non-empty) */
            const int y0 = oh * p->stride - p->padding;
            const int kh0 = y0 < 0 ? -y0 : 0, kh1 = y0 + p->kernel > p->height ? p->height - y0 : p->kernel;
            for (int ow = 0; ow < p->out_w; ow++) {
                const int x0 = ow * p->stride - p->padding;
                const int kw0 = x0 < 0 ? -x0 : 0, kw1 = x0 + p->kernel > W ? W - x0 : p->kernel;
                const int64_t o = (((int64_t)c * p->out_h + oh) * p->out_w + ow) * N;
                for (int n = 0; n < N; n++) {
                    int32_t at = (y0 + kh0) * W + x0 + kw0;
                    float best = xc[(int64_t)at * N + n];
                    for (int kh = kh0; kh < kh1; kh++)
                        for (int kw = kw0; kw < kw1; kw++) {
                            const int32_t px = (y0 + kh) * W + x0 + kw;
                            const float v = xc[(int64_t)px * N + n];
                            /* first maximum wins; a NaN wins (and propagates) like in PyTorch */
                            if (v > best || (v != v && best == best)) {
                                best = v;
                                at = px;
                            }
                        }
                    y[o + n] = best;
                    argmax[o + n] = at;
                }
            }
        }
    }
}

void st_chwn_maxpool_backward(const st_chwn_pool *p, const int32_t *argmax, const float *dy, float *dx, int accumulate) {
    const int N = p->batch;
    const int64_t in_plane = (int64_t)p->height * p->width * N;
#pragma omp parallel for schedule(static) if (pool_elements(p) > PARALLEL_MIN_ELEMENTS)
    for (int c = 0; c < p->channels; c++) {
        float *dxc = dx + (int64_t)c * in_plane;
        if (!accumulate) memset(dxc, 0, sizeof(float) * (size_t)in_plane);
        const int64_t o0 = (int64_t)c * p->out_h * p->out_w * N;
        for (int64_t k = 0; k < (int64_t)p->out_h * p->out_w; k++)
            for (int n = 0; n < N; n++) {
                const int64_t o = o0 + k * N + n;
                dxc[(int64_t)argmax[o] * N + n] += dy[o];
            }
    }
}

void st_chwn_avgpool_forward(const st_chwn_pool *p, const float *x, float *y) {
    const int N = p->batch, W = p->width;
    const float inv = 1.0f / (float)(p->kernel * p->kernel);
#pragma omp parallel for schedule(static) if (pool_elements(p) > PARALLEL_MIN_ELEMENTS)
    for (int c = 0; c < p->channels; c++) {
        const float *xc = x + (int64_t)c * p->height * W * N;
        for (int oh = 0; oh < p->out_h; oh++)
            for (int ow = 0; ow < p->out_w; ow++) {
                float *yo = y + (((int64_t)c * p->out_h + oh) * p->out_w + ow) * N;
                for (int n = 0; n < N; n++) yo[n] = 0.0f;
                for (int kh = 0; kh < p->kernel; kh++)
                    for (int kw = 0; kw < p->kernel; kw++) {
                        const float *xs = xc + ((int64_t)(oh * p->stride + kh) * W + ow * p->stride + kw) * N;
                        for (int n = 0; n < N; n++) yo[n] += xs[n];
                    }
                for (int n = 0; n < N; n++) yo[n] *= inv;
            }
    }
}

void st_chwn_avgpool_backward(const st_chwn_pool *p, const float *dy, float *dx, int accumulate) {
    const int N = p->batch, W = p->width;
    const int64_t in_plane = (int64_t)p->height * W * N;
    const float inv = 1.0f / (float)(p->kernel * p->kernel);
#pragma omp parallel for schedule(static) if (pool_elements(p) > PARALLEL_MIN_ELEMENTS)
    for (int c = 0; c < p->channels; c++) {
        float *dxc = dx + (int64_t)c * in_plane;
        if (!accumulate) memset(dxc, 0, sizeof(float) * (size_t)in_plane);
        for (int oh = 0; oh < p->out_h; oh++)
            for (int ow = 0; ow < p->out_w; ow++) {
                const float *g = dy + (((int64_t)c * p->out_h + oh) * p->out_w + ow) * N;
                for (int kh = 0; kh < p->kernel; kh++)
                    for (int kw = 0; kw < p->kernel; kw++) {
                        float *d = dxc + ((int64_t)(oh * p->stride + kh) * W + ow * p->stride + kw) * N;
                        for (int n = 0; n < N; n++) d[n] += g[n] * inv;
                    }
            }
    }
}
