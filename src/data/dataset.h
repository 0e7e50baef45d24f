/* Image classification data: loading MNIST / Fashion-MNIST (IDX) and
 * CIFAR-10/100 (official binary version, folder or .tar.gz) into memory, and a
 * batch loader that shuffles, augments and normalises on a background thread. */
#ifndef ST_DATA_DATASET_H
#define ST_DATA_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "sparsetrain.h"

/* ------------------------------------------------------------------ data sets */

typedef struct st_dataset {
    int64_t count;               /* number of images */
    int channels, height, width; /* CHW of one image */
    int num_classes;
    uint8_t *pixels;             /* (count, C, H, W) bytes, each image planar; owned */
    int32_t *labels;             /* (count), each in [0, num_classes); owned */
    float mean[3], std[3];       /* per-channel normalisation of pixel/255 */
    char name[32];               /* "mnist", "fashion-mnist", "cifar10", "cifar100", "imagenet" */
    /* ImageFolder data ("imagenet") is streamed from disk: pixels and labels are
     * NULL and the images are read through `folder` (data/image_folder.h); owned. */
    struct st_image_folder *folder;
} st_dataset;

/* Options of data sets whose image size is chosen (ImageFolder). */
typedef struct st_dataset_options {
    int image_size; /* output images are S x S (0 = 224) */
} st_dataset_options;

/*! Loads the training (train != 0) or test split of a data set into `out`.
 * name: "mnist" | "fashion-mnist" | "cifar10" | "cifar100".
 * dir:  folder holding the files under their official names:
 *   MNIST / Fashion-MNIST: {train,t10k}-{images-idx3,labels-idx1}-ubyte, plain or .gz;
 *   CIFAR-10:  binary version: data_batch_1..5.bin + test_batch.bin in dir or
 *              dir/cifar-10-batches-bin/, or dir/cifar-10-binary.tar.gz (members
 *              read from the archive in memory); else the python version:
 *              data_batch_1..5 + test_batch in dir or dir/cifar-10-batches-py/,
 *              or dir/cifar-10-python.tar.gz;
 *   CIFAR-100: train.bin / test.bin in dir or dir/cifar-100-binary/, or
 *              dir/cifar-100-binary.tar.gz; else train / test in dir or
 *              dir/cifar-100-python/, or dir/cifar-100-python.tar.gz; the fine
 *              label (100 classes) is used.
 * dir NULL: the first of the usual folders that holds the data set
 * (st_dataset_find_dir without the home folder).
 * Images keep file order (data_batch_1 first), which --valid_split relies on.
 * @return ST_OK; ST_ERR_ARGUMENT for an unknown name; ST_ERR_IO for a missing or
 * unreadable file; ST_ERR_FORMAT for truncated, corrupt or wrong-shaped contents
 * (the message names the file and the problem); ST_ERR_NOMEM.
 * On failure `out` is left zeroed. */
st_status st_dataset_load(const char *name, const char *dir, int train, st_dataset *out);

/*! As st_dataset_load, with options (NULL = defaults). name "imagenet": an
 * ImageFolder tree dir/train/<class>/(*.JPEG) + dir/val/<class>/(*.JPEG) (the val
 * split is the test split), scanned, not loaded (see data/image_folder.h);
 * 3 x S x S images normalised with the ImageNet mean/std. */
st_status st_dataset_load_with(const char *name, const char *dir, int train, const st_dataset_options *options,
                               st_dataset *out);

/*! @return the default folder of a data set ("/usr/share/datasets/fashion-mnist"
 * for Debian's dataset-fashion-mnist, "/usr/share/datasets/mnist",
 * "data/cifar10", "data/cifar100", "data/imagenet"), or NULL for an unknown name. */
const char *st_dataset_default_dir(const char *name);

/*! Finds the folder holding data set `name` when --datadir is not given:
 * the first of these that holds it (see docs/FORMATS.md):
 *   MNIST / Fashion-MNIST: the Debian folder (st_dataset_default_dir),
 *     data/<name>, data/MNIST/raw (data/FashionMNIST/raw), ../data/MNIST/raw,
 *     then <home>/.torchvision/MNIST/raw and <home>/data/MNIST/raw;
 *   CIFAR: data/<name>, data, _dataset (the reference code's folders:
 *     torchvision roots holding cifar-10-batches-py/ or the archive), then
 *     <home>/.torchvision, <home>/data.
 * `home` (the caller's home folder; the library reads no environment) may be
 * NULL or "" to skip the last two. The path is written to `out`.
 * @return ST_OK; ST_ERR_IO naming every folder searched when none holds the
 * data; ST_ERR_ARGUMENT for an unknown name. */
st_status st_dataset_find_dir(const char *name, const char *home, char *out, size_t size);

/*! Copies images [start, start+count) of `src` into `out` (which then owns its
 * memory); shape, classes, normalisation and name are kept. count may be 0.
 * @return ST_ERR_ARGUMENT if the range is outside src. */
st_status st_dataset_slice(const st_dataset *src, int64_t start, int64_t count, st_dataset *out);

/*! Frees what `d` owns and zeroes it; accepts NULL and a zeroed struct. */
void st_dataset_free(st_dataset *d);

/* ---------------------------------------------------------------- the loader */

typedef struct st_batch {
    int count;       /* images in this batch; 0 = the epoch is finished */
    float *images;   /* (count, C, H, W), normalised: (pixel/255 - mean) / std */
    int32_t *labels; /* (count) */
} st_batch;

typedef struct st_loader_options {
    int batch_size;
    int shuffle;     /* new random order every epoch */
    int augment;     /* pad 4, random crop back to HxW, random horizontal flip */
    int reflect_pad; /* 1: reflect padding (reference CIFAR-10 loader), 0: zeros (CIFAR-100) */
    uint64_t seed;
    /* Threads preparing batches (0 = 1 for in-memory data, 2 for ImageFolder data).
     * ImageFolder data: each thread reads and decodes single images of the batches
     * ahead; augment selects RandomResizedCrop + flip, otherwise Resize + CenterCrop. */
    int workers;
} st_loader_options;

typedef struct st_loader st_loader;

/*! Creates a loader over `data`, which must outlive it (it is read, not copied).
 * Starts opt->workers background threads that prepare up to ST_LOADER_SLOTS
 * batches ahead (the bounded prefetch queue). Batches do not depend on the
 * number of workers. Unreadable ImageFolder images are reported once and left
 * out of their batch (which is then smaller); a batch of at least 4 images none
 * of which can be read is an error (ST_ERR_IO) rather than silence.
 * @return ST_ERR_ARGUMENT for batch_size < 1 or reflect padding wider than the image. */
st_status st_loader_create(const st_dataset *data, const st_loader_options *opt, st_loader **out);

/*! Begins epoch `epoch` (0-based), abandoning any epoch in progress. The order
 * and the augmentation draws depend only on (seed, epoch, position in the
 * epoch), so re-running an epoch after a resume gives identical batches. */
st_status st_loader_start_epoch(st_loader *l, int64_t epoch);

/*! Skips the next `n` batches of the epoch in O(1) (resuming mid-epoch):
 * batches depend only on (seed, epoch, position), so nothing is lost by not
 * preparing them. Skipping past the end ends the epoch.
 * @return ST_ERR_ARGUMENT if no epoch was started or n < 0. */
st_status st_loader_skip(st_loader *l, int64_t n);

/*! Fills `batch` with the next batch of the epoch; batch->count == 0 once the
 * epoch is finished (and on every later call). The last batch may be smaller
 * (no drop_last); so may one holding unreadable images, and a batch with none
 * readable is passed over. The batch memory belongs to the loader and stays valid until
 * the next call of st_loader_next / st_loader_start_epoch / st_loader_free.
 * @return ST_ERR_ARGUMENT if no epoch was started. */
st_status st_loader_next(st_loader *l, st_batch *batch);

/*! @return ceil(count / batch_size). */
int64_t st_loader_batches_per_epoch(const st_loader *l);

/*! Stops and joins the background thread (also mid-epoch) and frees the
 * loader; accepts NULL. */
void st_loader_free(st_loader *l);

/* ------------------------------------------------ internal to src/data (and tests) */

#define ST_LOADER_SLOTS 3 /* batches prepared ahead: the one being consumed + 2 */
#define ST_AUGMENT_PAD 4

/* Reads a whole file, transparently gunzipping it if it is gzip-compressed,
 * into a malloc'd buffer (*out, *size; caller frees). `max_bytes` bounds the
 * decompressed size: a larger file is ST_ERR_FORMAT ("larger than expected"). */
st_status st_data_read_file(const char *path, size_t max_bytes, uint8_t **out, size_t *size);

/* Reads (gunzipping) at most the first n bytes of a file into buf (*got of
 * them): a header is checked before the whole file is read. */
st_status st_data_read_head(const char *path, uint8_t *buf, size_t n, size_t *got);

/* Turns the error state of a zlib gzFile (gzerror) into a status whose message
 * names `path`: Z_ERRNO -> ST_ERR_IO, truncated or corrupt data -> ST_ERR_FORMAT. */
struct gzFile_s;
st_status st_data_gzip_failure(struct gzFile_s *file, const char *path);

/* 1 if `path` names an existing file or folder. */
int st_data_path_exists(const char *path);

/* One member of a tar archive read into memory. */
typedef struct st_tar_member {
    const char *wanted; /* base name to look for (input) */
    uint8_t *data;      /* contents, malloc'd (output; NULL if not found) */
    size_t size;
} st_tar_member;

/* Reads a .tar or .tar.gz (ustar/GNU/pax headers) once and loads every regular
 * member whose base name equals some members[i].wanted; other members are
 * skipped. The first match of a name wins. Members not found keep data NULL.
 * `max_member_bytes` bounds one member's size. Header checksums are verified. */
st_status st_tar_read_members(const char *path, st_tar_member *members, int count,
                              size_t max_member_bytes);

/* Loaders per format; `out` is zeroed on entry and left zeroed on failure. */
st_status st_idx_load(const char *name, const char *dir, int train, st_dataset *out);
st_status st_cifar_load(const char *name, const char *dir, int train, int cifar100, st_dataset *out);

/* Reads one CIFAR python-version batch (a pickle: dict with "data" (N, 3072)
 * uint8 and "labels" or "fine_labels"/"coarse_labels") and appends its images
 * and labels to `d`; `where` names the file in messages. Only a strict subset
 * of the pickle format is read and nothing is executed (cifar_pickle.c). */
st_status st_cifar_pickle_append(st_dataset *d, const uint8_t *raw, size_t size, int cifar100, const char *where);

/* 1 if `dir` holds CIFAR-10 (or CIFAR-100) in any layout st_cifar_load reads. */
int st_cifar_present(const char *dir, int cifar100);
/* 1 if `dir` holds MNIST-style IDX files (train or test images, plain or .gz). */
int st_idx_present(const char *dir);

/* 1 if `path` names an existing regular file. */
int st_data_is_file(const char *path);

/* Random crop + flip parameters of one image: crop offsets in [0, 2*pad] of the
 * padded image (torchvision RandomCrop(size, padding=pad)), then a horizontal flip. */
typedef struct st_augment_draw {
    int offset_y, offset_x;
    int flip;
} st_augment_draw;

/* The draws for the image at `position` of epoch `epoch`: a pure function of
 * (seed, epoch, position), independent of batch size and thread timing. */
st_augment_draw st_augment_draw_for(uint64_t seed, int64_t epoch, int64_t position, int pad);

/* Per-channel lookup table byte -> normalised float, computed as
 * ((float)p / 255 - mean) / std in float like ToTensor + Normalize. */
void st_normalise_table(const st_dataset *d, float table[3][256]);

/* Writes one image (C, H, W bytes) normalised into `dst` (C, H, W floats).
 * With `draw` non-NULL the image is first padded by `pad` (reflect as torch
 * F.pad mode='reflect' -- mirrored without repeating the edge -- or zeros),
 * cropped back to HxW at the drawn offsets and optionally flipped. */
void st_augment_image(const uint8_t *src, int channels, int height, int width,
                      const st_augment_draw *draw, int pad, int reflect,
                      const float table[3][256], float *dst);

#endif
