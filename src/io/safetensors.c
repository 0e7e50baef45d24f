/* safetensors dtypes and reader (see safetensors.h; the writer is
 * safetensors_write.c). The reader trusts nothing: every length, offset and
 * shape is checked against the file before any pointer is formed. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include "io/safetensors.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/status.h"
#include "io/file_read.h"
#include "io/checkpoint.h"
#include "io/atomic_file.h"
#include "io/json.h"
#include "io/safetensors_internal.h"

static const struct {
    st_dtype dtype;
    const char *name;
    size_t size;
} st_dtype_table[] = {
    {ST_DTYPE_F32, "F32", 4}, {ST_DTYPE_F64, "F64", 8}, {ST_DTYPE_F16, "F16", 2},
    {ST_DTYPE_BF16, "BF16", 2}, {ST_DTYPE_I64, "I64", 8}, {ST_DTYPE_I32, "I32", 4},
    {ST_DTYPE_I16, "I16", 2}, {ST_DTYPE_I8, "I8", 1}, {ST_DTYPE_U8, "U8", 1},
    {ST_DTYPE_BOOL, "BOOL", 1},
};
#define ST_DTYPE_COUNT ((int)(sizeof st_dtype_table / sizeof st_dtype_table[0]))

const char *st_dtype_name(st_dtype dtype) {
    for (int i = 0; i < ST_DTYPE_COUNT; i++)
        if (st_dtype_table[i].dtype == dtype) return st_dtype_table[i].name;
    return NULL;
}

size_t st_dtype_size(st_dtype dtype) {
    for (int i = 0; i < ST_DTYPE_COUNT; i++)
        if (st_dtype_table[i].dtype == dtype) return st_dtype_table[i].size;
    return 0;
}

int st_dtype_from_name(const char *name, st_dtype *out) {
    for (int i = 0; i < ST_DTYPE_COUNT; i++)
        if (name && strcmp(st_dtype_table[i].name, name) == 0) {
            *out = st_dtype_table[i].dtype;
            return 1;
        }
    return 0;
}

int64_t st_tensor_numel(const st_tensor_entry *t) {
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= t->shape[d];
    return n;
}

/* (safetensors_internal.h) */
uint64_t st_tensor_bytes(const int64_t *shape, int ndim, size_t itemsize, int *ok) {
    uint64_t bytes = itemsize;
    int zero = 0;
    *ok = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0) {
            *ok = 0;
            return 0;
        }
        if (shape[d] == 0) zero = 1;
    }
    if (zero) return 0;
    for (int d = 0; d < ndim; d++) {
        uint64_t dim = (uint64_t)shape[d];
        if (bytes > UINT64_MAX / dim || bytes * dim > (uint64_t)INT64_MAX) {
            *ok = 0;
            return 0;
        }
        bytes *= dim;
    }
    return bytes;
}

/* ---- reader ------------------------------------------------------------------- */

static uint64_t get_le64(const unsigned char in[8]) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | in[i];
    return v;
}

struct st_safetensors {
    unsigned char *bytes;          /* the whole file */
    size_t size;
    st_json_document *header;      /* owns names, metadata keys and values */
    st_tensor_entry *tensors;      /* in data order */
    int n_tensors;
    const st_tensor_entry **by_name;   /* sorted by name, for st_safetensors_find */
    st_meta_entry *meta;
    int n_meta;
    void **copies;                 /* aligned copies of tensors whose offset was misaligned */
    int n_copies;
};

typedef struct parsed_tensor {
    uint64_t begin, end;
    int header_index;
} parsed_tensor;

static int compare_by_offset(const void *a, const void *b) {
    const parsed_tensor *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return (x->header_index > y->header_index) - (x->header_index < y->header_index);
}

static int compare_entries_by_name(const void *a, const void *b) {
    return strcmp((*(const st_tensor_entry *const *)a)->name, (*(const st_tensor_entry *const *)b)->name);
}

/* A non-negative JSON integer, or -1 if `v` is anything else. */
static int64_t json_nonnegative_int(const st_json_value *v) {
    if (!v || v->type != ST_JSON_NUMBER || !v->is_int64 || v->int64 < 0) return -1;
    return v->int64;
}

static st_status parse_metadata(const char *src, const st_json_value *m, st_safetensors *f) {
    if (m->type != ST_JSON_OBJECT)
        return st_fail(ST_ERR_FORMAT, "%s: __metadata__ is a %s, expected an object of strings", src,
                       st_json_type_name(m->type));
    if (m->count > (size_t)INT32_MAX) return st_fail(ST_ERR_FORMAT, "%s: too many metadata entries", src);
    f->meta = st_calloc(m->count ? m->count : 1, sizeof *f->meta, "safetensors metadata");
    if (!f->meta) return ST_ERR_NOMEM;
    for (const st_json_value *e = m->first_child; e; e = e->next) {
        if (e->type != ST_JSON_STRING)
            return st_fail(ST_ERR_FORMAT, "%s: metadata \"%.100s\" is a %s, expected a string", src, e->key,
                           st_json_type_name(e->type));
        if (strlen(e->key) != e->key_length || strlen(e->string) != e->string_length)
            return st_fail(ST_ERR_FORMAT, "%s: metadata \"%.100s\" contains a NUL character", src, e->key);
        f->meta[f->n_meta].key = e->key;
        f->meta[f->n_meta].value = e->string;
        f->n_meta++;
    }
    return ST_OK;
}

static st_status parse_tensor_info(const char *src, const st_json_value *e, st_tensor_entry *t,
                                   parsed_tensor *pt) {
    const char *name = e->key;
    if (e->key_length == 0) return st_fail(ST_ERR_FORMAT, "%s: a tensor has an empty name", src);
    if (strlen(name) != e->key_length)
        return st_fail(ST_ERR_FORMAT, "%s: tensor name \"%.100s...\" contains a NUL character", src, name);
    if (e->type != ST_JSON_OBJECT)
        return st_fail(ST_ERR_FORMAT, "%s: tensor \"%.100s\" is described by a %s, expected an object", src, name,
                       st_json_type_name(e->type));
    const st_json_value *dtype = NULL, *shape = NULL, *offsets = NULL;
    for (const st_json_value *k = e->first_child; k; k = k->next) {
        if (strcmp(k->key, "dtype") == 0 && k->key_length == 5)
            dtype = k;
        else if (strcmp(k->key, "shape") == 0 && k->key_length == 5)
            shape = k;
        else if (strcmp(k->key, "data_offsets") == 0 && k->key_length == 12)
            offsets = k;
        else
            return st_fail(ST_ERR_FORMAT, "%s: tensor \"%.100s\" has unknown field \"%.100s\"", src, name, k->key);
    }
    if (!dtype || !shape || !offsets)
        return st_fail(ST_ERR_FORMAT, "%s: tensor \"%.100s\" lacks \"%s\"", src, name,
                       !dtype ? "dtype" : !shape ? "shape" : "data_offsets");
    if (dtype->type != ST_JSON_STRING || !st_dtype_from_name(dtype->string, &t->dtype))
        return st_fail(ST_ERR_FORMAT, "%s: tensor \"%.100s\" has unsupported dtype %s%.20s%s", src, name,
                       dtype->type == ST_JSON_STRING ? "\"" : "(a ",
                       dtype->type == ST_JSON_STRING ? dtype->string : st_json_type_name(dtype->type),
                       dtype->type == ST_JSON_STRING ? "\"" : ")");
    if (shape->type != ST_JSON_ARRAY || shape->count > ST_SAFETENSORS_MAX_DIMS)
        return st_fail(ST_ERR_FORMAT, "%s: tensor \"%.100s\": shape must be an array of at most %d integers", src,
                       name, ST_SAFETENSORS_MAX_DIMS);
    t->name = name;
    t->ndim = (int)shape->count;
    int d = 0;
    for (const st_json_value *s = shape->first_child; s; s = s->next, d++) {
        t->shape[d] = json_nonnegative_int(s);
        if (t->shape[d] < 0)
            return st_fail(ST_ERR_FORMAT, "%s: tensor \"%.100s\": dimension %d is not a non-negative integer", src,
                           name, d);
    }
    int64_t begin = -1, end = -1;
    if (offsets->type == ST_JSON_ARRAY && offsets->count == 2) {
        begin = json_nonnegative_int(offsets->first_child);
        end = json_nonnegative_int(offsets->first_child->next);
    }
    if (begin < 0 || end < 0 || end < begin)
        return st_fail(ST_ERR_FORMAT, "%s: tensor \"%.100s\": data_offsets must be [begin, end] with 0 <= begin <= end",
                       src, name);
    int ok;
    uint64_t bytes = st_tensor_bytes(t->shape, t->ndim, st_dtype_size(t->dtype), &ok);
    if (!ok) return st_fail(ST_ERR_FORMAT, "%s: tensor \"%.100s\": shape too large", src, name);
    if (bytes != (uint64_t)(end - begin))
        return st_fail(ST_ERR_FORMAT,
                       "%s: tensor \"%.100s\": shape needs %llu bytes of %s but data_offsets [%lld, %lld] span %llu",
                       src, name, (unsigned long long)bytes, st_dtype_name(t->dtype), (long long)begin,
                       (long long)end, (unsigned long long)(end - begin));
    pt->begin = (uint64_t)begin;
    pt->end = (uint64_t)end;
    return ST_OK;
}

/* Validates `bytes` (ownership passes to f) and fills f. */
static st_status parse_file(const char *src, st_safetensors *f) {
    if (f->size < 8)
        return st_fail(ST_ERR_FORMAT, "%s: truncated: %zu bytes, too short for the 8-byte header length", src,
                       f->size);
    uint64_t n = get_le64(f->bytes);
    if (n > ST_SAFETENSORS_MAX_HEADER)
        return st_fail(ST_ERR_FORMAT, "%s: header length %llu exceeds the limit of %llu bytes (corrupt file?)", src,
                       (unsigned long long)n, (unsigned long long)ST_SAFETENSORS_MAX_HEADER);
    if (n > f->size - 8)
        return st_fail(ST_ERR_FORMAT, "%s: truncated: header length %llu but only %zu bytes follow it", src,
                       (unsigned long long)n, f->size - 8);
    if (n < 2 || f->bytes[8] != '{')
        return st_fail(ST_ERR_FORMAT, "%s: header does not start with '{' (not a safetensors file?)", src);

    char header_source[512];
    snprintf(header_source, sizeof header_source, "%s: header", src);
    st_json_limits limits = st_json_default_limits();
    limits.max_bytes = (size_t)ST_SAFETENSORS_MAX_HEADER;
    limits.max_depth = 8;
    limits.max_values = (size_t)1 << 20;   /* ~11 values per tensor: ample, and bounds memory to ~100 MB */
    ST_TRY(st_json_parse((const char *)f->bytes + 8, (size_t)n, header_source, &limits, &f->header));
    const st_json_value *root = st_json_root(f->header);
    if (root->type != ST_JSON_OBJECT) return st_fail(ST_ERR_FORMAT, "%s: header is not a JSON object", src);

    const st_json_value *meta = st_json_object_get(root, "__metadata__");
    size_t n_tensors = root->count - (meta ? 1 : 0);
    if (n_tensors > (size_t)INT32_MAX) return st_fail(ST_ERR_FORMAT, "%s: too many tensors", src);
    if (meta) ST_TRY(parse_metadata(src, meta, f));

    st_tensor_entry *entries = st_calloc(n_tensors ? n_tensors : 1, sizeof *entries, "safetensors tensor list");
    parsed_tensor *order = st_calloc(n_tensors ? n_tensors : 1, sizeof *order, "safetensors tensor list");
    f->tensors = st_calloc(n_tensors ? n_tensors : 1, sizeof *f->tensors, "safetensors tensor list");
    f->by_name = st_calloc(n_tensors ? n_tensors : 1, sizeof *f->by_name, "safetensors name index");
    f->copies = st_calloc(n_tensors ? n_tensors : 1, sizeof *f->copies, "safetensors tensor list");
    st_status status = (entries && order && f->tensors && f->by_name && f->copies) ? ST_OK : ST_ERR_NOMEM;

    int count = 0;
    for (const st_json_value *e = root->first_child; e && status == ST_OK; e = e->next) {
        if (e == meta) continue;
        order[count].header_index = count;
        status = parse_tensor_info(src, e, &entries[count], &order[count]);
        count++;
    }
    if (status == ST_OK) {
        /* The tensors must tile the data region exactly, in offset order. */
        uint64_t data_size = (uint64_t)(f->size - 8 - n);
        const unsigned char *data = f->bytes + 8 + n;
        qsort(order, n_tensors, sizeof *order, compare_by_offset);
        uint64_t expected = 0;
        for (size_t i = 0; i < n_tensors && status == ST_OK; i++) {
            const st_tensor_entry *src_entry = &entries[order[i].header_index];
            if (order[i].begin != expected) {
                status = st_fail(ST_ERR_FORMAT,
                                 "%s: tensor \"%.100s\" starts at data offset %llu, expected %llu (%s)", src,
                                 src_entry->name, (unsigned long long)order[i].begin, (unsigned long long)expected,
                                 order[i].begin < expected ? "overlaps the previous tensor" : "hole in the data");
                break;
            }
            if (order[i].end > data_size) {
                status = st_fail(ST_ERR_FORMAT,
                                 "%s: truncated: tensor \"%.100s\" ends at data offset %llu but the data region "
                                 "has only %llu bytes",
                                 src, src_entry->name, (unsigned long long)order[i].end,
                                 (unsigned long long)data_size);
                break;
            }
            expected = order[i].end;
            st_tensor_entry *t = &f->tensors[i];
            *t = *src_entry;
            size_t bytes = (size_t)(order[i].end - order[i].begin);
            size_t itemsize = st_dtype_size(t->dtype);
            const unsigned char *p = data + order[i].begin;
            if (bytes == 0) {
                t->data = NULL;
            } else if ((uintptr_t)p % itemsize != 0) {
                void *copy = st_malloc(bytes, "aligned tensor copy");
                if (!copy) {
                    status = ST_ERR_NOMEM;
                    break;
                }
                memcpy(copy, p, bytes);
                f->copies[f->n_copies++] = copy;
                t->data = copy;
            } else {
                t->data = p;
            }
            if (t->dtype == ST_DTYPE_BOOL) {
                for (size_t k = 0; k < bytes; k++)
                    if (p[k] > 1) {
                        status = st_fail(ST_ERR_FORMAT, "%s: BOOL tensor \"%.100s\" holds byte %u at element %zu",
                                         src, t->name, p[k], k);
                        break;
                    }
            }
            f->by_name[i] = t;
        }
        if (status == ST_OK && expected != data_size)
            status = st_fail(ST_ERR_FORMAT, "%s: %llu bytes after the last tensor (file longer than its header says)",
                             src, (unsigned long long)(data_size - expected));
        if (status == ST_OK) {
            f->n_tensors = (int)n_tensors;
            qsort(f->by_name, n_tensors, sizeof *f->by_name, compare_entries_by_name);
        }
    }
    free(entries);
    free(order);
    return status;
}

static st_status finish_read(const char *src, st_safetensors *f, st_safetensors **out) {
    st_status status = parse_file(src, f);
    if (status != ST_OK) {
        if (status == ST_ERR_NOMEM) st_fail_context(status, "reading %s", src);
        st_safetensors_free(f);
        return status;
    }
    *out = f;
    return ST_OK;
}

st_status st_safetensors_read_memory(const void *bytes, size_t size, const char *source_name,
                                     st_safetensors **out) {
    if (!out) return st_fail(ST_ERR_ARGUMENT, "st_safetensors_read_memory: NULL output");
    *out = NULL;
    if (!source_name) source_name = "safetensors buffer";
    if (!bytes && size) return st_fail(ST_ERR_ARGUMENT, "%s: NULL buffer", source_name);
    st_safetensors *f = st_calloc(1, sizeof *f, "safetensors file");
    if (!f) return ST_ERR_NOMEM;
    f->bytes = st_malloc(size, "safetensors file contents");
    if (!f->bytes) {
        free(f);
        return ST_ERR_NOMEM;
    }
    if (size) memcpy(f->bytes, bytes, size);
    f->size = size;
    return finish_read(source_name, f, out);
}

st_status st_safetensors_read(const char *path, st_safetensors **out) {
    if (!out) return st_fail(ST_ERR_ARGUMENT, "st_safetensors_read: NULL output");
    *out = NULL;
    if (!path) return st_fail(ST_ERR_ARGUMENT, "st_safetensors_read: NULL path");
    int fd;
    uint64_t file_size;
    /* never blocks on a FIFO; a file beyond any checkpoint is refused before it is read */
    ST_TRY(st_open_regular(path, ST_SAFETENSORS_MAX_FILE, "a safetensors file here", &fd, &file_size));
    FILE *fp = fdopen(fd, "rb");
    if (!fp) {
        int err = errno;
        close(fd);
        return st_fail(ST_ERR_IO, "cannot read %s: %s", path, strerror(err));
    }
    struct stat info;
    info.st_size = (off_t)file_size;
    if ((uintmax_t)info.st_size > (uintmax_t)(SIZE_MAX / 2)) {
        fclose(fp);
        return st_fail(ST_ERR_NOMEM, "cannot read %s: file too large for this platform", path);
    }
    st_safetensors *f = st_calloc(1, sizeof *f, "safetensors file");
    if (!f) {
        fclose(fp);
        return ST_ERR_NOMEM;
    }
    f->size = (size_t)info.st_size;
    f->bytes = st_malloc(f->size, "safetensors file contents");
    if (!f->bytes) {
        fclose(fp);
        free(f);
        return st_fail_context(ST_ERR_NOMEM, "reading %s", path);
    }
    size_t got = fread(f->bytes, 1, f->size, fp);
    int read_error = ferror(fp);
    int err = errno;
    fclose(fp);
    if (read_error) {
        st_safetensors_free(f);
        return st_fail(ST_ERR_IO, "error reading %s: %s", path, strerror(err));
    }
    if (got != f->size) {
        st_safetensors_free(f);
        return st_fail(ST_ERR_IO, "%s shrank while being read (%zu of %zu bytes)", path, got, (size_t)info.st_size);
    }
    return finish_read(path, f, out);
}

int st_safetensors_count(const st_safetensors *f) { return f ? f->n_tensors : 0; }

const st_tensor_entry *st_safetensors_get(const st_safetensors *f, int i) {
    if (!f || i < 0 || i >= f->n_tensors) return NULL;
    return &f->tensors[i];
}

const st_tensor_entry *st_safetensors_find(const st_safetensors *f, const char *name) {
    if (!f || !name || f->n_tensors == 0) return NULL;
    size_t lo = 0, hi = (size_t)f->n_tensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(f->by_name[mid]->name, name);
        if (c == 0) return f->by_name[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const char *st_safetensors_meta(const st_safetensors *f, const char *key) {
    if (!f || !key) return NULL;
    for (int i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta[i].key, key) == 0) return f->meta[i].value;
    return NULL;
}

int st_safetensors_meta_count(const st_safetensors *f) { return f ? f->n_meta : 0; }

const st_meta_entry *st_safetensors_meta_get(const st_safetensors *f, int i) {
    if (!f || i < 0 || i >= f->n_meta) return NULL;
    return &f->meta[i];
}

void st_safetensors_free(st_safetensors *f) {
    if (!f) return;
    for (int i = 0; i < f->n_copies; i++) free(f->copies[i]);
    free(f->copies);
    free(f->by_name);
    free(f->tensors);
    free(f->meta);
    st_json_free(f->header);
    free(f->bytes);
    free(f);
}
