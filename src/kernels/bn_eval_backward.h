/* Backward of the evaluation-mode fused batch norm (+ residual add) (+ ReLU)
 * of kernels/bn_act.h. With running statistics, batch norm is a fixed
 * per-channel affine map, so its backward needs no batch reductions for dx:
 *   g = dy * (y > 0 | no relu);  dresidual (+)= g;
 *   dx (+)= g * gamma * invstd,  invstd = 1 / sqrt(running_var + eps);
 *   dgamma += sum g * (x - running_mean) * invstd;  dbeta += sum g (left as
 *   they are if the per-channel tables cannot be allocated).
 * Used when gradients are taken through a model in evaluation mode (the
 * input gradient of adversarial attacks, src/eval/attack.c). */
#ifndef ST_KERNELS_BN_EVAL_BACKWARD_H
#define ST_KERNELS_BN_EVAL_BACKWARD_H

#include "kernels/bn_act.h"

/* Layout and flags as st_bn_act_backward; dx, dresidual, dgamma, dbeta may
 * each be NULL; gamma may be NULL (scale 1). */
void st_bn_act_backward_eval(const st_bn_act_shape *s, const float *x, const float *y, int relu, const float *dy,
                             const float *gamma, const float *running_mean, const float *running_var, float eps,
                             float *dx, int dx_accumulate, float *dresidual, int dresidual_accumulate, float *dgamma,
                             float *dbeta);

#endif
