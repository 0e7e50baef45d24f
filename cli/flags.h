/* A small table-driven command-line flag parser for the sparsetrain tool,
 * with the rules of Python's argparse so that the reference code's command
 * lines paste in unchanged:
 *   --name value and --name=value;
 *   '-' and '_' in names are interchangeable (--batch_size = --batch-size);
 *   any unambiguous prefix of a name is accepted (--epoch = --epochs); an
 *   exact name always wins over longer names it is a prefix of (--save is
 *   not ambiguous with --save-features); an ambiguous prefix is refused with
 *   the candidates named.
 * Flags kept only for compatibility are either accepted with a note on stderr
 * saying why they have no effect (`ignored`), or refused with a message saying
 * why (`refused`). */
#ifndef ST_CLI_FLAGS_H
#define ST_CLI_FLAGS_H

#include <stddef.h>
#include <stdint.h>

typedef enum st_flag_type { ST_FLAG_STRING, ST_FLAG_INT, ST_FLAG_U64, ST_FLAG_DOUBLE, ST_FLAG_SWITCH } st_flag_type;

typedef struct st_flag {
    const char *name;    /* without the leading dashes */
    st_flag_type type;
    void *target;        /* char[size] / int / uint64_t / double / int (switch: set to `value`); NULL: the
                            value is checked for its type and dropped */
    size_t size;         /* for strings */
    int value;           /* for switches */
    const char *help;
    const char *ignored; /* non-NULL: accepted, and this reason printed as "--name is ignored: <reason>" */
    const char *refused; /* non-NULL: refused with "--name is not available: <reason>" */
    int given;           /* output: how many times the flag appeared */
} st_flag;

/* argparse's short options: -letter is the flag `name` of the table. */
typedef struct st_short_flag {
    char letter;
    const char *name;
} st_short_flag;

/* Parses argv[first..argc). Returns 0 on success, 1 if --help was given
 * (usage printed), -1 on error (message printed to stderr). */
int st_flags_parse(const char *command, const char *usage, st_flag *flags, int n_flags, int argc, char **argv,
                   int first);
/* The same with the short names `shorts` (n_shorts of them; each names a
 * flag of the table) and, when `positional` is not NULL, one positional
 * argument (not starting with '-') copied into it (size bytes; "" when none
 * was given); `what` names it in messages. */
int st_flags_parse_extended(const char *command, const char *usage, st_flag *flags, int n_flags, int argc,
                            char **argv, int first, const st_short_flag *shorts, int n_shorts, char *positional,
                            size_t size, const char *what);

/* Resolves the name part of an argument ("epoch" of "--epoch=3": `len` bytes
 * of `name`) against the table: the index of the flag, -1 when no flag
 * matches, -2 when the prefix matches several (each candidate's index is
 * written to `candidates`, at most `max_candidates`, their count to
 * *n_candidates). The name "help" is not in the table. */
int st_flags_lookup(const st_flag *flags, int n_flags, const char *name, size_t len, int *candidates,
                    int max_candidates, int *n_candidates);

/* The flag called `name` (exact, '-'/'_' interchangeable), or NULL. */
st_flag *st_flags_find(st_flag *flags, int n_flags, const char *name);

/* After parsing `sparsetrain train`'s table: the reference's dynamic-sparse-
 * training flags (--growth, --death, --redistribution, --death-rate,
 * --update_frequency, --decay-schedule) are noted as ignored when they cannot
 * matter (a dense run, or --fix) and refused otherwise; --multiplier is
 * ignored at 1 and refused otherwise; --iters, --log-interval and
 * --max-threads are range-checked. Returns 0, or -1 after one message. */
struct st_train_config;
int st_flags_check_train(const char *command, st_flag *flags, int n, const struct st_train_config *c,
                         int multiplier);

#endif
