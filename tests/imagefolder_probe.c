/* Test helper for tests/imagefolder_test.py: exposes the ImageFolder scan,
 * one image's transform (with the RandomResizedCrop draws behind it) and the
 * loader's batches, so that Python can compare them with torchvision's.
 *   imagefolder_probe list DIR train|val
 *       prints "classes N", the class names, then "LABEL<TAB>RELATIVE_PATH" per image
 *   imagefolder_probe image DIR train|val INDEX SIZE TRAIN SEED EPOCH POSITION OUT
 *       writes the transformed SIZE x SIZE x 3 bytes (before flip) to OUT and prints the
 *       crop "top left height width flip" and, for TRAIN=1, the draws
 *       "attempts A fallback F" and "draw SCALE LOG_RATIO" per attempt (%.9g: exact floats)
 *   imagefolder_probe batches DIR train|val SIZE BATCH WORKERS SEED EPOCH AUGMENT SHUFFLE OUT
 *       writes every batch of the epoch (float32 images, then int32 labels) to OUT and
 *       prints "batch COUNT" per batch and "skipped N" */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "data/dataset.h"
#include "data/image_folder.h"

static int fail(void) {
    fprintf(stderr, "imagefolder_probe: %s\n", st_last_error());
    return 1;
}

static int split_is_train(const char *s) { return strcmp(s, "train") == 0; }

int main(int argc, char **argv) {
    if (argc >= 4 && strcmp(argv[1], "list") == 0) {
        st_image_folder *f;
        if (st_image_folder_open(argv[2], split_is_train(argv[3]), 224, &f) != ST_OK) return fail();
        printf("classes %d\n", f->num_classes);
        for (int c = 0; c < f->num_classes; c++) printf("%s\n", f->class_names[c]);
        for (int64_t i = 0; i < f->count; i++) printf("%d\t%s\n", f->labels[i], f->names + f->name_offset[i]);
        st_image_folder_free(f);
        return 0;
    }
    if (argc >= 11 && strcmp(argv[1], "image") == 0) {
        int size = atoi(argv[5]), train = atoi(argv[6]);
        st_image_folder *f;
        if (st_image_folder_open(argv[2], split_is_train(argv[3]), size, &f) != ST_OK) return fail();
        int64_t index = atoll(argv[4]);
        uint64_t seed = strtoull(argv[7], NULL, 10);
        int64_t epoch = atoll(argv[8]), position = atoll(argv[9]);
        st_image_scratch scratch = {0};
        st_crop crop;
        st_status s = index >= 0 && index < f->count
                          ? st_image_folder_load(f, index, train, seed, epoch, position, &scratch, &crop)
                          : st_fail(ST_ERR_ARGUMENT, "index out of range");
        if (s == ST_OK) {
            printf("crop %d %d %d %d %d\n", crop.top, crop.left, crop.height, crop.width, crop.flip);
            if (train) {
                st_crop_trace trace;
                st_random_resized_crop(seed, epoch, position, scratch.decoded.height, scratch.decoded.width, &trace);
                printf("attempts %d fallback %d\n", trace.attempts, trace.fell_back);
                for (int a = 0; a < trace.attempts; a++) printf("draw %.9g %.9g\n", trace.scale[a], trace.log_ratio[a]);
            }
            FILE *o = fopen(argv[10], "wb");
            if (!o || fwrite(scratch.out, 1, (size_t)size * size * 3, o) != (size_t)size * size * 3) s = ST_ERR_IO;
            if (o) fclose(o);
        }
        st_image_scratch_free(&scratch);
        st_image_folder_free(f);
        return s == ST_OK ? 0 : fail();
    }
    if (argc >= 12 && strcmp(argv[1], "batches") == 0) {
        st_dataset_options opt = {.image_size = atoi(argv[4])};
        st_dataset d;
        if (st_dataset_load_with("imagenet", argv[2], split_is_train(argv[3]), &opt, &d) != ST_OK) return fail();
        st_loader_options lo = {.batch_size = atoi(argv[5]),
                                .workers = atoi(argv[6]),
                                .seed = strtoull(argv[7], NULL, 10),
                                .augment = atoi(argv[9]),
                                .shuffle = atoi(argv[10])};
        st_loader *l = NULL;
        FILE *o = fopen(argv[11], "wb");
        st_status s = o ? st_loader_create(&d, &lo, &l) : st_fail(ST_ERR_IO, "cannot write %s", argv[11]);
        if (s == ST_OK) s = st_loader_start_epoch(l, atoll(argv[8]));
        size_t image = (size_t)3 * d.height * d.width;
        while (s == ST_OK) {
            st_batch b;
            s = st_loader_next(l, &b);
            if (s != ST_OK || b.count == 0) break;
            printf("batch %d\n", b.count);
            fwrite(b.images, sizeof(float), image * (size_t)b.count, o);
            fwrite(b.labels, sizeof(int32_t), (size_t)b.count, o);
        }
        if (s == ST_OK) printf("skipped %lld\n", (long long)d.folder->bad_count);
        st_loader_free(l);
        if (o) fclose(o);
        st_dataset_free(&d);
        return s == ST_OK ? 0 : fail();
    }
    fprintf(stderr, "usage: imagefolder_probe list|image|batches ... (see the source)\n");
    return 2;
}
