/* Layer-wise densities read off a network instead of its shapes (SPEC 4):
 * SNIP and GraSP saliency on real training data, and global magnitude. As in
 * the reference code only the resulting per-layer RATIOS are used; the caller
 * then samples random masks at those ratios (sparse/masks.h). */
#ifndef ST_SALIENCY_SALIENCY_H
#define ST_SALIENCY_SALIENCY_H

#include <stdint.h>

#include "data/dataset.h"
#include "models/model.h"

#define ST_GRASP_TEMPERATURE 200.0   /* logits are divided by T before the loss */
#define ST_GRASP_SAMPLES_PER_CLASS 10

/* Images the data-driven distributions score on (NCHW floats, normalised as
 * the model sees them in training). */
typedef struct st_saliency_batch {
    float *images;   /* (count, C, H, W) */
    int32_t *labels; /* (count) */
    int count;
} st_saliency_batch;

/*! Per-layer densities (prunable layers in parameter order, as
 * st_model_prunable_layers) for any --sparse_init value: the pure
 * distributions of sparse/distributions.h from `m`'s shapes, and
 *   snip             -- Xavier-normal re-initialised copy of `m`, scores |g*w| on `batch` (NLL loss);
 *   GraSP            -- copy of `m` as it is, scores -w*(Hg) on `batch` (ordered class by class),
 *                       logits / ST_GRASP_TEMPERATURE, loss summed over the two halves of the batch;
 *   global_magnitude -- |w| of `m` as it is (no data; `batch` may be NULL).
 * For the three of them the top d*N scores over all layers are kept (GraSP:
 * the lowest, as the GraSP paper) and each layer's density is its share kept.
 * `m` must hold its initialised dense weights; it is not modified (SNIP
 * works on a copy). `seed` drives the SNIP re-initialisation.
 * @return ST_ERR_ARGUMENT for an unknown name, a density outside (0, 1], a
 * missing batch or an unreachable distribution; ST_ERR_NUMERIC if a score is
 * NaN; ST_ERR_NOMEM. */
st_status st_model_layer_densities(const st_model *m, const char *sparse_init, double density, double fc_density,
                                   const st_saliency_batch *batch, uint64_t seed, double *densities);

/*! Collects the images a data-driven distribution scores on from a training
 * loader, as the reference does: snip takes the first batch of epoch 0; GraSP
 * scans epoch 0 for the first `samples_per_class` images of every class and
 * returns them ordered class by class. The loader is left mid-epoch: the
 * caller starts its epoch again (batches depend only on seed and epoch, so
 * training sees the same batches as without this call). Free with
 * st_saliency_batch_free. ST_ERR_ARGUMENT for other methods or no images. */
st_status st_saliency_collect(const char *sparse_init, st_loader *loader, int num_classes, int channels, int height,
                              int width, int samples_per_class, st_saliency_batch *out);
void st_saliency_batch_free(st_saliency_batch *b);

/* ---- building blocks (exposed for the parity tests) ---- */

/*! Raw saliency of every prunable weight of `work`, on its current weights
 * (no re-initialisation): scores[l] gets numel(layer l) doubles.
 * method "snip": |dL/dw * w| (L = mean NLL of log_softmax(logits));
 * "GraSP": -w * (H g), g = sum over the two batch halves of dL_h/dw,
 * H g = sum_h H_h g (exact, saliency/hvp.h), L_h = mean NLL of
 * log_softmax(logits / T) on half h; "global_magnitude": |w|.
 * snip runs `work`'s own forward/backward, so its gradients and batch-norm
 * running statistics change; its weights do not. GraSP and global_magnitude
 * leave `work` untouched. */
st_status st_saliency_scores(const char *method, st_model *work, const st_saliency_batch *batch, double **scores);

/*! Global top-k selection over per-layer score arrays: keep_highest = 1 keeps
 * every score >= the k-th largest, k = floor(N * density) (SNIP, magnitude);
 * keep_highest = 0 removes r = floor(N * (1 - density)) by keeping every score
 * <= the r-th largest (GraSP; the reference's rule, which keeps that r-th
 * score itself). densities[l] = kept in layer l / numel[l]. */
st_status st_densities_from_scores(double *const *scores, const int64_t *numel, int n_layers, double density,
                                   int keep_highest, double *densities);

/*! Xavier-normal (Glorot) initialisation of every prunable weight, as
 * torch.nn.init.xavier_normal_: std = sqrt(2 / (fan_in + fan_out)), each
 * tensor from its own stream of `seed`. Other parameters are untouched. */
void st_model_init_xavier_normal(st_model *m, uint64_t seed);

#endif
