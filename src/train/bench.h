/* Training-step benchmark on synthetic data (`sparsetrain bench`). */
#ifndef ST_TRAIN_BENCH_H
#define ST_TRAIN_BENCH_H

#include <stdint.h>

#include "kernels/fma_peak.h"
#include "sparsetrain.h"

typedef struct st_bench_config {
    char model[64];
    char sparse_init[32];  /* "dense" for a dense model */
    double density;
    int batch_size;
    int threads;           /* --threads, set by the caller (the library runs on the OpenMP thread count it is given) */
    int channels, height, width, classes;
    int warmup, steps;     /* warm-up steps, timed steps */
    uint64_t seed;
    char execution[16];    /* auto, sparse, mixed or dense (exec/policy.h) */
    int bf16;              /* --bf16 (exec/bf16_exec.h) */
} st_bench_config;

/* One step of the walk (a layer or a fused group), timed per training step. */
typedef struct st_bench_layer {
    char kind[24];        /* conv, linear, bn+relu, bn+add+relu, ... */
    char name[96];        /* parameter / BN name ("" for parameter-free steps) */
    int64_t kept, numel;  /* conv / linear weights */
    double forward_ms, backward_ms; /* mean per training step */
    double gflops;        /* conv / linear: useful GFLOP/s of forward + backward (kept weights only) */
    /* conv / linear, per pass: each pass does kept x output pixels x batch
     * multiply-adds (2 FLOPs each). The input- and weight-gradient passes are
     * timed apart only where the executor runs them apart (passes_timed: the
     * sparse executor; oneDNN's backward is one call). An input-gradient pass
     * that is not run (the first layer: nobody needs d loss / d images) has 0 ms. */
    double macs;          /* kept multiply-adds per image, forward */
    int passes_timed;
    double backward_data_ms, backward_weight_ms;
    double forward_gflops, backward_data_gflops, backward_weight_gflops; /* 0 where not timed or not run */
} st_bench_layer;

typedef struct st_bench_result {
    double forward_ms, backward_ms, step_ms; /* medians over the timed steps */
    double step_cpu_ms;                      /* median CPU time of the process per step (all threads; on a
                                                shared machine, what the step cost without the waits) */
    double images_per_s;                     /* full training step */
    int64_t kept, total;                     /* prunable weights */
    double useful_gflops;                    /* kept-weight FLOPs of a training step / step time */
    double train_gflop;                      /* kept-weight GFLOP of one training step (fwd + bwd = 3x fwd) */
    int64_t param_bytes;                     /* weights + gradients + optimiser state as stored */
    int64_t dense_param_bytes;               /* the same for dense storage of every weight */
    int64_t peak_rss_bytes;                  /* peak resident memory of the process */
    int64_t activation_bytes;                /* activation values + gradients held for the batch */
    char execution[16];                      /* "sparse" or "dense" */
    char isa[16];                            /* kernels' instruction set */
    int bf16;                                /* 1: the step ran in bf16 (--bf16 given and in effect) */
    char precision[200];                     /* with --bf16: st_model_enable_bf16's line */
    int threads;                             /* OpenMP threads used */
    char conv_implementation[64];            /* backend of the model's first convolution, e.g. "jit:avx512_core" */
    st_fma_peak peak;                        /* FMA peak of this machine with `threads` threads, measured by the run */
    st_bench_layer *layers;                  /* per step of the walk, forward order (owned) */
    int n_layers;
} st_bench_result;

/* Fills *r (free its layers with st_bench_result_release). */
st_status st_bench_run(const st_bench_config *c, st_bench_result *r);
void st_bench_result_release(st_bench_result *r);

#endif
