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
#include "io/checkpoint.h"
#include "models/model.h"
#include "train/trainer.h"

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

/*! Checks that this run may write into the run folder `dir` (--run-dir): its
 *  checkpoint.safetensors and log.jsonl, where present, must be of this run
 *  (run id), or be the --resume file, unless force.
 *  @return ST_OK, or ST_ERR_ARGUMENT naming the folder, the other run and the way out. */
st_status st_run_dir_guard(const char *dir, const char *run_id, const char *resume, int force);

/*! Checks the progress counters of a resumed checkpoint (`c->resume`)
 *  against the run: epochs done <= --epochs; batch_in_epoch at most the
 *  epoch's batches (batches_per_epoch, capped by --max-batches; equal when
 *  interrupted after the last step, before the evaluation) and 0 once
 *  the run is finished; the partial-epoch sums within what those batches can
 *  hold; step <= the batches done; best_epoch < epochs done.
 *  @return ST_OK, or ST_ERR_FORMAT naming the file, the counter, its value and the bound. */
st_status st_resume_counters_check(const st_checkpoint_info *info, const st_train_config *c,
                                   int64_t batches_per_epoch);

/*! After the masks of a fresh sparse run are drawn: refuses a layer that
 *  keeps no weight at all (a density so small that a layer is cut off: the
 *  network cannot learn through it) unless c->allow_empty_layers; the message
 *  names the first such layer, how many there are and the density that keeps
 *  at least one weight in each.
 *  @return ST_OK or ST_ERR_ARGUMENT. */
st_status st_layers_kept_check(const st_model *m, const st_train_config *c);

/* What a run holds while it runs: its locks (released by st_run_guard_end). */
typedef struct st_run_guard {
    int save_lock_fd;         /* flock'ed PATH.lock of --save, -1 if none */
    char save_lock[ST_PATH_MAX + 8];
    int dir_fd;               /* flock'ed --run-dir, -1 if none */
} st_run_guard;

/*! Everything a run checks before it starts, in one place: its outputs are
 *  distinct files and none is the --resume file (io/atomic_file.h claims);
 *  the --save folder is writable; an advisory lock (flock) on --save (the
 *  file PATH.lock, holding our pid) and on --run-dir, held until
 *  st_run_guard_end, so a second run on the same path is refused (on a file system without
 *  locks, such as some network mounts, the run goes on unlocked); the --save
 *  guard (st_save_guard), the run-folder guard (st_run_dir_guard) and the log
 *  guard (io/log_file.h); and stale PATH.tmp.<pid> files of dead processes
 *  are removed. `c->run_id` must be set.
 *  @return ST_OK (then call st_run_guard_end), or the first refusal
 *  (ST_ERR_ARGUMENT; ST_ERR_IO for an unwritable folder or a held lock),
 *  with nothing held. */
st_status st_run_guard_begin(const st_train_config *c, st_run_guard *g);

/*! Releases the locks (removing PATH.lock); accepts a guard that holds nothing. */
void st_run_guard_end(st_run_guard *g);

#endif
