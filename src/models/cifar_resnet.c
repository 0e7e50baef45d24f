/* cifar_resnet_N[_W]: the CIFAR ResNet of the lottery-ticket line of work
 * (SPEC section 2): stem conv+BN+ReLU, three stages of D = (N-2)/6 basic
 * blocks at widths W, 2W, 4W, global average pool, linear classifier. */
#include <stdio.h>

#include "core/status.h"
#include "models/builders.h"

static int basic_block(st_model *m, int x, int index, int in_channels, int out_channels, int stride) {
    char name[ST_NAME_MAX];
    snprintf(name, sizeof name, "blocks.%d.conv1", index);
    int h = st_model_add_conv(m, x, name, out_channels, 3, stride, 1, 0);
    snprintf(name, sizeof name, "blocks.%d.bn1", index);
    h = st_model_add_relu(m, st_model_add_batchnorm(m, h, name));
    snprintf(name, sizeof name, "blocks.%d.conv2", index);
    h = st_model_add_conv(m, h, name, out_channels, 3, 1, 1, 0);
    snprintf(name, sizeof name, "blocks.%d.bn2", index);
    h = st_model_add_batchnorm(m, h, name);
    int shortcut = x;
    if (stride != 1 || in_channels != out_channels) {
        snprintf(name, sizeof name, "blocks.%d.shortcut.0", index);
        shortcut = st_model_add_conv(m, x, name, out_channels, 1, stride, 0, 0);
        snprintf(name, sizeof name, "blocks.%d.shortcut.1", index);
        shortcut = st_model_add_batchnorm(m, shortcut, name);
    }
    return st_model_add_relu(m, st_model_add_add(m, h, shortcut));
}

st_status st_build_cifar_resnet(st_model *m, int depth, int width) {
    if (depth < 8 || (depth - 2) % 6 != 0)
        return st_fail(ST_ERR_ARGUMENT, "model %s: depth %d is invalid: it must be 6*D+2 (20, 32, 44, 56, 110, ...)",
                       m->name, depth);
    if (width <= 0) return st_fail(ST_ERR_ARGUMENT, "model %s: width must be positive", m->name);
    int blocks_per_stage = (depth - 2) / 6;
    int x = st_model_add_conv(m, 0, "conv", width, 3, 1, 1, 0);
    x = st_model_add_relu(m, st_model_add_batchnorm(m, x, "bn"));
    int channels = width, index = 0;
    for (int stage = 0; stage < 3; stage++) {
        int filters = width << stage;
        for (int b = 0; b < blocks_per_stage; b++) {
            int stride = (stage > 0 && b == 0) ? 2 : 1;
            x = basic_block(m, x, index++, channels, filters, stride);
            channels = filters;
        }
    }
    x = st_model_add_global_avgpool(m, x);
    x = st_model_add_linear(m, x, "fc", m->num_classes, 1);
    return x < 0 ? (st_last_error()[0] ? ST_ERR_ARGUMENT : ST_ERR_NOMEM) : ST_OK;
}
