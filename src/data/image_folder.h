/* ImageFolder data (ImageNet layout: DIR/train/<class>/(*.JPEG), DIR/val/<class>/(*.JPEG))
 * streamed from disk: the file list is scanned once, images are read and decoded
 * (libjpeg-turbo) by the loader's worker threads one at a time, never held whole.
 *
 * The transforms reproduce torchvision's ImageNet pipeline on PIL images
 * (torchvision.datasets.ImageFolder + transforms), pixel for pixel:
 *   training:   RandomResizedCrop(S, scale 0.08-1, ratio 3/4-4/3, bilinear) + RandomHorizontalFlip
 *   evaluation: Resize(round(S * 256 / 224)) + CenterCrop(S)          (S = 224: Resize(256))
 * then ToTensor + Normalize(ImageNet mean/std). Resizing is Pillow's separable
 * antialiased bilinear filter in its 22-bit fixed point, so for the same decoded
 * image and the same crop parameters the output bytes equal PIL's (the test
 * checks a tolerance of one intensity level). The crop parameters are a pure
 * function of (seed, epoch, position in the epoch) and the image's size, drawn
 * with torchvision's 10-attempt rule and central-crop fallback. */
#ifndef ST_DATA_IMAGE_FOLDER_H
#define ST_DATA_IMAGE_FOLDER_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "sparsetrain.h"

/* Limits that keep one decode bounded whatever a file declares. */
#define ST_IMAGE_MAX_PIXELS (1u << 26)            /* width * height of one image (67 MP, 201 MB as RGB) */
#define ST_IMAGE_MAX_FILE_BYTES ((size_t)128 << 20) /* one image file */
#define ST_JPEG_MAX_WORK_BYTES (256L << 20)        /* libjpeg's own working memory (progressive scans) */
#define ST_IMAGE_FOLDER_MAX_DEPTH 16              /* sub-folder nesting inside a class folder */

/* ---------------------------------------------------------------- decoding */

/* An 8-bit RGB image, (height, width, 3) interleaved; the buffer is reused
 * (grown, never shrunk) across decodes into the same struct. */
typedef struct st_rgb_image {
    int width, height;
    uint8_t *pixels;
    size_t capacity; /* bytes allocated at pixels */
} st_rgb_image;

/*! Decodes a JPEG held in memory into `out` as RGB, as PIL's Image.open(f).convert("RGB"):
 * grayscale is replicated into three channels, CMYK / YCCK (Adobe polarity, as PIL
 * assumes) is converted with PIL's formula. `name` is used in messages.
 * @return ST_OK; ST_ERR_FORMAT for a non-JPEG, corrupt or truncated file, an
 * unsupported colour space or a size above ST_IMAGE_MAX_PIXELS (checked before any
 * pixel memory is taken); ST_ERR_NOMEM. `out` stays valid (and freeable) either way. */
st_status st_jpeg_decode(const uint8_t *data, size_t size, const char *name, st_rgb_image *out);

void st_rgb_image_free(st_rgb_image *img);

/* ------------------------------------------------------------- transforms */

/* A crop of an image (rows top..top+height, columns left..left+width), to be
 * resized to the output size, then mirrored when flip is set. */
typedef struct st_crop {
    int top, left, height, width;
    int flip;
} st_crop;

/* The raw draws behind a RandomResizedCrop, for tests that replay them
 * through torchvision's own get_params. */
typedef struct st_crop_trace {
    int attempts;          /* attempts drawn (1..10); 10 with no success = fallback */
    int fell_back;         /* 1 when the central-crop fallback was used */
    float scale[10];       /* uniform(0.08, 1) of each attempt, as torch's float32 uniform_ */
    float log_ratio[10];   /* uniform(log 3/4, log 4/3) of each attempt */
} st_crop_trace;

/*! torchvision RandomResizedCrop.get_params (scale 0.08-1, ratio 3/4-4/3) plus
 * RandomHorizontalFlip(0.5) for an image of `height` x `width`: a pure function of
 * (seed, epoch, position, height, width). `trace` may be NULL. */
st_crop st_random_resized_crop(uint64_t seed, int64_t epoch, int64_t position, int height, int width,
                               st_crop_trace *trace);

/*! Evaluation geometry: the size Resize gives the shorter side for output size S
 * (round(S * 256 / 224): 256 for 224, 73 for 64). */
int st_eval_resize_size(int size);

/*! Resize(resize) (shorter side to `resize`, longer side int(resize * long / short),
 * as torchvision) then CenterCrop(size): the resized image size and the crop in it. */
void st_eval_geometry(int height, int width, int resize, int size, int *resized_h, int *resized_w, st_crop *crop);

/*! Resizes the region [left, left+w) x [top, top+h) of `src` (RGB, row stride
 * src_width * 3) to out_w x out_h with Pillow's antialiased bilinear filter,
 * horizontal pass first with an 8-bit intermediate, as Image.crop(...).resize(...).
 * `dst` holds out_h * out_w * 3 bytes.
 * @return ST_ERR_NOMEM if the coefficient or intermediate buffers cannot be had. */
st_status st_image_resize_bilinear(const uint8_t *src, int src_width, int top, int left, int h, int w, int out_h,
                                   int out_w, uint8_t *dst);

/*! As st_image_resize_bilinear, computing only the output window rows
 * [win_top, win_top + win_h) x columns [win_left, win_left + win_w) into `dst`
 * (win_h x win_w x 3): the same bytes as resizing whole and cropping, for the
 * cost of the window (Resize + CenterCrop). @return ST_ERR_ARGUMENT for a window
 * outside the output. */
st_status st_image_resize_bilinear_window(const uint8_t *src, int src_width, int top, int left, int h, int w,
                                          int out_h, int out_w, int win_top, int win_left, int win_h, int win_w,
                                          uint8_t *dst);

/* -------------------------------------------------------------- the folder */

typedef struct st_image_folder {
    char *split_dir;        /* DIR/train or DIR/val; owned */
    int num_classes;
    char **class_names;     /* (num_classes), sorted as Python's sorted(); owned */
    int64_t count;          /* images */
    char *names;            /* arena of "<class>/<sub>/<file>" paths relative to split_dir; owned */
    int64_t *name_offset;   /* (count) offset of each image's path in names */
    int32_t *labels;        /* (count) class index of each image */
    int image_size;         /* S: output images are S x S */
    /* Files found unreadable, each reported once (stderr) and skipped in every epoch. */
    pthread_mutex_t bad_lock;
    uint8_t *bad;           /* (count) 1 = unreadable */
    int64_t bad_count;
    int quiet;              /* 1: do not print the skip reports (tests) */
} st_image_folder;

/*! Scans DIR/train (train != 0) or DIR/val: class folders are the sub-folders of
 * the split folder in sorted order (as torchvision's find_classes); images are
 * the files ending in .jpg / .jpeg (any case) anywhere under a class folder, in
 * the order of torchvision's make_dataset (folders by sorted path, files sorted).
 * For the val split the class index is the one of the same name under DIR/train
 * when DIR/train exists (a val class missing from train is an error), so both
 * splits agree even when val lacks a class.
 * Files with the other extensions torchvision accepts (.png, .bmp, ...) cannot be
 * decoded here: they are left out, with one warning naming how many and the first.
 * @return ST_ERR_IO for a missing or unreadable folder; ST_ERR_FORMAT for a split
 * folder without class folders, a class folder without images, or nesting deeper
 * than ST_IMAGE_FOLDER_MAX_DEPTH; ST_ERR_ARGUMENT for an image size outside [8, 4096]. */
st_status st_image_folder_open(const char *dir, int train, int image_size, st_image_folder **out);

/*! Images [start, start + count) of `src` as a new folder (paths, labels and the
 * unreadable marks copied). */
st_status st_image_folder_slice(const st_image_folder *src, int64_t start, int64_t count, st_image_folder **out);

/*! Accepts NULL. */
void st_image_folder_free(st_image_folder *f);

/*! Writes the full path of image `index` into buf (size bytes). @return 0 if it fits. */
int st_image_folder_path(const st_image_folder *f, int64_t index, char *buf, size_t size);

/*! Marks image `index` unreadable; the first time, prints one line naming it
 * and `why` to stderr (unless quiet). Thread safe. */
void st_image_folder_mark_bad(st_image_folder *f, int64_t index, const char *why);

/*! 1 if image `index` was found unreadable before. Thread safe. */
int st_image_folder_is_bad(st_image_folder *f, int64_t index);

/* Per-worker buffers for reading, decoding and transforming one image. */
typedef struct st_image_scratch {
    uint8_t *file;           /* file contents */
    size_t file_capacity;
    st_rgb_image decoded;
    uint8_t *out;            /* (S, S, 3) transformed bytes */
} st_image_scratch;

void st_image_scratch_free(st_image_scratch *s);

/*! Transforms a decoded image into scratch->out (size x size x 3 bytes, before
 * the flip, which the caller applies): with train != 0 the RandomResizedCrop of
 * (seed, epoch, position), otherwise Resize + CenterCrop; the crop used goes to
 * crop_used (may be NULL). `name` is used in messages. */
st_status st_image_transform(const st_rgb_image *img, int size, int train, uint64_t seed, int64_t epoch,
                             int64_t position, const char *name, st_image_scratch *scratch, st_crop *crop_used);

/*! Reads, decodes and transforms image `index` of `f` into scratch->out (S x S x 3
 * bytes) and returns the crop used: with train != 0 the RandomResizedCrop + flip
 * of (seed, epoch, position), otherwise Resize + CenterCrop. Does not consult or
 * set the unreadable marks. @return ST_ERR_IO / ST_ERR_FORMAT naming the file. */
st_status st_image_folder_load(const st_image_folder *f, int64_t index, int train, uint64_t seed, int64_t epoch,
                               int64_t position, st_image_scratch *scratch, st_crop *crop_used);

/*! Reads a whole file into *buf (grown as needed; *capacity tracks it), refusing
 * files larger than max_bytes. @return ST_ERR_IO / ST_ERR_FORMAT naming `path`. */
st_status st_read_file_into(const char *path, size_t max_bytes, uint8_t **buf, size_t *capacity, size_t *size);

#endif
