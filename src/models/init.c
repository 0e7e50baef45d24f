/* Kaiming-normal initialisation (fan-in, gain sqrt 2) for CIFAR ResNets and
 * LeNets; VGG uses fan-out for convs and normal(0, 0.01) for the classifier.
 * Biases follow PyTorch's default uniform(+-1/sqrt(fan_in)) (VGG: zero).
 * The ImageNet family (ResNet*, WideResNet*) follows the reference's
 * ImageNet resnet.py: conv weights Kaiming-normal with fan-out ("classic")
 * or fan-in ("fanin"), the classifier nn.Linear's default (weight and bias
 * uniform(+-1/sqrt(fan_in))); --scaled scales the conv fan by the density. */
#include "models/init.h"

#include <math.h>
#include <string.h>

#include "core/rng.h"

void st_model_init_weights(st_model *m, uint64_t seed, st_init_scaling scaling, double density,
                           const double *layer_density) {
    int is_vgg = strncmp(m->name, "vgg", 3) == 0;
    for (int i = 0; i < m->n_params; i++) {
        st_param *p = &m->params[i];
        if (p->is_buffer || p->fan_in <= 0) continue; /* BN parameters keep 1 / 0 */
        st_rng rng;
        st_rng_seed(&rng, seed, st_hash_string(p->name));
        if (p->sparse) {
            double std;
            if (m->imagenet_init && p->ndim == 2) {
                double bound = 1.0 / sqrt(p->fan_in); /* kaiming_uniform(a = sqrt 5): gain sqrt(1/3) * sqrt(3 / fan_in) */
                for (int64_t k = 0; k < p->numel; k++)
                    p->value[k] = (float)(bound * (2.0 * st_rng_uniform_double(&rng) - 1.0));
                st_sparse_weight_apply_mask(p->sparse, p->value);
                continue;
            }
            if (is_vgg)
                std = p->ndim == 4 ? sqrt(2.0 / p->fan_out) : 0.01;
            else {
                double fan = m->imagenet_init == ST_IMAGENET_INIT_CLASSIC ? p->fan_out : p->fan_in;
                if (scaling == ST_INIT_SCALED) fan *= density;
                if (scaling == ST_INIT_SCALED_LAYER && layer_density) fan *= layer_density[i];
                std = sqrt(2.0 / fan);
            }
            for (int64_t k = 0; k < p->numel; k++) p->value[k] = (float)(std * st_rng_normal(&rng));
            st_sparse_weight_apply_mask(p->sparse, p->value);
        } else {
            double bound = is_vgg ? 0.0 : 1.0 / sqrt(p->fan_in);
            for (int64_t k = 0; k < p->numel; k++)
                p->value[k] = (float)(bound * (2.0 * st_rng_uniform_double(&rng) - 1.0));
        }
    }
}
