/* Exact Hessian-vector products of the training loss with respect to the
 * prunable weights, for GraSP (saliency/saliency.h): forward-over-reverse mode
 * (Pearlmutter's R-operator) over an st_model's operation list, built from
 * the same layer kernels (nn/layers.h) the model trains with. */
#ifndef ST_SALIENCY_HVP_H
#define ST_SALIENCY_HVP_H

#include <stdint.h>

#include "models/model.h"

/*! For L = mean over the batch of NLL(log_softmax(logit_scale * logits)),
 * with batch normalisation in training mode (batch statistics, running
 * statistics untouched) and every parameter of `m` as it is:
 *   grad[l][k] += dL/dw_l[k]                   (if grad != NULL)
 *   hvp[l][k]  += (H v)_l[k], H = d2L/dw dw    (if hvp != NULL; needs direction)
 * where l runs over the prunable layers (st_model_prunable_layers order), w
 * is the vector of all prunable weights and v = direction (one float array
 * per layer). ReLU and max pooling contribute their almost-everywhere second
 * derivative 0, as PyTorch's double backward does. `m` is not modified.
 * @return ST_ERR_ARGUMENT for a label outside [0, classes) or hvp without a
 * direction; ST_ERR_NOMEM. */
st_status st_model_loss_hvp(const st_model *m, const float *images, const int32_t *labels, int batch,
                            double logit_scale, float *const *direction, double *const *grad, double *const *hvp);

#endif
