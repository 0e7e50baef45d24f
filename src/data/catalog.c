/* The data-set catalogue (see catalog.h). */
#include "data/catalog.h"

#include <string.h>

/* MNIST / Fashion-MNIST: the reference's normalisation constants; CIFAR: the
 * reference's (CIFAR-100's rounded to 4 digits; --protocol reference uses
 * its loader's full ones, the row's `reference` part); ImageNet: torchvision's. The
 * ImageFolder tree is sorted by class, so it holds nothing out by default
 * (its val/ folder is the test set). */
#define IDX_TEST_FILES {"t10k-images-idx3-ubyte", "t10k-images-idx3-ubyte.gz", NULL}
static const st_dataset_info catalog[] = {
    {"mnist", ST_DATA_IDX, 1, 28, 28, 10, "/usr/share/datasets/mnist", {0.1307f, 0.1307f, 0.1307f},
     {0.3081f, 0.3081f, 0.3081f}, 0, 0, 0.1, IDX_TEST_FILES, {0, 0, 0, {0}, {0}}},
    {"fashion-mnist", ST_DATA_IDX, 1, 28, 28, 10, "/usr/share/datasets/fashion-mnist", {0.2860f, 0.2860f, 0.2860f},
     {0.3530f, 0.3530f, 0.3530f}, 0, 0, 0.1, IDX_TEST_FILES, {0, 0, 0, {0}, {0}}},
    /* the reference's CIFAR-10 loader augments its validation split too */
    {"cifar10", ST_DATA_CIFAR10, 3, 32, 32, 10, "data/cifar10", {0.4914f, 0.4822f, 0.4465f},
     {0.2023f, 0.1994f, 0.2010f}, 1, 1, 0.1,
     {"test_batch.bin", "cifar-10-batches-bin/test_batch.bin", "cifar-10-binary.tar.gz"}, {0, 1, 0, {0}, {0}}},
    /* the reference's CIFAR-100 loader (sparselearning/utils.py get_cifar100_dataloaders) has no validation
     * split and its own normalisation constants */
    {"cifar100", ST_DATA_CIFAR100, 3, 32, 32, 100, "data/cifar100", {0.5071f, 0.4865f, 0.4409f},
     {0.2673f, 0.2564f, 0.2762f}, 1, 0, 0.1, {"test.bin", "cifar-100-binary/test.bin", "cifar-100-binary.tar.gz"},
     {1, 0, 1, {0.5070751592371323f, 0.48654887331495095f, 0.4409178433670343f},
      {0.2673342858792401f, 0.2564384629170883f, 0.27615047132568404f}}},
    {"imagenet", ST_DATA_IMAGE_FOLDER, 3, 0, 0, 0, "data/imagenet", {0.485f, 0.456f, 0.406f},
     {0.229f, 0.224f, 0.225f}, 1, 0, 0.0, {NULL, NULL, NULL}, {0, 0, 0, {0}, {0}}},
};

const st_dataset_info *st_dataset_catalog(int *n) {
    *n = (int)(sizeof catalog / sizeof catalog[0]);
    return catalog;
}

const st_dataset_info *st_dataset_info_find(const char *name) {
    if (!name) return NULL;
    for (size_t i = 0; i < sizeof catalog / sizeof catalog[0]; i++)
        if (strcmp(catalog[i].name, name) == 0) return &catalog[i];
    return NULL;
}
