/* The data-set catalogue: one row per data set `--data` names, holding
 * everything the rest of the code needs to know about it (its file format,
 * image shape, classes, usual folder, normalisation, augmentation policy and
 * default validation split). Add a data set here and in its format reader. */
#ifndef ST_DATA_CATALOG_H
#define ST_DATA_CATALOG_H

typedef enum st_data_format {
    ST_DATA_IDX,          /* MNIST-style IDX files (data/idx.c) */
    ST_DATA_CIFAR10,      /* CIFAR-10, binary or python version (data/cifar.c) */
    ST_DATA_CIFAR100,     /* CIFAR-100, fine labels */
    ST_DATA_IMAGE_FOLDER  /* train/<class>/<image>.JPEG trees, streamed (data/image_folder.h) */
} st_data_format;

typedef struct st_dataset_info {
    const char *name;        /* as --data names it */
    st_data_format format;
    int channels, height, width; /* one image; 0 x 0 for ImageFolder data: --image-size S gives S x S */
    int classes;             /* 0: as many as the tree has folders */
    const char *default_dir; /* its usual folder (more are searched: st_dataset_find_dir) */
    float mean[3], std[3];   /* per-channel normalisation of pixel / 255 */
    int augment;             /* 1: random crop + flip by default (--augment / --no-augment override) */
    int reflect_pad;         /* crops pad by reflection (the reference's CIFAR-10), else with zeros */
    double valid_split;      /* default held-out fraction of the training set */
    const char *test_files[3]; /* the official test-split files, any one of which shows that a folder holds
                                  this format (eval --ood FOLDER); NULL-terminated */
    /* what the reference code's loader for this data set does differently (--protocol reference,
     * data/protocol.h; docs/COMING-FROM-PYTORCH.md) */
    struct {
        int selects_on_test;     /* no validation split: the best epoch is chosen on the test set */
        int augments_validation; /* the validation images are augmented like the training images */
        int own_normalisation;   /* the loader's own mean/std below instead of the row's */
        float mean[3], std[3];
    } reference;
} st_dataset_info;

/* "mnist, fashion-mnist, cifar10, cifar100, imagenet", for messages. */
#define ST_DATASET_NAMES "mnist, fashion-mnist, cifar10, cifar100, imagenet"

/* The row of data set `name`, or NULL for an unknown name. */
const st_dataset_info *st_dataset_info_find(const char *name);
/* Every row, in the order of ST_DATASET_NAMES. */
const st_dataset_info *st_dataset_catalog(int *n);

#endif
