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
} st_dataset_info;

/* "mnist, fashion-mnist, cifar10, cifar100, imagenet", for messages. */
#define ST_DATASET_NAMES "mnist, fashion-mnist, cifar10, cifar100, imagenet"

/* The row of data set `name`, or NULL for an unknown name. */
const st_dataset_info *st_dataset_info_find(const char *name);

#endif
