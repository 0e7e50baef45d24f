/* The scalar references of the direct sparse convolution (sparse_conv.h),
 * in double, one output at a time, that every fast pass is tested against;
 * and the CHWN layout changes. */
#include "kernels/sparse_conv.h"

#include <stdlib.h>
#include <string.h>

/* ---------------- scalar references ---------------- */

void st_spconv_channel_stats_reference(const st_spconv_geom *g, const float *y, double *stats) {
    const int64_t plane = (int64_t)g->out_h * g->out_w * g->batch;
    for (int o = 0; o < g->out_c; o++) {
        const float *yo = y + o * plane;
        const double k = yo[0];
        double s1 = 0.0, s2 = 0.0;
        for (int64_t j = 0; j < plane; j++) {
            const double d = (double)yo[j] - k;
            s1 += d;
            s2 += d * d;
        }
        stats[3 * o] = k, stats[3 * o + 1] = s1, stats[3 * o + 2] = s2;
    }
}

void st_spconv_bn_sums_reference(const st_spconv_geom *g, const float *dx, const st_spconv_bn_sums *bn) {
    const int64_t plane = (int64_t)g->in_h * g->in_w * g->batch;
    for (int i = 0; i < g->in_c; i++) {
        double s1 = 0.0, s2 = 0.0;
        for (int64_t j = i * plane; j < (i + 1) * plane; j++) {
            const double v = bn->y && !(bn->y[j] > 0.0f) ? 0.0 : (double)dx[j];
            s1 += v;
            s2 += v * ((double)bn->x[j] - (double)bn->mean[i]);
        }
        bn->sums[2 * i] = s1, bn->sums[2 * i + 1] = s2;
    }
}

static int64_t chwn(const st_spconv_geom *g, int c, int h, int w, int H, int W) {
    return (((int64_t)c * H + h) * W + w) * g->batch;
}

void st_spconv_forward_reference(const st_spconv_geom *g, const int64_t *row_ptr, const int32_t *col, const float *x,
                                 const float *w, const float *bias, float *y) {
    const int K = g->kernel, KK = K * K;
    for (int o = 0; o < g->out_c; o++)
        for (int oh = 0; oh < g->out_h; oh++)
            for (int ow = 0; ow < g->out_w; ow++)
                for (int n = 0; n < g->batch; n++) {
                    double s = bias ? bias[o] : 0.0;
                    for (int64_t e = row_ptr[o]; e < row_ptr[o + 1]; e++) {
                        const int i = col[e] / KK, kh = (col[e] % KK) / K, kw = col[e] % K;
                        const int ih = oh * g->stride - g->pad + kh, iw = ow * g->stride - g->pad + kw;
                        if (ih < 0 || ih >= g->in_h || iw < 0 || iw >= g->in_w) continue;
                        s += (double)w[e] * x[chwn(g, i, ih, iw, g->in_h, g->in_w) + n];
                    }
                    y[chwn(g, o, oh, ow, g->out_h, g->out_w) + n] = (float)s;
                }
}

void st_spconv_backward_data_reference(const st_spconv_geom *g, const int64_t *row_ptr, const int32_t *col,
                                       const float *dy, const float *w, float *dx, int accumulate) {
    const int K = g->kernel, KK = K * K;
    const int64_t in_size = (int64_t)g->in_c * g->in_h * g->in_w * g->batch;
    double *acc = calloc((size_t)in_size, sizeof(double));
    if (!acc) return;
    for (int o = 0; o < g->out_c; o++)
        for (int64_t e = row_ptr[o]; e < row_ptr[o + 1]; e++) {
            const int i = col[e] / KK, kh = (col[e] % KK) / K, kw = col[e] % K;
            for (int oh = 0; oh < g->out_h; oh++)
                for (int ow = 0; ow < g->out_w; ow++) {
                    const int ih = oh * g->stride - g->pad + kh, iw = ow * g->stride - g->pad + kw;
                    if (ih < 0 || ih >= g->in_h || iw < 0 || iw >= g->in_w) continue;
                    for (int n = 0; n < g->batch; n++)
                        acc[chwn(g, i, ih, iw, g->in_h, g->in_w) + n] +=
                            (double)w[e] * dy[chwn(g, o, oh, ow, g->out_h, g->out_w) + n];
                }
        }
    for (int64_t j = 0; j < in_size; j++) dx[j] = (float)((accumulate ? dx[j] : 0.0) + acc[j]);
    free(acc);
}

void st_spconv_backward_weight_reference(const st_spconv_geom *g, const int64_t *row_ptr, const int32_t *col,
                                         const float *x, const float *dy, float *dw, float *dbias) {
    const int K = g->kernel, KK = K * K;
    for (int o = 0; o < g->out_c; o++) {
        if (dbias) {
            double s = 0.0;
            for (int oh = 0; oh < g->out_h; oh++)
                for (int ow = 0; ow < g->out_w; ow++)
                    for (int n = 0; n < g->batch; n++) s += dy[chwn(g, o, oh, ow, g->out_h, g->out_w) + n];
            dbias[o] += (float)s;
        }
        for (int64_t e = row_ptr[o]; e < row_ptr[o + 1]; e++) {
            const int i = col[e] / KK, kh = (col[e] % KK) / K, kw = col[e] % K;
            double s = 0.0;
            for (int oh = 0; oh < g->out_h; oh++)
                for (int ow = 0; ow < g->out_w; ow++) {
                    const int ih = oh * g->stride - g->pad + kh, iw = ow * g->stride - g->pad + kw;
                    if (ih < 0 || ih >= g->in_h || iw < 0 || iw >= g->in_w) continue;
                    for (int n = 0; n < g->batch; n++)
                        s += (double)dy[chwn(g, o, oh, ow, g->out_h, g->out_w) + n] *
                             x[chwn(g, i, ih, iw, g->in_h, g->in_w) + n];
                }
            dw[e] += (float)s;
        }
    }
}

/* ---------------- layout changes ---------------- */

void st_nchw_to_chwn(const float *x, int batch, int channels, int spatial, float *y) {
    const int64_t plane = (int64_t)channels * spatial;
#pragma omp parallel for schedule(static) if (plane * batch > 65536)
    for (int64_t cs = 0; cs < plane; cs++)
        for (int n = 0; n < batch; n++) y[cs * batch + n] = x[(int64_t)n * plane + cs];
}

void st_chwn_to_nchw(const float *x, int batch, int channels, int spatial, float *y, int accumulate) {
    const int64_t plane = (int64_t)channels * spatial;
#pragma omp parallel for schedule(static) if (plane * batch > 65536)
    for (int n = 0; n < batch; n++)
        for (int64_t cs = 0; cs < plane; cs++) {
            const float v = x[cs * batch + n];
            y[(int64_t)n * plane + cs] = accumulate ? y[(int64_t)n * plane + cs] + v : v;
        }
}
