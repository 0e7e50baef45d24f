/* Opening a file for reading without surprises: never blocks (a FIFO or a
 * device given as an input is refused, not waited on), never reads a folder,
 * and refuses a file larger than the reader can use before reading a byte.
 * Every reader of user-named files (data, checkpoints, logs, eval results)
 * opens through here. */
#ifndef ST_IO_FILE_READ_H
#define ST_IO_FILE_READ_H

#include <stdint.h>

#include "sparsetrain.h"

/*! Opens `path` read-only (O_NONBLOCK while checking, so that a FIFO cannot
 *  block) and checks it is a regular file of at most max_bytes bytes
 *  (`what`, e.g. "a checkpoint", names the limit in the message).
 *  @return ST_OK with *fd (blocking, close it) and *size; ST_ERR_IO naming
 *  the path (missing, unreadable, a folder, a FIFO or device); ST_ERR_FORMAT
 *  if it is larger than max_bytes. */
st_status st_open_regular(const char *path, uint64_t max_bytes, const char *what, int *fd, uint64_t *size);

#endif
