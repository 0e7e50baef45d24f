/* Opening a data set by name: its format loader (data/catalog.c says which),
 * its usual folders (st_dataset_find_dir) and the catalogue's normalisation. */
#include "data/dataset.h"

#include <stdio.h>
#include <string.h>

#include "core/status.h"
#include "data/catalog.h"
#include "data/image_folder.h"

const char *st_dataset_default_dir(const char *name) {
    const st_dataset_info *info = st_dataset_info_find(name);
    return info ? info->default_dir : NULL;
}

st_status st_dataset_find_dir(const char *name, const char *home, char *out, size_t size) {
    const st_dataset_info *info = st_dataset_info_find(name);
    if (!info) return st_fail(ST_ERR_ARGUMENT, "unknown data set '%s' (expected " ST_DATASET_NAMES ")", name ? name : "");
    const char *debian = info->default_dir;
    if (info->format == ST_DATA_IMAGE_FOLDER) {
        if (strlen(debian) >= size) return st_fail(ST_ERR_ARGUMENT, "data folder name %s is too long", debian);
        snprintf(out, size, "%s", debian); /* imagenet: its one usual folder */
        return ST_OK;
    }
    int cifar = info->format != ST_DATA_IDX, cifar100 = info->format == ST_DATA_CIFAR100;
    const char *raw = strcmp(name, "mnist") == 0 ? "MNIST/raw" : "FashionMNIST/raw";
    char candidates[8][1100];
    int n = 0;
    if (cifar) {
        snprintf(candidates[n++], sizeof candidates[0], "data/%s", name);
        snprintf(candidates[n++], sizeof candidates[0], "data");
        snprintf(candidates[n++], sizeof candidates[0], "_dataset");
    } else {
        snprintf(candidates[n++], sizeof candidates[0], "%s", debian);
        snprintf(candidates[n++], sizeof candidates[0], "data/%s", name);
        snprintf(candidates[n++], sizeof candidates[0], "data/%s", raw);
        snprintf(candidates[n++], sizeof candidates[0], "../data/%s", raw);
    }
    if (home && home[0] && strlen(home) < 1000) {
        snprintf(candidates[n++], sizeof candidates[0], "%s/.torchvision%s%s", home, cifar ? "" : "/", cifar ? "" : raw);
        snprintf(candidates[n++], sizeof candidates[0], "%s/data%s%s", home, cifar ? "" : "/", cifar ? "" : raw);
    }
    for (int i = 0; i < n; i++) {
        int present = cifar ? st_cifar_present(candidates[i], cifar100) : st_idx_present(candidates[i]);
        if (present) {
            if (strlen(candidates[i]) >= size) return st_fail(ST_ERR_ARGUMENT, "data folder name %s is too long", candidates[i]);
            snprintf(out, size, "%s", candidates[i]);
            return ST_OK;
        }
    }
    char list[sizeof candidates + 32] = "";
    for (int i = 0; i < n; i++) {
        size_t used = strlen(list);
        snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "", candidates[i]);
    }
    return st_fail(ST_ERR_IO, "%s: data set not found (looked in %s); give --datadir FOLDER", name, list);
}

/* An ImageFolder split as a streamed data set. */
static st_status image_folder_load(const char *dir, int train, const st_dataset_options *options, st_dataset *out) {
    int size = options && options->image_size > 0 ? options->image_size : 224;
    st_image_folder *f;
    ST_TRY(st_image_folder_open(dir, train, size, &f));
    out->folder = f;
    out->count = f->count;
    out->channels = 3;
    out->height = out->width = size;
    out->num_classes = f->num_classes;
    snprintf(out->name, sizeof out->name, "imagenet");
    return ST_OK;
}

st_status st_dataset_load(const char *name, const char *dir, int train, st_dataset *out) {
    return st_dataset_load_with(name, dir, train, NULL, out);
}

st_status st_dataset_load_with(const char *name, const char *dir, int train, const st_dataset_options *options,
                               st_dataset *out) {
    if (!out) return st_fail(ST_ERR_ARGUMENT, "st_dataset_load: no output dataset given");
    memset(out, 0, sizeof *out);
    if (!name) return st_fail(ST_ERR_ARGUMENT, "st_dataset_load: no data set name given");
    char found[1100];
    if (!dir && st_dataset_default_dir(name)) {
        ST_TRY(st_dataset_find_dir(name, NULL, found, sizeof found));
        dir = found;
    }
    const st_dataset_info *info = st_dataset_info_find(name);
    if (!info) return st_fail(ST_ERR_ARGUMENT, "unknown data set '%s' (expected " ST_DATASET_NAMES ")", name);
    st_status s = ST_OK;
    switch (info->format) {
    case ST_DATA_IDX: s = st_idx_load(name, dir, train, out); break;
    case ST_DATA_CIFAR10: s = st_cifar_load(name, dir, train, 0, out); break;
    case ST_DATA_CIFAR100: s = st_cifar_load(name, dir, train, 1, out); break;
    case ST_DATA_IMAGE_FOLDER: s = image_folder_load(dir, train, options, out); break;
    }
    if (s != ST_OK) {
        st_dataset_free(out);
        return s;
    }
    memcpy(out->mean, info->mean, sizeof out->mean); /* the catalogue's normalisation */
    memcpy(out->std, info->std, sizeof out->std);
    return ST_OK;
}
