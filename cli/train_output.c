/* Terminal output of `sparsetrain train` (see train_output.h). */
#include "train_output.h"

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
    const st_train_output *out = user;
    const st_train_config *c = r->config;
    /* --bf16 that falls back to float32 says so even with --quiet */
    if (r->precision && !is_bf16(r->precision)) fprintf(stderr, "sparsetrain train: --bf16: %s\n", r->precision);
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

static void on_batch(const st_batch_report *r, void *user) {
    st_train_output *out = user;
    log_interval_line(out, r);
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
                        .on_mask_update = on_mask_update};
    return h;
}
