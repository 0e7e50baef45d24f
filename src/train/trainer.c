/* One training run end to end (see trainer.h): data -> model -> masks ->
 * epochs of SGD/Adam with validation-based model selection, JSON-lines log,
 * atomic checkpoints and exact resume (also from the middle of an epoch). */
#include "train/trainer.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/status.h"
#include "core/threads.h"
#include "models/execution.h"
#include "data/dataset.h"
#include "eval/flops_summary.h"
#include "io/checkpoint.h"
#include "io/log_file.h"
#include "models/init.h"
#include "models/model.h"
#include "optim/optimizer.h"
#include "sparse/distributions.h"
#include "sparse/masks.h"
#include "sparse/saliency.h"
#include "train/anomaly.h"
#include "train/run_args.h"
#include "train/run_guard.h"

void st_train_config_defaults(st_train_config *c) {
    memset(c, 0, sizeof *c);
    snprintf(c->model, sizeof c->model, "cifar_resnet_20");
    snprintf(c->data, sizeof c->data, "fashion-mnist");
    c->batch_size = 128;
    c->test_batch_size = 100;
    c->epochs = 160;
    c->lr = 0.1;
    c->momentum = 0.9;
    c->l2 = 5e-4;
    snprintf(c->optimizer, sizeof c->optimizer, "sgd");
    snprintf(c->lr_schedule, sizeof c->lr_schedule, "multistep");
    c->seed = 17;
    c->valid_split = 0.1;
    snprintf(c->sparse_init, sizeof c->sparse_init, "ERK");
    c->density = 0.05;
    c->fc_density = 1.0;
    /* exact: each layer keeps exactly round(d_l n_l) weights, so layer-wise
     * ratios and the overall density are what was asked (docs/DISTRIBUTIONS.md) */
    snprintf(c->mask_sampling, sizeof c->mask_sampling, "exact");
    snprintf(c->execution, sizeof c->execution, "auto");
    c->augment = -1;
    c->progress = -1;
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
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
    if (strcmp(c->lr_schedule, "multistep") != 0 && strcmp(c->lr_schedule, "cosine") != 0)
        return st_fail(ST_ERR_ARGUMENT, "--lr-schedule '%s' is unknown (multistep, cosine)", c->lr_schedule);
    st_exec_policy policy;
    ST_TRY(st_exec_policy_parse(c->execution, &policy));
    if (strcmp(c->mask_sampling, "bernoulli") != 0 && strcmp(c->mask_sampling, "exact") != 0)
        return st_fail(ST_ERR_ARGUMENT, "--mask-sampling '%s' is unknown (bernoulli, exact)", c->mask_sampling);
    if (c->sparse && !c->fix)
        return st_fail(ST_ERR_ARGUMENT,
                       "dynamic sparse training (--sparse without --fix) is not available yet; add --fix");
    return ST_OK;
}

/* Everything one run holds; freed by run_free. */
typedef struct run {
    st_train_config *c;
    st_dataset train, valid, test;
    st_loader *train_loader, *valid_loader, *test_loader;
    st_model *model;
    st_optimizer opt;
    float **best;               /* best-on-validation copy of every param (NULL without validation) */
    int64_t *best_tracked;      /* and of every BN's num_batches_tracked */
    int n_bn;
    char *args_json;
    st_log_file *log;
    st_checkpoint_info info;
    int saved;                  /* --save holds a checkpoint of this run (written, or the one resumed) */
    st_flops_summary flops;     /* of the masked model, for the log */
} run;

static void run_free(run *r) {
    st_loader_free(r->train_loader);
    st_loader_free(r->valid_loader);
    st_loader_free(r->test_loader);
    st_dataset_free(&r->train);
    st_dataset_free(&r->valid);
    st_dataset_free(&r->test);
    if (r->best && r->model)
        for (int i = 0; i < r->model->n_params; i++) free(r->best[i]);
    free(r->best);
    free(r->best_tracked);
    st_optimizer_free(&r->opt);
    st_model_free(r->model);
    free(r->args_json);
    st_log_close(r->log);
}

static st_status load_data(run *r) {
    st_train_config *c = r->c;
    const char *dir = c->datadir[0] ? c->datadir : st_dataset_default_dir(c->data);
    if (!dir) return st_fail(ST_ERR_ARGUMENT, "--data '%s' is unknown (mnist, fashion-mnist, cifar10, cifar100)", c->data);
    st_dataset full;
    memset(&full, 0, sizeof full);
    ST_TRY(st_dataset_load(c->data, dir, 1, &full));
    st_status s = st_dataset_load(c->data, dir, 0, &r->test);
    int64_t n_train = full.count;
    if (s == ST_OK && c->valid_split > 0) {
        /* The reference holds out the last fraction of the training set, in file order. */
        n_train = (int64_t)floor((1.0 - c->valid_split) * (double)full.count);
        if (n_train <= 0 || n_train >= full.count) {
            s = st_fail(ST_ERR_ARGUMENT, "--valid_split %g leaves no training or no validation data", c->valid_split);
        } else {
            s = st_dataset_slice(&full, n_train, full.count - n_train, &r->valid);
        }
    }
    if (s == ST_OK) s = st_dataset_slice(&full, 0, n_train, &r->train);
    st_dataset_free(&full);
    if (s != ST_OK) return s;
    int is_cifar = strncmp(c->data, "cifar", 5) == 0;
    st_loader_options o = {.batch_size = c->batch_size,
                           .shuffle = 1,
                           .augment = c->augment < 0 ? is_cifar : c->augment,
                           .reflect_pad = strcmp(c->data, "cifar10") == 0,
                           .seed = c->seed};
    ST_TRY(st_loader_create(&r->train, &o, &r->train_loader));
    st_loader_options e = {.batch_size = c->test_batch_size, .shuffle = 0, .augment = 0, .seed = c->seed};
    if (r->valid.count) ST_TRY(st_loader_create(&r->valid, &e, &r->valid_loader));
    return st_loader_create(&r->test, &e, &r->test_loader);
}

static st_status evaluate(st_model *m, st_loader *loader, double *accuracy, double *loss) {
    m->training = 0;
    ST_TRY(st_loader_start_epoch(loader, 0));
    double loss_sum = 0;
    int64_t correct = 0, seen = 0;
    for (;;) {
        st_batch b;
        st_status s = st_loader_next(loader, &b);
        if (s != ST_OK) {
            m->training = 1;
            return s;
        }
        if (b.count == 0) break;
        const float *logits;
        ST_TRY(st_model_forward(m, b.images, b.count, &logits));
        int ok = 0;
        loss_sum += st_model_loss(m, b.labels, b.count, &ok) * b.count;
        correct += ok;
        seen += b.count;
    }
    m->training = 1;
    *accuracy = seen ? (double)correct / (double)seen : 0.0;
    if (loss) *loss = seen ? loss_sum / (double)seen : 0.0;
    return ST_OK;
}

static st_status setup_model(run *r, const st_safetensors *resume_file) {
    st_train_config *c = r->c;
    ST_TRY(st_model_create(c->model, r->train.num_classes, r->train.channels, r->train.height, r->train.width,
                           &r->model));
    st_model *m = r->model;
    st_layer_shape *shapes;
    int *ids, n;
    ST_TRY(st_model_prunable_layers(m, &shapes, &ids, &n));
    double *densities = st_calloc((size_t)n, sizeof(double), "densities");
    double *by_param = st_calloc((size_t)m->n_params, sizeof(double), "densities");
    st_status s = densities && by_param ? ST_OK : ST_ERR_NOMEM;
    const char *init = c->sparse ? c->sparse_init : "dense";
    st_saliency_batch batch = {0};
    if (s == ST_OK && st_sparse_init_needs_weights(init)) {
        /* snip, GraSP and global_magnitude score the initialised dense network
         * (with --scaled-per-layer, scaled by the overall density: the layer
         * densities are what is being computed). */
        st_model_init_weights(m, c->seed, c->scaled ? ST_INIT_SCALED : ST_INIT_PLAIN, c->density, NULL);
        if (st_sparse_init_needs_data(init))
            s = st_saliency_collect(init, r->train_loader, r->train.num_classes, r->train.channels, r->train.height,
                                    r->train.width, ST_GRASP_SAMPLES_PER_CLASS, &batch);
    }
    if (s == ST_OK) s = st_model_layer_densities(m, init, c->density, c->fc_density, &batch, c->seed, densities);
    st_saliency_batch_free(&batch);
    if (s == ST_OK && n <= ST_CHECKPOINT_MAX_LAYERS) { /* recorded in every checkpoint as "layer_densities" */
        r->info.n_layer_densities = n;
        memcpy(r->info.layer_densities, densities, sizeof(double) * (size_t)n);
    }
    if (s == ST_OK && c->sparse)
        s = st_model_sample_masks(m, densities, strcmp(c->mask_sampling, "exact") == 0 ? ST_MASK_EXACT : ST_MASK_BERNOULLI,
                                  c->seed);
    if (s == ST_OK && !resume_file) s = st_layers_kept_check(m, c);
    if (s == ST_OK) {
        for (int l = 0; l < n; l++) by_param[ids[l]] = densities[l];
        st_model_init_weights(m, c->seed, (st_init_scaling)c->scaled, c->density, by_param);
        if (!c->quiet && c->sparse) {
            int64_t kept, total;
            st_model_prunable_counts(m, &kept, &total);
            printf("layer-wise densities (%s, target %.4g):\n", c->sparse_init, c->density);
            for (int l = 0; l < n; l++) {
                const st_param *p = &m->params[ids[l]];
                printf("  %-28s %9lld weights  density %.4f  kept %lld\n", p->name, (long long)p->numel, densities[l],
                       (long long)p->sparse->kept);
            }
            printf("  overall: %lld of %lld prunable weights kept (density %.4f)\n", (long long)kept, (long long)total,
                   (double)kept / (double)total);
        }
    }
    free(shapes);
    free(ids);
    free(densities);
    free(by_param);
    if (s != ST_OK) return s;
    if (resume_file) ST_TRY(st_checkpoint_load_model(resume_file, c->resume, m, ""));
    /* masks and weights are final: choose dense or sparse execution (packs the weights) */
    st_exec_policy policy;
    ST_TRY(st_exec_policy_parse(c->execution, &policy));
    ST_TRY(st_model_apply_execution(m, policy));
    if (!c->quiet && c->sparse)
        printf("execution: %s (FLOP-weighted density %.4f; --execution %s)\n", m->sparse_exec ? "sparse" : "dense",
               st_model_flop_density(m), c->execution);
    ST_TRY(st_optimizer_create(&r->opt, m, strcmp(c->optimizer, "adam") == 0 ? ST_OPTIMIZER_ADAM : ST_OPTIMIZER_SGD,
                               c->momentum, strcmp(c->optimizer, "sgd") == 0, c->l2));
    for (int i = 0; i < m->n_ops; i++) r->n_bn += m->ops[i].kind == ST_OP_BATCHNORM;
    if (r->valid.count) {
        r->best = st_calloc((size_t)m->n_params, sizeof(float *), "best weights");
        r->best_tracked = st_calloc((size_t)r->n_bn + 1, sizeof(int64_t), "best weights");
        if (!r->best || !r->best_tracked) return ST_ERR_NOMEM;
        for (int i = 0; i < m->n_params; i++) {
            r->best[i] = st_calloc((size_t)st_param_stored(&m->params[i]), sizeof(float), "best weights");
            if (!r->best[i]) return ST_ERR_NOMEM;
        }
    }
    r->info.best_val_acc = -1;
    r->info.best_epoch = -1;
    if (resume_file) {
        ST_TRY(st_checkpoint_load_optimizer(resume_file, c->resume, m, &r->opt));
        ST_TRY(st_checkpoint_read_info(resume_file, c->resume, &r->info));
        r->info.args_json = NULL;
        r->info.data = NULL;
        if (r->best && r->info.best_epoch >= 0) {
            /* Load the best copy through a dense model, then keep it in the stored form. */
            st_model *tmp;
            ST_TRY(st_model_create(c->model, m->num_classes, m->in_channels, m->in_height, m->in_width, &tmp));
            st_status ls = st_checkpoint_load_model(resume_file, c->resume, tmp, "best.");
            if (ls == ST_OK) {
                for (int i = 0; i < m->n_params; i++) {
                    if (m->params[i].sparse) st_sparse_weight_gather(m->params[i].sparse, tmp->params[i].value, r->best[i]);
                    else memcpy(r->best[i], tmp->params[i].value, (size_t)m->params[i].numel * sizeof(float));
                }
                for (int i = 0, k = 0; i < tmp->n_ops; i++)
                    if (tmp->ops[i].kind == ST_OP_BATCHNORM) r->best_tracked[k++] = tmp->ops[i].num_batches_tracked;
            }
            st_model_free(tmp);
            if (ls != ST_OK) return ls;
        }
    }
    return ST_OK;
}

static void remember_best(run *r) {
    st_model *m = r->model;
    for (int i = 0; i < m->n_params; i++)
        memcpy(r->best[i], m->params[i].value, (size_t)st_param_stored(&m->params[i]) * sizeof(float));
    for (int i = 0, k = 0; i < m->n_ops; i++)
        if (m->ops[i].kind == ST_OP_BATCHNORM) r->best_tracked[k++] = m->ops[i].num_batches_tracked;
}

static st_status save_checkpoint(run *r) {
    if (!r->c->save[0]) return ST_OK;
    r->info.args_json = r->args_json;
    r->info.data = r->c->data;
    r->info.seed = r->c->seed;
    r->info.run_id = r->c->run_id;
    r->info.step = r->opt.steps;
    r->info.force = r->c->force;
    int have_best = r->best && r->info.best_epoch >= 0;
    ST_TRY(st_checkpoint_save(r->c->save, r->model, &r->opt, have_best ? r->best : NULL,
                              have_best ? r->best_tracked : NULL, &r->info));
    r->saved = 1;
    return ST_OK;
}

static void show_progress(const st_train_config *c, int epoch, int64_t done, int64_t total, double loss, double acc,
                          double ips, double elapsed) {
    if (c->progress != 1) return;
    int width = 24, filled = total ? (int)(width * done / total) : width;
    double eta = done ? elapsed * (double)(total - done) / (double)done : 0;
    char bar[32];
    for (int i = 0; i < width; i++) bar[i] = i < filled ? '=' : (i == filled ? '>' : ' ');
    bar[width] = 0;
    fprintf(stderr, "\repoch %d/%d [%s] %lld/%lld loss %.4f acc %.2f%% %.0f img/s ETA %d:%02d ", epoch + 1, c->epochs,
            bar, (long long)done, (long long)total, loss, 100 * acc, ips, (int)eta / 60, (int)eta % 60);
    fflush(stderr);
}

/* One line of the JSON-lines log (io/log_file.h: one write, synced; a failed
 * write is an error after the checkpoint is saved). */
static st_status write_log_line(run *r, int epoch, double lr, double loss, double acc, double val, double test,
                                double ips, double seconds, int64_t examples) {
    if (!r->log) return ST_OK;
    char *text = NULL;
    size_t length = 0;
    FILE *line = open_memstream(&text, &length);
    if (!line) return st_fail(ST_ERR_NOMEM, "out of memory writing log %s", r->c->log);
    fprintf(line,
            "{\"epoch\": %d, \"lr\": %.9g, \"train_loss\": %.9g, \"train_acc\": %.9g, \"val_acc\": ", epoch + 1, lr,
            loss, acc);
    if (val >= 0)
        fprintf(line, "%.9g", val);
    else
        fprintf(line, "null");
    fprintf(line, ", \"test_acc\": %.9g, \"images_per_s\": %.6g, \"seconds\": %.6g", test, ips, seconds);
    /* FLOPs (eval/flops_summary.h): per example of inference, and of this epoch's training */
    fprintf(line,
            ", \"flops_forward_dense\": %.9g, \"flops_forward_sparse\": %.9g, \"flops_epoch_train_dense\": %.9g, "
            "\"flops_epoch_train_sparse\": %.9g, \"run_id\": \"%s\"}\n",
            r->flops.forward_dense, r->flops.forward_sparse, r->flops.train_dense * (double)examples,
            r->flops.train_sparse * (double)examples, r->c->run_id);
    fclose(line);
    st_status s = text ? st_log_append(r->log, text, length) : st_fail(ST_ERR_NOMEM, "out of memory writing log %s", r->c->log);
    free(text);
    return s;
}

static st_status train_epochs(run *r, st_train_result *result) {
    st_train_config *c = r->c;
    st_model *m = r->model;
    int epochs_this_run = 0;
    for (int epoch = r->info.epoch; epoch < c->epochs; epoch++) {
        double lr = st_lr_at_epoch(strcmp(c->lr_schedule, "cosine") == 0 ? ST_LR_COSINE : ST_LR_MULTISTEP, c->lr, epoch,
                                   c->epochs);
        int64_t total = st_loader_batches_per_epoch(r->train_loader);
        if (c->max_batches > 0 && total > c->max_batches) total = c->max_batches;
        ST_TRY(st_loader_start_epoch(r->train_loader, epoch));
        double loss_sum = 0, t0 = now_seconds(), last_draw = 0;
        int64_t correct = 0, seen = 0, b_index = 0;
        if (r->info.batch_in_epoch > 0) { /* resuming mid-epoch: skip what was done */
            ST_TRY(st_loader_skip(r->train_loader, r->info.batch_in_epoch)); /* O(1) */
            b_index = r->info.batch_in_epoch;
            loss_sum = r->info.epoch_loss_sum;
            correct = r->info.epoch_correct;
            seen = r->info.epoch_seen;
            r->info.batch_in_epoch = 0;
        }
        int64_t seen_at_start = seen;
        for (; b_index < total; b_index++) {
            st_batch b;
            ST_TRY(st_loader_next(r->train_loader, &b));
            if (b.count == 0) break;
            st_anomaly_where where = {r->opt.steps + 1, epoch + 1, b_index + 1, lr, c->save, r->saved};
            int64_t image_floats = (int64_t)b.count * r->train.channels * r->train.height * r->train.width;
            if (c->detect_anomaly) ST_TRY(st_anomaly_check_input(b.images, image_floats, &where));
            const float *logits;
            ST_TRY(st_model_forward(m, b.images, b.count, &logits));
            if (c->detect_anomaly) ST_TRY(st_anomaly_check_activations(m, b.count, &where));
            if (c->detect_anomaly) ST_TRY(st_anomaly_check_output(m, logits, b.count, &where));
            double loss;
            int ok;
            ST_TRY(st_model_loss_backward(m, b.labels, b.count, &loss, &ok));
            /* Nothing of a bad step is applied or saved: the last good checkpoint stays. */
            ST_TRY(st_anomaly_check_loss(m, loss, &where));
            ST_TRY(st_anomaly_check_gradients(m, &where));
            st_optimizer_step(&r->opt, m, lr);
            if (c->detect_anomaly) ST_TRY(st_anomaly_check_weights(m, &r->opt, &where));
            loss_sum += loss * b.count;
            correct += ok;
            seen += b.count;
            double t = now_seconds();
            if (c->progress == 1 && (t - last_draw > 0.25 || b_index + 1 == total)) {
                last_draw = t;
                show_progress(c, epoch, b_index + 1, total, loss_sum / (double)seen, (double)correct / (double)seen,
                              (double)(seen - seen_at_start) / (t - t0), t - t0);
            }
            if (c->stop_flag && *c->stop_flag) {
                if (c->progress == 1) fputc('\n', stderr);
                r->info.epoch = epoch;
                r->info.batch_in_epoch = b_index + 1;
                r->info.epoch_loss_sum = loss_sum;
                r->info.epoch_correct = correct;
                r->info.epoch_seen = seen;
                ST_TRY(save_checkpoint(r));
                return st_fail(ST_ERR_INTERRUPTED, "interrupted at epoch %d, batch %lld%s%s", epoch + 1,
                               (long long)b_index + 1, c->save[0] ? "; checkpoint saved to " : " (no --save given)",
                               c->save);
            }
        }
        double train_seconds = now_seconds() - t0;
        if (c->progress == 1) fputc('\n', stderr);
        double val_acc = -1, test_acc, test_loss;
        if (r->valid_loader) ST_TRY(evaluate(m, r->valid_loader, &val_acc, NULL));
        ST_TRY(evaluate(m, r->test_loader, &test_acc, &test_loss));
        double train_loss = seen ? loss_sum / (double)seen : 0, train_acc = seen ? (double)correct / (double)seen : 0;
        double ips = (double)(seen - seen_at_start) / train_seconds;
        if (r->best && val_acc > r->info.best_val_acc) {
            r->info.best_val_acc = val_acc;
            r->info.best_epoch = epoch;
            r->info.best_test_acc = test_acc;
            remember_best(r);
        } else if (!r->best) {
            r->info.best_test_acc = test_acc;
            r->info.best_epoch = epoch;
        }
        if (!c->quiet) {
            printf("epoch %d/%d  lr %.4g  train loss %.4f acc %.2f%%", epoch + 1, c->epochs, lr, train_loss,
                   100 * train_acc);
            if (val_acc >= 0) printf("  val acc %.2f%%", 100 * val_acc);
            printf("  test acc %.2f%% loss %.4f  %.0f img/s  %.1f s\n", 100 * test_acc, test_loss, ips,
                   now_seconds() - t0);
            fflush(stdout);
        }
        st_status logged =
            write_log_line(r, epoch, lr, train_loss, train_acc, val_acc, test_acc, ips, now_seconds() - t0, seen);
        r->info.epoch = epoch + 1;
        r->info.epoch_loss_sum = 0;
        r->info.epoch_correct = r->info.epoch_seen = 0;
        ST_TRY(save_checkpoint(r));
        ST_TRY(logged); /* a log that cannot be written stops the run, its checkpoint saved */
        result->test_acc = test_acc;
        result->epochs_done = epoch + 1;
        epochs_this_run++;
        if (c->stop_after > 0 && epochs_this_run >= c->stop_after && epoch + 1 < c->epochs) break;
    }
    result->best_val_acc = r->info.best_val_acc;
    result->best_epoch = r->info.best_epoch + 1;
    result->best_test_acc = r->info.best_test_acc;
    return ST_OK;
}

st_status st_train_run(st_train_config *c, st_train_result *result) {
    memset(result, 0, sizeof *result);
    st_safetensors *resume_file = NULL;
    if (c->resume[0]) {
        st_train_config cmdline = *c; /* as the command line gave it (st_resume_merge) */
        ST_TRY(st_safetensors_read(c->resume, &resume_file));
        const char *args = st_safetensors_meta(resume_file, "args");
        const char *format = st_safetensors_meta(resume_file, "format");
        st_status s = (!format || strcmp(format, ST_CHECKPOINT_FORMAT) != 0)
                          ? st_fail(ST_ERR_FORMAT, "%s: not a sparsetrain checkpoint", c->resume)
                      : !args ? st_fail(ST_ERR_FORMAT, "%s: checkpoint has no 'args' metadata", c->resume)
                              : st_train_config_from_json(args, c->resume, c);
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
    st_status s = validate_config(c);
    if (s != ST_OK && resume_file) /* the command line's part was checked by st_resume_merge */
        s = st_fail_context(ST_ERR_FORMAT, "%s holds run arguments that are not valid", c->resume);
    st_run_guard guard; /* outputs, locks, run ownership: checked now, not after the first epoch */
    if (s == ST_OK) s = st_run_guard_begin(c, &guard);
    if (s != ST_OK) {
        st_safetensors_free(resume_file);
        return s;
    }
    if (c->threads > 0) omp_set_num_threads(c->threads);
    if (c->progress < 0) c->progress = isatty(fileno(stderr)) ? 1 : 0;
    run r;
    memset(&r, 0, sizeof r);
    r.c = c;
    r.saved = c->save[0] && c->resume[0] && strcmp(c->save, c->resume) == 0;
    s = st_train_config_to_json(c, &r.args_json);
    if (s == ST_OK) s = load_data(&r);
    if (s == ST_OK) s = setup_model(&r, resume_file);
    if (s == ST_OK && resume_file) s = st_resume_counters_check(&r.info, c, st_loader_batches_per_epoch(r.train_loader));
    if (s == ST_OK) s = st_flops_summary_of(r.model, &r.flops);
    st_safetensors_free(resume_file);
    if (s == ST_OK && c->log[0]) s = st_log_open(c->log, "--log", c->run_id, c->resume[0] != 0, c->force, &r.log);
    if (s == ST_OK && !c->quiet) {
        int64_t kept, total;
        st_model_prunable_counts(r.model, &kept, &total);
        printf("%s on %s: %lld parameters, %lld of %lld prunable weights kept; %lld train / %lld val / %lld test "
               "images; %d threads%s\n",
               c->model, c->data, (long long)st_model_parameter_count(r.model), (long long)kept, (long long)total,
               (long long)r.train.count, (long long)r.valid.count, (long long)r.test.count, omp_get_max_threads(),
               c->resume[0] ? " (resumed)" : "");
        fflush(stdout);
    }
    if (s == ST_OK) s = train_epochs(&r, result);
    run_free(&r);
    st_run_guard_end(&guard);
    return s;
}
