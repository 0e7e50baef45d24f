/* Reader and writer of the safetensors format (the file format of checkpoints):
 *   u64 little-endian N | N bytes of JSON header (UTF-8, space padded) | data
 * header = {"__metadata__": {"key": "value", ...}, "name": {"dtype": "F32",
 *   "shape": [..], "data_offsets": [begin, end]}, ...}; offsets are relative to
 * the data region, which the tensors tile exactly (no holes, no overlaps).
 * Data is little-endian, row-major. Files are read whole and fully validated. */
#ifndef ST_IO_SAFETENSORS_H
#define ST_IO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "io/atomic_file.h"
#include "sparsetrain.h"

typedef enum st_dtype {
    ST_DTYPE_F32,
    ST_DTYPE_F64,
    ST_DTYPE_F16,
    ST_DTYPE_BF16,
    ST_DTYPE_I64,
    ST_DTYPE_I32,
    ST_DTYPE_I16,
    ST_DTYPE_I8,
    ST_DTYPE_U8,
    ST_DTYPE_BOOL   /* one byte per element, 0 or 1 */
} st_dtype;

enum { ST_SAFETENSORS_MAX_DIMS = 8 };

/* Largest header accepted (as the reference implementation: 100 MB). */
#define ST_SAFETENSORS_MAX_HEADER ((uint64_t)100000000)
/* Largest file st_safetensors_read accepts (it reads files whole): 4 GiB,
 * ten times the checkpoint of the largest model here (VGG-19 with its
 * best-on-validation copy, optimiser state and masks, about 0.3 GB). */
#define ST_SAFETENSORS_MAX_FILE ((uint64_t)4 << 30)

/*! @return the safetensors name ("F32", "BOOL", ...) of a dtype, or NULL if invalid. */
const char *st_dtype_name(st_dtype dtype);
/*! @return bytes per element (0 for an invalid dtype). */
size_t st_dtype_size(st_dtype dtype);
/*! Looks a safetensors dtype name up. @return 1 and *out if known, else 0. */
int st_dtype_from_name(const char *name, st_dtype *out);

/* One tensor. When writing, the caller owns every pointer. When reading,
 * they point into the st_safetensors handle and live until it is freed; `data`
 * is aligned for its dtype (NULL only for a tensor of zero elements). */
typedef struct st_tensor_entry {
    const char *name;
    st_dtype dtype;
    int ndim;                                  /* 0 (a scalar) .. ST_SAFETENSORS_MAX_DIMS */
    int64_t shape[ST_SAFETENSORS_MAX_DIMS];
    const void *data;                          /* numel * dtype size bytes, little-endian */
} st_tensor_entry;

typedef struct st_meta_entry {
    const char *key;
    const char *value;
} st_meta_entry;

/*! @return number of elements (product of the shape; 1 for a scalar). */
int64_t st_tensor_numel(const st_tensor_entry *t);

/*! Writes tensors (laid out in the given order) and string metadata to
 *  `path` atomically: PATH.tmp.<pid> in the same directory, fsync, rename over
 *  PATH, fsync the directory. On any failure the temporary file is removed, an
 *  existing PATH is untouched, and the message names the path and the errno
 *  text (e.g. "No space left on device"). Names must be unique, non-empty,
 *  valid UTF-8 and not "__metadata__"; metadata keys unique; `meta` may be
 *  NULL when n_meta is 0 (then no __metadata__ is written).
 *  The output guard (io/atomic_file.h) treats the file as a checkpoint when
 *  its metadata "format" says so, else as a plain safetensors file: it
 *  replaces a missing or empty file or one of the same kind, nothing else.
 *  @return ST_OK, ST_ERR_ARGUMENT (bad entry, or refused by the guard),
 *  ST_ERR_IO or ST_ERR_NOMEM. */
st_status st_safetensors_write(const char *path, const st_tensor_entry *tensors, int n_tensors,
                               const st_meta_entry *meta, int n_meta);

/*! As st_safetensors_write, for a file of the given kind (ST_FILE_CHECKPOINT
 *  for checkpoints); `force` lets it replace a file of another kind. */
st_status st_safetensors_write_as(const char *path, st_file_kind kind, int force, const st_tensor_entry *tensors,
                                  int n_tensors, const st_meta_entry *meta, int n_meta);

/*! Serialises the same bytes st_safetensors_write would write into a new
 *  malloc'd buffer (*out, *out_size; free() it). For tests and pipes. */
st_status st_safetensors_serialize(const st_tensor_entry *tensors, int n_tensors, const st_meta_entry *meta,
                                   int n_meta, void **out, size_t *out_size);

/* A loaded file; owns all names, values and data. */
typedef struct st_safetensors st_safetensors;

/*! Reads and validates a whole file: header length against the file size,
 *  JSON syntax and UTF-8, header structure, dtype names, shapes (at most 8
 *  dims), shape x itemsize == offset span, offsets tiling the data region
 *  exactly, unique names, BOOL bytes being 0/1.
 *  @return ST_OK and *out (free with st_safetensors_free); ST_ERR_IO if the
 *  file cannot be opened or read; ST_ERR_FORMAT naming the file and the
 *  problem if it is truncated or corrupt; ST_ERR_NOMEM. */
st_status st_safetensors_read(const char *path, st_safetensors **out);

/*! The same validation on bytes in memory (copied); `source_name` starts
 *  every message. */
st_status st_safetensors_read_memory(const void *bytes, size_t size, const char *source_name,
                                     st_safetensors **out);

/*! @return number of tensors. */
int st_safetensors_count(const st_safetensors *f);
/*! @return tensor i (0 <= i < count) in data order (order of begin offsets;
 *  for files written by st_safetensors_write, the order they were given), or NULL. */
const st_tensor_entry *st_safetensors_get(const st_safetensors *f, int i);
/*! @return the tensor called `name`, or NULL if absent. */
const st_tensor_entry *st_safetensors_find(const st_safetensors *f, const char *name);
/*! @return the metadata value for `key`, or NULL if absent. */
const char *st_safetensors_meta(const st_safetensors *f, const char *key);
/*! @return number of metadata entries. */
int st_safetensors_meta_count(const st_safetensors *f);
/*! @return metadata entry i in header order, or NULL. */
const st_meta_entry *st_safetensors_meta_get(const st_safetensors *f, int i);
/*! Frees a loaded file; accepts NULL. */
void st_safetensors_free(st_safetensors *f);

#endif
