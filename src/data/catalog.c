/* The data-set catalogue (see catalog.h). */
#include "data/catalog.h"

#include <string.h>

/* MNIST / Fashion-MNIST: the reference's normalisation constants; CIFAR: the
 * reference's (CIFAR-100's rounded to 4 digits; --protocol reference uses
 * its loader's full ones, train/compat.c); ImageNet: torchvision's. The
 * ImageFolder tree is sorted by class, so it holds nothing out by default
 * (its val/ folder is the test set). */
static const st_dataset_info catalog[] = {
    {"mnist", ST_DATA_IDX, 1, 28, 28, 10, "/usr/share/datasets/mnist", {0.1307f, 0.1307f, 0.1307f},
     {0.3081f, 0.3081f, 0.3081f}, 0, 0, 0.1},
    {"fashion-mnist", ST_DATA_IDX, 1, 28, 28, 10, "/usr/share/datasets/fashion-mnist", {0.2860f, 0.2860f, 0.2860f},
     {0.3530f, 0.3530f, 0.3530f}, 0, 0, 0.1},
    {"cifar10", ST_DATA_CIFAR10, 3, 32, 32, 10, "data/cifar10", {0.4914f, 0.4822f, 0.4465f},
     {0.2023f, 0.1994f, 0.2010f}, 1, 1, 0.1},
    {"cifar100", ST_DATA_CIFAR100, 3, 32, 32, 100, "data/cifar100", {0.5071f, 0.4865f, 0.4409f},
     {0.2673f, 0.2564f, 0.2762f}, 1, 0, 0.1},
    {"imagenet", ST_DATA_IMAGE_FOLDER, 3, 0, 0, 0, "data/imagenet", {0.485f, 0.456f, 0.406f},
     {0.229f, 0.224f, 0.225f}, 1, 0, 0.0},
};

const st_dataset_info *st_dataset_info_find(const char *name) {
    if (!name) return NULL;
    for (size_t i = 0; i < sizeof catalog / sizeof catalog[0]; i++)
        if (strcmp(catalog[i].name, name) == 0) return &catalog[i];
    return NULL;
}
