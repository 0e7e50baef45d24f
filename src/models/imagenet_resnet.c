/* The ImageNet family (SPEC section 2): ResNet18/34/50/101/152 and
 * WideResNet50_2/101_2 with torchvision's architecture and state_dict names
 * (the "v1.5" form: a bottleneck's stride sits on its 3x3 convolution).
 *
 *   conv1 7x7/2 pad 3 (64) - bn1 - ReLU - max pool 3x3/2 pad 1
 *   layer1..layer4: blocks at 64, 128, 256, 512 planes (strides 1, 2, 2, 2)
 *   adaptive average pool to 1x1 - fc (with bias)
 *
 * Basic block: 3x3 conv (stride) - BN - ReLU - 3x3 conv - BN, + shortcut, ReLU.
 * Bottleneck: 1x1 conv to `width` - BN - ReLU - 3x3 conv (stride) - BN - ReLU -
 * 1x1 conv to 4 * planes - BN, + shortcut, ReLU; width = planes * base / 64
 * (base 64, or 128 for the "wide" models). The first block of a stage gets a
 * downsample shortcut (1x1 conv with the block's stride, no bias, + BN,
 * named layerS.0.downsample.0 / .1) when the stride or the channel count
 * changes; every other shortcut is the identity. */
#include <stdio.h>
#include <string.h>

#include "core/status.h"
#include "models/builders.h"

/* Block `b` of stage `layer` (1-based, as torchvision's layerN). */
typedef struct block_at {
    int layer, b;
} block_at;

static int conv_bn(st_model *m, int x, block_at at, int index, int channels, int kernel, int stride, int padding) {
    char name[ST_NAME_MAX];
    snprintf(name, sizeof name, "layer%d.%d.conv%d", at.layer, at.b, index);
    x = st_model_add_conv(m, x, name, channels, kernel, stride, padding, 0);
    snprintf(name, sizeof name, "layer%d.%d.bn%d", at.layer, at.b, index);
    return st_model_add_batchnorm(m, x, name);
}

static int block(st_model *m, int x, block_at prefix, int in_channels, int planes, int stride, int bottleneck,
                 int base_width) {
    int out_channels = bottleneck ? planes * 4 : planes;
    int h;
    if (bottleneck) {
        int width = planes * base_width / 64;
        h = st_model_add_relu(m, conv_bn(m, x, prefix, 1, width, 1, 1, 0));
        h = st_model_add_relu(m, conv_bn(m, h, prefix, 2, width, 3, stride, 1));
        h = conv_bn(m, h, prefix, 3, out_channels, 1, 1, 0);
    } else {
        h = st_model_add_relu(m, conv_bn(m, x, prefix, 1, planes, 3, stride, 1));
        h = conv_bn(m, h, prefix, 2, planes, 3, 1, 1);
    }
    int shortcut = x;
    if (stride != 1 || in_channels != out_channels) {
        char name[ST_NAME_MAX];
        snprintf(name, sizeof name, "layer%d.%d.downsample.0", prefix.layer, prefix.b);
        shortcut = st_model_add_conv(m, x, name, out_channels, 1, stride, 0, 0);
        snprintf(name, sizeof name, "layer%d.%d.downsample.1", prefix.layer, prefix.b);
        shortcut = st_model_add_batchnorm(m, shortcut, name);
    }
    if (h < 0 || shortcut < 0) return -1;
    return st_model_add_relu(m, st_model_add_add(m, h, shortcut));
}

st_status st_build_imagenet_resnet(st_model *m, const int blocks[4], int bottleneck, int base_width) {
    int x = st_model_add_conv(m, 0, "conv1", 64, 7, 2, 3, 0);
    x = st_model_add_relu(m, st_model_add_batchnorm(m, x, "bn1"));
    x = st_model_add_maxpool_padded(m, x, 3, 2, 1);
    int channels = 64;
    for (int stage = 0; stage < 4 && x >= 0; stage++) {
        int planes = 64 << stage;
        for (int b = 0; b < blocks[stage] && x >= 0; b++) {
            block_at prefix = {stage + 1, b};
            x = block(m, x, prefix, channels, planes, (stage > 0 && b == 0) ? 2 : 1, bottleneck, base_width);
            channels = bottleneck ? planes * 4 : planes;
        }
    }
    x = st_model_add_global_avgpool(m, x);
    x = st_model_add_linear(m, x, "fc", m->num_classes, 1);
    if (x < 0) return st_last_error()[0] ? ST_ERR_ARGUMENT : ST_ERR_NOMEM;
    m->imagenet_init = ST_IMAGENET_INIT_CLASSIC;
    return ST_OK;
}
