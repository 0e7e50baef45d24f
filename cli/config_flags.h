/* The flags of the run-config fields (train/run_config.h), made from its
 * table, next to a command's own flags, in one st_flag table (flags.h). */
#ifndef ST_CLI_CONFIG_FLAGS_H
#define ST_CLI_CONFIG_FLAGS_H

#include "flags.h"
#include "train/run_config.h"

#define ST_CONFIG_FLAGS_MAX 96

typedef struct st_config_flags {
    st_flag flags[ST_CONFIG_FLAGS_MAX];
    const st_config_field *field[ST_CONFIG_FLAGS_MAX]; /* the field behind each flag; NULL: the command's own */
    char help[ST_CONFIG_FLAGS_MAX][384];               /* the help with its default */
    int n;
} st_config_flags;

void st_config_flags_init(st_config_flags *t);
/* The flag(s) of the field `key`, writing into *c; `help` replaces the
 * table's help text (NULL: the table's). A key not in the table is a
 * programming error (asserted). */
void st_config_flags_add_field(st_config_flags *t, st_train_config *c, const char *key, const char *help);
/* The flags of every field. */
void st_config_flags_add_all(st_config_flags *t, st_train_config *c);
/* One of the command's own flags. */
void st_config_flags_add(st_config_flags *t, st_flag flag);
/* After st_flags_parse: the keys of the fields given, comma-separated, into
 * c->given (what --resume checks, run_config.h). */
void st_config_flags_record_given(const st_config_flags *t, st_train_config *c);

#endif
