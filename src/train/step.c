/* The pieces of a run (trainer.h): one step, one epoch, evaluation, the end
 * of an epoch (model selection, log line, checkpoint). Nothing here prints:
 * progress and results go to the caller's hooks. */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/status.h"
#include "data/catalog.h"
#include "train/anomaly.h"
#include "train/mask_update.h"
#include "train/trainer_internal.h"

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double st_trainer_lr(const st_trainer *t, int epoch) {
    const st_train_config *c = t->c;
    st_lr_schedule kind = strcmp(c->lr_schedule, "cosine") == 0 ? ST_LR_COSINE
                          : strcmp(c->lr_schedule, "step") == 0 ? ST_LR_STEP
                                                                : ST_LR_MULTISTEP;
    return st_lr_at_epoch_warmup(kind, c->lr, epoch, c->epochs, c->warmup);
}

/* Images of the batch whose label is among the 5 largest logits, with the
 * tie rule of st_logits_summary (eval/metrics.h) and of top-1: a class ranks
 * before the label if its logit is larger, or equal at a smaller index. */
static int64_t top5_hits(const float *logits, const int32_t *labels, int batch, int classes) {
    int64_t hits = 0;
    for (int n = 0; n < batch; n++) {
        const float *z = logits + (size_t)n * classes, mine = z[labels[n]];
        int before = 0;
        for (int k = 0; k < classes; k++) before += z[k] > mine || (z[k] == mine && k < labels[n]);
        hits += before < 5;
    }
    return hits;
}

/* `epoch` only matters for an augmented loader (--protocol reference's CIFAR-10 validation); `stop` ends the pass early.
 * `hooks` (may be NULL) gets on_eval_batch after every batch, reported as of epoch `report_epoch`. */
static st_status evaluate_loader(st_model *m, st_loader *loader, int64_t epoch, const volatile sig_atomic_t *stop,
                                 const st_train_hooks *hooks, int report_epoch, int epochs, double *accuracy,
                                 double *top5, double *loss) {
    m->training = 0;
    ST_TRY(st_loader_start_epoch(loader, epoch));
    const int report = hooks && hooks->on_eval_batch;
    const int64_t total = report ? st_loader_batches_per_epoch(loader) : 0;
    double loss_sum = 0;
    int64_t correct = 0, seen = 0, correct5 = 0, done = 0;
    const double t0 = now_seconds();
    double end = t0;
    for (;;) {
        st_batch b;
        st_status s = stop && *stop ? st_fail(ST_ERR_INTERRUPTED, "interrupted during the evaluation")
                                    : st_loader_next(loader, &b);
        if (s != ST_OK) {
            m->training = 1;
            return s;
        }
        if (b.count == 0) break;
        const double got = now_seconds();
        const float *logits;
        ST_TRY(st_model_forward(m, b.images, b.count, &logits));
        int ok = 0;
        const double batch_loss = st_model_loss(m, b.labels, b.count, &ok);
        const int64_t hits5 = top5_hits(logits, b.labels, b.count, m->num_classes);
        loss_sum += batch_loss * b.count;
        correct += ok;
        correct5 += hits5;
        seen += b.count;
        done++;
        if (report) {
            const double now = now_seconds();
            st_batch_report r = {report_epoch, epochs, done, total, loss_sum / (double)seen,
                                 (double)correct / (double)seen, (double)seen / (now - t0), now - t0, batch_loss,
                                 b.count, correct, seen, now - end, got - end, ok,
                                 m->num_classes >= 5 ? (int)hits5 : -1};
            hooks->on_eval_batch(&r, hooks->user);
            end = now_seconds();
        }
    }
    m->training = 1;
    *accuracy = seen ? (double)correct / (double)seen : 0.0;
    if (top5) *top5 = seen ? (double)correct5 / (double)seen : 0.0;
    if (loss) *loss = seen ? loss_sum / (double)seen : 0.0;
    return ST_OK;
}

st_status st_trainer_evaluate(st_trainer *t, st_split split, double *accuracy, double *loss) {
    return st_trainer_evaluate_top5(t, split, accuracy, NULL, loss);
}

st_status st_trainer_evaluate_top5(st_trainer *t, st_split split, double *accuracy, double *top5, double *loss) {
    st_loader *loader = split == ST_SPLIT_VALID ? t->data.valid_loader : t->data.test_loader;
    if (!loader) return st_fail(ST_ERR_ARGUMENT, "this run has no validation split (--valid_split 0)");
    return evaluate_loader(t->model, loader, split == ST_SPLIT_VALID ? t->info.epoch : 0, t->c->stop_flag,
                           split == ST_SPLIT_TEST ? &t->hooks : NULL, t->info.epoch, t->c->epochs, accuracy, top5,
                           loss);
}

static st_status remember_best(st_trainer *r) {
    st_model *m = r->model;
    ST_TRY(st_param_snapshot_take(&m->store, &r->best));
    for (int i = 0, k = 0; i < m->n_ops; i++)
        if (m->ops[i].kind == ST_OP_BATCHNORM) r->best_tracked[k++] = m->ops[i].num_batches_tracked;
    return ST_OK;
}

st_status st_trainer_save(st_trainer *r) {
    if (!r->c->save[0]) return ST_OK;
    r->info.args_json = r->args_json;
    r->info.data = r->c->data;
    r->info.seed = r->c->seed;
    r->info.run_id = r->c->run_id;
    r->info.step = r->opt.steps;
    r->info.itop = r->updater && r->updater->set.dynamic ? r->updater->fired : NULL; /* --fix: it is the mask */
    r->info.growth_momentum = r->updater ? r->updater->momentum : NULL;   /* --growth momentum only */
    r->info.growth_momentum2 = r->updater ? r->updater->momentum2 : NULL; /* with Adam */
    r->info.force = r->c->force;
    int have_best = r->keep_best && r->info.best_epoch >= 0;
    ST_TRY(st_checkpoint_save(r->c->save, r->model, &r->opt, have_best ? &r->best : NULL,
                              have_best ? r->best_tracked : NULL, &r->info));
    r->saved = 1;
    return ST_OK;
}

/* One line of the JSON-lines log (io/log_file.h: one write, synced; a failed
 * write is an error after the checkpoint is saved). */
static st_status write_log_line(st_trainer *r, int epoch, double lr, double loss, double acc, double val, double test,
                                double test_top5, double ips, double seconds, int64_t examples) {
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
    fprintf(line, ", \"test_acc\": %.9g", test);
    if (test_top5 >= 0) fprintf(line, ", \"test_top5\": %.9g", test_top5); /* ImageNet-style data only */
    fprintf(line, ", \"images_per_s\": %.6g, \"seconds\": %.6g", ips, seconds);
    /* FLOPs (eval/flops_summary.h): per example of inference, and of this epoch's training */
    fprintf(line,
            ", \"flops_forward_dense\": %.9g, \"flops_forward_sparse\": %.9g, \"flops_epoch_train_dense\": %.9g, "
            "\"flops_epoch_train_sparse\": %.9g",
            r->flops.forward_dense, r->flops.forward_sparse, r->flops.train_dense * (double)examples,
            r->flops.train_sparse * (double)examples);
    if (r->updater) /* sparse runs: positions ever active; the dense gradients of this epoch's update steps (RigL's count) */
        fprintf(line, ", \"itop_rate\": %.9g, \"flops_epoch_mask_updates\": %.9g", st_mask_updater_itop_rate(r->updater),
                st_mask_updater_dense_grad_macs(r->updater, r->epoch_first_step, r->opt.steps, r->c->batch_size));
    fprintf(line, ", \"run_id\": \"%s\"}\n", r->c->run_id);
    fclose(line);
    st_status s = text ? st_log_append(r->log, text, length) : st_fail(ST_ERR_NOMEM, "out of memory writing log %s", r->c->log);
    free(text);
    return s;
}

/* Where the step in progress is, for the anomaly checks' messages. */
typedef struct step_place {
    int epoch;
    int64_t batch; /* 1-based */
    double lr;
} step_place;

static st_anomaly_where where_of(const st_trainer *t, const step_place *at) {
    st_anomaly_where w = {t->opt.steps + 1, at->epoch + 1, at->batch, at->lr, t->c->save, t->saved};
    return w;
}

/* Also where a step that a gradient-growth mask update follows asks for dense weight gradients. */
void st_trainer_zero_grad(st_trainer *t) {
    st_model_zero_grad(t->model);
    if (t->updater) t->arm_status = st_mask_updater_arm(t->updater, t->model, t->opt.steps + 1);
}

/* One line of the JSON-lines log per mask update (no "epoch" key: not an epoch record). */
static st_status write_update_line(st_trainer *r, int epoch) {
    if (!r->log) return ST_OK;
    const st_mask_updater *u = r->updater;
    const st_mask_update_stats *st = &u->last;
    char *text = NULL;
    size_t length = 0;
    FILE *line = open_memstream(&text, &length);
    if (!line) return st_fail(ST_ERR_NOMEM, "out of memory writing log %s", r->c->log);
    fprintf(line,
            "{\"mask_update\": %lld, \"step\": %lld, \"in_epoch\": %d, \"death_rate\": %.9g, \"removed\": %lld, "
            "\"regrown\": %lld, \"changed\": %lld, \"seconds\": %.6g, \"dense_grad_seconds\": %.6g, \"itop_rate\": %.9g, "
            "\"layers\": [",
            (long long)st->index, (long long)st->step, epoch + 1, st->death_rate, (long long)st->removed,
            (long long)st->regrown, (long long)st->changed, st->seconds, st->dense_grad_seconds, st->itop_rate);
    for (int l = 0; l < u->n_layers; l++) {
        const st_mask_update_layer *layer = &u->layers[l];
        fprintf(line, "%s{\"name\": \"%s\", \"removed\": %lld, \"changed\": %lld, \"itop_rate\": %.9g}", l ? ", " : "",
                r->model->params[layer->param].name, (long long)layer->removed, (long long)layer->changed,
                layer->numel ? (double)layer->fired / (double)layer->numel : 0.0);
    }
    fprintf(line, "], \"run_id\": \"%s\"}\n", r->c->run_id);
    fclose(line);
    st_status s = text ? st_log_append(r->log, text, length) : st_fail(ST_ERR_NOMEM, "out of memory writing log %s", r->c->log);
    free(text);
    return s;
}

static st_status accumulate_at(st_trainer *t, const st_batch *b, const step_place *at, double *loss, int *correct) {
    st_model *m = t->model;
    const st_train_config *c = t->c;
    st_anomaly_where where = where_of(t, at);
    const int64_t image_floats = (int64_t)b->count * t->data.train.channels * t->data.train.height * t->data.train.width;
    if (c->detect_anomaly) ST_TRY(st_anomaly_check_input(b->images, image_floats, &where));
    const float *logits;
    ST_TRY(st_model_forward(m, b->images, b->count, &logits));
    if (c->detect_anomaly) ST_TRY(st_anomaly_check_activations(m, b->count, &where));
    if (c->detect_anomaly) ST_TRY(st_anomaly_check_output(m, logits, b->count, &where));
    t->batch_top5 = m->num_classes >= 5 ? (int)top5_hits(logits, b->labels, b->count, m->num_classes) : -1;
    ST_TRY(st_model_loss_backward_accumulate(m, b->labels, b->count, loss, correct));
    /* Nothing of a bad step is applied or saved: the last good checkpoint stays. */
    return st_anomaly_check_loss(m, *loss, &where);
}

static st_status apply_at(st_trainer *t, const step_place *at) {
    st_model *m = t->model;
    st_anomaly_where where = where_of(t, at);
    ST_TRY(st_anomaly_check_gradients(m, &where));
    if (t->hooks.after_backward) ST_TRY(t->hooks.after_backward(t, t->hooks.user));
    ST_TRY(t->arm_status);
    ST_TRY(st_mask_updater_before_step(t->updater, m, &t->opt)); /* momentum growth's dense momentum */
    st_optimizer_step(&t->opt, m, at->lr);
    if (t->c->detect_anomaly) ST_TRY(st_anomaly_check_weights(m, &t->opt, &where));
    int updated = 0;
    ST_TRY(st_mask_updater_after_step(t->updater, m, t->opt.steps, &updated));
    if (updated && t->hooks.on_mask_update) {
        const st_mask_update_stats *u = &t->updater->last;
        st_mask_update_report r = {at->epoch, u->step, u->index, u->death_rate, u->removed, u->regrown, u->changed,
                                   u->itop_rate, u->seconds, u->dense_grad_seconds};
        t->hooks.on_mask_update(&r, t->hooks.user);
    }
    if (updated) ST_TRY(write_update_line(t, at->epoch));
    if (t->hooks.after_step) ST_TRY(t->hooks.after_step(t, t->hooks.user));
    return ST_OK;
}

st_status st_trainer_accumulate(st_trainer *t, const st_batch *b, double *loss, int *correct) {
    step_place at = {t->info.epoch, 0, 0.0};
    return accumulate_at(t, b, &at, loss, correct);
}

st_status st_trainer_apply(st_trainer *t, double lr) {
    step_place at = {t->info.epoch, 0, lr};
    return apply_at(t, &at);
}

static st_status step_at(st_trainer *t, const st_batch *b, const step_place *at, double *loss, int *correct) {
    st_trainer_zero_grad(t);
    ST_TRY(accumulate_at(t, b, at, loss, correct));
    return apply_at(t, at);
}

st_status st_trainer_step(st_trainer *t, const st_batch *b, double lr, double *loss, int *correct) {
    step_place at = {t->info.epoch, 0, lr};
    return step_at(t, b, &at, loss, correct);
}

st_status st_trainer_train_epoch(st_trainer *t, int epoch, int *stopped) {
    const st_train_config *c = t->c;
    *stopped = 0;
    const double lr = st_trainer_lr(t, epoch);
    int64_t total = st_loader_batches_per_epoch(t->data.train_loader);
    if (c->max_batches > 0 && total > c->max_batches) total = c->max_batches;
    ST_TRY(st_loader_start_epoch(t->data.train_loader, epoch));
    double loss_sum = 0;
    const double t0 = now_seconds();
    int64_t correct = 0, seen = 0, b_index = 0;
    if (t->info.batch_in_epoch > 0) { /* resuming mid-epoch: skip what was done */
        ST_TRY(st_loader_skip(t->data.train_loader, t->info.batch_in_epoch)); /* O(1) */
        b_index = t->info.batch_in_epoch;
        loss_sum = t->info.epoch_loss_sum;
        correct = t->info.epoch_correct;
        seen = t->info.epoch_seen;
        t->info.batch_in_epoch = 0;
    }
    const int64_t seen_at_start = seen;
    t->epoch_first_step = t->opt.steps - b_index; /* steps before this epoch, also when resumed within it */
    double end = t0; /* the end of the previous batch (the reference's batch and data times start there) */
    for (; b_index < total; b_index++) {
        st_batch b;
        ST_TRY(st_loader_next(t->data.train_loader, &b));
        if (b.count == 0) break;
        const double got = now_seconds();
        step_place at = {epoch, b_index + 1, lr};
        double loss;
        int ok;
        ST_TRY(step_at(t, &b, &at, &loss, &ok));
        loss_sum += loss * b.count;
        correct += ok;
        seen += b.count;
        if (t->hooks.on_batch) {
            const double now = now_seconds(), elapsed = now - t0;
            st_batch_report r = {epoch, c->epochs, b_index + 1, total, loss_sum / (double)seen,
                                 (double)correct / (double)seen, (double)(seen - seen_at_start) / elapsed, elapsed,
                                 loss, b.count, correct, seen, now - end, got - end, ok, t->batch_top5};
            t->hooks.on_batch(&r, t->hooks.user);
            end = now_seconds();
        }
        if (c->stop_flag && *c->stop_flag) {
            t->info.epoch = epoch;
            t->info.batch_in_epoch = b_index + 1;
            t->info.epoch_loss_sum = loss_sum;
            t->info.epoch_correct = correct;
            t->info.epoch_seen = seen;
            ST_TRY(st_trainer_save(t));
            *stopped = 1;
            return ST_OK;
        }
    }
    t->epoch_t0 = t0;
    t->epoch_seconds = now_seconds() - t0;
    t->epoch_loss_sum = loss_sum;
    t->epoch_correct = correct;
    t->epoch_seen = seen;
    t->epoch_seen_at_start = seen_at_start;
    t->epoch_batches = b_index;
    return ST_OK;
}

/* Stopped during the evaluation of a trained epoch: save it as trained but
 * not evaluated (batch_in_epoch = its batches), so a resume evaluates it. */
static st_status save_unevaluated(st_trainer *t, int epoch) {
    t->info.epoch = epoch;
    t->info.batch_in_epoch = t->epoch_batches;
    t->info.epoch_loss_sum = t->epoch_loss_sum;
    t->info.epoch_correct = t->epoch_correct;
    t->info.epoch_seen = t->epoch_seen;
    ST_TRY(st_trainer_save(t));
    return st_fail(ST_ERR_INTERRUPTED, "interrupted while evaluating epoch %d%s%s", epoch + 1,
                   t->c->save[0] ? "; checkpoint saved to " : " (no --save given)", t->c->save);
}

st_status st_trainer_end_epoch(st_trainer *t, int epoch, st_train_result *result) {
    const st_train_config *c = t->c;
    const st_dataset_info *row = st_dataset_info_find(c->data);
    /* ImageNet-style data with >= 5 classes, as the reference's Prec@5 */
    const int show_top5 = row && row->format == ST_DATA_IMAGE_FOLDER && t->model->num_classes >= 5;
    const double lr = st_trainer_lr(t, epoch);
    double val_acc = -1, test_acc, test_loss, test_top5;
    st_status es = t->data.valid_loader ? st_trainer_evaluate(t, ST_SPLIT_VALID, &val_acc, NULL) : ST_OK;
    if (es == ST_OK) es = st_trainer_evaluate_top5(t, ST_SPLIT_TEST, &test_acc, &test_top5, &test_loss);
    if (es == ST_ERR_INTERRUPTED) return save_unevaluated(t, epoch);
    ST_TRY(es);
    const int64_t seen = t->epoch_seen;
    const double train_loss = seen ? t->epoch_loss_sum / (double)seen : 0;
    const double train_acc = seen ? (double)t->epoch_correct / (double)seen : 0;
    const double ips = (double)(seen - t->epoch_seen_at_start) / t->epoch_seconds;
    if (t->keep_best && val_acc > t->info.best_val_acc) {
        t->info.best_val_acc = val_acc;
        t->info.best_epoch = epoch;
        t->info.best_test_acc = test_acc;
        ST_TRY(remember_best(t));
    } else if (!t->keep_best) {
        t->info.best_test_acc = test_acc;
        t->info.best_epoch = epoch;
    }
    if (t->hooks.on_epoch) {
        st_epoch_report r = {epoch, c->epochs, lr, train_loss, train_acc, val_acc, test_acc, test_loss, ips,
                             now_seconds() - t->epoch_t0, test_top5, show_top5,
                             t->updater ? st_mask_updater_itop_rate(t->updater) : -1};
        t->hooks.on_epoch(&r, t->hooks.user);
    }
    const st_status logged =
        write_log_line(t, epoch, lr, train_loss, train_acc, val_acc, test_acc,
                       show_top5 ? test_top5 : -1, ips, now_seconds() - t->epoch_t0, seen);
    t->info.epoch = epoch + 1;
    t->info.epoch_loss_sum = 0;
    t->info.epoch_correct = t->info.epoch_seen = 0;
    ST_TRY(st_trainer_save(t));
    ST_TRY(logged); /* a log that cannot be written stops the run, its checkpoint saved */
    if (result) {
        result->test_acc = test_acc;
        result->epochs_done = epoch + 1;
    }
    return ST_OK;
}
