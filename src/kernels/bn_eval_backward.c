/* Evaluation-mode batch norm backward (see bn_eval_backward.h): one pass over
 * the elements for dx / dresidual, per-channel sums in double for dgamma and
 * dbeta, accumulated in a fixed order so results do not depend on threads. */
#include "kernels/bn_eval_backward.h"

#include <math.h>
#include <stdlib.h>

/* Channel of the element at flat index i of an image for the layout of s. */
static int channel_of(const st_bn_act_shape *s, int64_t i) {
    if (s->block <= 1) return (int)(i / s->spatial);
    const int64_t per_block = (int64_t)s->spatial * s->block;
    return (int)(i / per_block) * s->block + (int)(i % s->block);
}

void st_bn_act_backward_eval(const st_bn_act_shape *s, const float *x, const float *y, int relu, const float *dy,
                             const float *gamma, const float *running_mean, const float *running_var, float eps,
                             float *dx, int dx_accumulate, float *dresidual, int dresidual_accumulate, float *dgamma,
                             float *dbeta) {
    const int channels = s->channels;
    const int64_t image = (int64_t)channels * s->spatial;
    float *scale = malloc(sizeof(float) * (size_t)channels);
    float *invstd = malloc(sizeof(float) * (size_t)channels);
    double *sum_g = dbeta || dgamma ? calloc((size_t)channels, sizeof(double)) : NULL;
    double *sum_gx = dgamma ? calloc((size_t)channels, sizeof(double)) : NULL;
    if (!scale || !invstd || ((dbeta || dgamma) && !sum_g) || (dgamma && !sum_gx)) {
        /* no error channel in a kernel: compute dx per element without the tables;
         * dgamma / dbeta (unused by attacks, the only caller) are then left as they are */
        free(scale), free(invstd), free(sum_g), free(sum_gx);
        scale = invstd = NULL;
        sum_g = sum_gx = NULL;
    }
    for (int c = 0; scale && c < channels; c++) {
        invstd[c] = 1.0f / sqrtf(running_var[c] + eps);
        scale[c] = (gamma ? gamma[c] : 1.0f) * invstd[c];
    }
#pragma omp parallel for schedule(static)
    for (int n = 0; n < s->batch; n++) {
        const int64_t base = (int64_t)n * image;
        for (int64_t i = 0; i < image; i++) {
            const int c = channel_of(s, i);
            const float g = relu && !(y[base + i] > 0) ? 0.0f : dy[base + i];
            if (dresidual) dresidual[base + i] = dresidual_accumulate ? dresidual[base + i] + g : g;
            if (dx) {
                const float sc = scale ? scale[c] : (gamma ? gamma[c] : 1.0f) / sqrtf(running_var[c] + eps);
                dx[base + i] = dx_accumulate ? dx[base + i] + g * sc : g * sc;
            }
        }
    }
    if (sum_g) {
        for (int n = 0; n < s->batch; n++) {
            const int64_t base = (int64_t)n * image;
            for (int64_t i = 0; i < image; i++) {
                const int c = channel_of(s, i);
                const double g = relu && !(y[base + i] > 0) ? 0.0 : dy[base + i];
                sum_g[c] += g;
                if (sum_gx) sum_gx[c] += g * ((double)x[base + i] - running_mean[c]) * invstd[c];
            }
        }
        for (int c = 0; c < channels; c++) {
            if (dbeta) dbeta[c] += (float)sum_g[c];
            if (dgamma) dgamma[c] += (float)sum_gx[c];
        }
    }
    free(scale), free(invstd), free(sum_g), free(sum_gx);
}
