/* st_loader: turns a dataset into shuffled, augmented, normalised batches.
 * Worker threads fill a ring of ST_LOADER_SLOTS batch buffers ahead of the
 * trainer (the bounded prefetch queue); everything random is a pure function of
 * (seed, epoch, position), so batches do not depend on the number of workers.
 * Work is handed out in units: a whole batch for in-memory data, one image for
 * ImageFolder data (read + decode dominate). */
#include "data/dataset.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "core/status.h"
#include "data/image_folder.h"

#define SHUFFLE_TAG 0x73687566666c6521ULL /* "shuffle!" */
#define MAX_WORKERS 64
#define UNREADABLE_BATCH_ERROR 4 /* a batch this large with no readable image is an error */

struct st_loader {
    const st_dataset *data;      /* not owned */
    st_loader_options opt;
    int64_t num_batches;         /* per epoch */
    size_t image_size;           /* C*H*W: bytes of a source image, floats of a batch image */
    int unit;                    /* images per work unit */
    float table[3][256];         /* byte -> normalised value per channel */
    int64_t *order;              /* (count) dataset index at each position of the epoch */
    float *images[ST_LOADER_SLOTS];   /* each (batch_size, C, H, W) */
    int32_t *labels[ST_LOADER_SLOTS]; /* each (batch_size) */
    uint8_t *readable[ST_LOADER_SLOTS]; /* each (batch_size): 0 = image left out */
    int slot_count[ST_LOADER_SLOTS];  /* images of the batch in the slot */
    int slot_done[ST_LOADER_SLOTS];   /* images finished (guarded by mutex) */
    char failure[ST_LOADER_SLOTS][512]; /* first unreadable image's message per slot */

    int workers;
    pthread_t *threads;
    st_image_scratch *scratch;   /* (workers) */
    pthread_mutex_t mutex;
    pthread_cond_t work_cv;      /* workers wait here for work / an epoch / quit */
    pthread_cond_t ready_cv;     /* consumer waits here for a batch / the workers to go idle */
    /* Everything below is guarded by `mutex`. Batches complete in order; batch b
     * lives in slot b % SLOTS and its units may be claimed only while
     * b - released < SLOTS (the slot's previous batch has been consumed). */
    int quit;
    int started;                 /* st_loader_start_epoch was called */
    int active;                  /* workers may claim units of the current epoch */
    int busy;                    /* workers processing a unit outside the lock */
    int holding;                 /* the consumer holds batch `released` */
    int64_t epoch;
    int64_t claim_batch;         /* next unit to hand out: batch, first image */
    int claim_image;
    int64_t produced;            /* batches of this epoch that are complete */
    int64_t released;            /* batches the consumer is done with */
};

static int batch_length(const st_loader *l, int64_t batch) {
    int64_t start = batch * l->opt.batch_size, left = l->data->count - start;
    return (int)(left < l->opt.batch_size ? left : l->opt.batch_size);
}

/* Writes a transformed S x S x 3 image (HWC bytes) as normalised CHW floats,
 * mirrored when flip is set. */
static void store_rgb(const uint8_t *rgb, int size, int flip, const float table[3][256], float *dst) {
    const size_t plane = (size_t)size * (size_t)size;
    for (int y = 0; y < size; y++) {
        const uint8_t *row = rgb + (size_t)y * size * 3;
        for (int x = 0; x < size; x++) {
            const uint8_t *p = row + (size_t)(flip ? size - 1 - x : x) * 3;
            size_t at = (size_t)y * size + (size_t)x;
            dst[at] = table[0][p[0]];
            dst[plane + at] = table[1][p[1]];
            dst[2 * plane + at] = table[2][p[2]];
        }
    }
}

/* Fills images [first, first + n) of batch `batch` of `epoch` into its slot.
 * Runs without the lock: the slot is not visible to the consumer until the
 * batch is complete. */
static void fill_images(st_loader *l, int worker, int64_t epoch, int64_t batch, int first, int n) {
    const st_dataset *d = l->data;
    int slot = (int)(batch % ST_LOADER_SLOTS);
    for (int i = first; i < first + n; i++) {
        int64_t position = batch * l->opt.batch_size + i;
        int64_t index = l->order[position];
        float *dst = l->images[slot] + (size_t)i * l->image_size;
        l->readable[slot][i] = 1;
        if (d->folder) {
            st_image_folder *f = d->folder;
            l->labels[slot][i] = f->labels[index];
            st_crop crop;
            st_status s = st_image_folder_is_bad(f, index) ? ST_ERR_FORMAT
                          : st_image_folder_load(f, index, l->opt.augment, l->opt.seed, epoch, position,
                                                 &l->scratch[worker], &crop);
            if (s == ST_OK) {
                store_rgb(l->scratch[worker].out, d->height, crop.flip, l->table, dst);
            } else {
                char why[512];
                if (st_image_folder_is_bad(f, index)) {
                    char path[480];
                    if (st_image_folder_path(f, index, path, sizeof path) != 0) snprintf(path, sizeof path, "(long path)");
                    snprintf(why, sizeof why, "%s: unreadable (reported before)", path);
                } else {
                    snprintf(why, sizeof why, "%s", st_last_error());
                    st_image_folder_mark_bad(f, index, why);
                }
                l->readable[slot][i] = 0;
                pthread_mutex_lock(&l->mutex);
                if (!l->failure[slot][0]) snprintf(l->failure[slot], sizeof l->failure[slot], "%s", why);
                pthread_mutex_unlock(&l->mutex);
            }
            continue;
        }
        st_augment_draw draw = {0, 0, 0};
        if (l->opt.augment) draw = st_augment_draw_for(l->opt.seed, epoch, position, ST_AUGMENT_PAD);
        st_augment_image(d->pixels + (size_t)index * l->image_size, d->channels, d->height, d->width,
                         l->opt.augment ? &draw : NULL, ST_AUGMENT_PAD, l->opt.reflect_pad, l->table, dst);
        l->labels[slot][i] = d->labels[index];
    }
}

typedef struct worker_arg {
    st_loader *loader;
    int index;
} worker_arg;

static void *worker_main(void *arg) {
    st_loader *l = ((worker_arg *)arg)->loader;
    int me = ((worker_arg *)arg)->index;
    free(arg);
    pthread_mutex_lock(&l->mutex);
    for (;;) {
        while (!l->quit && !(l->active && l->claim_batch < l->num_batches &&
                             l->claim_batch - l->released < ST_LOADER_SLOTS))
            pthread_cond_wait(&l->work_cv, &l->mutex);
        if (l->quit) break;
        int64_t epoch = l->epoch, batch = l->claim_batch;
        int first = l->claim_image, length = batch_length(l, batch);
        int n = length - first < l->unit ? length - first : l->unit;
        int slot = (int)(batch % ST_LOADER_SLOTS);
        if (first == 0) { /* the slot's previous batch has been consumed: reset it */
            l->slot_done[slot] = 0;
            l->slot_count[slot] = length;
            l->failure[slot][0] = 0;
        }
        l->claim_image += n;
        if (l->claim_image == length) {
            l->claim_batch++;
            l->claim_image = 0;
        }
        l->busy++;
        pthread_mutex_unlock(&l->mutex);
        fill_images(l, me, epoch, batch, first, n);
        pthread_mutex_lock(&l->mutex);
        l->busy--;
        /* start_epoch waits for busy == 0, so this unit belongs to the current epoch */
        l->slot_done[slot] += n;
        int moved = 0;
        while (l->produced < l->claim_batch &&
               l->slot_done[l->produced % ST_LOADER_SLOTS] == batch_length(l, l->produced)) {
            l->produced++;
            moved = 1;
        }
        if (moved || l->busy == 0) pthread_cond_broadcast(&l->ready_cv);
    }
    pthread_mutex_unlock(&l->mutex);
    return NULL;
}

static void free_buffers(st_loader *l) {
    for (int s = 0; s < ST_LOADER_SLOTS; s++) {
        free(l->images[s]);
        free(l->labels[s]);
        free(l->readable[s]);
    }
    if (l->scratch)
        for (int w = 0; w < l->workers; w++) st_image_scratch_free(&l->scratch[w]);
    free(l->scratch);
    free(l->threads);
    free(l->order);
    free(l);
}

/* Stops and joins the first `started` workers. */
static void stop_workers(st_loader *l, int started) {
    pthread_mutex_lock(&l->mutex);
    l->quit = 1;
    pthread_cond_broadcast(&l->work_cv);
    pthread_mutex_unlock(&l->mutex);
    for (int w = 0; w < started; w++) pthread_join(l->threads[w], NULL);
    pthread_mutex_destroy(&l->mutex);
    pthread_cond_destroy(&l->work_cv);
    pthread_cond_destroy(&l->ready_cv);
}

st_status st_loader_create(const st_dataset *data, const st_loader_options *opt, st_loader **out) {
    if (!out) return st_fail(ST_ERR_ARGUMENT, "st_loader_create: no output pointer");
    *out = NULL;
    if (!data || !opt) return st_fail(ST_ERR_ARGUMENT, "st_loader_create: NULL dataset or options");
    if (opt->batch_size < 1) return st_fail(ST_ERR_ARGUMENT, "loader: batch size must be >= 1 (got %d)", opt->batch_size);
    if (opt->workers < 0 || opt->workers > MAX_WORKERS)
        return st_fail(ST_ERR_ARGUMENT, "loader: workers must be in [0, %d] (got %d)", MAX_WORKERS, opt->workers);
    if (data->count < 0 || (data->count > 0 && !data->folder && (!data->pixels || !data->labels)))
        return st_fail(ST_ERR_ARGUMENT, "loader: dataset '%s' has no images loaded", data->name);
    if (data->channels < 1 || data->channels > 3 || data->height < 1 || data->width < 1)
        return st_fail(ST_ERR_ARGUMENT, "loader: dataset '%s' has unsupported image shape %dx%dx%d", data->name,
                       data->channels, data->height, data->width);
    if (data->folder && (data->channels != 3 || data->height != data->folder->image_size ||
                         data->width != data->folder->image_size))
        return st_fail(ST_ERR_ARGUMENT, "loader: dataset '%s' shape does not match its image folder", data->name);
    if (!data->folder && opt->augment && opt->reflect_pad &&
        (ST_AUGMENT_PAD >= data->height || ST_AUGMENT_PAD >= data->width))
        return st_fail(ST_ERR_ARGUMENT, "loader: reflect padding by %d needs images larger than %dx%d", ST_AUGMENT_PAD,
                       data->height, data->width);

    st_loader *l = st_calloc(1, sizeof *l, "loader");
    if (!l) return ST_ERR_NOMEM;
    l->data = data;
    l->opt = *opt;
    l->workers = opt->workers > 0 ? opt->workers : data->folder ? 2 : 1;
    l->unit = data->folder ? 1 : opt->batch_size;
    l->num_batches = (data->count + opt->batch_size - 1) / opt->batch_size;
    l->image_size = (size_t)data->channels * (size_t)data->height * (size_t)data->width;
    st_normalise_table(data, l->table);
    int64_t per_slot = data->count < opt->batch_size ? data->count : opt->batch_size;
    if (per_slot < 1) per_slot = 1;
    l->order = st_malloc((size_t)(data->count > 0 ? data->count : 1) * sizeof(int64_t), "loader order");
    l->threads = st_calloc((size_t)l->workers, sizeof(pthread_t), "loader threads");
    l->scratch = st_calloc((size_t)l->workers, sizeof(st_image_scratch), "loader scratch");
    int ok = l->order && l->threads && l->scratch;
    for (int s = 0; s < ST_LOADER_SLOTS && ok; s++) {
        l->images[s] = st_malloc((size_t)per_slot * l->image_size * sizeof(float), "loader batch images");
        l->labels[s] = st_malloc((size_t)per_slot * sizeof(int32_t), "loader batch labels");
        l->readable[s] = st_malloc((size_t)per_slot, "loader batch marks");
        ok = l->images[s] && l->labels[s] && l->readable[s];
    }
    if (!ok) {
        free_buffers(l);
        return ST_ERR_NOMEM;
    }
    pthread_mutex_init(&l->mutex, NULL);
    pthread_cond_init(&l->work_cv, NULL);
    pthread_cond_init(&l->ready_cv, NULL);
    for (int w = 0; w < l->workers; w++) {
        worker_arg *arg = malloc(sizeof *arg);
        if (arg) *arg = (worker_arg){l, w};
        if (!arg || pthread_create(&l->threads[w], NULL, worker_main, arg) != 0) {
            free(arg);
            stop_workers(l, w);
            free_buffers(l);
            return st_fail(ST_ERR_NOMEM, "loader: cannot start background thread %d", w + 1);
        }
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
    /* The workers are idle and cannot resume until `active` is set again. */
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
    l->claim_batch = 0;
    l->claim_image = 0;
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
        pthread_cond_broadcast(&l->work_cv);
    }
    st_status status = ST_OK;
    while (l->released < l->num_batches) {
        while (l->produced <= l->released) pthread_cond_wait(&l->ready_cv, &l->mutex);
        int slot = (int)(l->released % ST_LOADER_SLOTS), n = l->slot_count[slot], kept = 0;
        /* Close the gaps left by unreadable images (the slot is the consumer's now). */
        for (int i = 0; i < n; i++) {
            if (!l->readable[slot][i]) continue;
            if (kept != i) {
                memmove(l->images[slot] + (size_t)kept * l->image_size, l->images[slot] + (size_t)i * l->image_size,
                        l->image_size * sizeof(float));
                l->labels[slot][kept] = l->labels[slot][i];
            }
            kept++;
        }
        if (kept == 0) {
            int64_t b = l->released++;
            pthread_cond_broadcast(&l->work_cv);
            if (n >= UNREADABLE_BATCH_ERROR) {
                status = st_fail(ST_ERR_IO, "loader: none of the %d images of batch %lld could be read (first: %s)", n,
                                 (long long)b + 1, l->failure[slot]);
                break;
            }
            continue; /* pass over a small batch of unreadable images */
        }
        batch->count = kept;
        batch->images = l->images[slot];
        batch->labels = l->labels[slot];
        l->holding = 1;
        break;
    }
    pthread_mutex_unlock(&l->mutex);
    return status;
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
    stop_workers(l, l->workers);
    free_buffers(l);
}
