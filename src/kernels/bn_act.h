/* Fused batch norm + residual add + ReLU passes for the training walk.
 * A ResNet block runs conv -> BN -> ReLU and conv -> BN -> add -> ReLU; done
 * one layer at a time that streams every activation through memory 3-5 times
 * and materialises tensors nobody else reads. These kernels do each group in
 * two passes (statistics, then normalise-add-clamp) and its backward in two
 * passes, with the semantics of the separate layers in nn/ (PyTorch's):
 *   forward  y = relu?( (x - mean) * invstd * gamma + beta [+ residual] )
 *   backward g = dy * (y > 0 | no relu);  dresidual (+)= g;
 *            dx (+)= BN backward of g;  dgamma += sum g * xhat;  dbeta += sum g.
 * "(+)=" is a flag per output: accumulate, or overwrite (the first gradient
 * written to an activation in a step needs no zeroed buffer).
 * Statistics: sums in double (shifted by one sample of the channel, so
 * |mean| >> std keeps its digits), images split statically over threads and
 * the partial sums reduced in thread order: one thread count gives
 * bit-identical results. Layout: NCHW (block = 1) or blocked
 * (N, C/B, H*W, B) as oneDNN's nChw16c (block = B, C % B == 0). */
#ifndef ST_KERNELS_BN_ACT_H
#define ST_KERNELS_BN_ACT_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/bf16.h"

typedef struct st_bn_act_shape {
    int batch, channels, spatial; /* spatial = H*W */
    int block;                    /* 1 = NCHW; B > 1 = channel blocks of B */
} st_bn_act_shape;

/* Doubles of scratch the functions below need with `threads` threads. */
size_t st_bn_act_scratch_doubles(const st_bn_act_shape *s, int threads);

/* Training forward: batch statistics (biased variance to normalise, the
 * unbiased one into the running estimate with `momentum`), then y.
 * gamma/beta, residual, running stats and save_* may be NULL. */
void st_bn_act_forward_train(const st_bn_act_shape *s, const float *x, const float *gamma, const float *beta,
                             const float *residual, int relu, float momentum, float eps, float *y, float *save_mean,
                             float *save_invstd, float *running_mean, float *running_var, double *scratch);

/* The same, for a channel-major shape (batch 1, block 1: each channel's
 * values contiguous, as the sparse executor's CHWN activations) whose
 * statistics the producer of x gathered while writing it (e.g.
 * st_spconv_forward_stats): per channel c, stats[3c] = shift,
 * stats[3c + 1] = sum (x - shift), stats[3c + 2] = sum (x - shift)^2 over its
 * `spatial` values. One pass over x instead of two. */
void st_bn_act_forward_train_stats(const st_bn_act_shape *s, const double *stats, const float *x, const float *gamma,
                                   const float *beta, const float *residual, int relu, float momentum, float eps,
                                   float *y, float *save_mean, float *save_invstd, float *running_mean,
                                   float *running_var);

/* Evaluation forward with the running statistics. */
void st_bn_act_forward_eval(const st_bn_act_shape *s, const float *x, const float *gamma, const float *beta,
                            const float *running_mean, const float *running_var, float eps, const float *residual,
                            int relu, float *y, double *scratch);

/* Backward of st_bn_act_forward_train. y (the forward output) is read only
 * when relu is set. dx, dresidual, dgamma, dbeta may each be NULL. */
void st_bn_act_backward(const st_bn_act_shape *s, const float *x, const float *y, int relu, const float *dy,
                        const float *gamma, const float *save_mean, const float *save_invstd, float *dx,
                        int dx_accumulate, float *dresidual, int dresidual_accumulate, float *dgamma, float *dbeta,
                        double *scratch);

/* The same, for a channel-major shape, with the two reductions already
 * gathered by the producer of dy (e.g. st_spconv_backward_data_bn_sums):
 * per channel c, sums[2c] = sum g, sums[2c + 1] = sum g * (x - save_mean[c]),
 * g = dy * (y > 0 | no relu). One pass over x, y, dy instead of two. (Not
 * used by the training walk: measured slower, see
 * st_spconv_backward_data_bn_sums.) */
void st_bn_act_backward_sums(const st_bn_act_shape *s, const double *sums, const float *x, const float *y, int relu,
                             const float *dy, const float *gamma, const float *save_mean, const float *save_invstd,
                             float *dx, int dx_accumulate, float *dresidual, int dresidual_accumulate, float *dgamma,
                             float *dbeta);

/* y = relu?(a + b) (b may be NULL: y = relu?(a)). */
void st_add_act_forward(int64_t n, const float *a, const float *b, int relu, float *y);
/* g = dy * (y > 0 | no relu); da (+)= g; db (+)= g (either may be NULL). */
void st_add_act_backward(int64_t n, const float *y, int relu, const float *dy, float *da, int da_accumulate, float *db,
                         int db_accumulate);

/* bf16 copies written in the same pass (--bf16: the activations and
 * gradients that bf16 convolutions read, exec/bf16_exec.h). Each function
 * below is the one above of the same name without _bf16, and also writes
 * its float result rounded to bf16 (kernels/bf16.h, as st_bf16_from_floats
 * would round it afterwards, bit for bit) into y_bf16 / dx_bf16 when that
 * is not NULL: the result is produced in pieces of a few KiB and each piece
 * is rounded while it is still in L1, which saves the separate rounding
 * pass over the tensor. The float results are the same bits as without the
 * bf16 output. Only unblocked layouts (block 1) take a bf16 output.
 * st_bn_act_backward_bf16's dx may be NULL when dx_bf16 is given: then the
 * input gradient is written only in bf16 (not accumulated: dx_accumulate 0). */
void st_bn_act_forward_train_bf16(const st_bn_act_shape *s, const float *x, const float *gamma, const float *beta,
                                  const float *residual, int relu, float momentum, float eps, float *y,
                                  st_bf16 *y_bf16, float *save_mean, float *save_invstd, float *running_mean,
                                  float *running_var, double *scratch);
void st_bn_act_forward_train_stats_bf16(const st_bn_act_shape *s, const double *stats, const float *x,
                                        const float *gamma, const float *beta, const float *residual, int relu,
                                        float momentum, float eps, float *y, st_bf16 *y_bf16, float *save_mean,
                                        float *save_invstd, float *running_mean, float *running_var);
void st_bn_act_forward_eval_bf16(const st_bn_act_shape *s, const float *x, const float *gamma, const float *beta,
                                 const float *running_mean, const float *running_var, float eps,
                                 const float *residual, int relu, float *y, st_bf16 *y_bf16, double *scratch);
void st_bn_act_backward_bf16(const st_bn_act_shape *s, const float *x, const float *y, int relu, const float *dy,
                             const float *gamma, const float *save_mean, const float *save_invstd, float *dx,
                             st_bf16 *dx_bf16, int dx_accumulate, float *dresidual, int dresidual_accumulate,
                             float *dgamma, float *dbeta, double *scratch);
void st_add_act_forward_bf16(int64_t n, const float *a, const float *b, int relu, float *y, st_bf16 *y_bf16);

/* Global average pooling of x (layout of s) into y (batch, channels), as
 * st_global_avgpool_forward (sums in double); backward dx (+)= dy / spatial. */
void st_bn_act_global_avgpool_forward(const st_bn_act_shape *s, const float *x, float *y);
void st_bn_act_global_avgpool_backward(const st_bn_act_shape *s, const float *dy, float *dx, int dx_accumulate);

#endif
