/* Serialisation of st_train_config's run-defining fields to and from JSON. */
#ifndef ST_TRAIN_RUN_ARGS_H
#define ST_TRAIN_RUN_ARGS_H

#include "train/trainer.h"

/* *json is malloc'd; free() it. */
st_status st_train_config_to_json(const st_train_config *c, char **json);
/* Overwrites the run-defining fields of c; `source` names the file for messages. */
st_status st_train_config_from_json(const char *json, const char *source, st_train_config *c);

/*! With --resume: `cmdline` is the configuration as the command line gave
 *  it, `c` the same after st_train_config_from_json put the checkpoint's
 *  run-defining arguments in. For every run-defining flag the command line
 *  gave (cmdline->given): --epochs (extend or shorten the run; the schedule
 *  follows), --datadir (the data moved) and --test-batch-size take the
 *  command line's value; any other must equal the checkpoint's value.
 *  @return ST_OK, or ST_ERR_ARGUMENT naming the flag, its value and the
 *  checkpoint's (never silently replaced). */
st_status st_resume_merge(const st_train_config *cmdline, st_train_config *c);

#endif
