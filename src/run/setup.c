/* The one set-up path of a run (see setup.h). */
#include "run/setup.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "data/catalog.h"
#include "exec/policy.h"
#include "models/init.h"
#include "sparse/distributions.h"
#include "sparse/masks.h"
#include "saliency/saliency.h"
#include "data/protocol.h"

st_status st_run_data_open(const st_run_data_spec *spec, st_run_data *d) {
    memset(d, 0, sizeof *d);
    const st_dataset_info *info = st_dataset_info_find(spec->data);
    if (!info)
        return st_fail(ST_ERR_ARGUMENT, "--data '%s' is unknown (" ST_DATASET_NAMES ")",
                       spec->data);
    /* NULL: st_dataset_load searches the usual folders */
    const char *dir = spec->datadir && spec->datadir[0] ? spec->datadir : NULL;
    ST_TRY(st_protocol_validate(spec->protocol));
    const int on_test = st_protocol_selects_on_test(spec->protocol, spec->data);
    const double valid_split = on_test ? 0.0 : spec->valid_split;
    st_dataset full;
    memset(&full, 0, sizeof full);
    st_dataset_options dopt = {.image_size = spec->image_size};
    ST_TRY(st_dataset_load_with(spec->data, dir, 1, &dopt, &full));
    st_status s = spec->with_test || on_test ? st_dataset_load_with(spec->data, dir, 0, &dopt, &d->test) : ST_OK;
    st_protocol_adjust_data(spec->protocol, spec->data, &full, &d->test);
    int64_t n_train = full.count;
    if (s == ST_OK && full.folder && valid_split > 0)
        s = st_fail(ST_ERR_ARGUMENT, "--valid_split %g: an ImageFolder tree is sorted by class, so holding out its last "
                    "images would hold out whole classes; use --valid_split 0 (the val folder is the test set)",
                    valid_split);
    if (s == ST_OK && valid_split > 0) {
        /* The reference holds out the last fraction of the training set, in file order. */
        n_train = (int64_t)floor((1.0 - valid_split) * (double)full.count);
        if (n_train <= 0 || n_train >= full.count)
            s = st_fail(ST_ERR_ARGUMENT, "--valid_split %g leaves no training or no validation data", valid_split);
        else
            s = st_dataset_slice(&full, n_train, full.count - n_train, &d->valid);
    }
    if (s == ST_OK && on_test) s = st_dataset_slice(&d->test, 0, d->test.count, &d->valid);
    if (s == ST_OK) s = st_dataset_slice(&full, 0, n_train, &d->train);
    st_dataset_free(&full);
    const int augments = info->augment;
    st_loader_options o = {.batch_size = spec->batch_size,
                           .shuffle = 1,
                           .augment = spec->augment < 0 ? augments : spec->augment,
                           .reflect_pad = info->reflect_pad,
                           .seed = spec->seed,
                           .workers = spec->workers};
    if (s == ST_OK) s = st_loader_create(&d->train, &o, &d->train_loader);
    st_loader_options e = {
        .batch_size = spec->test_batch_size, .shuffle = 0, .augment = 0, .seed = spec->seed, .workers = spec->workers};
    st_loader_options v = e;
    if (st_protocol_augments_validation(spec->protocol, spec->data))
        v.augment = o.augment, v.reflect_pad = o.reflect_pad; /* (none with --no-augment) */
    if (s == ST_OK && d->valid.count) s = st_loader_create(&d->valid, &v, &d->valid_loader);
    if (s == ST_OK && spec->with_test) s = st_loader_create(&d->test, &e, &d->test_loader);
    if (s != ST_OK) st_run_data_close(d);
    return s;
}

void st_run_data_close(st_run_data *d) {
    st_loader_free(d->train_loader);
    st_loader_free(d->valid_loader);
    st_loader_free(d->test_loader);
    st_dataset_free(&d->train);
    st_dataset_free(&d->valid);
    st_dataset_free(&d->test);
    memset(d, 0, sizeof *d);
}

void st_run_layers_free(st_run_layers *l) {
    free(l->ids);
    free(l->densities);
    memset(l, 0, sizeof *l);
}

/* Densities, masks and initialisation of a created model. */
static st_status plan_layers(const st_run_model_spec *spec, st_model *m, st_run_layers *out) {
    st_layer_shape *shapes;
    ST_TRY(st_model_prunable_layers(m, &shapes, &out->ids, &out->n));
    free(shapes);
    const int n = out->n;
    out->densities = st_calloc((size_t)n + 1, sizeof(double), "densities");
    double *by_param = st_calloc((size_t)m->n_params + 1, sizeof(double), "densities");
    st_status s = out->densities && by_param ? ST_OK : ST_ERR_NOMEM;
    const char *init = spec->sparse ? spec->sparse_init : "dense";
    st_saliency_batch batch = {0};
    if (s == ST_OK && st_sparse_init_needs_weights(init)) {
        /* snip, GraSP and global_magnitude score the initialised dense network
         * (with --scaled-per-layer, scaled by the overall density: the layer
         * densities are what is being computed). */
        st_model_init_weights(m, spec->seed, spec->scaled ? ST_INIT_SCALED : ST_INIT_PLAIN, spec->density, NULL);
        if (st_sparse_init_needs_data(init)) {
            if (!spec->train_loader)
                s = st_fail(ST_ERR_ARGUMENT, "--sparse_init %s scores training data: give --data", init);
            else
                s = st_saliency_collect(init, spec->train_loader, spec->classes, spec->channels, spec->height,
                                        spec->width, ST_GRASP_SAMPLES_PER_CLASS, &batch);
        }
    }
    if (s == ST_OK)
        s = st_model_layer_densities(m, init, spec->density, spec->fc_density, &batch, spec->seed, out->densities);
    st_saliency_batch_free(&batch);
    if (s == ST_OK && spec->sparse)
        s = st_model_sample_masks(m, out->densities,
                                  strcmp(spec->mask_sampling, "exact") == 0 ? ST_MASK_EXACT : ST_MASK_BERNOULLI,
                                  spec->seed);
    if (s == ST_OK) {
        for (int l = 0; l < n; l++) by_param[out->ids[l]] = out->densities[l];
        st_model_init_weights(m, spec->seed, (st_init_scaling)spec->scaled, spec->density, by_param);
    }
    free(by_param);
    return s;
}

st_status st_run_model_build(const st_run_model_spec *spec, st_model **model, st_run_layers *layers) {
    memset(layers, 0, sizeof *layers);
    *model = NULL;
    if (spec->sparse && strcmp(spec->mask_sampling, "bernoulli") != 0 && strcmp(spec->mask_sampling, "exact") != 0)
        return st_fail(ST_ERR_ARGUMENT, "--mask-sampling '%s' is unknown (bernoulli, exact)", spec->mask_sampling);
    st_model *m;
    ST_TRY(st_model_create(spec->model, spec->classes, spec->channels, spec->height, spec->width, &m));
    st_status s = spec->model_config && spec->model_config[0] ? st_model_set_init_config(m, spec->model_config) : ST_OK;
    if (s == ST_OK) s = plan_layers(spec, m, layers);
    if (s != ST_OK) {
        st_run_layers_free(layers);
        st_model_free(m);
        return s;
    }
    *model = m;
    return ST_OK;
}

st_status st_run_apply_execution(st_model *m, const char *execution, int batch) {
    st_exec_policy policy;
    ST_TRY(st_exec_policy_parse(execution && execution[0] ? execution : "auto", &policy));
    return st_model_apply_execution(m, policy, batch);
}
