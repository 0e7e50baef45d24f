/* FLOPs of one forward pass and one training step (SPEC 4 and 7), dense and
 * sparse. Pure functions of shapes and densities; the model walker reads the
 * shapes off an st_model graph. Unit: one multiply-accumulate of a conv or
 * linear layer counts as one FLOP (the convention of thop, ptflops and most
 * pruning papers); see docs/DISTRIBUTIONS.md for the whole rule. */
#ifndef ST_SPARSE_FLOPS_H
#define ST_SPARSE_FLOPS_H

#include <stdint.h>

#include "models/model.h"

/* A training step costs this many forward passes: the forward itself, and a
 * backward of two products of the same size per layer (input gradient and
 * weight gradient), as RigL's FLOPs accounting. A sparse layer's weight
 * gradient is needed at kept positions only, so all three scale with d_l. */
#define ST_TRAIN_STEP_FORWARDS 3.0

/* Multiply-accumulates of one image through a convolution with output
 * out_h x out_w x out_channels and kernel in_channels x kh x kw (dense). */
double st_conv2d_macs(int64_t out_h, int64_t out_w, int64_t out_channels, int64_t in_channels, int64_t kh,
                      int64_t kw);
/* Multiply-accumulates of one example through a linear layer in -> out. */
double st_linear_macs(int64_t in_features, int64_t out_features);
/* The sparse cost of a layer: dense * density (a kept weight costs one MAC
 * per output position, a pruned one nothing). */
double st_sparse_macs(double dense_macs, double density);

/*! Forward FLOPs of one example through `m`:
 *   layer_macs[l] -- dense MACs of prunable layer l (st_model_prunable_layers
 *                    order; caller passes room for all of them);
 *   *other        -- everything else, elementwise: batch norm 2 per element
 *                    (scale and shift), ReLU 1, residual add 1, bias 1 per
 *                    output, max/avg pooling kernel^2 per output, global
 *                    average pooling 1 per input element.
 * @return ST_ERR_ARGUMENT if an op's weight is not a prunable layer. */
st_status st_model_forward_flops(const st_model *m, double *layer_macs, double *other);

#endif
