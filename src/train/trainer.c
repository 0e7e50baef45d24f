/* The set-up of a run (see trainer.h): arguments (and --resume), data,
 * model, layer densities, masks, initialisation, execution, optimiser, log;
 * and st_train_run, which chains the pieces of step.c into epochs. */
#include "train/trainer.h"

#include "train/trainer_internal.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/status.h"
#include "core/threads.h"
#include "exec/bf16_exec.h"
#include "exec/policy.h"
#include "data/dataset.h"
#include "eval/flops_summary.h"
#include "io/checkpoint.h"
#include "io/log_file.h"
#include "models/init.h"
#include "models/model.h"
#include "optim/optimizer.h"
#include "sparse/distributions.h"
#include "sparse/masks.h"
#include "saliency/saliency.h"
#include "train/anomaly.h"
#include "data/protocol.h"
#include "train/mask_update.h"
#include "train/run_config.h"
#include "train/run_guard.h"

/* The mask-update settings of a sparse run (--fix: none due); total_steps of the whole run. */
static st_status dst_settings(const st_train_config *c, int64_t total_steps, st_mask_update_settings *out) {
    memset(out, 0, sizeof *out);
    out->dynamic = c->sparse && !c->fix;
    out->death_rate = c->death_rate;
    out->frequency = c->update_frequency;
    out->total_steps = total_steps;
    out->seed = c->seed;
    if (!out->dynamic) return ST_OK;
    ST_TRY(st_dst_parse_death(c->death, &out->death));
    ST_TRY(st_dst_parse_growth(c->growth, &out->growth));
    ST_TRY(st_dst_parse_redistribution(c->redistribution));
    ST_TRY(st_dst_parse_decay(c->decay_schedule, &out->decay));
    out->adam = strcmp(c->optimizer, "adam") == 0;
    if (out->growth == ST_GROWTH_MOMENTUM && !out->adam && c->momentum == 0)
        return st_fail(ST_ERR_ARGUMENT, "--growth momentum ranks positions by the SGD momentum buffer, which "
                                        "--momentum 0 does not have; use --growth gradient (the same ranking then)");
    return st_mask_update_settings_check(out);
}

static st_status validate_config(const st_train_config *c) {
    if (c->batch_size <= 0) return st_fail(ST_ERR_ARGUMENT, "--batch-size must be positive (got %d)", c->batch_size);
    if (c->test_batch_size <= 0)
        return st_fail(ST_ERR_ARGUMENT, "--test-batch-size must be positive (got %d)", c->test_batch_size);
    if (c->epochs <= 0) return st_fail(ST_ERR_ARGUMENT, "--epochs must be positive (got %d)", c->epochs);
    ST_TRY(st_threads_check("--threads", c->threads));
    if (!(c->lr > 0) || !isfinite(c->lr)) return st_fail(ST_ERR_ARGUMENT, "--lr must be a positive number");
    if (!(c->momentum >= 0 && c->momentum < 1)) return st_fail(ST_ERR_ARGUMENT, "--momentum must be in [0, 1)");
    if (!(c->l2 >= 0) || !isfinite(c->l2)) return st_fail(ST_ERR_ARGUMENT, "--l2 must be >= 0");
    if (!(c->valid_split >= 0 && c->valid_split < 1)) return st_fail(ST_ERR_ARGUMENT, "--valid_split must be in [0, 1)");
    if (!(c->density > 0 && c->density <= 1))
        return st_fail(ST_ERR_ARGUMENT, "--density %g is outside (0, 1]", c->density);
    if (strcmp(c->optimizer, "sgd") != 0 && strcmp(c->optimizer, "adam") != 0)
        return st_fail(ST_ERR_ARGUMENT, "--optimizer '%s' is unknown (sgd, adam)", c->optimizer);
    if (strcmp(c->lr_schedule, "multistep") != 0 && strcmp(c->lr_schedule, "cosine") != 0 &&
        strcmp(c->lr_schedule, "step") != 0)
        return st_fail(ST_ERR_ARGUMENT, "--lr-schedule '%s' is unknown (multistep, cosine, step)", c->lr_schedule);
    if (!(c->label_smoothing >= 0 && c->label_smoothing < 1))
        return st_fail(ST_ERR_ARGUMENT, "--label-smoothing %g is outside [0, 1)", c->label_smoothing);
    if (c->warmup < 0) return st_fail(ST_ERR_ARGUMENT, "--warmup must be >= 0 (got %d)", c->warmup);
    st_exec_policy policy;
    ST_TRY(st_exec_policy_parse(c->execution, &policy));
    if (strcmp(c->mask_sampling, "bernoulli") != 0 && strcmp(c->mask_sampling, "exact") != 0)
        return st_fail(ST_ERR_ARGUMENT, "--mask-sampling '%s' is unknown (bernoulli, exact)", c->mask_sampling);
    ST_TRY(st_protocol_validate(c->protocol));
    if (c->sparse && !c->fix) {
        st_mask_update_settings dst;
        ST_TRY(dst_settings(c, 0, &dst));
    }
    return ST_OK;
}

void st_trainer_free(st_trainer *r) {
    if (!r) return;
    st_run_data_close(&r->data);
    st_param_snapshot_release(&r->best);
    free(r->best_tracked);
    free(r->layers);
    st_mask_updater_free(r->updater);
    st_optimizer_free(&r->opt);
    st_model_free(r->model);
    free(r->args_json);
    st_log_close(r->log);
    st_run_guard_end(&r->guard);
    free(r);
}

st_model *st_trainer_model(st_trainer *t) { return t->model; }
st_optimizer *st_trainer_optimizer(st_trainer *t) { return &t->opt; }
st_mask_updater *st_trainer_mask_updater(st_trainer *t) { return t->updater; }

static st_status load_data(st_trainer *r) {
    const st_train_config *c = r->c;
    st_run_data_spec spec = {c->data,      c->datadir, c->valid_split, c->batch_size, c->test_batch_size,
                             c->augment, c->seed,    1,              c->image_size, c->workers,
                             c->protocol};
    return st_run_data_open(&spec, &r->data);
}

/* The best copy of a resumed run, from `tmp` (a dense model holding the
 * checkpoint's "best." tensors under their own masks), into the snapshot:
 * under the live mask where the masks agree, else under its own. */
static st_status restore_best(st_trainer *r, const st_model *tmp) {
    st_model *m = r->model;
    uint8_t *own = NULL, *live = NULL;
    st_status s = ST_OK;
    for (int i = 0; s == ST_OK && i < m->n_params; i++) {
        const st_param *p = &m->params[i];
        const uint8_t *mask = NULL;
        if (p->sparse) {
            free(own), free(live);
            own = st_malloc((size_t)p->numel, "best weights");
            live = st_malloc((size_t)p->numel, "best weights");
            if (!own || !live) {
                s = ST_ERR_NOMEM;
                break;
            }
            st_sparse_weight_mask_dense(tmp->params[i].sparse, own);
            st_sparse_weight_mask_dense(p->sparse, live);
            if (memcmp(own, live, (size_t)p->numel) != 0) mask = own;
        }
        s = st_param_snapshot_set_dense(&m->store, &r->best, i, tmp->params[i].value, mask);
    }
    free(own), free(live);
    for (int i = 0, k = 0; s == ST_OK && i < tmp->n_ops; i++)
        if (tmp->ops[i].kind == ST_OP_BATCHNORM) r->best_tracked[k++] = tmp->ops[i].num_batches_tracked;
    return s;
}

/* --growth momentum: a resumed run continues the dense momentum it saved. */
static st_status restore_growth_momentum(st_trainer *r, const st_safetensors *resume_file) {
    const st_model *m = r->model;
    float **m1 = st_calloc((size_t)m->n_params + 1, sizeof *m1, "dense momentum");
    float **m2 = st_calloc((size_t)m->n_params + 1, sizeof *m2, "dense momentum");
    st_status s = m1 && m2 ? ST_OK : ST_ERR_NOMEM;
    int found = 0;
    if (s == ST_OK) s = st_checkpoint_load_growth_momentum(resume_file, r->c->resume, m, m1, m2, &found);
    if (s == ST_OK && found == 0)
        s = st_fail(ST_ERR_FORMAT, "%s: a --growth momentum checkpoint without its dense momentum (dst_momentum.*)",
                    r->c->resume);
    if (s == ST_OK) {
        s = st_mask_updater_restore_momentum(r->updater, m, m1, m2);
        if (s != ST_OK) s = st_fail_context(s, "%s", r->c->resume);
    }
    for (int i = 0; m1 && m2 && i < m->n_params; i++) free(m1[i]), free(m2[i]);
    free(m1), free(m2);
    return s;
}

/* The ITOP record and, without --fix, the mask updates; a resumed run
 * continues the record it saved (a --fix checkpoint may lack it: its mask). */
static st_status setup_mask_updates(st_trainer *r, const st_safetensors *resume_file) {
    const st_train_config *c = r->c;
    int64_t per_epoch = st_loader_batches_per_epoch(r->data.train_loader);
    if (c->max_batches > 0 && per_epoch > c->max_batches) per_epoch = c->max_batches;
    st_mask_update_settings set;
    ST_TRY(dst_settings(c, per_epoch * c->epochs, &set));
    ST_TRY(st_mask_updater_create(r->model, &set, &r->updater));
    if (!resume_file) return ST_OK;
    st_model *m = r->model;
    uint8_t **fired = st_calloc((size_t)m->n_params + 1, sizeof *fired, "ITOP record");
    if (!fired) return ST_ERR_NOMEM;
    int found = 0;
    st_status s = st_checkpoint_load_itop(resume_file, c->resume, m, fired, &found);
    if (s == ST_OK && found == 0 && set.dynamic)
        s = st_fail(ST_ERR_FORMAT, "%s: a dynamic sparse training checkpoint without its ITOP record (itop.*)",
                    c->resume);
    if (s == ST_OK && found > 0) {
        s = st_mask_updater_restore(r->updater, m, fired);
        if (s != ST_OK) s = st_fail_context(s, "%s", c->resume);
    }
    for (int i = 0; i < m->n_params; i++) free(fired[i]);
    free(fired);
    if (s == ST_OK && r->updater->momentum) s = restore_growth_momentum(r, resume_file);
    return s;
}

static st_status setup_model(st_trainer *r, const st_safetensors *resume_file) {
    st_train_config *c = r->c;
    const st_dataset *train = &r->data.train;
    st_run_model_spec spec = {c->model, train->num_classes, train->channels, train->height, train->width, c->sparse,
                              c->sparse_init, c->density, c->fc_density, c->mask_sampling, c->scaled, c->seed,
                              r->data.train_loader, c->model_config};
    st_run_layers layers;
    ST_TRY(st_run_model_build(&spec, &r->model, &layers));
    st_model *m = r->model;
    const int n = layers.n;
    st_status s = resume_file ? ST_OK : st_layers_kept_check(m, c); /* a fresh run's masks */
    if (n <= ST_CHECKPOINT_MAX_LAYERS) { /* recorded in every checkpoint as "layer_densities" */
        r->info.n_layer_densities = n;
        memcpy(r->info.layer_densities, layers.densities, sizeof(double) * (size_t)n);
    }
    if (c->sparse) { /* for the set-up report */
        r->layers = st_calloc((size_t)n + 1, sizeof *r->layers, "layer report");
        if (!r->layers) s = ST_ERR_NOMEM;
        for (int l = 0; s == ST_OK && l < n; l++) {
            const st_param *p = &m->params[layers.ids[l]];
            r->layers[l] = (st_setup_layer){p->name, p->numel, p->sparse->kept, layers.densities[l]};
        }
        if (s == ST_OK) r->n_layers = n;
    }
    st_run_layers_free(&layers);
    if (s != ST_OK) return s;
    if (resume_file) ST_TRY(st_checkpoint_load_model(resume_file, c->resume, m, ""));
    /* masks and weights are final: choose dense or sparse execution (packs the weights) */
    ST_TRY(st_run_apply_execution(m, c->execution, c->batch_size));
    r->precision = c->bf16 ? st_model_enable_bf16(m) : NULL;
    ST_TRY(st_optimizer_create(&r->opt, m, strcmp(c->optimizer, "adam") == 0 ? ST_OPTIMIZER_ADAM : ST_OPTIMIZER_SGD,
                               c->momentum, strcmp(c->optimizer, "sgd") == 0 && c->nesterov, c->l2));
    /* --bn-weight-decay: the reference's ImageNet main.py puts parameters named *bn* in a group without
     * weight decay unless it is given; its CIFAR main.py decays every parameter */
    if (c->bn_weight_decay == 0 || (c->bn_weight_decay < 0 && m->imagenet_init))
        ST_TRY(st_optimizer_exclude_bn_from_decay(&r->opt, m, NULL));
    m->label_smoothing = c->label_smoothing;
    for (int i = 0; i < m->n_ops; i++) r->n_bn += m->ops[i].kind == ST_OP_BATCHNORM;
    if (r->data.valid.count) {
        r->keep_best = 1;
        r->best_tracked = st_calloc((size_t)r->n_bn + 1, sizeof(int64_t), "best weights");
        if (!r->best_tracked) return ST_ERR_NOMEM;
    }
    r->info.best_val_acc = -1;
    r->info.best_epoch = -1;
    if (resume_file) {
        ST_TRY(st_checkpoint_load_optimizer(resume_file, c->resume, m, &r->opt));
        ST_TRY(st_checkpoint_read_info(resume_file, c->resume, &r->info));
        r->info.args_json = NULL;
        r->info.data = NULL;
        if (r->keep_best && r->info.best_epoch >= 0) {
            /* Load the best copy through a dense model, then keep it in the stored form. */
            st_model *tmp;
            ST_TRY(st_model_create(c->model, m->num_classes, m->in_channels, m->in_height, m->in_width, &tmp));
            st_status ls = st_checkpoint_load_model(resume_file, c->resume, tmp, "best.");
            if (ls == ST_OK) ls = restore_best(r, tmp);
            st_model_free(tmp);
            if (ls != ST_OK) return ls;
        }
    }
    if (c->sparse) ST_TRY(setup_mask_updates(r, resume_file));
    return ST_OK;
}

st_status st_trainer_create(st_train_config *c, const st_train_hooks *hooks, st_trainer **out) {
    *out = NULL;
    st_safetensors *resume_file = NULL;
    if (c->resume[0]) {
        st_train_config cmdline = *c; /* as the command line gave it (st_resume_merge) */
        ST_TRY(st_safetensors_read(c->resume, &resume_file));
        char *datadir = strdup(c->datadir); /* a --datadir given with --resume wins over the checkpoint's */
        if (!datadir) {
            st_safetensors_free(resume_file);
            return st_fail(ST_ERR_NOMEM, "out of memory");
        }
        const char *args = st_safetensors_meta(resume_file, "args");
        const char *format = st_safetensors_meta(resume_file, "format");
        st_status s = (!format || strcmp(format, ST_CHECKPOINT_FORMAT) != 0)
                          ? st_fail(ST_ERR_FORMAT, "%s: not a sparsetrain checkpoint", c->resume)
                      : !args ? st_fail(ST_ERR_FORMAT, "%s: checkpoint has no 'args' metadata", c->resume)
                              : st_train_config_from_json(args, c->resume, c);
        if (datadir[0]) snprintf(c->datadir, sizeof c->datadir, "%s", datadir); /* where the files are now */
        free(datadir);
        if (s == ST_OK) s = st_resume_merge(&cmdline, c);
        if (s != ST_OK) {
            st_safetensors_free(resume_file);
            return s;
        }
    }
    /* The run id: carried over by --resume, new for a fresh run (run_guard.h). */
    const char *resumed_id = resume_file ? st_safetensors_meta(resume_file, "run_id") : NULL;
    if (resumed_id && st_run_id_valid(resumed_id))
        snprintf(c->run_id, sizeof c->run_id, "%s", resumed_id);
    else
        st_run_id_new(c->run_id);
    st_train_config_resolve_defaults(c);
    st_status s = validate_config(c);
    if (s != ST_OK && resume_file) /* the command line's part was checked by st_resume_merge */
        s = st_fail_context(ST_ERR_FORMAT, "%s holds run arguments that are not valid", c->resume);
    st_run_guard guard; /* outputs, locks, run ownership: checked now, not after the first epoch */
    if (s == ST_OK) s = st_run_guard_begin(c, &guard);
    if (s != ST_OK) {
        st_safetensors_free(resume_file);
        return s;
    }
    st_trainer *r = st_calloc(1, sizeof *r, "trainer");
    if (!r) {
        st_run_guard_end(&guard);
        st_safetensors_free(resume_file);
        return ST_ERR_NOMEM;
    }
    r->guard = guard; /* released by st_trainer_free */
    r->c = c;
    if (hooks) r->hooks = *hooks;
    r->saved = c->save[0] && c->resume[0] && strcmp(c->save, c->resume) == 0;
    s = st_train_config_to_json(c, &r->args_json);
    if (s == ST_OK) s = load_data(r);
    if (s == ST_OK) s = setup_model(r, resume_file);
    if (s == ST_OK && resume_file) s = st_resume_counters_check(&r->info, c, st_loader_batches_per_epoch(r->data.train_loader));
    if (s == ST_OK) s = st_flops_summary_of(r->model, &r->flops);
    st_safetensors_free(resume_file);
    if (s == ST_OK && c->log[0]) s = st_log_open(c->log, "--log", c->run_id, c->resume[0] != 0, c->force, &r->log);
    if (s == ST_OK && r->hooks.on_setup) {
        st_setup_report rep = {.config = c,
                               .parameters = st_model_parameter_count(r->model),
                               .train_images = r->data.train.count,
                               .valid_images = r->data.valid.count,
                               .test_images = r->data.test.count,
                               .threads = omp_get_max_threads(),
                               .n_layers = r->n_layers,
                               .layers = r->layers,
                               .execution = st_model_executor_name(r->model),
                               .precision = r->precision,
                               .flop_density = st_model_flop_density(r->model)};
        st_model_prunable_counts(r->model, &rep.kept, &rep.prunable);
        r->hooks.on_setup(&rep, r->hooks.user);
    }
    if (s != ST_OK) {
        st_trainer_free(r);
        return s;
    }
    *out = r;
    return ST_OK;
}

st_status st_train_run(st_train_config *c, const st_train_hooks *hooks, st_train_result *result) {
    memset(result, 0, sizeof *result);
    st_trainer *t;
    ST_TRY(st_trainer_create(c, hooks, &t));
    st_status s = ST_OK;
    int epochs_this_run = 0;
    for (int epoch = t->info.epoch; s == ST_OK && epoch < c->epochs; epoch++) {
        int stopped = 0;
        s = st_trainer_train_epoch(t, epoch, &stopped);
        if (s == ST_OK && stopped) {
            s = st_fail(ST_ERR_INTERRUPTED, "interrupted at epoch %d, batch %lld%s%s", epoch + 1,
                        (long long)t->info.batch_in_epoch, c->save[0] ? "; checkpoint saved to " : " (no --save given)",
                        c->save);
            break;
        }
        if (s == ST_OK) s = st_trainer_end_epoch(t, epoch, result);
        epochs_this_run++;
        if (c->stop_after > 0 && epochs_this_run >= c->stop_after && epoch + 1 < c->epochs) break;
    }
    result->best_val_acc = t->info.best_val_acc;
    result->best_epoch = t->info.best_epoch + 1;
    result->best_test_acc = t->info.best_test_acc;
    st_trainer_free(t);
    return s;
}
