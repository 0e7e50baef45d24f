/* `sparsetrain inspect`: builds the model, computes the layer-wise densities
 * exactly as `sparsetrain train` would (same seed, same masks), and reports per
 * prunable layer and in total the weights kept and the FLOPs (sparse/flops.h). */
#include "inspect.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "core/threads.h"
#include "data/catalog.h"
#include "data/dataset.h"
#include "config_flags.h"
#include "flags.h"
#include "io/json.h"
#include "models/init.h"
#include "models/model.h"
#include "sparse/distributions.h"
#include "sparse/flops.h"
#include "sparse/masks.h"
#include "exec/policy.h"
#include "saliency/saliency.h"
#include "run/setup.h"
#include "train/trainer.h"

typedef struct inspect_options {
    st_train_config run; /* the fields inspect shares with train, with train's defaults */
    char input[32];
    int classes, json;
} inspect_options;

/* Image shape and classes of a data set from the catalogue, so that no file
 * is read unless the distribution looks at data. 0 for an unknown name and
 * for ImageFolder trees, whose shape comes from --image-size and their
 * folders (give --input and --classes instead). */
static int data_shape(const char *data, int *c, int *h, int *w, int *classes) {
    const st_dataset_info *info = st_dataset_info_find(data);
    if (!info || !info->height || !info->classes) return 0;
    *c = info->channels, *h = info->height, *w = info->width, *classes = info->classes;
    return 1;
}

typedef struct layer_row {
    const st_param *p;
    double density, achieved, dense, sparse;
    int64_t kept;
} layer_row;

/* Multiply-adds per example of the dense weight gradients of the prunable
 * layers that a gradient-growth mask update computes (fully dense layers are
 * never updated): each costs its dense forward. */
static double update_gradient_macs(const layer_row *rows, int n);

/* Bytes --growth momentum holds (train/mask_update.h): per updatable layer
 * the dense momentum (Adam: both moments) and the step's dense gradient. */
static double momentum_bytes(const layer_row *rows, int n, int adam) {
    double floats = 0;
    for (int l = 0; l < n; l++)
        if (rows[l].kept < rows[l].p->numel) floats += (double)rows[l].p->numel * (adam ? 3 : 2);
    return floats * sizeof(float);
}

static double update_gradient_macs(const layer_row *rows, int n) {
    double macs = 0;
    for (int l = 0; l < n; l++)
        if (rows[l].kept < rows[l].p->numel) macs += rows[l].dense;
    return macs;
}

static void shape_text(const st_param *p, char *buf, size_t size) {
    int at = 0;
    for (int d = 0; d < p->ndim && at < (int)size; d++)
        at += snprintf(buf + at, size - (size_t)at, d ? "x%lld" : "%lld", (long long)p->shape[d]);
}

static st_exec_policy execution_policy(const inspect_options *o) {
    st_exec_policy policy = ST_EXEC_AUTO;
    if (st_exec_policy_parse(o->run.execution, &policy) != ST_OK) policy = ST_EXEC_AUTO;
    return policy;
}

/* "sparse" or "dense": what `train --execution` would run for this model. */
static const char *execution_choice(const inspect_options *o, const st_model *m) {
    return st_model_wants_sparse_execution(m, execution_policy(o), o->run.batch_size) ? "sparse" : "dense";
}

/* "direct", "gemm" or "dense": the kernel layer row r runs on. */
static const char *layer_kernel(const inspect_options *o, const st_model *m, const layer_row *r) {
    const char *k = st_model_layer_kernel(m, (int)(r->p - m->params), execution_policy(o), o->run.batch_size);
    return k ? k : "dense";
}

static st_status print_json(const inspect_options *o, const st_model *m, const layer_row *rows, int n, int64_t total,
                            int64_t kept, double expected, double layer_dense, double layer_sparse, double other) {
    st_json_builder b;
    st_json_builder_init(&b);
    double dense = layer_dense + other, sparse = layer_sparse + other;
    st_json_append_text(&b, "{\"model\": ");
    st_json_append_string(&b, m->name);
    st_json_append_text(&b, ", \"sparse_init\": ");
    st_json_append_string(&b, o->run.sparse_init);
    st_json_append_text(&b, ", \"execution\": ");
    st_json_append_string(&b, execution_choice(o, m));
    st_json_append_text(&b, ", \"flop_density\": ");
    st_json_append_double(&b, st_model_flop_density(m));
    st_json_append_text(&b, ", \"crossover\": ");
    st_json_append_double(&b, st_model_sparse_crossover(m));
    st_json_append_text(&b, ", \"mask_sampling\": ");
    st_json_append_string(&b, o->run.mask_sampling);
    st_json_append_text(&b, ", \"seed\": ");
    st_json_append_int(&b, (int64_t)o->run.seed);
    char input[96];
    snprintf(input, sizeof input, ", \"input\": [%d, %d, %d], \"num_classes\": %d, \"layers\": [", m->in_channels,
             m->in_height, m->in_width, m->num_classes);
    st_json_append_text(&b, input);
    for (int l = 0; l < n; l++) {
        const layer_row *r = &rows[l];
        st_json_append_text(&b, l ? ", {\"name\": " : "{\"name\": ");
        st_json_append_string(&b, r->p->name);
        st_json_append_text(&b, ", \"shape\": [");
        for (int d = 0; d < r->p->ndim; d++) {
            if (d) st_json_append_text(&b, ", ");
            st_json_append_int(&b, r->p->shape[d]);
        }
        st_json_append_text(&b, "], \"numel\": ");
        st_json_append_int(&b, r->p->numel);
        st_json_append_text(&b, ", \"density\": ");
        st_json_append_double(&b, r->density);
        st_json_append_text(&b, ", \"kept\": ");
        st_json_append_int(&b, r->kept);
        st_json_append_text(&b, ", \"achieved_density\": ");
        st_json_append_double(&b, r->achieved);
        st_json_append_text(&b, ", \"flops_dense\": ");
        st_json_append_double(&b, r->dense);
        st_json_append_text(&b, ", \"flops_sparse\": ");
        st_json_append_double(&b, r->sparse);
        st_json_append_text(&b, ", \"flops_share\": ");
        st_json_append_double(&b, r->dense / dense);
        st_json_append_text(&b, ", \"flops_share_sparse\": ");
        st_json_append_double(&b, r->sparse / sparse);
        st_json_append_text(&b, ", \"kernel\": ");
        st_json_append_string(&b, layer_kernel(o, m, r));
        st_json_append_text(&b, "}");
    }
    st_json_append_text(&b, "], \"total_prunable\": ");
    st_json_append_int(&b, total);
    st_json_append_text(&b, ", \"total_kept\": ");
    st_json_append_int(&b, kept);
    st_json_append_text(&b, ", \"target_density\": ");
    st_json_append_double(&b, o->run.density);
    st_json_append_text(&b, ", \"expected_density\": ");
    st_json_append_double(&b, expected);
    st_json_append_text(&b, ", \"overall_density\": ");
    st_json_append_double(&b, (double)kept / (double)total);
    const struct {
        const char *key;
        double value;
    } totals[] = {{"flops_dense", dense},
                  {"flops_sparse", sparse},
                  {"flops_prunable_dense", layer_dense},
                  {"flops_prunable_sparse", layer_sparse},
                  {"flops_other", other},
                  {"train_flops_dense", ST_TRAIN_STEP_FORWARDS * dense},
                  {"train_flops_sparse", ST_TRAIN_STEP_FORWARDS * sparse},
                  /* dynamic sparse training with --growth gradient every update_frequency steps, per step */
                  {"train_flops_dynamic_gradient",
                   ST_TRAIN_STEP_FORWARDS * sparse + update_gradient_macs(rows, n) / o->run.update_frequency},
                  /* --growth momentum: the dense weight gradients on every step */
                  {"train_flops_dynamic_momentum", ST_TRAIN_STEP_FORWARDS * sparse + update_gradient_macs(rows, n)},
                  {"dynamic_momentum_bytes_sgd", momentum_bytes(rows, n, 0)},
                  {"dynamic_momentum_bytes_adam", momentum_bytes(rows, n, 1)},
                  {"update_frequency", o->run.update_frequency}};
    for (size_t i = 0; i < sizeof totals / sizeof totals[0]; i++) {
        st_json_append_text(&b, ", \"");
        st_json_append_text(&b, totals[i].key);
        st_json_append_text(&b, "\": ");
        st_json_append_double(&b, totals[i].value);
    }
    st_json_append_text(&b, ", \"flops_unit\": \"multiply-accumulates per example\"}");
    char *text;
    size_t len;
    ST_TRY(st_json_builder_finish(&b, &text, &len));
    printf("%s\n", text);
    free(text);
    return ST_OK;
}

static void print_table(const inspect_options *o, const st_model *m, const layer_row *rows, int n, int64_t total,
                        int64_t kept, double expected, double layer_dense, double layer_sparse, double other) {
    double dense = layer_dense + other, sparse = layer_sparse + other;
    printf("%s, input %dx%dx%d, %d classes: --sparse_init %s --density %g", m->name, m->in_channels, m->in_height,
           m->in_width, m->num_classes, o->run.sparse_init, o->run.density);
    if (strcmp(o->run.sparse_init, "ERK_plus") == 0) printf(" --fc_density %g", o->run.fc_density);
    printf(" (%s masks, seed %llu)\n\n", o->run.mask_sampling, (unsigned long long)o->run.seed);
    printf("%-30s %-14s %10s %8s %10s %10s %10s %7s %7s %7s\n", "layer", "shape", "weights", "density", "kept",
           "MFLOPs", "sparse", "share", "sparse", "kernel");
    for (int l = 0; l < n; l++) {
        const layer_row *r = &rows[l];
        char shape[64];
        shape_text(r->p, shape, sizeof shape);
        printf("%-30s %-14s %10lld %8.4f %10lld %10.3f %10.3f %6.2f%% %6.2f%% %7s\n", r->p->name, shape,
               (long long)r->p->numel, r->density, (long long)r->kept, r->dense / 1e6, r->sparse / 1e6,
               100 * r->dense / dense, 100 * r->sparse / sparse, layer_kernel(o, m, r));
    }
    printf("%-30s %-14s %10lld %8.4f %10lld %10.3f %10.3f %6.2f%% %6.2f%%\n\n", "prunable layers", "",
           (long long)total, expected, (long long)kept, layer_dense / 1e6, layer_sparse / 1e6, 100 * layer_dense / dense,
           100 * layer_sparse / sparse);
    printf("prunable weights: %lld, kept %lld: overall density %.5f (target %g, expected from the layer densities "
           "%.5f)\n",
           (long long)total, (long long)kept, (double)kept / (double)total, o->run.density, expected);
    printf("forward FLOPs per example: dense %.4g M, sparse %.4g M (%.2f%% of dense; conv/linear %.4g M -> %.4g M, "
           "other ops %.4g M)\n",
           dense / 1e6, sparse / 1e6, 100 * sparse / dense, layer_dense / 1e6, layer_sparse / 1e6, other / 1e6);
    printf("training step FLOPs per example (forward + backward = %gx forward): dense %.4g M, sparse %.4g M\n",
           ST_TRAIN_STEP_FORWARDS, ST_TRAIN_STEP_FORWARDS * dense / 1e6, ST_TRAIN_STEP_FORWARDS * sparse / 1e6);
    printf("dynamic sparse training with --growth gradient every %d steps (RigL's count): + %.4g M dense weight "
           "gradients per update step, %.4g M per example and step on average\n",
           o->run.update_frequency, update_gradient_macs(rows, n) / 1e6,
           (ST_TRAIN_STEP_FORWARDS * sparse + update_gradient_macs(rows, n) / o->run.update_frequency) / 1e6);
    printf("with --growth momentum the dense weight gradients run on every step: %.4g M per example and step; its "
           "dense momentum buffers hold %.4g MB for the run (SGD; Adam %.4g MB), dense gradients included\n",
           (ST_TRAIN_STEP_FORWARDS * sparse + update_gradient_macs(rows, n)) / 1e6, momentum_bytes(rows, n, 0) / 1e6,
           momentum_bytes(rows, n, 1) / 1e6);
    printf("(FLOPs count one multiply-accumulate as one; see docs/DISTRIBUTIONS.md)\n");
    int gemm = 0;
    for (int l = 0; l < n; l++) gemm += strcmp(layer_kernel(o, m, &rows[l]), "gemm") == 0;
    printf("execution (--execution %s, batch %d): %s -- FLOP-weighted density %.4f, crossover %.3g (mean width %.0f, "
           "rule for CPU class %s); ",
           o->run.execution, o->run.batch_size, execution_choice(o, m), st_model_flop_density(m),
           st_model_sparse_crossover(m), st_model_mean_width(m), st_exec_rule_current()->cpu);
    if (strcmp(execution_choice(o, m), "sparse") != 0) printf("dense kernels (oneDNN) on dense weights with masks\n");
    else if (gemm) printf("%d layers (kernel gemm) run dense GEMMs on batch-innermost activations, the rest the direct "
                          "sparse kernels on packed weights\n", gemm);
    else printf("every convolution and linear layer runs the direct sparse kernels on packed weights\n");
}

/* The model with the masks `sparsetrain train` gives it for the same flags
 * (run/setup.h): snip and GraSP score the training loader train would use. */
static st_status run_inspect(const inspect_options *o, int c, int h, int w, int classes) {
    st_run_data data;
    memset(&data, 0, sizeof data);
    st_status s = ST_OK;
    if (st_sparse_init_needs_data(o->run.sparse_init)) {
        st_run_data_spec ds = {o->run.data, o->run.datadir, o->run.valid_split, o->run.batch_size, 100, o->run.augment, o->run.seed, 0, 0, 0, NULL};
        s = st_run_data_open(&ds, &data);
        if (s == ST_OK && (data.train.channels != c || data.train.height != h || data.train.width != w ||
                           data.train.num_classes != classes))
            s = st_fail(ST_ERR_ARGUMENT, "--input %dx%dx%d with %d classes does not match %s (%dx%dx%d, %d classes)",
                        c, h, w, classes, o->run.data, data.train.channels, data.train.height, data.train.width,
                        data.train.num_classes);
    }
    st_run_model_spec spec = {o->run.model, classes, c, h, w, strcmp(o->run.sparse_init, "dense") != 0, o->run.sparse_init,
                              o->run.density, o->run.fc_density, o->run.mask_sampling, o->run.scaled, o->run.seed, data.train_loader,
                              o->run.model_config};
    st_model *m = NULL;
    st_run_layers layers = {0};
    if (s == ST_OK) s = st_run_model_build(&spec, &m, &layers);
    st_run_data_close(&data);
    if (s != ST_OK) return s;
    const int n = layers.n;
    const int *ids = layers.ids;
    const double *densities = layers.densities;
    double *macs = st_calloc((size_t)n + 1, sizeof(double), "FLOPs");
    layer_row *rows = st_calloc((size_t)n + 1, sizeof(layer_row), "layer table");
    s = macs && rows ? ST_OK : ST_ERR_NOMEM;
    double other = 0;
    if (s == ST_OK) s = st_model_forward_flops(m, macs, &other);
    if (s == ST_OK) {
        int64_t total = 0, kept = 0;
        double expected = 0, layer_dense = 0, layer_sparse = 0;
        for (int l = 0; l < n; l++) {
            layer_row *r = &rows[l];
            r->p = &m->params[ids[l]];
            r->density = densities[l];
            r->kept = r->p->sparse->kept;
            r->achieved = (double)r->kept / (double)r->p->numel;
            r->dense = macs[l];
            r->sparse = st_sparse_macs(macs[l], r->achieved);
            total += r->p->numel;
            kept += r->kept;
            expected += r->density * (double)r->p->numel;
            layer_dense += r->dense;
            layer_sparse += r->sparse;
        }
        expected /= (double)total;
        if (o->json)
            s = print_json(o, m, rows, n, total, kept, expected, layer_dense, layer_sparse, other);
        else
            print_table(o, m, rows, n, total, kept, expected, layer_dense, layer_sparse, other);
    }
    free(macs);
    free(rows);
    st_run_layers_free(&layers);
    st_model_free(m);
    return s;
}

int st_cli_inspect(int argc, char **argv) {
    inspect_options o;
    memset(&o, 0, sizeof o);
    st_train_config_defaults(&o.run); /* the same defaults as `sparsetrain train` */
    o.run.data[0] = 0;                /* but no data set unless given */
    static st_config_flags table;     /* static: the table is large */
    st_config_flags_init(&table);
    /* the run-config fields inspect reads (train/run_config.c), with help that says what inspect does with them */
    static const char *const shared[][2] = {
        {"model", NULL},
        {"data", "data set whose image shape and classes to use (mnist, fashion-mnist, cifar10, cifar100); required "
                 "by snip and GraSP"},
        {"datadir", "folder holding the data set files (snip, GraSP)"},
        {"sparse_init", NULL},
        {"density", NULL},
        {"fc_density", NULL},
        {"mask_sampling", NULL},
        {"seed", "random seed of masks and weights"},
        {"scaled", "initialise as train --scaled (global_magnitude and GraSP read the weights)"},
        {"augment", "as train: augment the images snip / GraSP score (default: CIFAR only)"},
        {"batch_size", "training batch size; snip scores one batch"},
        {"valid_split", "held-out fraction, as train"},
        {"threads", NULL},
        {"execution", "auto, sparse, mixed or dense: the execution shown (auto)"},
        {"update_frequency", "dynamic sparse training's FLOPs: steps between gradient-growth mask updates"},
    };
    for (size_t i = 0; i < sizeof shared / sizeof shared[0]; i++)
        st_config_flags_add_field(&table, &o.run, shared[i][0], shared[i][1]);
    const st_flag own[] = {
        {"input", ST_FLAG_STRING, o.input, sizeof o.input, 0, "input shape CxHxW (default: from --data, else 1x28x28 for LeNets and 3x32x32 otherwise)", NULL, NULL, 0},
        {"classes", ST_FLAG_INT, &o.classes, 0, 0, "number of classes (default: from --data, else 10)", NULL, NULL, 0},
        {"json", ST_FLAG_SWITCH, &o.json, 0, 1, "print one JSON object", NULL, NULL, 0},
    };
    for (size_t i = 0; i < sizeof own / sizeof own[0]; i++) st_config_flags_add(&table, own[i]);
    st_flag *flags = table.flags;
    int r = st_flags_parse("inspect",
                           "usage: sparsetrain inspect --model M [--data D] --sparse_init X --density d [--fc_density f] "
                           "[--json]\n\nShows the layer-wise densities, kept weights and FLOPs that a distribution gives "
                           "a model (the same masks as `sparsetrain train` with the same flags and seed).",
                           flags, table.n, argc, argv, 2);
    if (r != 0) return r > 0 ? 0 : 2;
    if (o.run.update_frequency <= 0) {
        fprintf(stderr, "sparsetrain inspect: --update_frequency must be positive (got %d)\n", o.run.update_frequency);
        return 2;
    }
    int c = 0, h = 0, w = 0, classes = 0;
    const char *problem = NULL;
    if (o.run.data[0] && !data_shape(o.run.data, &c, &h, &w, &classes))
        problem = "--data must be mnist, fashion-mnist, cifar10 or cifar100 (for an ImageFolder tree give --input 3xSxS and --classes N)";
    else if (!o.run.data[0]) {
        int lenet = strncmp(o.run.model, "lenet", 5) == 0;
        c = lenet ? 1 : 3;
        h = w = lenet ? 28 : 32;
        classes = 10;
    }
    if (!problem && o.input[0]) {
        char tail;
        if (sscanf(o.input, "%dx%dx%d%c", &c, &h, &w, &tail) != 3 || c <= 0 || h <= 0 || w <= 0)
            problem = "--input must look like 3x32x32 (channels x height x width)";
    }
    if (o.classes) classes = o.classes;
    if (!problem && classes <= 0) problem = "--classes must be positive";
    if (!problem && !st_sparse_init_is_known(o.run.sparse_init)) problem = "--sparse_init is unknown (known: " ST_SPARSE_INIT_NAMES ")";
    if (!problem && st_sparse_init_needs_data(o.run.sparse_init) && !o.run.data[0])
        problem = "--sparse_init snip and GraSP score training data: give --data";
    if (!problem && strcmp(o.run.mask_sampling, "bernoulli") != 0 && strcmp(o.run.mask_sampling, "exact") != 0)
        problem = "--mask-sampling must be bernoulli or exact";
    st_exec_policy policy;
    if (!problem && st_exec_policy_parse(o.run.execution, &policy) != ST_OK) problem = "--execution must be auto, sparse, mixed or dense";
    if (!problem && (o.run.batch_size <= 0 || o.run.threads < 0)) problem = "--batch-size must be positive and --threads >= 0";
    st_train_config_resolve_defaults(&o.run); /* as train: --valid_split's default is the data set's */
    if (!problem && !(o.run.valid_split >= 0 && o.run.valid_split < 1)) problem = "--valid_split must be in [0, 1)";
    if (problem) {
        fprintf(stderr, "sparsetrain inspect: %s\n", problem);
        return 2;
    }
    if (st_threads_check("--threads", o.run.threads) != ST_OK) {
        fprintf(stderr, "sparsetrain inspect: %s\n", st_last_error());
        return 2;
    }
    if (o.run.threads > 0) omp_set_num_threads(o.run.threads);
    st_status s = run_inspect(&o, c, h, w, classes);
    if (s != ST_OK) {
        fprintf(stderr, "sparsetrain inspect: error: %s\n", st_last_error());
        return s == ST_ERR_ARGUMENT ? 2 : 1;
    }
    return 0;
}
