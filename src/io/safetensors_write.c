/* safetensors writer (see safetensors.h): validates its entries as the
 * reader (safetensors.c) checks a file, so that whatever it writes reads
 * back; files go through the guarded atomic writer (io/atomic_file.h). */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include "io/safetensors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "io/atomic_file.h"
#include "io/checkpoint.h"
#include "io/json.h"
#include "io/safetensors_internal.h"

static int compare_strings(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Validates the entries and builds the padded header; *data_bytes receives the
 * size of the data region. */
static st_status build_header(const char *target, const st_tensor_entry *tensors, int n_tensors,
                              const st_meta_entry *meta, int n_meta, char **header, size_t *header_length,
                              uint64_t *data_bytes) {
    if (n_tensors < 0 || n_meta < 0 || (n_tensors > 0 && !tensors) || (n_meta > 0 && !meta))
        return st_fail(ST_ERR_ARGUMENT, "writing %s: invalid tensor or metadata list", target);

    size_t n_names = (size_t)n_tensors > (size_t)n_meta ? (size_t)n_tensors : (size_t)n_meta;
    const char **names = st_malloc((n_names ? n_names : 1) * sizeof *names, "name list");
    if (!names) return ST_ERR_NOMEM;
    st_status status = ST_OK;

    for (int i = 0; i < n_meta && status == ST_OK; i++) {
        const st_meta_entry *m = &meta[i];
        if (!m->key || !m->value)
            status = st_fail(ST_ERR_ARGUMENT, "writing %s: metadata entry %d has a NULL key or value", target, i);
        else if (!st_json_utf8_valid(m->key, strlen(m->key)) || !st_json_utf8_valid(m->value, strlen(m->value)))
            status = st_fail(ST_ERR_ARGUMENT, "writing %s: metadata \"%.100s\" is not valid UTF-8", target, m->key);
        names[i] = m->key;
    }
    if (status == ST_OK && n_meta > 1) {
        qsort(names, (size_t)n_meta, sizeof *names, compare_strings);
        for (int i = 1; i < n_meta && status == ST_OK; i++)
            if (strcmp(names[i - 1], names[i]) == 0)
                status = st_fail(ST_ERR_ARGUMENT, "writing %s: duplicate metadata key \"%.100s\"", target, names[i]);
    }

    uint64_t offset = 0;
    for (int i = 0; i < n_tensors && status == ST_OK; i++) {
        const st_tensor_entry *t = &tensors[i];
        size_t itemsize = st_dtype_size(t->dtype);
        int ok;
        if (!t->name || !t->name[0]) {
            status = st_fail(ST_ERR_ARGUMENT, "writing %s: tensor %d has no name", target, i);
            break;
        }
        if (strcmp(t->name, "__metadata__") == 0 || !st_json_utf8_valid(t->name, strlen(t->name))) {
            status = st_fail(ST_ERR_ARGUMENT, "writing %s: invalid tensor name \"%.100s\"", target, t->name);
            break;
        }
        if (!itemsize) {
            status = st_fail(ST_ERR_ARGUMENT, "writing %s: tensor \"%.100s\" has invalid dtype %d", target, t->name,
                             (int)t->dtype);
            break;
        }
        if (t->ndim < 0 || t->ndim > ST_SAFETENSORS_MAX_DIMS) {
            status = st_fail(ST_ERR_ARGUMENT, "writing %s: tensor \"%.100s\" has %d dimensions (0..%d allowed)",
                             target, t->name, t->ndim, ST_SAFETENSORS_MAX_DIMS);
            break;
        }
        uint64_t bytes = st_tensor_bytes(t->shape, t->ndim, itemsize, &ok);
        if (!ok || bytes > (uint64_t)INT64_MAX - offset) {
            status = st_fail(ST_ERR_ARGUMENT, "writing %s: tensor \"%.100s\" has an invalid or too large shape",
                             target, t->name);
            break;
        }
        if (bytes && !t->data) {
            status = st_fail(ST_ERR_ARGUMENT, "writing %s: tensor \"%.100s\" has no data", target, t->name);
            break;
        }
        if (t->dtype == ST_DTYPE_BOOL) {
            const unsigned char *b = t->data;
            for (uint64_t k = 0; k < bytes; k++)
                if (b[k] > 1) {
                    status = st_fail(ST_ERR_ARGUMENT, "writing %s: BOOL tensor \"%.100s\" holds %u at element %llu",
                                     target, t->name, b[k], (unsigned long long)k);
                    break;
                }
            if (status != ST_OK) break;
        }
        offset += bytes;
        names[i] = t->name;
    }
    if (status == ST_OK && n_tensors > 1) {
        qsort(names, (size_t)n_tensors, sizeof *names, compare_strings);
        for (int i = 1; i < n_tensors && status == ST_OK; i++)
            if (strcmp(names[i - 1], names[i]) == 0)
                status = st_fail(ST_ERR_ARGUMENT, "writing %s: duplicate tensor name \"%.100s\"", target, names[i]);
    }
    free(names);
    if (status != ST_OK) return status;

    st_json_builder b;
    st_json_builder_init(&b);
    st_json_append_text(&b, "{");
    int first = 1;
    if (n_meta > 0) {
        st_json_append_text(&b, "\"__metadata__\":{");
        for (int i = 0; i < n_meta; i++) {
            if (i) st_json_append_text(&b, ",");
            st_json_append_string(&b, meta[i].key);
            st_json_append_text(&b, ":");
            st_json_append_string(&b, meta[i].value);
        }
        st_json_append_text(&b, "}");
        first = 0;
    }
    offset = 0;
    for (int i = 0; i < n_tensors; i++) {
        const st_tensor_entry *t = &tensors[i];
        int ok;
        uint64_t bytes = st_tensor_bytes(t->shape, t->ndim, st_dtype_size(t->dtype), &ok);
        if (!first) st_json_append_text(&b, ",");
        first = 0;
        st_json_append_string(&b, t->name);
        st_json_append_text(&b, ":{\"dtype\":\"");
        st_json_append_text(&b, st_dtype_name(t->dtype));
        st_json_append_text(&b, "\",\"shape\":[");
        for (int d = 0; d < t->ndim; d++) {
            if (d) st_json_append_text(&b, ",");
            st_json_append_int(&b, t->shape[d]);
        }
        st_json_append_text(&b, "],\"data_offsets\":[");
        st_json_append_int(&b, (int64_t)offset);
        st_json_append_text(&b, ",");
        st_json_append_int(&b, (int64_t)(offset + bytes));
        st_json_append_text(&b, "]}");
        offset += bytes;
    }
    st_json_append_text(&b, "}");
    /* Pad so that the data region starts 8-byte aligned in the file. */
    while (!b.failed && b.length % 8 != 0) st_json_append_text(&b, " ");
    if (!b.failed && (uint64_t)b.length > ST_SAFETENSORS_MAX_HEADER) {
        st_json_builder_free(&b);
        return st_fail(ST_ERR_ARGUMENT, "writing %s: header of %zu bytes exceeds the format's limit", target,
                       b.length);
    }
    status = st_json_builder_finish(&b, header, header_length);
    if (status != ST_OK) return st_fail_context(status, "writing %s", target);
    *data_bytes = offset;
    return ST_OK;
}

static void put_le64(unsigned char out[8], uint64_t v) {
    for (int i = 0; i < 8; i++) out[i] = (unsigned char)(v >> (8 * i));
}

st_status st_safetensors_write(const char *path, const st_tensor_entry *tensors, int n_tensors,
                               const st_meta_entry *meta, int n_meta) {
    st_file_kind kind = ST_FILE_SAFETENSORS; /* what the file declares itself to be */
    for (int i = 0; meta && i < n_meta; i++)
        if (meta[i].key && meta[i].value && strcmp(meta[i].key, "format") == 0 &&
            strcmp(meta[i].value, ST_CHECKPOINT_FORMAT) == 0)
            kind = ST_FILE_CHECKPOINT;
    return st_safetensors_write_as(path, kind, 0, tensors, n_tensors, meta, n_meta);
}

st_status st_safetensors_write_as(const char *path, st_file_kind kind, int force, const st_tensor_entry *tensors,
                                  int n_tensors, const st_meta_entry *meta, int n_meta) {
    if (!path) return st_fail(ST_ERR_ARGUMENT, "st_safetensors_write: NULL path");
    char *header;
    size_t header_length;
    uint64_t data_bytes;
    ST_TRY(build_header(path, tensors, n_tensors, meta, n_meta, &header, &header_length, &data_bytes));

    st_atomic_file *f;
    st_status status = st_atomic_file_open(path, kind, force, &f);
    if (status != ST_OK) {
        free(header);
        return status;
    }
    unsigned char prefix[8];
    put_le64(prefix, header_length);
    status = st_atomic_file_write(f, prefix, sizeof prefix);
    if (status == ST_OK) status = st_atomic_file_write(f, header, header_length);
    for (int i = 0; i < n_tensors && status == ST_OK; i++) {
        int ok;
        uint64_t bytes = st_tensor_bytes(tensors[i].shape, tensors[i].ndim, st_dtype_size(tensors[i].dtype), &ok);
        if (bytes > SIZE_MAX) {
            status = st_fail(ST_ERR_ARGUMENT, "writing %s: tensor too large for this platform", path);
            break;
        }
        status = st_atomic_file_write(f, tensors[i].data, (size_t)bytes);
    }
    free(header);
    if (status != ST_OK) {
        st_atomic_file_abort(f);
        return status;
    }
    return st_atomic_file_commit(f);
}

st_status st_safetensors_serialize(const st_tensor_entry *tensors, int n_tensors, const st_meta_entry *meta,
                                   int n_meta, void **out, size_t *out_size) {
    if (!out || !out_size) return st_fail(ST_ERR_ARGUMENT, "st_safetensors_serialize: NULL output");
    *out = NULL;
    *out_size = 0;
    char *header;
    size_t header_length;
    uint64_t data_bytes;
    ST_TRY(build_header("safetensors buffer", tensors, n_tensors, meta, n_meta, &header, &header_length,
                        &data_bytes));
    if (data_bytes > SIZE_MAX - 8 - header_length) {
        free(header);
        return st_fail(ST_ERR_NOMEM, "safetensors buffer too large for this platform");
    }
    size_t total = 8 + header_length + (size_t)data_bytes;
    unsigned char *buf = st_malloc(total, "safetensors buffer");
    if (!buf) {
        free(header);
        return ST_ERR_NOMEM;
    }
    put_le64(buf, header_length);
    memcpy(buf + 8, header, header_length);
    free(header);
    size_t at = 8 + header_length;
    for (int i = 0; i < n_tensors; i++) {
        int ok;
        size_t bytes = (size_t)st_tensor_bytes(tensors[i].shape, tensors[i].ndim, st_dtype_size(tensors[i].dtype), &ok);
        if (bytes) memcpy(buf + at, tensors[i].data, bytes);
        at += bytes;
    }
    *out = buf;
    *out_size = total;
    return ST_OK;
}
