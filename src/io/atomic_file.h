/* The one guarded, crash-safe writer for every file the tool writes.
 *
 * Crash safety: data goes to PATH.tmp.<pid> in the same directory (created
 * with O_EXCL|O_NOFOLLOW, so a planted symlink or file at that name is never
 * followed), is flushed to disk, then renamed over PATH, so readers see
 * either the old complete file or the new complete file, never a torn one.
 *
 * The guard: before anything is written, the file at PATH is classified
 * (st_file_kind_of reads at most its first bytes and never blocks). A missing
 * or empty file, or one of the kind being written, may be replaced. A
 * folder, a device, a FIFO or a socket is never replaced. A sparsetrain
 * checkpoint, or a file of any other kind (a log, someone's notes), is
 * replaced only with force (--force).
 *
 * Outputs of one invocation are also checked against each other and against
 * its inputs (st_file_claims): two outputs that are one file, or an output
 * that is a file being read, are refused (compared by device and inode, so
 * "x", "./x" and a link to x are all the same file). */
#ifndef ST_IO_ATOMIC_FILE_H
#define ST_IO_ATOMIC_FILE_H

#include <stddef.h>
#include <sys/types.h>

#include "sparsetrain.h"

/* What a file at an output path holds, as far as the guard is concerned. */
typedef enum st_file_kind {
    ST_FILE_MISSING,     /* nothing at the path */
    ST_FILE_EMPTY,       /* a regular file of 0 bytes */
    ST_FILE_CHECKPOINT,  /* safetensors whose metadata "format" is sparsetrain-checkpoint-1 */
    ST_FILE_SAFETENSORS, /* any other safetensors file */
    ST_FILE_LOG,         /* a training log of ours: JSON lines, the first starting {"epoch": */
    ST_FILE_EVAL_JSON,   /* eval --out: one JSON object starting {"checkpoint": */
    ST_FILE_HTML,        /* a report: starts with <!DOCTYPE html> */
    ST_FILE_OTHER,       /* any other regular file */
    ST_FILE_FOLDER,      /* a directory */
    ST_FILE_SPECIAL      /* a device, FIFO or socket */
} st_file_kind;

/*! @return "a sparsetrain checkpoint", "a training log", ... for messages. */
const char *st_file_kind_name(st_file_kind kind);

/*! Classifies the file at `path` (following symlinks) from its type and at
 *  most its first 64 KiB (a safetensors header is parsed only when it is
 *  small enough to lie within that head; a larger one is sniffed for the
 *  checkpoint format string). Opens with O_NONBLOCK, so a FIFO never blocks.
 *  @return ST_OK and *kind; ST_ERR_IO if the path exists but cannot be read. */
st_status st_file_kind_of(const char *path, st_file_kind *kind);

/*! May a file of kind `writing` replace whatever is at `path`? `label` (the
 *  flag, e.g. "--log"; may be NULL) starts the message. Also checks that the
 *  temporary name PATH.tmp.<pid> fits the folder's name limit.
 *  @return ST_OK, or ST_ERR_ARGUMENT with one message naming the path, what
 *  it holds and the way out (another path; --force where it applies). */
st_status st_output_check(const char *path, const char *label, st_file_kind writing, int force);

/* A file being written; becomes visible at PATH only on commit. */
typedef struct st_atomic_file st_atomic_file;

/*! Runs st_output_check(path, NULL, kind, force), removes PATH.tmp.<pid>
 *  files of dead processes (st_atomic_clean_stale), then creates the
 *  temporary file PATH.tmp.<pid> (O_EXCL|O_NOFOLLOW; a stale file of that
 *  name, left by a dead process with our pid, is removed first).
 *  @return ST_OK and *out; ST_ERR_ARGUMENT from the guard; ST_ERR_IO naming
 *  the path and the errno text (missing or read-only directory, ...); ST_ERR_NOMEM. */
st_status st_atomic_file_open(const char *path, st_file_kind kind, int force, st_atomic_file **out);

/*! Appends n bytes. On failure (disk full, ...) the file stays open and the
 *  caller must still call st_atomic_file_abort.
 *  @return ST_OK or ST_ERR_IO naming the path and the errno text. */
st_status st_atomic_file_write(st_atomic_file *f, const void *data, size_t n);

/*! fsyncs and closes the temporary file, renames it over PATH and fsyncs the
 *  directory. Always consumes `f`: on failure the temporary file is removed
 *  and an existing PATH is left untouched.
 *  @return ST_OK or ST_ERR_IO. */
st_status st_atomic_file_commit(st_atomic_file *f);

/*! Closes and removes the temporary file and frees `f`; accepts NULL.
 *  Keeps the thread's current error message. */
void st_atomic_file_abort(st_atomic_file *f);

/*! The whole sequence for one buffer: open (guarded), write, commit (abort on failure). */
st_status st_atomic_write_file(const char *path, st_file_kind kind, int force, const void *data, size_t n);

/*! Removes PATH.tmp.<pid> files in PATH's folder whose process <pid> is
 *  gone (left by a SIGKILL during a save). Best effort: never fails.
 *  @return the number removed. */
int st_atomic_clean_stale(const char *path);

/* The files one invocation reads and writes, to refuse an output that is
 * also another output or an input. Paths and labels are borrowed: they must
 * outlive the claims. */
#define ST_CLAIMS_MAX 512
typedef struct st_file_claim {
    const char *path, *label;
    int output;          /* 1 output, 2 output that may replace an input */
    int exists;          /* 1: dev/ino are the file's; 0: its folder's, and `name` its last component */
    dev_t dev;
    ino_t ino;
    const char *name;
} st_file_claim;
typedef struct st_file_claims {
    int n;
    st_file_claim items[ST_CLAIMS_MAX];
} st_file_claims;

void st_file_claims_init(st_file_claims *c);
/*! Records an input (a file this invocation reads; missing files are ignored).
 *  @return ST_OK, or ST_ERR_ARGUMENT if it is the same file as a claimed output. */
st_status st_claim_input(st_file_claims *c, const char *path, const char *label);
/*! Records an output ("" is ignored).
 *  @return ST_OK, or ST_ERR_ARGUMENT naming both flags when it is the same
 *  file as a claimed input or output. */
st_status st_claim_output(st_file_claims *c, const char *path, const char *label);
/*! Records an output that is the next version of an input and may replace
 *  it (train --save onto the --resume file, which is read whole first): it
 *  may be the same file as an input, never as another output. */
st_status st_claim_successor(st_file_claims *c, const char *path, const char *label);

#endif
