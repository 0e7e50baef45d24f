/* Batch normalisation over (batch, channels, spatial) with PyTorch
 * semantics: biased batch variance to normalise, unbiased variance in the
 * running estimate, new = (1 - momentum) * old + momentum * batch.
 * Statistics are accumulated in double; work is split over channels.
 * gamma/beta may be NULL (no affine), running stats may be NULL (not tracked). */
#include <math.h>

#include "nn/layers.h"

/* Enough work per call to be worth waking the thread team. */
#define BN_PARALLEL_MIN_ELEMENTS 16384

/* y = (x - mean) * scale + shift over channel c. Subtracting the mean first
 * (rather than folding it into the shift) keeps digits when |mean| >> std. */
static void bn_normalise(const st_batchnorm_shape *s, int c, const float *x, float mean, float scale, float shift,
                         float *y) {
    const size_t plane_stride = (size_t)s->channels * s->spatial;
    for (int n = 0; n < s->batch; n++) {
        const float *restrict xp = x + (size_t)n * plane_stride + (size_t)c * s->spatial;
        float *restrict yp = y + (size_t)n * plane_stride + (size_t)c * s->spatial;
#pragma omp simd
        for (int i = 0; i < s->spatial; i++) yp[i] = (xp[i] - mean) * scale + shift;
    }
}

void st_batchnorm_forward_train(const st_batchnorm_shape *s, const float *x, const float *gamma, const float *beta,
                                float *y, float *save_mean, float *save_invstd, float *running_mean,
                                float *running_var) {
    const int N = s->batch, C = s->channels, S = s->spatial;
    const int64_t count = (int64_t)N * S;
    const size_t plane_stride = (size_t)C * S;
#pragma omp parallel for schedule(static) if (count * C >= BN_PARALLEL_MIN_ELEMENTS)
    for (int c = 0; c < C; c++) {
        double sum = 0.0, sumsq = 0.0;
        for (int n = 0; n < N; n++) {
            const float *xp = x + (size_t)n * plane_stride + (size_t)c * S;
            double ps = 0.0, pss = 0.0;
#pragma omp simd reduction(+ : ps, pss)
            for (int i = 0; i < S; i++) {
                double v = xp[i];
                ps += v;
                pss += v * v;
            }
            sum += ps;
            sumsq += pss;
        }
        const double mean = sum / (double)count;
        double var = sumsq / (double)count - mean * mean;
        if (var < 0.0) var = 0.0;
        const double invstd = 1.0 / sqrt(var + (double)s->eps);
        if (save_mean) save_mean[c] = (float)mean;
        if (save_invstd) save_invstd[c] = (float)invstd;
        if (running_mean && running_var) {
            const double unbiased = count > 1 ? var * (double)count / (double)(count - 1) : var;
            const double m = (double)s->momentum;
            running_mean[c] = (float)((1.0 - m) * running_mean[c] + m * mean);
            running_var[c] = (float)((1.0 - m) * running_var[c] + m * unbiased);
        }
        bn_normalise(s, c, x, (float)mean, (float)((gamma ? (double)gamma[c] : 1.0) * invstd),
                     beta ? beta[c] : 0.0f, y);
    }
}

void st_batchnorm_forward_eval(const st_batchnorm_shape *s, const float *x, const float *gamma, const float *beta,
                               const float *running_mean, const float *running_var, float *y) {
    const int N = s->batch, C = s->channels, S = s->spatial;
#pragma omp parallel for schedule(static) if ((int64_t)N * S * C >= BN_PARALLEL_MIN_ELEMENTS)
    for (int c = 0; c < C; c++) {
        const double invstd = 1.0 / sqrt((double)running_var[c] + (double)s->eps);
        bn_normalise(s, c, x, running_mean[c], (float)((gamma ? (double)gamma[c] : 1.0) * invstd),
                     beta ? beta[c] : 0.0f, y);
    }
}

/* With xhat = (x - mean) * invstd and M = batch * spatial:
 *   dbeta += sum dy,  dgamma += sum dy * xhat,
 *   dx += gamma * invstd * (dy - sum(dy) / M - xhat * sum(dy * xhat) / M). */
void st_batchnorm_backward(const st_batchnorm_shape *s, const float *x, const float *gamma, const float *save_mean,
                           const float *save_invstd, const float *dy, float *dx, float *dgamma, float *dbeta) {
    const int N = s->batch, C = s->channels, S = s->spatial;
    const int64_t count = (int64_t)N * S;
    const size_t plane_stride = (size_t)C * S;
#pragma omp parallel for schedule(static) if (count * C >= BN_PARALLEL_MIN_ELEMENTS)
    for (int c = 0; c < C; c++) {
        const float mean = save_mean[c];
        const double invstd = save_invstd[c];
        double sum_dy = 0.0, sum_dy_xmu = 0.0;
        for (int n = 0; n < N; n++) {
            const size_t off = (size_t)n * plane_stride + (size_t)c * S;
            const float *xp = x + off, *dyp = dy + off;
            double a = 0.0, b = 0.0;
#pragma omp simd reduction(+ : a, b)
            for (int i = 0; i < S; i++) {
                double d = dyp[i];
                a += d;
                b += d * ((double)xp[i] - (double)mean);
            }
            sum_dy += a;
            sum_dy_xmu += b;
        }
        if (dbeta) dbeta[c] += (float)sum_dy;
        if (dgamma) dgamma[c] += (float)(sum_dy_xmu * invstd);
        if (!dx) continue;
        const double g = gamma ? (double)gamma[c] : 1.0;
        /* dx += k * dy - k * invstd^2 * sum_dy_xmu / M * (x - mean) - k * sum_dy / M, with k = gamma * invstd;
         * x - mean is formed first so a large mean does not cancel digits away. */
        const double k = g * invstd;
        const float a = (float)k;
        const float b = (float)(k * invstd * invstd * sum_dy_xmu / (double)count);
        const float c0 = (float)(-k * sum_dy / (double)count);
        for (int n = 0; n < N; n++) {
            const size_t off = (size_t)n * plane_stride + (size_t)c * S;
            const float *restrict xp = x + off;
            const float *restrict dyp = dy + off;
            float *restrict dxp = dx + off;
#pragma omp simd
            for (int i = 0; i < S; i++) dxp[i] += a * dyp[i] - b * (xp[i] - mean) + c0;
        }
    }
}
