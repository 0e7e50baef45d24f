/* One set-up path for every command that builds a run's model or data
 * (train, inspect, bench, eval), so that they cannot drift apart:
 *
 *   st_run_data_open     the data set by name and folder (no folder: the
 *                        usual ones, st_dataset_find_dir), the held-out
 *                        validation split (the last fraction of the training
 *                        files, as the reference), the loaders with the data
 *                        set's augmentation policy (or --augment /
 *                        --no-augment);
 *   st_run_model_build   the model, its layer-wise densities (snip / GraSP
 *                        score a batch of the training loader; GraSP and
 *                        global_magnitude read the initialised weights), the
 *                        masks (exact counts or Bernoulli) and the
 *                        initialisation scaled as asked;
 *   st_run_apply_execution  the executor (--execution auto|sparse|mixed|dense),
 *                        once masks and weights are final. */
#ifndef ST_RUN_SETUP_H
#define ST_RUN_SETUP_H

#include <stdint.h>

#include "data/dataset.h"
#include "models/model.h"
#include "sparsetrain.h"

typedef struct st_run_data_spec {
    const char *data;        /* data set name */
    const char *datadir;     /* "" or NULL = its usual folder */
    double valid_split;      /* held-out fraction of the training set, [0, 1) */
    int batch_size, test_batch_size;
    int augment;             /* -1 = the data set's default (CIFAR and ImageFolder yes, MNIST no), 0 / 1 */
    uint64_t seed;
    int with_test;           /* also load the test split and its loader */
    int image_size;          /* ImageFolder data: crops of S x S (0 = 224) */
    int workers;             /* data loading threads (0 = the loader's default) */
    const char *protocol;    /* NULL/"sound", or "reference" (data/protocol.h): CIFAR-100 trains on all its
                                training images and validates on the test split, CIFAR-10 augments validation */
} st_run_data_spec;

typedef struct st_run_data {
    st_dataset train, valid, test;
    st_loader *train_loader, *valid_loader, *test_loader; /* valid / test: NULL when absent */
} st_run_data;

st_status st_run_data_open(const st_run_data_spec *spec, st_run_data *out);
void st_run_data_close(st_run_data *d);

typedef struct st_run_model_spec {
    const char *model;
    int classes, channels, height, width;
    int sparse;              /* 0: dense (every density 1, no masks) */
    const char *sparse_init; /* distribution (distributions.h) */
    double density, fc_density;
    const char *mask_sampling; /* "exact" or "bernoulli" */
    int scaled;              /* st_init_scaling: 0 plain, 1 --scaled, 2 --scaled-per-layer */
    uint64_t seed;
    st_loader *train_loader; /* training data for snip / GraSP (NULL: those are refused) */
    const char *model_config; /* ImageNet models' init config, "classic" or "fanin" (NULL or "": classic) */
} st_run_model_spec;

typedef struct st_run_layers {
    int n;                   /* prunable layers */
    int *ids;                /* their parameter ids */
    double *densities;       /* as the distribution chose them (1 for a dense run) */
} st_run_layers;

st_status st_run_model_build(const st_run_model_spec *spec, st_model **model, st_run_layers *layers);
void st_run_layers_free(st_run_layers *l);

st_status st_run_apply_execution(st_model *m, const char *execution, int batch);

#endif
