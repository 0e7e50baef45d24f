/* The ImageFolder throughput benchmark (see data_bench.h). Stage times come
 * from direct calls on the calling thread; the loader pass is what training
 * sees (shuffled order, normalised float batches, `workers` threads). */
#include "data/catalog.h"
#include "data/data_bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/status.h"
#include "data/dataset.h"
#include "data/image_folder.h"

#define STAGE_IMAGES 200 /* images timed stage by stage */

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Per-image read / decode / transform times over the first images of `f`. */
static st_status time_stages(st_image_folder *f, const st_data_bench_config *c, int64_t n, st_data_bench_result *r) {
    st_image_scratch scratch = {0};
    st_status s = ST_OK;
    double t_read = 0, t_decode = 0, t_transform = 0, width = 0, height = 0, bytes = 0;
    int64_t timed = 0;
    char path[4096];
    const float *mean = st_dataset_info_find("imagenet")->mean, *std = st_dataset_info_find("imagenet")->std;
    float table[3][256];
    for (int ch = 0; ch < 3; ch++)
        for (int p = 0; p < 256; p++) table[ch][p] = ((float)p / 255.0f - mean[ch]) / std[ch];
    float *normalised = st_malloc(sizeof(float) * 3 * (size_t)c->image_size * c->image_size, "bench image");
    if (!normalised) return ST_ERR_NOMEM;
    for (int64_t i = 0; i < n && s == ST_OK; i++) {
        if (st_image_folder_path(f, i, path, sizeof path) != 0) continue;
        size_t size;
        double t0 = now_seconds();
        if (st_read_file_into(path, ST_IMAGE_MAX_FILE_BYTES, &scratch.file, &scratch.file_capacity, &size) != ST_OK)
            continue;
        double t1 = now_seconds();
        if (st_jpeg_decode(scratch.file, size, path, &scratch.decoded) != ST_OK) continue;
        double t2 = now_seconds();
        st_crop crop;
        s = st_image_transform(&scratch.decoded, c->image_size, c->train, c->seed, 0, i, path, &scratch, &crop);
        /* normalising to floats through a table, as the loader does (kept in the timing) */
        const size_t plane = (size_t)c->image_size * c->image_size;
        for (size_t p = 0; s == ST_OK && p < plane; p++)
            for (int ch = 0; ch < 3; ch++) normalised[ch * plane + p] = table[ch][scratch.out[3 * p + ch]];
        double t3 = now_seconds();
        t_read += t1 - t0, t_decode += t2 - t1, t_transform += t3 - t2;
        width += scratch.decoded.width, height += scratch.decoded.height, bytes += (double)size;
        timed++;
    }
    free(normalised);
    st_image_scratch_free(&scratch);
    if (s != ST_OK) return s;
    if (timed == 0) return st_fail(ST_ERR_FORMAT, "%s: none of the first %lld images could be decoded", c->dir, (long long)n);
    r->read_ms = 1e3 * t_read / (double)timed;
    r->decode_ms = 1e3 * t_decode / (double)timed;
    r->transform_ms = 1e3 * t_transform / (double)timed;
    r->mean_width = width / (double)timed;
    r->mean_height = height / (double)timed;
    r->mean_file_kb = bytes / (double)timed / 1024.0;
    return ST_OK;
}

st_status st_data_bench_run(const st_data_bench_config *c, st_data_bench_result *r) {
    memset(r, 0, sizeof *r);
    if (!c->dir || !c->dir[0]) return st_fail(ST_ERR_ARGUMENT, "bench: --imagefolder needs a folder");
    if (c->images < 0) return st_fail(ST_ERR_ARGUMENT, "bench: --images must be >= 0");
    st_dataset_options opt = {.image_size = c->image_size};
    st_dataset full, part;
    memset(&part, 0, sizeof part);
    ST_TRY(st_dataset_load_with("imagenet", c->dir, 1, &opt, &full));
    int64_t n = c->images > 0 && c->images < full.count ? c->images : full.count;
    st_status s = time_stages(full.folder, c, n < STAGE_IMAGES ? n : STAGE_IMAGES, r);
    if (s == ST_OK) s = st_dataset_slice(&full, 0, n, &part);
    st_dataset_free(&full);
    st_loader *l = NULL;
    st_loader_options lo = {
        .batch_size = c->batch_size, .shuffle = 1, .augment = c->train, .seed = c->seed, .workers = c->workers};
    if (s == ST_OK) s = st_loader_create(&part, &lo, &l);
    double t0 = now_seconds();
    if (s == ST_OK) s = st_loader_start_epoch(l, 0);
    while (s == ST_OK) {
        st_batch b;
        s = st_loader_next(l, &b);
        if (s != ST_OK || b.count == 0) break;
        r->images += b.count;
    }
    r->loader_seconds = now_seconds() - t0;
    st_loader_free(l);
    if (s == ST_OK) {
        r->skipped = part.folder->bad_count;
        r->images_per_s = (double)r->images / r->loader_seconds;
        r->images_per_s_per_worker = r->images_per_s / (c->workers > 0 ? c->workers : 2);
    }
    st_dataset_free(&part);
    return s;
}
