/* Max pooling (square window, stride, padding: padded positions never win,
 * as PyTorch's -inf padding), average pooling (no padding) and global
 * average pooling, NCHW. Each (image, channel) plane is independent, so the
 * planes are split over threads and backward scatters need no atomics.
 * argmax holds the index of the winner inside its input plane (ih * in_w + iw),
 * as PyTorch's max_pool2d(return_indices=True). */
#include "nn/layers.h"

#define POOL_PARALLEL_MIN 16384

void st_pool_shape_init(st_pool_shape *s, int batch, int channels, int in_h, int in_w, int kernel, int stride,
                        int padding) {
    s->batch = batch;
    s->channels = channels;
    s->in_h = in_h;
    s->in_w = in_w;
    s->kernel = kernel;
    s->stride = stride;
    s->padding = padding;
    s->out_h = (in_h + 2 * padding - kernel) / stride + 1;
    s->out_w = (in_w + 2 * padding - kernel) / stride + 1;
}

void st_maxpool_forward(const st_pool_shape *s, const float *x, float *y, int32_t *argmax) {
    const int64_t planes = (int64_t)s->batch * s->channels;
    const size_t in_plane = (size_t)s->in_h * s->in_w, out_plane = (size_t)s->out_h * s->out_w;
#pragma omp parallel for schedule(static) if (planes * (int64_t)in_plane >= POOL_PARALLEL_MIN)
    for (int64_t p = 0; p < planes; p++) {
        const float *xp = x + (size_t)p * in_plane;
        float *yp = y + (size_t)p * out_plane;
        int32_t *ap = argmax ? argmax + (size_t)p * out_plane : NULL;
        for (int oy = 0; oy < s->out_h; oy++) {
            /* the window clipped to the image (padding <= kernel / 2 keeps it non-empty) */
            const int y0 = oy * s->stride - s->padding;
            const int ky0 = y0 < 0 ? -y0 : 0, ky1 = y0 + s->kernel > s->in_h ? s->in_h - y0 : s->kernel;
            for (int ox = 0; ox < s->out_w; ox++) {
                const int x0 = ox * s->stride - s->padding;
                const int kx0 = x0 < 0 ? -x0 : 0, kx1 = x0 + s->kernel > s->in_w ? s->in_w - x0 : s->kernel;
                int best = (y0 + ky0) * s->in_w + x0 + kx0;
                float best_value = xp[best];
                for (int ky = ky0; ky < ky1; ky++) {
                    for (int kx = kx0; kx < kx1; kx++) {
                        const int idx = (y0 + ky) * s->in_w + x0 + kx;
                        const float v = xp[idx];
                        /* first maximum wins; a NaN wins (and propagates) like in PyTorch */
                        if (v > best_value || (v != v && best_value == best_value)) {
                            best_value = v;
                            best = idx;
                        }
                    }
                }
                yp[(size_t)oy * s->out_w + ox] = best_value;
                if (ap) ap[(size_t)oy * s->out_w + ox] = best;
            }
        }
    }
}

void st_maxpool_backward(const st_pool_shape *s, const int32_t *argmax, const float *dy, float *dx) {
    const int64_t planes = (int64_t)s->batch * s->channels;
    const size_t in_plane = (size_t)s->in_h * s->in_w, out_plane = (size_t)s->out_h * s->out_w;
#pragma omp parallel for schedule(static) if (planes * (int64_t)in_plane >= POOL_PARALLEL_MIN)
    for (int64_t p = 0; p < planes; p++) {
        const int32_t *ap = argmax + (size_t)p * out_plane;
        const float *dyp = dy + (size_t)p * out_plane;
        float *dxp = dx + (size_t)p * in_plane;
        for (size_t o = 0; o < out_plane; o++) dxp[ap[o]] += dyp[o];
    }
}

void st_avgpool_forward(const st_pool_shape *s, const float *x, float *y) {
    const int64_t planes = (int64_t)s->batch * s->channels;
    const size_t in_plane = (size_t)s->in_h * s->in_w, out_plane = (size_t)s->out_h * s->out_w;
    const float inv_area = 1.0f / (float)(s->kernel * s->kernel);
#pragma omp parallel for schedule(static) if (planes * (int64_t)in_plane >= POOL_PARALLEL_MIN)
    for (int64_t p = 0; p < planes; p++) {
        const float *xp = x + (size_t)p * in_plane;
        float *yp = y + (size_t)p * out_plane;
        for (int oy = 0; oy < s->out_h; oy++) {
            for (int ox = 0; ox < s->out_w; ox++) {
                const float *window = xp + (size_t)oy * s->stride * s->in_w + (size_t)ox * s->stride;
                float sum = 0.0f;
                for (int ky = 0; ky < s->kernel; ky++)
                    for (int kx = 0; kx < s->kernel; kx++) sum += window[(size_t)ky * s->in_w + kx];
                yp[(size_t)oy * s->out_w + ox] = sum * inv_area;
            }
        }
    }
}

void st_avgpool_backward(const st_pool_shape *s, const float *dy, float *dx) {
    const int64_t planes = (int64_t)s->batch * s->channels;
    const size_t in_plane = (size_t)s->in_h * s->in_w, out_plane = (size_t)s->out_h * s->out_w;
    const float inv_area = 1.0f / (float)(s->kernel * s->kernel);
#pragma omp parallel for schedule(static) if (planes * (int64_t)in_plane >= POOL_PARALLEL_MIN)
    for (int64_t p = 0; p < planes; p++) {
        const float *dyp = dy + (size_t)p * out_plane;
        float *dxp = dx + (size_t)p * in_plane;
        for (int oy = 0; oy < s->out_h; oy++) {
            for (int ox = 0; ox < s->out_w; ox++) {
                const float g = dyp[(size_t)oy * s->out_w + ox] * inv_area;
                float *window = dxp + (size_t)oy * s->stride * s->in_w + (size_t)ox * s->stride;
                for (int ky = 0; ky < s->kernel; ky++)
                    for (int kx = 0; kx < s->kernel; kx++) window[(size_t)ky * s->in_w + kx] += g;
            }
        }
    }
}

void st_global_avgpool_forward(int batch, int channels, int spatial, const float *x, float *y) {
    const int64_t planes = (int64_t)batch * channels;
    const double inv = 1.0 / (double)spatial;
#pragma omp parallel for schedule(static) if (planes * spatial >= POOL_PARALLEL_MIN)
    for (int64_t p = 0; p < planes; p++) {
        const float *xp = x + (size_t)p * spatial;
        double sum = 0.0;
#pragma omp simd reduction(+ : sum)
        for (int i = 0; i < spatial; i++) sum += xp[i];
        y[p] = (float)(sum * inv);
    }
}

void st_global_avgpool_backward(int batch, int channels, int spatial, const float *dy, float *dx) {
    const int64_t planes = (int64_t)batch * channels;
    const float inv = 1.0f / (float)spatial;
#pragma omp parallel for schedule(static) if (planes * spatial >= POOL_PARALLEL_MIN)
    for (int64_t p = 0; p < planes; p++) {
        float *restrict dxp = dx + (size_t)p * spatial;
        const float g = dy[p] * inv;
#pragma omp simd
        for (int i = 0; i < spatial; i++) dxp[i] += g;
    }
}
