/* The sparsetrain command: parses flags and calls the library.
 * Subcommands: train, eval, inspect, bench, report. Exit codes: 0 ok, 1 runtime failure (bad file,
 * numerical fault), 2 usage error, 130 interrupted (checkpoint saved). */
#include <math.h>
#include <omp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/threads.h"
#include "environment.h"
#include "eval_cli.h"
#include "config_flags.h"
#include "imagenet_cli.h"
#include "flags.h"
#include "report_cli.h"
#include "train_output.h"
#include "inspect.h"
#include "data/catalog.h"
#include "sparse/distributions.h"
#include "sparsetrain.h"
#include "data/data_bench.h"
#include "kernels/isa.h"
#include "train/bench.h"
#include "data/dataset.h"
#include "train/trainer.h"

static volatile sig_atomic_t stop_requested = 0;
/* The temporary file a checkpoint save writes (io/atomic_file.h naming),
 * removed by a second signal; "" without --save. */
static char pending_temp[ST_PATH_MAX + 32];

static void say(const char *text) {
    size_t n = strlen(text);
    if (write(STDERR_FILENO, text, n) < 0) return; /* nothing else is safe in a handler */
}

static void on_signal(int sig) {
    (void)sig;
    if (stop_requested) {
        /* Second signal: leave at once. A save in progress only ever wrote the
         * temporary file, so the last complete checkpoint is intact. */
        if (pending_temp[0]) unlink(pending_temp);
        say("\nsparsetrain: second signal: exiting now; the last saved checkpoint is intact\n");
        _exit(130);
    }
    stop_requested = 1;
    say("\nsparsetrain: stopping after the current step (signal again to exit at once)\n");
}

/* sigaction, not signal(): with strict C11 + POSIX feature macros glibc's
 * signal() has System V semantics (the handler is reset after the first
 * delivery), and the second signal would kill the process by default action. */
static void install_signal_handlers(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

static int exit_code(st_status s) {
    switch (s) {
    case ST_OK: return 0;
    case ST_ERR_ARGUMENT: return 2;
    case ST_ERR_INTERRUPTED: return 130;
    default: return 1;
    }
}

static int report(const char *command, st_status s) {
    if (s != ST_OK) fprintf(stderr, "sparsetrain %s: error: %s\n", command, st_last_error());
    return exit_code(s);
}

/* --isa: caps the kernels' instruction set for this process. */
static int apply_isa(const char *command, const char *isa) {
    if (!isa[0] || st_isa_force(isa) == ST_OK) return 0;
    fprintf(stderr, "sparsetrain %s: %s\n", command, st_last_error());
    return 2;
}

static int dir_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* mkdir -p: creates `path` and any missing parents; 1 when it exists after. */
static int make_dirs(const char *path) {
    char partial[ST_PATH_MAX];
    snprintf(partial, sizeof partial, "%s", path);
    for (char *p = partial + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            mkdir(partial, 0777);
            *p = '/';
        }
    mkdir(partial, 0777);
    return dir_exists(partial);
}

static void print_train_result(const st_train_result *res) {
    printf("final test accuracy: %.2f%% (last epoch)", 100 * res->test_acc);
    if (res->best_val_acc >= 0)
        printf(", %.2f%% (best validation epoch %d, val acc %.2f%%)", 100 * res->best_test_acc, res->best_epoch,
               100 * res->best_val_acc);
    printf("\n");
}

/* One run with the terminal output of cli/train_output.c; the checkpoint's
 * temporary file is remembered for the signal handler. */
static st_status run_with_output(st_train_config *c, st_train_result *res) {
    pending_temp[0] = 0;
    if (c->save[0]) snprintf(pending_temp, sizeof pending_temp, "%s.tmp.%ld", c->save, (long)getpid());
    st_train_output out = {.bar = c->progress == 1, .quiet = c->quiet, .log_interval = c->log_interval,
                           .batch_size = c->batch_size};
    const st_train_hooks hooks = st_train_output_hooks(&out);
    st_status s = st_train_run(c, &hooks, res);
    st_train_output_finish(&out);
    return s;
}

/* `path` with "-seed<seed>" before its extension (or at its end): one file per run of --iters. */
static void per_seed_path(char *path, size_t size, uint64_t seed) {
    if (!path[0]) return;
    char copy[ST_PATH_MAX - 40]; /* room for "-seed<20 digits>" */
    snprintf(copy, sizeof copy, "%s", path);
    char *slash = strrchr(copy, '/'), *dot = strrchr(copy, '.');
    if (dot && (!slash || dot > slash + 1)) {
        *dot = 0;
        snprintf(path, size, "%s-seed%llu.%s", copy, (unsigned long long)seed, dot + 1);
    } else {
        snprintf(path, size, "%s-seed%llu", copy, (unsigned long long)seed);
    }
}

/* --iters N: the run N times with seeds seed..seed+N-1 (each with its own
 * --save / --log file: FILE-seed<s>.ext, or with --run-dir DIR the run folder
 * DIR/seed<s>/), then the mean and spread of the test accuracies. */
static int train_iterations(const st_train_config *base, const char *run_dir, int save_in_run_dir,
                            int log_in_run_dir) {
    int n = base->iters;
    double last[64], best[64];
    for (int i = 0; i < n; i++) {
        st_train_config c = *base;
        c.seed = base->seed + (uint64_t)i;
        char folder[ST_PATH_MAX - 64];
        if (run_dir[0] && (save_in_run_dir || log_in_run_dir)) {
            snprintf(folder, sizeof folder, "%.*s/seed%llu", ST_PATH_MAX - 200, run_dir, (unsigned long long)c.seed);
            if (!make_dirs(folder)) {
                fprintf(stderr, "sparsetrain train: cannot create %s\n", folder);
                return 1;
            }
        }
        if (save_in_run_dir) snprintf(c.save, sizeof c.save, "%s/checkpoint.safetensors", folder);
        else per_seed_path(c.save, sizeof c.save, c.seed);
        if (log_in_run_dir) snprintf(c.log, sizeof c.log, "%s/log.jsonl", folder);
        else per_seed_path(c.log, sizeof c.log, c.seed);
        if (!c.quiet) printf("\nIteration start: %d/%d (seed %llu)\n\n", i + 1, n, (unsigned long long)c.seed);
        fflush(stdout);
        st_train_result res;
        st_status s = run_with_output(&c, &res);
        if (s != ST_OK) {
            fprintf(stderr, "sparsetrain train: iteration %d/%d (seed %llu): %s\n", i + 1, n,
                    (unsigned long long)c.seed, st_last_error());
            return exit_code(s);
        }
        print_train_result(&res);
        last[i] = res.test_acc;
        best[i] = res.best_test_acc;
        if (!c.quiet) printf("\nIteration end: %d/%d\n", i + 1, n);
    }
    const double *sets[2] = {last, best};
    const char *names[2] = {"last epoch", "best validation epoch"};
    printf("over %d runs (seeds %llu..%llu):\n", n, (unsigned long long)base->seed,
           (unsigned long long)(base->seed + (uint64_t)n - 1));
    for (int k = 0; k < 2; k++) {
        double mean = 0, var = 0, lo = 1, hi = 0;
        for (int i = 0; i < n; i++) {
            mean += sets[k][i] / n;
            lo = sets[k][i] < lo ? sets[k][i] : lo;
            hi = sets[k][i] > hi ? sets[k][i] : hi;
        }
        for (int i = 0; i < n; i++) var += (sets[k][i] - mean) * (sets[k][i] - mean) / (n - 1);
        printf("  test accuracy (%s): mean %.2f%%, std %.2f%% (min %.2f%%, max %.2f%%)\n", names[k], 100 * mean,
               100 * sqrt(var), 100 * lo, 100 * hi);
    }
    return 0;
}

static int cmd_train(int argc, char **argv) {
    st_train_config c;
    st_train_config_defaults(&c);
    int multiplier = 1, save_in_run_dir = 0, log_in_run_dir = 0;
    char isa[16] = "";
    static st_config_flags table; /* static: the table is large */
    st_config_flags_init(&table);
    st_config_flags_add_all(&table, &c); /* every run-config field (train/run_config.c) */
    const st_flag own[] = {
        {"isa", ST_FLAG_STRING, isa, sizeof isa, 0, "kernel instruction set: auto, avx512, avx2, generic (auto)", NULL, NULL, 0},
        /* the reference's flags that mean nothing here (docs/COMING-FROM-PYTORCH.md) */
        {"no-cuda", ST_FLAG_SWITCH, NULL, 0, 1, "", "sparsetrain always trains on the CPU", NULL, 0},
        {"l1", ST_FLAG_DOUBLE, NULL, 0, 0, "", "the reference declares it but never reads it", NULL, 0},
        {"decay_frequency", ST_FLAG_INT, NULL, 0, 0, "", "the reference declares it but never reads it", NULL, 0},
        {"save-features", ST_FLAG_SWITCH, NULL, 0, 1, "", "only models the reference's CIFAR main.py does not build read it", NULL, 0},
        {"bench", ST_FLAG_SWITCH, NULL, 0, 1, "", "only models the reference's CIFAR main.py does not build read it (time steps with `sparsetrain bench`)", NULL, 0},
        {"start-epoch", ST_FLAG_INT, NULL, 0, 0, "", "the reference overwrites it from the checkpoint and never reads it; --resume continues at the checkpoint's epoch", NULL, 0},
        /* dynamic sparse training's own fields are run-config rows (train/run_config.c); this one stretches --epochs */
        {"multiplier", ST_FLAG_INT, &multiplier, 0, 0, "train K times longer: --epochs and the learning-rate milestones times K, as the ITOP code (1)", NULL, NULL, 0},
    };
    for (size_t i = 0; i < sizeof own / sizeof own[0]; i++) st_config_flags_add(&table, own[i]);
    st_imagenet_cli reference; /* the reference ImageNet main.py's command line (imagenet_cli.h) */
    st_imagenet_cli_add_flags(&table, &c, &reference);
    st_flag *flags = table.flags;
    const int n = table.n;
    int r = st_flags_parse_extended("train",
                                    "usage: sparsetrain train [options] [DATA_DIR]\n\nTrains a (sparse) network and "
                                    "reports its test accuracy. A positional DATA_DIR (an ImageFolder tree) runs the "
                                    "reference's ImageNet command line with its defaults (docs/COMING-FROM-PYTORCH.md).",
                                    flags, n, argc, argv, 2, st_imagenet_short_flags, st_imagenet_n_short_flags,
                                    reference.folder, sizeof reference.folder, "data folder");
    if (r != 0) return r > 0 ? 0 : 2;
    st_config_flags_record_given(&table, &c); /* for --resume (train/run_config.h) */
    if (st_imagenet_cli_apply(&reference, &c) != 0) return 2;
    if (st_flags_check_train("train", flags, n, &c, multiplier) != 0) return 2;
    c.epochs *= multiplier; /* the schedule's milestones are fractions of the epochs: they stretch with them */
    char run_dir[ST_PATH_MAX - 32] = "";
    if (c.run_dir[0]) {
        const size_t len = strlen(c.run_dir);
        if (len >= sizeof run_dir) { /* room for the per-seed folders and file names below */
            fprintf(stderr, "sparsetrain train: value of --run-dir is too long\n");
            return 2;
        }
        memcpy(run_dir, c.run_dir, len + 1);
        if (!make_dirs(run_dir)) {
            fprintf(stderr, "sparsetrain train: cannot create --run-dir %s\n", run_dir);
            return 1;
        }
        save_in_run_dir = !c.save[0];
        log_in_run_dir = !c.log[0];
        if (!c.save[0]) snprintf(c.save, sizeof c.save, "%s/checkpoint.safetensors", run_dir);
        if (!c.log[0]) snprintf(c.log, sizeof c.log, "%s/log.jsonl", run_dir);
    }
    if (apply_isa("train", isa)) return 2;
    if (c.threads < 0) {
        fprintf(stderr, "sparsetrain train: --threads must be >= 0\n");
        return 2;
    }
    if (st_threads_check("--threads", c.threads) != ST_OK) return report("train", ST_ERR_ARGUMENT); /* before OpenMP sees it */
    c.stop_flag = &stop_requested;
    install_signal_handlers();
    if (!c.datadir[0] && !c.resume[0] && st_dataset_default_dir(c.data)) {
        /* the usual folders, the home folder's among them (the library reads no environment) */
        if (st_dataset_find_dir(c.data, getenv("HOME"), c.datadir, sizeof c.datadir) != ST_OK)
            return report("train", ST_ERR_IO);
    }
    if (!c.quiet && strcmp(c.protocol, "reference") == 0 && !c.resume[0]) {
        const st_dataset_info *row = st_dataset_info_find(c.data); /* what the reference's loader does (data/catalog.c) */
        printf("protocol reference: %s (as the reference's loader for %s)\n",
               row && row->reference.selects_on_test
                   ? "training on the whole training set; the best epoch is selected on the test set"
               : row && row->reference.augments_validation ? "validation images augmented like the training images"
                                                           : "the same splits as --protocol sound for this data set",
               c.data);
    }
    if (c.threads > 0) omp_set_num_threads(c.threads);
    if (reference.evaluate) return st_imagenet_cli_evaluate(&c);
    if (c.progress < 0) c.progress = isatty(fileno(stderr)) && c.log_interval <= 0 ? 1 : 0;
    if (c.iters > 1) return train_iterations(&c, run_dir, save_in_run_dir, log_in_run_dir);
    st_train_result res;
    st_status s = run_with_output(&c, &res);
    if (s != ST_OK) {
        if (s == ST_ERR_INTERRUPTED && c.save[0])
            fprintf(stderr, "sparsetrain train: %s\nresume with: sparsetrain train --resume %s%s%s\n", st_last_error(),
                    c.save, " --save ", c.save);
        else
            report("train", s);
        return exit_code(s);
    }
    if (c.resume[0] && res.epochs_done == 0) { /* nothing left to train: say so, with the results it has */
        printf("the run in %s is already finished (%d of %d epochs); nothing to train", c.resume, c.epochs, c.epochs);
        if (res.best_val_acc >= 0)
            printf("; best validation epoch %d: test acc %.2f%% (val acc %.2f%%)", res.best_epoch,
                   100 * res.best_test_acc, 100 * res.best_val_acc);
        else if (res.best_epoch > 0)
            printf("; last epoch's test acc %.2f%%", 100 * res.best_test_acc);
        printf("\nevaluate it with: sparsetrain eval --checkpoint %s (or train on with --resume %s --epochs N)\n",
               c.resume, c.resume);
        return 0;
    }
    print_train_result(&res);
    return 0;
}

static void print_bench_json(const st_bench_config *c, const st_bench_result *r) {
    printf("{\"model\": \"%s\", \"sparse_init\": \"%s\", \"density\": %g, \"batch_size\": %d, \"threads\": %d, "
           "\"execution\": \"%s\", \"isa\": \"%s\", \"bf16\": %s, \"conv_implementation\": \"%s\", "
           "\"forward_ms\": %.4f, \"backward_ms\": %.4f, "
           "\"train_step\": {\"ms\": %.4f, \"cpu_ms\": %.4f, \"images_per_s\": %.3f, \"gflop\": %.4f, \"useful_gflops\": %.3f}, "
           "\"memory\": {\"param_bytes\": %lld, \"dense_param_bytes\": %lld, \"activation_bytes\": %lld, "
           "\"peak_rss_bytes\": %lld}, "
           "\"fma_peak\": {\"gflops\": %.3f, \"per_thread\": %.3f, \"threads\": %d, \"isa\": \"%s\"}, "
           "\"useful_fraction_of_peak\": %.4f, "
           "\"kept\": %lld, \"prunable\": %lld, \"layers\": [",
           c->model, c->sparse_init, c->density, c->batch_size, r->threads, r->execution, r->isa, r->bf16 ? "true" : "false",
           r->conv_implementation, r->forward_ms, r->backward_ms, r->step_ms, r->step_cpu_ms, r->images_per_s, r->train_gflop,
           r->useful_gflops,
           (long long)r->param_bytes, (long long)r->dense_param_bytes, (long long)r->activation_bytes,
           (long long)r->peak_rss_bytes, r->peak.gflops, r->peak.per_thread, r->peak.threads, st_isa_name(r->peak.isa),
           r->peak.gflops > 0 ? r->useful_gflops / r->peak.gflops : 0.0, (long long)r->kept, (long long)r->total);
    const double peak = r->peak.gflops > 0 ? r->peak.gflops : 1.0;
    for (int l = 0; l < r->n_layers; l++) {
        const st_bench_layer *y = &r->layers[l];
        printf("%s{\"kind\": \"%s\", \"name\": \"%s\", \"kept\": %lld, \"numel\": %lld, \"forward_ms\": %.4f, "
               "\"backward_ms\": %.4f, \"gflops\": %.3f",
               l ? ", " : "", y->kind, y->name, (long long)y->kept, (long long)y->numel, y->forward_ms, y->backward_ms,
               y->gflops);
        if (y->numel) { /* conv / linear: each pass (null where the executor does not time it apart or it did not run) */
            printf(", \"passes\": {\"forward\": {\"ms\": %.5f, \"gflops\": %.4f, \"fraction_of_peak\": %.5f}",
                   y->forward_ms, y->forward_gflops, y->forward_gflops / peak);
            const char *names[2] = {"input_gradient", "weight_gradient"};
            const double ms[2] = {y->backward_data_ms, y->backward_weight_ms};
            const double gf[2] = {y->backward_data_gflops, y->backward_weight_gflops};
            for (int k = 0; k < 2; k++) {
                if (y->passes_timed && ms[k] > 0)
                    printf(", \"%s\": {\"ms\": %.5f, \"gflops\": %.4f, \"fraction_of_peak\": %.5f}", names[k], ms[k],
                           gf[k], gf[k] / peak);
                else
                    printf(", \"%s\": null", names[k]);
            }
            printf("}");
        }
        printf("}");
    }
    printf("]}\n");
}

static void print_bench_text(const st_bench_config *c, const st_bench_result *r) {
    printf("%s %s density %g, batch %d, %d threads, %s execution (%s kernels)\n", c->model, c->sparse_init, c->density,
           c->batch_size, r->threads, r->execution, r->isa);
    if (r->precision[0]) printf("  precision: %s\n", r->precision);
    printf("  forward %.2f ms, backward %.2f ms, training step %.2f ms (%.2f ms of CPU time): %.1f images/s, %.1f useful "
           "GFLOP/s\n",
           r->forward_ms, r->backward_ms, r->step_ms, r->step_cpu_ms, r->images_per_s, r->useful_gflops);
    printf("  weights + gradients + optimiser state: %.2f MiB (dense storage: %.2f MiB, %.1f%%); activations %.1f MiB; "
           "peak RSS %.1f MiB\n",
           r->param_bytes / 1048576.0, r->dense_param_bytes / 1048576.0,
           100.0 * (double)r->param_bytes / (double)(r->dense_param_bytes ? r->dense_param_bytes : 1),
           r->activation_bytes / 1048576.0, r->peak_rss_bytes / 1048576.0);
    printf("  FMA peak (%s, measured now): %.1f GFLOP/s on %d threads (%.1f per thread); the step runs at %.1f %% of it\n",
           st_isa_name(r->peak.isa), r->peak.gflops, r->peak.threads, r->peak.per_thread,
           r->peak.gflops > 0 ? 100.0 * r->useful_gflops / r->peak.gflops : 0.0);
    printf("  %-14s %-30s %9s %9s %9s %8s   %s\n", "step", "name", "density", "fwd ms", "bwd ms", "GFLOP/s",
           "per pass GFLOP/s (% of peak): forward, input gradient, weight gradient");
    const double peak = r->peak.gflops > 0 ? r->peak.gflops : 1.0;
    for (int l = 0; l < r->n_layers; l++) {
        const st_bench_layer *y = &r->layers[l];
        char density[16] = "";
        if (y->numel) snprintf(density, sizeof density, "%.4f", (double)y->kept / (double)y->numel);
        char gf[16] = "";
        if (y->numel) snprintf(gf, sizeof gf, "%.1f", y->gflops);
        char passes[96] = "";
        if (y->numel && y->passes_timed)
            snprintf(passes, sizeof passes, "%.1f (%.0f%%), %.1f (%.0f%%), %.1f (%.0f%%)", y->forward_gflops,
                     100 * y->forward_gflops / peak, y->backward_data_gflops, 100 * y->backward_data_gflops / peak,
                     y->backward_weight_gflops, 100 * y->backward_weight_gflops / peak);
        else if (y->numel)
            snprintf(passes, sizeof passes, "%.1f (%.0f%%), backward not split", y->forward_gflops,
                     100 * y->forward_gflops / peak);
        printf("  %-14s %-30s %9s %9.3f %9.3f %8s   %s\n", y->kind, y->name, density, y->forward_ms, y->backward_ms, gf,
               passes);
    }
}

/* `sparsetrain bench --imagefolder DIR`: the data pipeline instead of training steps. */
static int bench_imagefolder(const st_data_bench_config *c, int json) {
    st_data_bench_result r;
    st_status s = st_data_bench_run(c, &r);
    if (s != ST_OK) return report("bench", s);
    int workers = c->workers > 0 ? c->workers : 2;
    if (json) {
        printf("{\"imagefolder\": \"%s\", \"transform\": \"%s\", \"image_size\": %d, \"workers\": %d, "
               "\"batch_size\": %d, \"images\": %lld, \"skipped\": %lld, \"mean_width\": %.1f, "
               "\"mean_height\": %.1f, \"mean_file_kb\": %.1f, \"read_ms\": %.4f, \"decode_ms\": %.4f, "
               "\"transform_ms\": %.4f, \"seconds\": %.3f, \"images_per_s\": %.1f, "
               "\"images_per_s_per_worker\": %.1f}\n",
               c->dir, c->train ? "train" : "eval", c->image_size, workers, c->batch_size, (long long)r.images,
               (long long)r.skipped, r.mean_width, r.mean_height, r.mean_file_kb, r.read_ms, r.decode_ms,
               r.transform_ms, r.loader_seconds, r.images_per_s, r.images_per_s_per_worker);
        return 0;
    }
    printf("%s transform (%s) to %dx%d, images %.0fx%.0f on average, %.1f KB per file\n", c->train ? "training" : "evaluation",
           c->train ? "RandomResizedCrop + flip" : "Resize + CenterCrop", c->image_size, c->image_size, r.mean_width,
           r.mean_height, r.mean_file_kb);
    printf("one thread, per image: read %.3f ms, decode %.3f ms, transform + normalise %.3f ms\n", r.read_ms,
           r.decode_ms, r.transform_ms);
    printf("loader, %d worker(s), batch %d: %lld images in %.2f s = %.1f images/s (%.1f per worker)%s\n", workers,
           c->batch_size, (long long)r.images, r.loader_seconds, r.images_per_s, r.images_per_s_per_worker,
           r.skipped ? ", some files unreadable" : "");
    return 0;
}

static int cmd_bench(int argc, char **argv) {
    st_bench_config c;
    memset(&c, 0, sizeof c);
    snprintf(c.model, sizeof c.model, "cifar_resnet_20");
    snprintf(c.sparse_init, sizeof c.sparse_init, "dense");
    c.density = 0.05;
    c.batch_size = 128;
    c.channels = 3;
    c.height = c.width = 32;
    c.classes = 10;
    c.warmup = 2;
    c.steps = 5;
    c.seed = 17;
    int json = 0;
    char isa[16] = "", imagefolder[1024] = "";
    st_data_bench_config data = {.image_size = 224, .train = 1, .seed = 17};
    uint64_t images = 0;
    int eval_transform = 0;
    st_flag flags[] = {
        {"imagefolder", ST_FLAG_STRING, imagefolder, sizeof imagefolder, 0, "time the ImageFolder data pipeline on DIR/train instead of training steps", NULL, NULL, 0},
        {"workers", ST_FLAG_INT, &data.workers, 0, 0, "--imagefolder: loader threads (2)", NULL, NULL, 0},
        {"image-size", ST_FLAG_INT, &data.image_size, 0, 0, "--imagefolder: output size (224)", NULL, NULL, 0},
        {"images", ST_FLAG_U64, &images, 0, 0, "--imagefolder: images to time (all)", NULL, NULL, 0},
        {"eval-transform", ST_FLAG_SWITCH, &eval_transform, 0, 1, "--imagefolder: Resize + CenterCrop instead of RandomResizedCrop + flip", NULL, NULL, 0},
        {"model", ST_FLAG_STRING, c.model, sizeof c.model, 0, "model name (cifar_resnet_20)", NULL, NULL, 0},
        {"sparse_init", ST_FLAG_STRING, c.sparse_init, sizeof c.sparse_init, 0, "dense, uniform, ERK, ... (dense)", NULL, NULL, 0},
        {"density", ST_FLAG_DOUBLE, &c.density, 0, 0, "overall density (0.05)", NULL, NULL, 0},
        {"batch-size", ST_FLAG_INT, &c.batch_size, 0, 0, "batch size (128)", NULL, NULL, 0},
        {"threads", ST_FLAG_INT, &c.threads, 0, 0, "threads (default: all cores)", NULL, NULL, 0},
        {"channels", ST_FLAG_INT, &c.channels, 0, 0, "input channels (3)", NULL, NULL, 0},
        {"size", ST_FLAG_INT, &c.height, 0, 0, "input height = width (32)", NULL, NULL, 0},
        {"classes", ST_FLAG_INT, &c.classes, 0, 0, "classes (10)", NULL, NULL, 0},
        {"warmup", ST_FLAG_INT, &c.warmup, 0, 0, "untimed warm-up steps (2)", NULL, NULL, 0},
        {"steps", ST_FLAG_INT, &c.steps, 0, 0, "timed steps (5)", NULL, NULL, 0},
        {"execution", ST_FLAG_STRING, c.execution, sizeof c.execution, 0, "auto, sparse, mixed or dense (auto)", NULL, NULL, 0},
        {"bf16", ST_FLAG_SWITCH, &c.bf16, 0, 1, "bf16 sparse convolutions, as train --bf16", NULL, NULL, 0},
        {"isa", ST_FLAG_STRING, isa, sizeof isa, 0, "kernel instruction set: auto, avx512, avx2, generic (auto)", NULL, NULL, 0},
        {"json", ST_FLAG_SWITCH, &json, 0, 1, "print one JSON object", NULL, NULL, 0},
    };
    int r = st_flags_parse("bench", "usage: sparsetrain bench [options]\n\nTimes training steps on synthetic data.",
                           flags, (int)(sizeof flags / sizeof flags[0]), argc, argv, 2);
    if (r != 0) return r > 0 ? 0 : 2;
    if (imagefolder[0]) {
        data.dir = imagefolder;
        data.batch_size = c.batch_size;
        data.images = images > INT64_MAX ? INT64_MAX : (int64_t)images;
        data.train = !eval_transform;
        return bench_imagefolder(&data, json);
    }
    c.width = c.height;
    if (apply_isa("bench", isa)) return 2;
    if (st_threads_check("--threads", c.threads) != ST_OK) return report("bench", ST_ERR_ARGUMENT); /* before OpenMP */
    if (c.threads > 0) omp_set_num_threads(c.threads); /* the library uses the caller's thread count */
    st_bench_result res;
    st_status s = st_bench_run(&c, &res);
    if (s != ST_OK) return report("bench", s);
    if (json) print_bench_json(&c, &res);
    else print_bench_text(&c, &res);
    st_bench_result_release(&res);
    return 0;
}

/* `sparsetrain convert IN OUT`: .pth <-> .safetensors by tools/convert_checkpoint.py
 * run with the Python that has PyTorch (a .pth is a pickle: it is never read in C). */
static int cmd_convert(int argc, char **argv) {
    static char script[] = ST_TOOLS_DIR "/convert_checkpoint.py";
    static char python[] = ST_PYTHON;
    char *args[64];
    int n = 0;
    args[n++] = python;
    args[n++] = script;
    for (int i = 2; i < argc && n < 63; i++) args[n++] = argv[i];
    args[n] = NULL;
    if (argc < 3) args[n++] = "--help", args[n] = NULL;
    execv(python, args);
    fprintf(stderr, "sparsetrain convert: cannot run %s (needs Python 3 with PyTorch: Debian python3-torch)\n", python);
    return 1;
}

static void usage(FILE *out) {
    fprintf(out,
            "usage: sparsetrain <command> [options]\n\n"
            "Commands:\n"
            "  train   train a dense or randomly pruned sparse network\n"
            "  eval    evaluate a checkpoint: accuracy, calibration, OOD detection, attacks\n"
            "  inspect show the layer-wise densities, kept weights and FLOPs of a sparse model\n"
            "  bench   time training steps on synthetic data\n"
            "  report  one HTML page comparing run folders (curves, densities, calibration, OOD)\n"
            "  convert IN OUT  the reference code's .pth checkpoints to .safetensors and back\n\n"
            "Run 'sparsetrain <command> --help' for the options of a command.\n");
}

/* libgomp spins up to 300000 `pause` iterations at every barrier before
 * sleeping; on a busy 2-core machine (a test run, a second job) a spinning
 * thread waits for a descheduled partner and a step becomes ~10x slower.
 * libgomp reads its settings when it loads, before main, so when the user has
 * set neither variable we set a short spin and run ourselves again. */
static void bound_openmp_spinning(char **argv) {
    if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT")) return;
    if (setenv("GOMP_SPINCOUNT", "10000", 1) != 0) return;
    execv("/proc/self/exe", argv);
    /* exec failed: carry on with libgomp's defaults */
}

int main(int argc, char **argv) {
    bound_openmp_spinning(argv);
    st_cli_apply_environment();
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "train") == 0) return cmd_train(argc, argv);
    if (strcmp(argv[1], "eval") == 0) return st_cli_eval(argc, argv);
    if (strcmp(argv[1], "bench") == 0) return cmd_bench(argc, argv);
    if (strcmp(argv[1], "inspect") == 0) return st_cli_inspect(argc, argv);
    if (strcmp(argv[1], "report") == 0) return st_cli_report(argc, argv);
    if (strcmp(argv[1], "convert") == 0) return cmd_convert(argc, argv);
    fprintf(stderr, "sparsetrain: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
