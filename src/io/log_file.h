/* The training log (`train --log`): JSON lines, one object per epoch, each
 * carrying the run's id ("run_id"). A log is the one output that grows
 * instead of being replaced, so it has its own guard, in the spirit of the
 * atomic writer's (io/atomic_file.h):
 *
 *  - a missing or empty file becomes this run's log;
 *  - a log of this run (its first line's "run_id" is this run's) is appended
 *    to when resuming; a torn last line (a kill or a full disk in the middle
 *    of a write) is cut off first, so the log stays whole JSON lines;
 *  - a log written before logs carried run ids is appended to when resuming;
 *  - a log of another run, or a file of any other kind (a checkpoint, notes),
 *    is refused unless `force`, which replaces it (truncates it);
 *  - a folder, device, FIFO or socket is always refused (never opened in a
 *    way that can block).
 *
 * Every line is written with one write(2) and synced; a failed write (full
 * disk, I/O error) cuts the file back to its last whole line and is reported
 * with the path and the errno text. */
#ifndef ST_IO_LOG_FILE_H
#define ST_IO_LOG_FILE_H

#include <stddef.h>

#include "sparsetrain.h"

typedef struct st_log_file st_log_file;

/*! May this run write its log at `path`? `label` (e.g. "--log") starts the
 *  message; run_id: this run's id; append: the run is resumed; force: --force.
 *  @return ST_OK, or ST_ERR_ARGUMENT naming the file, what it holds and the
 *  way out; ST_ERR_IO if it cannot be examined. */
st_status st_log_check(const char *path, const char *label, const char *run_id, int append, int force);

/*! Checks as st_log_check, then opens (creating, appending or, with force,
 *  truncating) the log. @return ST_OK and *out, or the check's error, or
 *  ST_ERR_IO naming the path and the errno text. */
st_status st_log_open(const char *path, const char *label, const char *run_id, int append, int force,
                      st_log_file **out);

/*! Appends one whole line (`n` bytes, ending in '\n') and syncs it.
 *  @return ST_OK, or ST_ERR_IO naming the log and the cause, the file cut back
 *  to its previous end. */
st_status st_log_append(st_log_file *f, const char *line, size_t n);

/*! Closes the log; accepts NULL. */
void st_log_close(st_log_file *f);

/*! The "run_id" of the first line of the log at `path` into out[0..size)
 *  ("" when the file is missing, not a log, or its first line has none).
 *  Reads at most the first 64 KiB. */
void st_log_run_id(const char *path, char *out, size_t size);

#endif
