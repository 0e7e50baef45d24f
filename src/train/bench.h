/* Training-step benchmark on synthetic data (`sparsetrain bench`). */
#ifndef ST_TRAIN_BENCH_H
#define ST_TRAIN_BENCH_H

#include <stdint.h>

#include "sparsetrain.h"

typedef struct st_bench_config {
    char model[64];
    char sparse_init[32];  /* "dense" for a dense model */
    double density;
    int batch_size;
    int threads;
    int channels, height, width, classes;
    int warmup, steps;     /* warm-up steps, timed steps */
    uint64_t seed;
} st_bench_config;

typedef struct st_bench_layer {
    char name[96];       /* PyTorch parameter name of the prunable weight */
    int64_t kept, numel;
} st_bench_layer;

typedef struct st_bench_result {
    double forward_ms, backward_ms, step_ms; /* medians over the timed steps */
    double images_per_s;                     /* full training step */
    int64_t kept, total;                     /* prunable weights */
    int threads;                             /* OpenMP threads used */
    char conv_implementation[64];            /* backend of the model's first convolution, e.g. "jit:avx512_core" */
    st_bench_layer *layers;                  /* per prunable layer, parameter order (owned) */
    int n_layers;
} st_bench_result;

/* Fills *r (free its layers with st_bench_result_release). */
st_status st_bench_run(const st_bench_config *c, st_bench_result *r);
void st_bench_result_release(st_bench_result *r);

#endif
