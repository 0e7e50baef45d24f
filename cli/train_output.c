/* Terminal output of `sparsetrain train` (see train_output.h). */
#include "train_output.h"

#include "data/catalog.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int is_bf16(const char *precision) { return strncmp(precision, "bf16", 4) == 0; }

static void on_setup(const st_setup_report *r, void *user) {
    st_train_output *out = user;
    const st_train_config *c = r->config; /* a resumed run's, from its checkpoint */
    /* --bf16 that falls back to float32 says so even with --quiet */
    if (r->precision && !is_bf16(r->precision)) fprintf(stderr, "sparsetrain train: --bf16: %s\n", r->precision);
    const st_dataset_info *row = st_dataset_info_find(c->data);
    out->imagenet_lines = row && row->format == ST_DATA_IMAGE_FOLDER;
    out->batch_size = c->batch_size;
    out->eval_batch_size = c->test_batch_size > 0 ? c->test_batch_size : c->batch_size;
    if (out->quiet) return;
    if (c->sparse) {
        int64_t kept = 0, total = 0;
        for (int l = 0; l < r->n_layers; l++) kept += r->layers[l].kept, total += r->layers[l].numel;
        printf("layer-wise densities (%s, target %.4g):\n", c->sparse_init, c->density);
        for (int l = 0; l < r->n_layers; l++)
            printf("  %-28s %9lld weights  density %.4f  kept %lld\n", r->layers[l].name, (long long)r->layers[l].numel,
                   r->layers[l].density, (long long)r->layers[l].kept);
        printf("  overall: %lld of %lld prunable weights kept (density %.4f)\n", (long long)kept, (long long)total,
               (double)kept / (double)total);
        printf("execution: %s (FLOP-weighted density %.4f; --execution %s)\n", r->execution, r->flop_density,
               c->execution);
    }
    if (r->precision && is_bf16(r->precision)) printf("precision: %s\n", r->precision);
    printf("%s on %s: %lld parameters, %lld of %lld prunable weights kept; %lld train / %lld val / %lld test "
           "images; %d threads%s\n",
           c->model, c->data, (long long)r->parameters, (long long)r->kept, (long long)r->prunable,
           (long long)r->train_images, (long long)r->valid_images, (long long)r->test_images, r->threads,
           c->resume[0] ? " (resumed)" : "");
    fflush(stdout);
}

/* --log-interval N: the reference code's line for batch index b (0-based) when b % N == 0. */
static void log_interval_line(const st_train_output *out, const st_batch_report *r) {
    const int64_t b = r->done - 1;
    if (out->log_interval <= 0 || out->quiet || b % out->log_interval != 0) return;
    printf("Train Epoch: %d [%lld/%lld (%.0f%%)]\tLoss: %.6f Accuracy: %lld/%lld (%.3f%%)\n", r->epoch + 1,
           (long long)(b * r->batch_images), (long long)(r->total * out->batch_size),
           100.0 * (double)b / (double)(r->total ? r->total : 1), r->batch_loss, (long long)r->correct,
           (long long)r->seen, 100.0 * (double)r->correct / (double)(r->seen ? r->seen : 1));
    fflush(stdout);
}

static void meter_update(st_meter *m, double value, int n) {
    m->val = value;
    m->sum += value * n;
    m->count += n;
}

static double meter_avg(const st_meter *m) { return m->count ? m->sum / (double)m->count : 0.0; }

/* One batch into the meters (restarted when the epoch changes), as EpochLogger.iter_callback. */
static void meters_update(st_epoch_meters *m, const st_batch_report *r) {
    if (m->epoch != r->epoch || m->time.count == 0) memset(m, 0, sizeof *m);
    m->epoch = r->epoch;
    m->total = r->total;
    m->has_top5 = r->batch_top5 >= 0;
    const int n = r->batch_images;
    meter_update(&m->time, r->batch_seconds, n);
    meter_update(&m->data, r->data_seconds, n);
    meter_update(&m->loss, r->batch_loss, n);
    meter_update(&m->top1, 100.0 * r->batch_correct / (n ? n : 1), n);
    if (m->has_top5) meter_update(&m->top5, 100.0 * r->batch_top5 / (n ? n : 1), n);
}

/* The reference's line for batch index b (0-based), every log_interval batches:
 * "Train:\t0 [10/5005]\tTime v (avg)\tData time v (avg)\tSpeed v (avg)\tLoss ..\tPrec@1 ..\tPrec@5 .."
 * (Speed = the configured batch size over the batch time, as the reference). */
static void imagenet_line(const st_train_output *out, const char *name, const st_epoch_meters *m, int64_t b,
                          int batch_size) {
    if (out->log_interval <= 0 || out->quiet || b % out->log_interval != 0) return;
    const double t = m->time.val > 0 ? m->time.val : 1e-12, ta = meter_avg(&m->time) > 0 ? meter_avg(&m->time) : 1e-12;
    printf("%s:\t%d [%lld/%lld]\tTime %.3f (%.3f)\tData time %.3f (%.3f)\tSpeed %.3f (%.3f)\tLoss %.3f (%.3f)\t"
           "Prec@1 %.3f (%.3f)",
           name, m->epoch, (long long)b, (long long)m->total, m->time.val, meter_avg(&m->time), m->data.val,
           meter_avg(&m->data), batch_size / t, batch_size / ta, m->loss.val, meter_avg(&m->loss), m->top1.val,
           meter_avg(&m->top1));
    if (m->has_top5) printf("\tPrec@5 %.3f (%.3f)", m->top5.val, meter_avg(&m->top5));
    printf("\n");
    fflush(stdout);
}

/* EpochLogger.epoch_callback: "Train epoch 0 summary:\tTime ..\tData time ..\tSpeed ..\tLoss ..\tPrec@1 ..\tPrec@5 .." */
static void imagenet_summary(const st_train_output *out, const char *name, st_epoch_meters *m, int batch_size) {
    if (m->time.count == 0) return;
    if (!out->quiet) {
        const double ta = meter_avg(&m->time) > 0 ? meter_avg(&m->time) : 1e-12;
        printf("%s epoch %d summary:\tTime %.3f\tData time %.3f\tSpeed %.3f\tLoss %.4f\tPrec@1 %.3f", name,
               m->epoch, meter_avg(&m->time), meter_avg(&m->data), batch_size / ta, meter_avg(&m->loss),
               meter_avg(&m->top1));
        if (m->has_top5) printf("\tPrec@5 %.3f", meter_avg(&m->top5));
        printf("\n");
        fflush(stdout);
    }
    memset(m, 0, sizeof *m);
}

static void on_eval_batch(const st_batch_report *r, void *user) {
    st_train_output *out = user;
    if (!out->imagenet_lines || out->log_interval <= 0) return;
    st_train_output_finish(out);
    imagenet_summary(out, "Train", &out->train, out->batch_size); /* the training pass is over */
    meters_update(&out->eval, r);
    imagenet_line(out, "Eval", &out->eval, r->done - 1, out->eval_batch_size);
}

void st_train_output_eval_summary(st_train_output *out) {
    if (out->imagenet_lines && out->log_interval > 0) imagenet_summary(out, "Eval", &out->eval, out->eval_batch_size);
}

static void on_batch(const st_batch_report *r, void *user) {
    st_train_output *out = user;
    if (out->imagenet_lines) {
        if (out->log_interval > 0) {
            meters_update(&out->train, r);
            imagenet_line(out, "Train", &out->train, r->done - 1, out->batch_size);
        }
    } else {
        log_interval_line(out, r);
    }
    if (!out->bar) return;
    const double t = now_seconds();
    if (!(t - out->last_draw > 0.25 || r->done == r->total)) return;
    out->last_draw = t;
    const int width = 24, filled = r->total ? (int)(width * r->done / r->total) : width;
    const double eta = r->done ? r->elapsed_s * (double)(r->total - r->done) / (double)r->done : 0;
    char bar[32];
    for (int i = 0; i < width; i++) bar[i] = i < filled ? '=' : (i == filled ? '>' : ' ');
    bar[width] = 0;
    fprintf(stderr, "\repoch %d/%d [%s] %lld/%lld loss %.4f acc %.2f%% %.0f img/s ETA %d:%02d ", r->epoch + 1,
            r->epochs, bar, (long long)r->done, (long long)r->total, r->loss, 100 * r->accuracy, r->images_per_s,
            (int)eta / 60, (int)eta % 60);
    out->bar_open = 1;
    if (r->done == r->total) st_train_output_finish(out);
    fflush(stderr);
}

static void on_epoch(const st_epoch_report *r, void *user) {
    st_train_output *out = user;
    st_train_output_finish(out);
    if (out->imagenet_lines && out->log_interval > 0) {
        imagenet_summary(out, "Train", &out->train, out->batch_size); /* when the test pass reported nothing */
        imagenet_summary(out, "Eval", &out->eval, out->eval_batch_size);
        if (100 * r->test_acc > out->best_top1) out->best_top1 = 100 * r->test_acc;
        if (!out->quiet) printf("Best var_acc1 %.3f\n", out->best_top1); /* the reference's name */
    }
    if (out->quiet) return;
    printf("epoch %d/%d  lr %.4g  train loss %.4f acc %.2f%%", r->epoch + 1, r->epochs, r->lr, r->train_loss,
           100 * r->train_acc);
    if (r->val_acc >= 0) printf("  val acc %.2f%%", 100 * r->val_acc);
    printf("  test acc %.2f%%", 100 * r->test_acc);
    if (r->show_top5) printf(" top-5 %.2f%%", 100 * r->test_top5);
    printf(" loss %.4f  %.0f img/s  %.1f s", r->test_loss, r->images_per_s, r->seconds);
    if (r->itop_rate >= 0) printf("  ITOP %.4f", r->itop_rate);
    printf("\n");
    fflush(stdout);
}

static void on_mask_update(const st_mask_update_report *r, void *user) {
    st_train_output *out = user;
    if (out->quiet) return;
    st_train_output_finish(out);
    printf("mask update %lld (step %lld): death rate %.4f, %lld weights removed and regrown, %lld positions new, "
           "ITOP %.4f, %.3f s (+ %.3f s dense gradients)\n",
           (long long)r->index, (long long)r->step, r->death_rate, (long long)r->removed, (long long)r->changed,
           r->itop_rate, r->seconds, r->dense_grad_seconds);
    fflush(stdout);
}

void st_train_output_finish(st_train_output *out) {
    if (!out->bar_open) return;
    fputc('\n', stderr);
    out->bar_open = 0;
}

st_train_hooks st_train_output_hooks(st_train_output *out) {
    st_train_hooks h = {.user = out, .on_setup = on_setup, .on_batch = on_batch, .on_epoch = on_epoch,
                        .on_mask_update = on_mask_update, .on_eval_batch = on_eval_batch};
    return h;
}
