/* Throughput of the ImageFolder pipeline (`sparsetrain bench --imagefolder DIR`):
 * the per-image cost of each stage on one thread (read, decode, transform +
 * normalise), then decoded + augmented images/s through the loader with N
 * workers, as training consumes them. */
#ifndef ST_DATA_DATA_BENCH_H
#define ST_DATA_DATA_BENCH_H

#include <stdint.h>

#include "sparsetrain.h"

typedef struct st_data_bench_config {
    const char *dir;     /* ImageFolder tree (DIR/train is read) */
    int image_size;      /* output S (224) */
    int workers;         /* loader threads (1) */
    int batch_size;      /* (32) */
    int64_t images;      /* images to time (0 = the whole split) */
    int train;           /* 1: RandomResizedCrop + flip, 0: Resize + CenterCrop */
    uint64_t seed;
} st_data_bench_config;

typedef struct st_data_bench_result {
    int64_t images;              /* delivered by the loader */
    int64_t skipped;             /* unreadable files */
    double mean_width, mean_height, mean_file_kb; /* of the staged images */
    double read_ms, decode_ms, transform_ms;      /* per image, one thread */
    double loader_seconds;
    double images_per_s;         /* through the loader with `workers` threads */
    double images_per_s_per_worker;
} st_data_bench_result;

/*! Runs the benchmark. @return the data set's errors (st_dataset_load_with,
 * st_loader_*); ST_ERR_ARGUMENT for bad settings. */
st_status st_data_bench_run(const st_data_bench_config *c, st_data_bench_result *r);

#endif
