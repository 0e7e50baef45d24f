/* The data-set catalogue (data/catalog.h): every name the messages list has
 * a row, its default folder is the one st_dataset_default_dir gives, shapes
 * and classes are those of the official files, and a loaded data set carries
 * its row's normalisation. */
#include <string.h>

#include "data/catalog.h"
#include "data/dataset.h"
#include "testing.h"

int main(void) {
    char names[] = ST_DATASET_NAMES;
    int rows = 0;
    for (char *name = strtok(names, ", "); name; name = strtok(NULL, ", ")) {
        const st_dataset_info *info = st_dataset_info_find(name);
        CHECK(info != NULL);
        if (!info) continue;
        rows++;
        CHECK(strcmp(info->name, name) == 0);
        CHECK(strcmp(st_dataset_default_dir(name), info->default_dir) == 0);
        CHECK(info->valid_split >= 0 && info->valid_split < 1);
        for (int c = 0; c < 3; c++) CHECK(info->mean[c] > 0 && info->mean[c] < 1 && info->std[c] > 0 && info->std[c] < 1);
        if (info->format == ST_DATA_IMAGE_FOLDER) {
            CHECK(info->height == 0 && info->classes == 0 && info->valid_split == 0); /* shape from --image-size, classes from the tree */
        } else {
            CHECK(info->channels * info->height * info->width == (info->format == ST_DATA_IDX ? 784 : 3072));
            CHECK(info->classes == (info->format == ST_DATA_CIFAR100 ? 100 : 10));
        }
    }
    CHECK(rows == 5);
    CHECK(st_dataset_info_find("cifar10")->reflect_pad && !st_dataset_info_find("cifar100")->reflect_pad);
    CHECK(st_dataset_info_find("cifar10")->augment && !st_dataset_info_find("mnist")->augment);
    /* the reference code's loaders: CIFAR-100 selects on test with its own normalisation, CIFAR-10 augments
     * validation, the others are as --protocol sound */
    CHECK(st_dataset_info_find("cifar100")->reference.selects_on_test &&
          st_dataset_info_find("cifar100")->reference.own_normalisation &&
          st_dataset_info_find("cifar100")->reference.mean[0] > 0.507f &&
          st_dataset_info_find("cifar100")->reference.mean[0] < 0.5071f);
    CHECK(st_dataset_info_find("cifar10")->reference.augments_validation &&
          !st_dataset_info_find("cifar10")->reference.selects_on_test);
    CHECK(!st_dataset_info_find("mnist")->reference.augments_validation &&
          !st_dataset_info_find("imagenet")->reference.selects_on_test);
    /* the test-split files eval --ood FOLDER recognises a format by */
    CHECK(strcmp(st_dataset_info_find("cifar10")->test_files[0], "test_batch.bin") == 0 &&
          strcmp(st_dataset_info_find("cifar100")->test_files[0], "test.bin") == 0 &&
          strcmp(st_dataset_info_find("mnist")->test_files[0], "t10k-images-idx3-ubyte") == 0 &&
          st_dataset_info_find("imagenet")->test_files[0] == NULL);
    int n_rows;
    CHECK(st_dataset_catalog(&n_rows) == st_dataset_info_find("mnist") && n_rows == 5);
    CHECK(st_dataset_info_find("nonsense") == NULL && st_dataset_info_find(NULL) == NULL);
    st_dataset d;
    if (st_dataset_load("fashion-mnist", NULL, 0, &d) == ST_OK) { /* Debian's dataset-fashion-mnist */
        CHECK(d.mean[0] == 0.2860f && d.std[2] == 0.3530f && d.channels == 1 && d.num_classes == 10);
        st_dataset_free(&d);
    } else {
        TEST_SKIP_PART("Fashion-MNIST is not installed: the loaded normalisation is not checked");
    }
    TEST_MAIN_END();
}
