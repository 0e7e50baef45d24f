/* vgg11/13/16/19 in the CIFAR form of the reference code: 3x3 conv + BN +
 * ReLU stages separated by 2x2 max pooling, 2x2 average pool, one linear. */
#include <stdio.h>

#include "core/status.h"
#include "models/builders.h"

#define M_POOL (-1)

static const int vgg11[] = {64, M_POOL, 128, M_POOL, 256, 256, M_POOL, 512, 512, M_POOL, 512, 512, 0};
static const int vgg13[] = {64, 64, M_POOL, 128, 128, M_POOL, 256, 256, M_POOL, 512, 512, M_POOL, 512, 512, 0};
static const int vgg16[] = {64,  64,  M_POOL, 128, 128, M_POOL, 256, 256, 256, M_POOL,
                            512, 512, 512,    M_POOL, 512, 512, 512, 0};
static const int vgg19[] = {64,  64,  M_POOL, 128, 128, M_POOL, 256, 256, 256, 256, M_POOL,
                            512, 512, 512,    512, M_POOL, 512, 512, 512, 512, 0};

st_status st_build_vgg(st_model *m, int depth) {
    const int *cfg = depth == 11 ? vgg11 : depth == 13 ? vgg13 : depth == 16 ? vgg16 : depth == 19 ? vgg19 : NULL;
    if (!cfg) return st_fail(ST_ERR_ARGUMENT, "vgg depth %d is not one of 11, 13, 16, 19", depth);
    int x = 0, position = 0;
    char name[ST_NAME_MAX];
    for (int i = 0; cfg[i] != 0 && x >= 0; i++) {
        if (cfg[i] == M_POOL) {
            x = st_model_add_maxpool(m, x, 2, 2);
            position += 1;
        } else {
            snprintf(name, sizeof name, "feature.%d", position);
            x = st_model_add_conv(m, x, name, cfg[i], 3, 1, 1, 0);
            snprintf(name, sizeof name, "feature.%d", position + 1);
            x = st_model_add_relu(m, st_model_add_batchnorm(m, x, name));
            position += 3;
        }
    }
    x = st_model_add_avgpool(m, x, 2, 2);
    x = st_model_add_flatten(m, x);
    if (x >= 0 && m->acts[x].channels != 512) {
        return st_fail(ST_ERR_ARGUMENT, "vgg%d needs an input whose features end at 1x1 (e.g. 32x32); got %dx%d", depth,
                       m->in_height, m->in_width);
    }
    x = st_model_add_linear(m, x, "classifier", m->num_classes, 1);
    return x < 0 ? ST_ERR_ARGUMENT : ST_OK;
}
