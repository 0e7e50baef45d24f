/* Model registry: parses a model name (SPEC section 2) and builds it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "exec/executor.h"
#include "models/builders.h"

/* Parses a positive decimal integer that spans the whole of [s, end). */
static int parse_positive(const char *s, size_t len, int *out) {
    if (len == 0 || len > 6) return 0;
    int v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return 0;
        v = v * 10 + (s[i] - '0');
    }
    if (v <= 0) return 0;
    *out = v;
    return 1;
}

/* The ImageNet family: name, the reference's --arch spelling, blocks per stage. */
static const struct imagenet_arch {
    const char *name, *alias;
    int blocks[4], bottleneck, base_width;
} imagenet_archs[] = {
    {"ResNet18", "resnet18", {2, 2, 2, 2}, 0, 64},          {"ResNet34", "resnet34", {3, 4, 6, 3}, 0, 64},
    {"ResNet50", "resnet50", {3, 4, 6, 3}, 1, 64},          {"ResNet101", "resnet101", {3, 4, 23, 3}, 1, 64},
    {"ResNet152", "resnet152", {3, 8, 36, 3}, 1, 64},       {"WideResNet50_2", "wide_resnet50_2", {3, 4, 6, 3}, 1, 128},
    {"WideResNet101_2", "wide_resnet101_2", {3, 4, 23, 3}, 1, 128},
};

static const struct imagenet_arch *find_imagenet_arch(const char *name) {
    for (size_t i = 0; i < sizeof imagenet_archs / sizeof imagenet_archs[0]; i++)
        if (strcmp(name, imagenet_archs[i].name) == 0 || strcmp(name, imagenet_archs[i].alias) == 0)
            return &imagenet_archs[i];
    return NULL;
}

const char *st_model_canonical_name(const char *name) {
    const struct imagenet_arch *arch = find_imagenet_arch(name);
    return arch ? arch->name : name;
}

st_status st_model_set_init_config(st_model *m, const char *config) {
    if (!m->imagenet_init)
        return st_fail(ST_ERR_ARGUMENT, "--model-config %s: init configs are for the ImageNet models (ResNet*, "
                       "WideResNet*), not %s", config, m->name);
    if (strcmp(config, "classic") == 0) m->imagenet_init = ST_IMAGENET_INIT_CLASSIC;
    else if (strcmp(config, "fanin") == 0) m->imagenet_init = ST_IMAGENET_INIT_FANIN;
    else return st_fail(ST_ERR_ARGUMENT, "unknown --model-config '%s' (known: classic, fanin)", config);
    return ST_OK;
}

static st_status build_by_name(st_model *m, const char *name) {
    const struct imagenet_arch *arch = find_imagenet_arch(name);
    if (arch) return st_build_imagenet_resnet(m, arch->blocks, arch->bottleneck, arch->base_width);
    const char *prefix = "cifar_resnet_";
    if (strncmp(name, prefix, strlen(prefix)) == 0) {
        const char *rest = name + strlen(prefix);
        const char *sep = strchr(rest, '_');
        int depth = 0, width = 16;
        if (!parse_positive(rest, sep ? (size_t)(sep - rest) : strlen(rest), &depth) ||
            (sep && !parse_positive(sep + 1, strlen(sep + 1), &width)))
            return st_fail(ST_ERR_ARGUMENT, "unknown model '%s' (expected cifar_resnet_N or cifar_resnet_N_W)", name);
        return st_build_cifar_resnet(m, depth, width);
    }
    if (strcmp(name, "vgg11") == 0) return st_build_vgg(m, 11);
    if (strcmp(name, "vgg13") == 0) return st_build_vgg(m, 13);
    if (strcmp(name, "vgg16") == 0) return st_build_vgg(m, 16);
    if (strcmp(name, "vgg19") == 0) return st_build_vgg(m, 19);
    if (strcmp(name, "lenet5") == 0) return st_build_lenet5(m);
    if (strcmp(name, "lenet300-100") == 0) return st_build_lenet300_100(m);
    return st_fail(ST_ERR_ARGUMENT,
                   "unknown model '%s' (known: cifar_resnet_N[_W] with N = 6D+2, vgg11, vgg13, vgg16, vgg19, "
                   "lenet5, lenet300-100, ResNet18, ResNet34, ResNet50, ResNet101, ResNet152, WideResNet50_2, "
                   "WideResNet101_2)",
                   name);
}

st_status st_model_create(const char *name, int num_classes, int in_channels, int in_height, int in_width,
                          st_model **out) {
    *out = NULL;
    if (num_classes <= 0 || in_channels <= 0 || in_height <= 0 || in_width <= 0)
        return st_fail(ST_ERR_ARGUMENT, "model %s: invalid input shape %dx%dx%d or class count %d", name, in_channels,
                       in_height, in_width, num_classes);
    st_model *m = st_calloc(1, sizeof *m, "model");
    if (!m) return ST_ERR_NOMEM;
    const struct imagenet_arch *arch = find_imagenet_arch(name);
    snprintf(m->name, sizeof m->name, "%s", arch ? arch->name : name); /* one spelling in checkpoints */
    m->num_classes = num_classes;
    m->in_channels = in_channels;
    m->in_height = in_height;
    m->in_width = in_width;
    m->training = 1;
    m->exec = &st_dense_executor;
    st_model_add_input(m, in_channels, in_height, in_width);
    st_status s = build_by_name(m, name);
    if (s == ST_ERR_ARGUMENT && strstr(st_last_error(), "too small"))
        s = st_fail_context(s,
                            "model %s does not fit %dx%dx%d images (vgg* and cifar_resnet* are built for 32x32 CIFAR "
                            "images, lenet5 and lenet300-100 for 28x28 MNIST images, ResNet* and WideResNet* "
                            "for 224x224 ImageNet images, at least 32x32)",
                            name, in_channels, in_height, in_width);
    if (s == ST_OK) s = st_param_store_bind(&m->store, m->params, m->n_params);
    if (s != ST_OK) {
        st_model_free(m);
        return s;
    }
    *out = m;
    return ST_OK;
}
