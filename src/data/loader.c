/* st_loader: turns a dataset into shuffled, augmented, normalised batches.
 * One background thread fills a ring of ST_LOADER_SLOTS batch buffers ahead of
 * the trainer; everything random is a pure function of (seed, epoch, position). */
#include "data/dataset.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "core/status.h"

#define SHUFFLE_TAG 0x73687566666c6521ULL /* "shuffle!" */

struct st_loader {
    const st_dataset *data;      /* not owned */
    st_loader_options opt;
    int64_t num_batches;         /* per epoch */
    size_t image_size;           /* C*H*W: bytes of a source image, floats of a batch image */
    float table[3][256];         /* byte -> normalised value per channel */
    int64_t *order;              /* (count) dataset index at each position of the epoch */
    float *images[ST_LOADER_SLOTS];   /* each (batch_size, C, H, W) */
    int32_t *labels[ST_LOADER_SLOTS]; /* each (batch_size) */
    int slot_count[ST_LOADER_SLOTS];

    pthread_t thread;
    pthread_mutex_t mutex;
    pthread_cond_t work_cv;      /* worker waits here for a free slot / an epoch / quit */
    pthread_cond_t ready_cv;     /* consumer waits here for a batch / the worker to go idle */
    /* Everything below is guarded by `mutex`. Batches are produced in order;
     * batch b lives in slot b % SLOTS, and the worker may fill batch `produced`
     * only while fewer than SLOTS batches are ready or held by the consumer. */
    int quit;
    int started;                 /* st_loader_start_epoch was called */
    int active;                  /* the worker may produce for the current epoch */
    int busy;                    /* the worker is filling a slot outside the lock */
    int holding;                 /* the consumer holds batch `released` */
    int64_t epoch;
    int64_t produced;            /* batches of this epoch that are ready */
    int64_t released;            /* batches the consumer is done with */
};

/* Fills slot `batch % SLOTS` with batch `batch` of `epoch`. Runs without the
 * lock: the slot is not visible to the consumer until `produced` moves on. */
static void fill_batch(st_loader *l, int64_t epoch, int64_t batch) {
    const st_dataset *d = l->data;
    int slot = (int)(batch % ST_LOADER_SLOTS);
    int64_t start = batch * l->opt.batch_size;
    int64_t n = d->count - start < l->opt.batch_size ? d->count - start : l->opt.batch_size;
    for (int64_t i = 0; i < n; i++) {
        int64_t position = start + i;
        int64_t index = l->order[position];
        st_augment_draw draw = {0, 0, 0};
        if (l->opt.augment) draw = st_augment_draw_for(l->opt.seed, epoch, position, ST_AUGMENT_PAD);
        st_augment_image(d->pixels + (size_t)index * l->image_size, d->channels, d->height, d->width,
                         l->opt.augment ? &draw : NULL, ST_AUGMENT_PAD, l->opt.reflect_pad, l->table,
                         l->images[slot] + (size_t)i * l->image_size);
        l->labels[slot][i] = d->labels[index];
    }
    l->slot_count[slot] = (int)n;
}

static void *worker_main(void *arg) {
    st_loader *l = arg;
    pthread_mutex_lock(&l->mutex);
    for (;;) {
        while (!l->quit && !(l->active && l->produced < l->num_batches &&
                             l->produced - l->released < ST_LOADER_SLOTS))
            pthread_cond_wait(&l->work_cv, &l->mutex);
        if (l->quit) break;
        int64_t epoch = l->epoch, batch = l->produced;
        l->busy = 1;
        pthread_mutex_unlock(&l->mutex);
        fill_batch(l, epoch, batch);
        pthread_mutex_lock(&l->mutex);
        l->busy = 0;
        l->produced++; /* start_epoch waits for !busy, so this batch belongs to the current epoch */
        pthread_cond_broadcast(&l->ready_cv);
    }
    pthread_mutex_unlock(&l->mutex);
    return NULL;
}

st_status st_loader_create(const st_dataset *data, const st_loader_options *opt, st_loader **out) {
    if (!out) return st_fail(ST_ERR_ARGUMENT, "st_loader_create: no output pointer");
    *out = NULL;
    if (!data || !opt) return st_fail(ST_ERR_ARGUMENT, "st_loader_create: NULL dataset or options");
    if (opt->batch_size < 1) return st_fail(ST_ERR_ARGUMENT, "loader: batch size must be >= 1 (got %d)", opt->batch_size);
    if (data->count < 0 || (data->count > 0 && (!data->pixels || !data->labels)))
        return st_fail(ST_ERR_ARGUMENT, "loader: dataset '%s' has no images loaded", data->name);
    if (data->channels < 1 || data->channels > 3 || data->height < 1 || data->width < 1)
        return st_fail(ST_ERR_ARGUMENT, "loader: dataset '%s' has unsupported image shape %dx%dx%d", data->name,
                       data->channels, data->height, data->width);
    if (opt->augment && opt->reflect_pad && (ST_AUGMENT_PAD >= data->height || ST_AUGMENT_PAD >= data->width))
        return st_fail(ST_ERR_ARGUMENT, "loader: reflect padding by %d needs images larger than %dx%d", ST_AUGMENT_PAD,
                       data->height, data->width);

    st_loader *l = st_calloc(1, sizeof *l, "loader");
    if (!l) return ST_ERR_NOMEM;
    l->data = data;
    l->opt = *opt;
    l->num_batches = (data->count + opt->batch_size - 1) / opt->batch_size;
    l->image_size = (size_t)data->channels * (size_t)data->height * (size_t)data->width;
    st_normalise_table(data, l->table);
    int64_t per_slot = data->count < opt->batch_size ? data->count : opt->batch_size;
    if (per_slot < 1) per_slot = 1;
    l->order = st_malloc((size_t)(data->count > 0 ? data->count : 1) * sizeof(int64_t), "loader order");
    int ok = l->order != NULL;
    for (int s = 0; s < ST_LOADER_SLOTS && ok; s++) {
        l->images[s] = st_malloc((size_t)per_slot * l->image_size * sizeof(float), "loader batch images");
        l->labels[s] = st_malloc((size_t)per_slot * sizeof(int32_t), "loader batch labels");
        ok = l->images[s] && l->labels[s];
    }
    if (!ok) {
        for (int s = 0; s < ST_LOADER_SLOTS; s++) {
            free(l->images[s]);
            free(l->labels[s]);
        }
        free(l->order);
        free(l);
        return ST_ERR_NOMEM;
    }
    pthread_mutex_init(&l->mutex, NULL);
    pthread_cond_init(&l->work_cv, NULL);
    pthread_cond_init(&l->ready_cv, NULL);
    if (pthread_create(&l->thread, NULL, worker_main, l) != 0) {
        pthread_mutex_destroy(&l->mutex);
        pthread_cond_destroy(&l->work_cv);
        pthread_cond_destroy(&l->ready_cv);
        for (int s = 0; s < ST_LOADER_SLOTS; s++) {
            free(l->images[s]);
            free(l->labels[s]);
        }
        free(l->order);
        free(l);
        return st_fail(ST_ERR_NOMEM, "loader: cannot start the background thread");
    }
    *out = l;
    return ST_OK;
}

st_status st_loader_start_epoch(st_loader *l, int64_t epoch) {
    if (!l) return st_fail(ST_ERR_ARGUMENT, "st_loader_start_epoch: NULL loader");
    if (epoch < 0) return st_fail(ST_ERR_ARGUMENT, "loader: epoch must be >= 0 (got %lld)", (long long)epoch);
    pthread_mutex_lock(&l->mutex);
    l->active = 0;
    while (l->busy) pthread_cond_wait(&l->ready_cv, &l->mutex);
    /* The worker is idle and cannot resume until `active` is set again. */
    int64_t n = l->data->count;
    for (int64_t i = 0; i < n; i++) l->order[i] = i;
    if (l->opt.shuffle && n > 1) {
        st_rng rng;
        st_rng_seed(&rng, l->opt.seed ^ SHUFFLE_TAG, (uint64_t)epoch);
        for (int64_t i = n - 1; i > 0; i--) {
            int64_t j = (int64_t)st_rng_below(&rng, (uint64_t)i + 1);
            int64_t t = l->order[i];
            l->order[i] = l->order[j];
            l->order[j] = t;
        }
    }
    l->epoch = epoch;
    l->produced = 0;
    l->released = 0;
    l->holding = 0;
    l->started = 1;
    l->active = 1;
    pthread_cond_broadcast(&l->work_cv);
    pthread_mutex_unlock(&l->mutex);
    return ST_OK;
}

st_status st_loader_next(st_loader *l, st_batch *batch) {
    if (!l || !batch) return st_fail(ST_ERR_ARGUMENT, "st_loader_next: NULL loader or batch");
    memset(batch, 0, sizeof *batch);
    pthread_mutex_lock(&l->mutex);
    if (!l->started) {
        pthread_mutex_unlock(&l->mutex);
        return st_fail(ST_ERR_ARGUMENT, "loader: st_loader_next called before st_loader_start_epoch");
    }
    if (l->holding) {
        /* The previous batch's slot may now be refilled. */
        l->released++;
        l->holding = 0;
        pthread_cond_signal(&l->work_cv);
    }
    if (l->released < l->num_batches) {
        while (l->produced <= l->released) pthread_cond_wait(&l->ready_cv, &l->mutex);
        int slot = (int)(l->released % ST_LOADER_SLOTS);
        batch->count = l->slot_count[slot];
        batch->images = l->images[slot];
        batch->labels = l->labels[slot];
        l->holding = 1;
    }
    pthread_mutex_unlock(&l->mutex);
    return ST_OK;
}

st_status st_loader_skip(st_loader *l, int64_t n) {
    if (!l) return st_fail(ST_ERR_ARGUMENT, "st_loader_skip: NULL loader");
    if (n < 0) return st_fail(ST_ERR_ARGUMENT, "loader: cannot skip %lld batches", (long long)n);
    pthread_mutex_lock(&l->mutex);
    if (!l->started) {
        pthread_mutex_unlock(&l->mutex);
        return st_fail(ST_ERR_ARGUMENT, "loader: st_loader_skip called before st_loader_start_epoch");
    }
    l->active = 0;
    while (l->busy) pthread_cond_wait(&l->ready_cv, &l->mutex);
    if (l->holding) {
        l->released++;
        l->holding = 0;
    }
    l->released = n > l->num_batches - l->released ? l->num_batches : l->released + n;
    /* batches already prepared past the skip stay valid: batch b lives in slot b % SLOTS */
    if (l->produced < l->released) l->produced = l->released;
    l->active = 1;
    pthread_cond_broadcast(&l->work_cv);
    pthread_mutex_unlock(&l->mutex);
    return ST_OK;
}

int64_t st_loader_batches_per_epoch(const st_loader *l) { return l ? l->num_batches : 0; }

void st_loader_free(st_loader *l) {
    if (!l) return;
    pthread_mutex_lock(&l->mutex);
    l->quit = 1;
    pthread_cond_broadcast(&l->work_cv);
    pthread_mutex_unlock(&l->mutex);
    pthread_join(l->thread, NULL);
    pthread_mutex_destroy(&l->mutex);
    pthread_cond_destroy(&l->work_cv);
    pthread_cond_destroy(&l->ready_cv);
    for (int s = 0; s < ST_LOADER_SLOTS; s++) {
        free(l->images[s]);
        free(l->labels[s]);
    }
    free(l->order);
    free(l);
}
