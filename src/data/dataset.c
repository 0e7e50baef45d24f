/* st_dataset: slicing (for --valid_split) and freeing. Opening one by name
 * is dataset_load.c; the file readers the format loaders share are
 * data_files.c. */
#include "data/dataset.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "data/image_folder.h"

st_status st_dataset_slice(const st_dataset *src, int64_t start, int64_t count, st_dataset *out) {
    if (!src || !out) return st_fail(ST_ERR_ARGUMENT, "st_dataset_slice: NULL dataset");
    memset(out, 0, sizeof *out);
    if (start < 0 || count < 0 || start > src->count || count > src->count - start)
        return st_fail(ST_ERR_ARGUMENT, "%s: slice [%lld, %lld) is outside the %lld images",
                       src->name, (long long)start, (long long)(start + count), (long long)src->count);
    st_dataset d = *src;
    if (src->folder) { /* streamed: slice the file list */
        d.count = count;
        ST_TRY(st_image_folder_slice(src->folder, start, count, &d.folder));
        *out = d;
        return ST_OK;
    }
    size_t image_bytes = (size_t)src->channels * (size_t)src->height * (size_t)src->width;
    d.count = count;
    d.pixels = st_malloc((size_t)count * image_bytes, "dataset slice pixels");
    d.labels = st_malloc((size_t)count * sizeof(int32_t), "dataset slice labels");
    if (!d.pixels || !d.labels) {
        free(d.pixels);
        free(d.labels);
        return ST_ERR_NOMEM;
    }
    if (count > 0) {
        memcpy(d.pixels, src->pixels + (size_t)start * image_bytes, (size_t)count * image_bytes);
        memcpy(d.labels, src->labels + start, (size_t)count * sizeof(int32_t));
    }
    *out = d;
    return ST_OK;
}

void st_dataset_free(st_dataset *d) {
    if (!d) return;
    free(d->pixels);
    free(d->labels);
    st_image_folder_free(d->folder);
    memset(d, 0, sizeof *d);
}
