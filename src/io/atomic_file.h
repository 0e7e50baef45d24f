/* Crash-safe file replacement: data goes to PATH.tmp.<pid> in the same
 * directory, is flushed to disk, then renamed over PATH, so readers see either
 * the old complete file or the new complete file, never a torn one. */
#ifndef ST_IO_ATOMIC_FILE_H
#define ST_IO_ATOMIC_FILE_H

#include <stddef.h>

#include "sparsetrain.h"

/* A file being written; becomes visible at PATH only on commit. */
typedef struct st_atomic_file st_atomic_file;

/*! Creates (truncating) the temporary file PATH.tmp.<pid>.
 *  @return ST_OK and *out, or ST_ERR_IO naming the path and the errno text
 *  (missing or read-only directory, ...), or ST_ERR_ARGUMENT / ST_ERR_NOMEM. */
st_status st_atomic_file_open(const char *path, st_atomic_file **out);

/*! Appends n bytes. On failure (disk full, ...) the file stays open and the
 *  caller must still call st_atomic_file_abort.
 *  @return ST_OK or ST_ERR_IO naming the path and the errno text. */
st_status st_atomic_file_write(st_atomic_file *f, const void *data, size_t n);

/*! fsyncs and closes the temporary file, renames it over PATH and fsyncs the
 *  directory. Always consumes `f`: on failure the temporary file is removed
 *  and an existing PATH is left untouched.
 *  @return ST_OK or ST_ERR_IO. */
st_status st_atomic_file_commit(st_atomic_file *f);

/*! Closes and removes the temporary file and frees `f`; accepts NULL.
 *  Keeps the thread's current error message. */
void st_atomic_file_abort(st_atomic_file *f);

/*! The whole sequence for one buffer: open, write, commit (abort on failure). */
st_status st_atomic_write_file(const char *path, const void *data, size_t n);

#endif
