/* Which run a checkpoint belongs to, so that `train --save PATH` never
 * overwrites the checkpoint of a different run by accident.
 *
 * A run is one training job from its first epoch to its last, across any
 * number of --resume invocations. A fresh run (no --resume) draws a random
 * 128-bit run id; --resume carries the id of the checkpoint it continues.
 * Every checkpoint stores it as metadata "run_id". --save PATH is allowed when
 * PATH does not exist, when PATH holds a checkpoint with the same run id, when
 * PATH is the very file given to --resume (also for checkpoints written
 * before run ids existed), or with --force. */
#ifndef ST_TRAIN_RUN_GUARD_H
#define ST_TRAIN_RUN_GUARD_H

#include "sparsetrain.h"

#define ST_RUN_ID_CHARS 32 /* lowercase hex digits */

/*! Writes a new random run id (ST_RUN_ID_CHARS hex digits + NUL) to `out`,
 *  from /dev/urandom (falling back to the clock and the process id). */
void st_run_id_new(char out[ST_RUN_ID_CHARS + 1]);

/*! @return 1 if `id` is ST_RUN_ID_CHARS lowercase hex digits. */
int st_run_id_valid(const char *id);

/*! Checks that this run may write its checkpoint to `save`.
 *  run_id: this run's id; resume: the --resume path ("" if none); force: --force.
 *  @return ST_OK; ST_ERR_ARGUMENT with a message naming the file, its run,
 *  and the way out (--force, --resume, another --save path) when `save`
 *  holds a checkpoint of another run or a file that is not a checkpoint. */
st_status st_save_guard(const char *save, const char *run_id, const char *resume, int force);

#endif
