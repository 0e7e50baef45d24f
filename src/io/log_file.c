/* The guarded JSON-lines training log (see log_file.h). */
#include "io/log_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/status.h"
#include "io/atomic_file.h"
#include "io/json.h"

#define HEAD_BYTES 65536

struct st_log_file {
    int fd;
    char *path;
};

void st_log_run_id(const char *path, char *out, size_t size) {
    if (size) out[0] = 0;
    st_file_kind kind;
    if (!path || !path[0] || st_file_kind_of(path, &kind) != ST_OK || kind != ST_FILE_LOG) return;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) return;
    char *buf = malloc(HEAD_BYTES);
    ssize_t n = buf ? read(fd, buf, HEAD_BYTES) : -1;
    close(fd);
    if (n <= 0) {
        free(buf);
        return;
    }
    char *end = memchr(buf, '\n', (size_t)n);
    size_t line = end ? (size_t)(end - buf) : (size_t)n;
    st_json_document *doc = NULL;
    if (st_json_parse(buf, line, path, NULL, &doc) == ST_OK) {
        const st_json_value *id = st_json_object_get(st_json_root(doc), "run_id");
        if (id && id->type == ST_JSON_STRING && id->string_length < size) snprintf(out, size, "%s", id->string);
    }
    st_json_free(doc);
    free(buf);
}

/* What opening the log will do: 0 refuse (message set), 1 append, 2 truncate. */
static st_status decide(const char *path, const char *label, const char *run_id, int append, int force, int *how) {
    const char *l = label ? label : "", *sp = label ? " " : "";
    st_file_kind kind;
    ST_TRY(st_file_kind_of(path, &kind));
    if (kind == ST_FILE_MISSING || kind == ST_FILE_EMPTY) {
        *how = 1;
        return ST_OK;
    }
    if (kind != ST_FILE_LOG) { /* folders and devices always refused; other kinds unless force */
        ST_TRY(st_output_check(path, label, ST_FILE_LOG, force));
        *how = 2;
        return ST_OK;
    }
    char theirs[64];
    st_log_run_id(path, theirs, sizeof theirs);
    if (run_id && theirs[0] && strcmp(theirs, run_id) == 0) {
        *how = 1;
        return ST_OK;
    }
    if (!theirs[0] && append) { /* written before logs carried run ids: continue it */
        *how = 1;
        return ST_OK;
    }
    if (force) {
        *how = 2;
        return ST_OK;
    }
    if (theirs[0])
        return st_fail(ST_ERR_ARGUMENT,
                       "%s%s%s holds the log of another run (run id %s); refusing to append to it or replace it "
                       "(choose another path, continue that run with --resume, or pass --force)",
                       l, sp, path, theirs);
    return st_fail(ST_ERR_ARGUMENT,
                   "%s%s%s holds a training log of an earlier run; refusing to replace it (choose another path, or "
                   "pass --force)",
                   l, sp, path);
}

st_status st_log_check(const char *path, const char *label, const char *run_id, int append, int force) {
    if (!path || !path[0]) return ST_OK;
    int how;
    ST_TRY(st_output_check(path, label, ST_FILE_LOG, 1)); /* folders, devices, FIFOs, long names */
    return decide(path, label, run_id, append, force, &how);
}

/* Cuts a torn last line (no final '\n') off an existing log. */
static st_status cut_torn_tail(int fd, const char *path) {
    struct stat st;
    if (fstat(fd, &st) != 0) return st_fail(ST_ERR_IO, "cannot examine log %s: %s", path, strerror(errno));
    off_t end = st.st_size;
    if (end == 0) return ST_OK;
    char buf[4096];
    off_t pos = end;
    off_t keep = 0;
    int found = 0;
    while (pos > 0 && !found) {
        size_t chunk = pos > (off_t)sizeof buf ? sizeof buf : (size_t)pos;
        pos -= (off_t)chunk;
        ssize_t r = pread(fd, buf, chunk, pos);
        if (r != (ssize_t)chunk) return st_fail(ST_ERR_IO, "cannot read log %s: %s", path, strerror(errno));
        for (size_t i = chunk; i > 0; i--)
            if (buf[i - 1] == '\n') {
                keep = pos + (off_t)i;
                found = 1;
                break;
            }
    }
    if (keep == end) return ST_OK;
    if (ftruncate(fd, keep) != 0)
        return st_fail(ST_ERR_IO, "cannot cut the torn last line of log %s: %s", path, strerror(errno));
    return ST_OK; /* the library prints nothing; the cut is documented (log_file.h, docs/FORMATS.md) */
}

st_status st_log_open(const char *path, const char *label, const char *run_id, int append, int force,
                      st_log_file **out) {
    if (!out) return st_fail(ST_ERR_ARGUMENT, "st_log_open: NULL output");
    *out = NULL;
    ST_TRY(st_output_check(path, label, ST_FILE_LOG, 1));
    int how;
    ST_TRY(decide(path, label, run_id, append, force, &how));
    int fd;
    do {
        fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_NONBLOCK | O_NOCTTY | O_CLOEXEC, 0666);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) return st_fail(ST_ERR_IO, "cannot open log file %s: %s", path, strerror(errno));
    struct stat st;
    st_status s = ST_OK;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        s = st_fail(ST_ERR_ARGUMENT, "log file %s is not a regular file", path);
    else if (how == 2 && ftruncate(fd, 0) != 0)
        s = st_fail(ST_ERR_IO, "cannot replace log file %s: %s", path, strerror(errno));
    else if (how == 1)
        s = cut_torn_tail(fd, path);
    st_log_file *f = s == ST_OK ? st_calloc(1, sizeof *f, "log file") : NULL;
    if (s == ST_OK && (!f || !(f->path = strdup(path)))) s = st_fail(ST_ERR_NOMEM, "out of memory opening %s", path);
    if (s != ST_OK) {
        free(f);
        close(fd);
        return s;
    }
    f->fd = fd;
    *out = f;
    return ST_OK;
}

st_status st_log_append(st_log_file *f, const char *line, size_t n) {
    if (!f) return ST_OK;
    struct stat st;
    if (fstat(f->fd, &st) != 0) return st_fail(ST_ERR_IO, "cannot write log %s: %s", f->path, strerror(errno));
    size_t done = 0;
    int err = 0;
    while (done < n) {
        ssize_t w = write(f->fd, line + done, n - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            err = w < 0 ? errno : EIO;
            break;
        }
        done += (size_t)w;
    }
    if (!err && fdatasync(f->fd) != 0 && errno != EINVAL && errno != EROFS) err = errno;
    if (!err) return ST_OK;
    if (ftruncate(f->fd, st.st_size) != 0) { /* keep whole lines; nothing more we can do if this fails too */
    }
    return st_fail(ST_ERR_IO, "cannot write log %s: %s", f->path, strerror(err));
}

void st_log_close(st_log_file *f) {
    if (!f) return;
    close(f->fd);
    free(f->path);
    free(f);
}
