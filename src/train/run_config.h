/* The run configuration's fields, as one table (run_config.c).
 *
 * Every field of st_train_config that a user sets has exactly one row: its
 * name, type, default, help and what --resume does with it. The table is
 * the only place that knows these things; from it come
 *   - the defaults (st_train_config_defaults),
 *   - the flags of `sparsetrain train` and their help (cli/config_flags.c),
 *   - the checkpoint's "args" metadata and its reading back
 *     (st_train_config_to_json / _from_json): a key missing from an older
 *     checkpoint takes its default, so adding a field never breaks the
 *     resume of an existing checkpoint,
 *   - the resume rules (st_resume_merge).
 * Adding a field = one member of st_train_config + one row. */
#ifndef ST_TRAIN_RUN_CONFIG_H
#define ST_TRAIN_RUN_CONFIG_H

#include <stddef.h>

#include "train/trainer.h"

typedef enum st_field_type {
    ST_FIELD_STRING, /* char[size] */
    ST_FIELD_INT,    /* int */
    ST_FIELD_U64,    /* uint64_t */
    ST_FIELD_DOUBLE, /* double */
} st_field_type;

typedef enum st_field_role {
    ST_FIELD_RUN,        /* the run's identity: in the checkpoint's args; a --resume that gives it
                            must give the checkpoint's value */
    ST_FIELD_RUN_LATER,  /* in the checkpoint's args, but a --resume may change it (the command
                            line's value wins): --epochs, --datadir, --test-batch-size */
    ST_FIELD_INVOCATION, /* this invocation only (outputs, threads, progress): never stored */
} st_field_role;

/* An int field set by switches instead of a value: --augment = 1, --no-augment = 0. */
typedef struct st_field_switch {
    const char *flag;
    int value;
    const char *help;
} st_field_switch;

typedef struct st_config_field {
    const char *key;        /* the args key; the flag name is the same with '_' or '-' */
    const char *flag;       /* the spelling shown in help (the reference's, where it has one) */
    st_field_type type;
    st_field_role role;
    size_t offset, size;    /* where in st_train_config; size for strings */
    const char *def_text;   /* defaults, by type */
    long long def_int;
    double def_double;
    const char *help;
    const char *default_note; /* shown in help instead of the default; "" = none shown */
    st_field_switch switches[2]; /* flag == NULL: unused; any set = a switch-only field */
    const char *alias;      /* a second flag name taking a value (--max-threads for --workers) */
} st_config_field;

/* The table, in the order of help and of the args JSON. */
const st_config_field *st_config_fields(int *n);
/* The row with this key ('-' = '_'), or NULL. */
const st_config_field *st_config_field_find(const char *key);
/* The field's value in c as text, as help and messages show it. */
void st_config_field_format(const st_config_field *f, const st_train_config *c, char *buf, size_t size);

/* The stored fields as a JSON object; *json is malloc'd, free() it. */
st_status st_train_config_to_json(const st_train_config *c, char **json);
/* Overwrites the stored fields of c from JSON written by _to_json; a key it
 * lacks takes the field's default. `source` names the file for messages. */
st_status st_train_config_from_json(const char *json, const char *source, st_train_config *c);

/* Fields whose default depends on others, filled in: --valid_split not given
 * (NaN) becomes the data set's default (data/catalog.c; 0.1 for a name the
 * catalogue lacks, which the set-up refuses anyway). */
void st_train_config_resolve_defaults(st_train_config *c);

/* The record of which fields the command line gave (c->given, comma-separated
 * keys): whether `key` is in it, and adding it (once; a full record drops it). */
int st_config_given(const st_train_config *c, const char *key);
void st_config_mark_given(st_train_config *c, const char *key);

/*! With --resume: `cmdline` is the configuration as the command line gave
 *  it, `c` the same after st_train_config_from_json put the checkpoint's
 *  fields in. For every field the command line gave (cmdline->given): a
 *  ST_FIELD_RUN_LATER or ST_FIELD_INVOCATION field takes the command line's
 *  value; a ST_FIELD_RUN field must equal the checkpoint's value.
 *  @return ST_OK, or ST_ERR_ARGUMENT naming the flag, its value and the
 *  checkpoint's (never silently replaced). */
st_status st_resume_merge(const st_train_config *cmdline, st_train_config *c);

#endif
