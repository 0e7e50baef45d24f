/* The C side of the PyTorch parity tests reads one input format: a
 * checkpoint written by tools/load_checkpoint.py (model, weights, masks)
 * plus "batch.images" (F32) and "batch.labels" (I64). */
#ifndef ST_TEST_PARITY_INPUT_H
#define ST_TEST_PARITY_INPUT_H

#include <stdio.h>

#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "models/model.h"

/* Returns 0 with the file, the model built and loaded from it, and the two
 * batch tensors; else prints why and returns 1 (nothing to free). */
static inline int read_parity_input(const char *path, st_safetensors **file, st_model **model,
                                    const st_tensor_entry **images, const st_tensor_entry **labels) {
    st_safetensors *f;
    if (st_safetensors_read(path, &f) != ST_OK) {
        fprintf(stderr, "%s\n", st_last_error());
        return 1;
    }
    char name[64];
    int classes, channels, height, width;
    st_model *m = NULL;
    st_status s = st_checkpoint_describe(f, path, name, sizeof name, &classes, &channels, &height, &width);
    if (s == ST_OK) s = st_model_create(name, classes, channels, height, width, &m);
    if (s == ST_OK) s = st_checkpoint_load_model(f, path, m, "");
    *images = st_safetensors_find(f, "batch.images");
    *labels = st_safetensors_find(f, "batch.labels");
    if (s != ST_OK || !*images || !*labels || (*images)->dtype != ST_DTYPE_F32 || (*labels)->dtype != ST_DTYPE_I64) {
        fprintf(stderr, "parity input invalid: %s\n", s != ST_OK ? st_last_error() : "batch tensors missing or mistyped");
        st_model_free(m);
        st_safetensors_free(f);
        return 1;
    }
    *file = f;
    *model = m;
    return 0;
}

#endif
