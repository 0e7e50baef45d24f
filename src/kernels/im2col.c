/* Scalar im2col / col2im. Each output row is split once into
 * [padding | valid | padding] so the valid part is a plain (strided) copy
 * with no per-element bounds test. */
#include "kernels/im2col.h"

#include <string.h>

void st_im2col_valid_range(int w, int out_w, int stride, int padding, int offset, int *lo, int *hi) {
    int first = padding - offset; /* need o*stride >= first */
    int l = first <= 0 ? 0 : (first + stride - 1) / stride;
    int last = w - 1 + padding - offset; /* need o*stride <= last */
    int h = last < 0 ? 0 : last / stride + 1;
    if (h > out_w) h = out_w;
    if (l > h) l = h;
    *lo = l;
    *hi = h;
}

void st_im2col(const float *x, int channels, int h, int w, int kernel, int stride, int padding, int out_h, int out_w,
               float *col) {
    const size_t plane_out = (size_t)out_h * out_w;
    for (int c = 0; c < channels; c++) {
        const float *plane = x + (size_t)c * h * w;
        for (int kh = 0; kh < kernel; kh++) {
            for (int kw = 0; kw < kernel; kw++) {
                float *row = col + ((size_t)(c * kernel + kh) * kernel + kw) * plane_out;
                int lo, hi;
                st_im2col_valid_range(w, out_w, stride, padding, kw, &lo, &hi);
                for (int oy = 0; oy < out_h; oy++) {
                    float *restrict dst = row + (size_t)oy * out_w;
                    int iy = oy * stride - padding + kh;
                    if (iy < 0 || iy >= h) {
                        memset(dst, 0, sizeof(float) * (size_t)out_w);
                        continue;
                    }
                    /* first valid input element; lo*stride - padding + kw >= 0 by construction */
                    const float *restrict src = plane + (size_t)iy * w + (lo * stride - padding + kw);
                    for (int o = 0; o < lo; o++) dst[o] = 0.0f;
                    if (stride == 1) {
                        if (hi > lo) memcpy(dst + lo, src, sizeof(float) * (size_t)(hi - lo));
                    } else {
                        for (int o = lo; o < hi; o++) dst[o] = src[(size_t)(o - lo) * stride];
                    }
                    for (int o = hi; o < out_w; o++) dst[o] = 0.0f;
                }
            }
        }
    }
}

void st_col2im_add(const float *col, int channels, int h, int w, int kernel, int stride, int padding, int out_h,
                   int out_w, float *dx) {
    const size_t plane_out = (size_t)out_h * out_w;
    for (int c = 0; c < channels; c++) {
        float *plane = dx + (size_t)c * h * w;
        for (int kh = 0; kh < kernel; kh++) {
            for (int kw = 0; kw < kernel; kw++) {
                const float *row = col + ((size_t)(c * kernel + kh) * kernel + kw) * plane_out;
                int lo, hi;
                st_im2col_valid_range(w, out_w, stride, padding, kw, &lo, &hi);
                for (int oy = 0; oy < out_h; oy++) {
                    int iy = oy * stride - padding + kh;
                    if (iy < 0 || iy >= h) continue;
                    if (hi <= lo) continue;
                    const float *restrict src = row + (size_t)oy * out_w + lo;
                    float *restrict dst = plane + (size_t)iy * w + (lo * stride - padding + kw);
                    const int n = hi - lo;
                    if (stride == 1) {
#pragma omp simd
                        for (int o = 0; o < n; o++) dst[o] += src[o];
                    } else {
                        for (int o = 0; o < n; o++) dst[(size_t)o * stride] += src[o];
                    }
                }
            }
        }
    }
}
