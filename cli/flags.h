/* A small table-driven command-line flag parser for the sparsetrain tool.
 * Flags are --name value or --name=value; '-' and '_' in names are
 * interchangeable so that the reference code's spellings all work. */
#ifndef ST_CLI_FLAGS_H
#define ST_CLI_FLAGS_H

#include <stddef.h>
#include <stdint.h>

typedef enum st_flag_type { ST_FLAG_STRING, ST_FLAG_INT, ST_FLAG_U64, ST_FLAG_DOUBLE, ST_FLAG_SWITCH } st_flag_type;

typedef struct st_flag {
    const char *name;   /* without the leading dashes */
    st_flag_type type;
    void *target;       /* char[size] / int / uint64_t / double / int (switch: set to `value`) */
    size_t size;        /* for strings */
    int value;          /* for switches */
    const char *help;
} st_flag;

/* Parses argv[first..argc). Returns 0 on success, 1 if --help was given
 * (usage printed), -1 on error (message printed to stderr). */
int st_flags_parse(const char *command, const char *usage, st_flag *flags, int n_flags, int argc, char **argv,
                   int first);
/* The same, also setting given[k] = 1 for every flag k on the command line
 * (`given` has n_flags entries, zeroed by the caller). */
int st_flags_parse_given(const char *command, const char *usage, st_flag *flags, int n_flags, int argc, char **argv,
                         int first, int *given);

#endif
