/* Serialisation of st_train_config's run-defining fields to and from JSON. */
#ifndef ST_TRAIN_RUN_ARGS_H
#define ST_TRAIN_RUN_ARGS_H

#include "train/trainer.h"

/* *json is malloc'd; free() it. */
st_status st_train_config_to_json(const st_train_config *c, char **json);
/* Overwrites the run-defining fields of c; `source` names the file for messages. */
st_status st_train_config_from_json(const char *json, const char *source, st_train_config *c);

#endif
