/* POSIX implementation of the guarded atomic writer (see atomic_file.h):
 * classify the destination, open/write/fsync/rename/fsync-directory, with
 * every failure reported as the path plus strerror(errno) and the temporary
 * file removed; and the same-file claims of one invocation. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include "io/atomic_file.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/status.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"

/* ---- what is at a path ------------------------------------------------------------------------ */

#define HEAD_BYTES 65536

const char *st_file_kind_name(st_file_kind kind) {
    switch (kind) {
    case ST_FILE_MISSING: return "no file";
    case ST_FILE_EMPTY: return "an empty file";
    case ST_FILE_CHECKPOINT: return "a sparsetrain checkpoint";
    case ST_FILE_SAFETENSORS: return "a safetensors file";
    case ST_FILE_LOG: return "a training log";
    case ST_FILE_EVAL_JSON: return "an eval result (JSON)";
    case ST_FILE_HTML: return "an HTML report";
    case ST_FILE_OTHER: return "a file of another kind";
    case ST_FILE_FOLDER: return "a folder";
    case ST_FILE_SPECIAL: return "a device, FIFO or socket";
    }
    return "?";
}

static int contains(const unsigned char *hay, size_t n, const char *needle) {
    size_t m = strlen(needle);
    for (size_t i = 0; m <= n && i <= n - m; i++)
        if (hay[i] == (unsigned char)needle[0] && memcmp(hay + i, needle, m) == 0) return 1;
    return 0;
}

static int starts_with(const unsigned char *buf, size_t n, const char *prefix) {
    size_t m = strlen(prefix);
    return n >= m && memcmp(buf, prefix, m) == 0;
}

/* From the first n bytes of a regular file of `size` bytes. */
static st_file_kind classify_head(const unsigned char *buf, size_t n, uint64_t size) {
    if (n >= 9 && buf[8] == '{') {
        uint64_t header = 0;
        for (int i = 7; i >= 0; i--) header = (header << 8) | buf[i];
        if (header >= 2 && header <= ST_SAFETENSORS_MAX_HEADER && header <= size - 8) {
            size_t in_head = n - 8 < header ? n - 8 : (size_t)header;
            /* metadata strings are written verbatim; a checkpoint's header starts with it */
            return contains(buf + 8, in_head, "\"" ST_CHECKPOINT_FORMAT "\"") ? ST_FILE_CHECKPOINT
                                                                             : ST_FILE_SAFETENSORS;
        }
    }
    if (starts_with(buf, n, "{\"epoch\":")) return ST_FILE_LOG;
    if (starts_with(buf, n, "{\"checkpoint\":")) return ST_FILE_EVAL_JSON;
    if (n >= 15 && strncasecmp((const char *)buf, "<!DOCTYPE html>", 15) == 0) return ST_FILE_HTML;
    return ST_FILE_OTHER;
}

static st_file_kind kind_of_mode(mode_t mode) {
    if (S_ISDIR(mode)) return ST_FILE_FOLDER;
    if (!S_ISREG(mode)) return ST_FILE_SPECIAL;
    return ST_FILE_OTHER;
}

/* kind and, for messages, the mode (0 when missing). */
static st_status classify(const char *path, st_file_kind *kind, mode_t *mode) {
    *kind = ST_FILE_MISSING;
    *mode = 0;
    struct stat st;
    if (stat(path, &st) != 0) {
        if (errno == ENOENT) return ST_OK; /* also a dangling symlink: the rename replaces the link */
        return st_fail(ST_ERR_IO, "cannot examine %s: %s", path, strerror(errno));
    }
    *mode = st.st_mode;
    if (!S_ISREG(st.st_mode)) {
        *kind = kind_of_mode(st.st_mode);
        return ST_OK;
    }
    if (st.st_size == 0) {
        *kind = ST_FILE_EMPTY;
        return ST_OK;
    }
    int fd;
    do {
        fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) { /* unreadable: we cannot tell what it holds */
        *kind = ST_FILE_OTHER;
        return ST_OK;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) { /* swapped under us */
        *mode = st.st_mode;
        *kind = S_ISREG(st.st_mode) ? ST_FILE_OTHER : kind_of_mode(st.st_mode);
        close(fd);
        return ST_OK;
    }
    unsigned char *buf = st_malloc(HEAD_BYTES, "file head");
    if (!buf) {
        close(fd);
        return ST_ERR_NOMEM;
    }
    size_t n = 0;
    while (n < HEAD_BYTES) {
        ssize_t r = read(fd, buf + n, HEAD_BYTES - n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        n += (size_t)r;
    }
    *kind = n ? classify_head(buf, n, (uint64_t)st.st_size) : ST_FILE_EMPTY;
    if (*kind == ST_FILE_SAFETENSORS) {
        /* a header longer than the head (a big model's, or metadata written
         * last by another writer): look for the format in all of it (at most
         * ST_SAFETENSORS_MAX_HEADER bytes, never the tensors) */
        uint64_t header = 0;
        for (int i = 7; i >= 0; i--) header = (header << 8) | buf[i];
        if (header > n - 8) {
            unsigned char *all = malloc((size_t)header);
            if (all && pread(fd, all, (size_t)header, 8) == (ssize_t)header &&
                contains(all, (size_t)header, "\"" ST_CHECKPOINT_FORMAT "\""))
                *kind = ST_FILE_CHECKPOINT;
            free(all);
        }
    }
    close(fd);
    free(buf);
    return ST_OK;
}

st_status st_file_kind_of(const char *path, st_file_kind *kind) {
    if (!path || !kind) return st_fail(ST_ERR_ARGUMENT, "st_file_kind_of: NULL argument");
    mode_t mode;
    return classify(path, kind, &mode);
}

static const char *special_name(mode_t mode) {
    if (S_ISCHR(mode) || S_ISBLK(mode)) return "a device";
    if (S_ISFIFO(mode)) return "a FIFO";
    if (S_ISSOCK(mode)) return "a socket";
    return "not a regular file";
}

/* The last path component (after the last '/'). */
static const char *base_name(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* path's folder into out ("." for a bare name, "/" for /x). */
static void folder_of(const char *path, char *out, size_t size) {
    const char *slash = strrchr(path, '/');
    if (!slash) {
        snprintf(out, size, ".");
        return;
    }
    size_t n = slash == path ? 1 : (size_t)(slash - path);
    if (n >= size) n = size - 1;
    memcpy(out, path, n);
    out[n] = 0;
}

/* Longest name in path's folder, for the PATH.tmp.<pid> check. */
static long name_max(const char *path) {
    char dir[PATH_MAX];
    folder_of(path, dir, sizeof dir);
    long m = pathconf(dir, _PC_NAME_MAX);
    return m > 0 ? m : 255;
}

#define TEMP_SUFFIX_MAX 16 /* ".tmp." + up to 10 pid digits, with room to spare */

st_status st_output_check(const char *path, const char *label, st_file_kind writing, int force) {
    const char *l = label ? label : "", *sp = label ? " " : "";
    if (!path || !path[0]) return st_fail(ST_ERR_ARGUMENT, "%s%scannot write a file with an empty path", l, sp);
    size_t len = strlen(path);
    if (path[len - 1] == '/') return st_fail(ST_ERR_ARGUMENT, "%s%s%s names a folder, not a file", l, sp, path);
    if (len + TEMP_SUFFIX_MAX >= PATH_MAX)
        return st_fail(ST_ERR_ARGUMENT, "%s%s%s: the path is too long (%zu bytes; at most %d)", l, sp, path, len,
                       PATH_MAX - TEMP_SUFFIX_MAX - 1);
    size_t base = strlen(base_name(path));
    long max = name_max(path);
    if ((long)base + TEMP_SUFFIX_MAX > max)
        return st_fail(ST_ERR_ARGUMENT,
                       "%s%s%s: the file name is too long (%zu bytes; at most %ld here, to leave room for the "
                       "temporary name NAME.tmp.<pid>)",
                       l, sp, path, base, max - TEMP_SUFFIX_MAX);
    st_file_kind kind;
    mode_t mode;
    ST_TRY(classify(path, &kind, &mode));
    switch (kind) {
    case ST_FILE_MISSING:
    case ST_FILE_EMPTY: return ST_OK;
    case ST_FILE_FOLDER: return st_fail(ST_ERR_ARGUMENT, "%s%s%s names a folder, not a file", l, sp, path);
    case ST_FILE_SPECIAL:
        return st_fail(ST_ERR_ARGUMENT, "%s%s%s is %s, not a regular file; refusing to replace it (choose a file path)",
                       l, sp, path, special_name(mode));
    default: break;
    }
    if (kind == writing || force) return ST_OK;
    return st_fail(ST_ERR_ARGUMENT,
                   "%s%s%s holds %s; refusing to replace it with %s (choose another path, or pass --force)", l, sp,
                   path, st_file_kind_name(kind), st_file_kind_name(writing));
}

/* ---- the atomic writer ------------------------------------------------------------------------ */

struct st_atomic_file {
    int fd;             /* open temporary file, -1 once closed */
    char *path;         /* final destination */
    char *temp_path;    /* PATH.tmp.<pid> */
};

st_status st_atomic_file_open(const char *path, st_file_kind kind, int force, st_atomic_file **out) {
    if (!out) return st_fail(ST_ERR_ARGUMENT, "st_atomic_file_open: NULL output");
    *out = NULL;
    ST_TRY(st_output_check(path, NULL, kind, force));
    size_t n = strlen(path);
    st_atomic_clean_stale(path); /* temporaries of this name left by killed processes */

    st_atomic_file *f = st_calloc(1, sizeof *f, "atomic file");
    if (!f) return ST_ERR_NOMEM;
    f->fd = -1;
    f->path = st_malloc(n + 1, "file path");
    f->temp_path = st_malloc(n + 32, "temporary file path");
    if (!f->path || !f->temp_path) {
        st_atomic_file_abort(f);
        return ST_ERR_NOMEM;
    }
    memcpy(f->path, path, n + 1);
    snprintf(f->temp_path, n + 32, "%s.tmp.%ld", path, (long)getpid());

    for (int attempt = 0; attempt < 2; attempt++) {
        do {
            f->fd = open(f->temp_path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
        } while (f->fd < 0 && errno == EINTR);
        /* The name carries our pid: whatever is there (a file or a link) was
         * left by a dead process that had it. Remove the name (never follow
         * it) and try once more. */
        if (f->fd >= 0 || errno != EEXIST || attempt == 1) break;
        if (unlink(f->temp_path) != 0 && errno != ENOENT) {
            errno = EEXIST;
            break;
        }
    }
    if (f->fd < 0) {
        int err = errno;
        st_fail(ST_ERR_IO, "cannot write %s: cannot create temporary file %s: %s", path, f->temp_path,
                strerror(err));
        free(f->temp_path);   /* nothing was created: do not let abort unlink someone else's file */
        f->temp_path = NULL;
        st_atomic_file_abort(f);
        return ST_ERR_IO;
    }
    *out = f;
    return ST_OK;
}

st_status st_atomic_file_write(st_atomic_file *f, const void *data, size_t n) {
    if (!f || f->fd < 0) return st_fail(ST_ERR_ARGUMENT, "st_atomic_file_write: file is not open");
    if (n && !data) return st_fail(ST_ERR_ARGUMENT, "writing %s: NULL data", f->path);
    const char *p = data;
    while (n > 0) {
        size_t chunk = n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n;
        ssize_t w = write(f->fd, p, chunk);
        if (w < 0) {
            if (errno == EINTR) continue;
            return st_fail(ST_ERR_IO, "writing %s (temporary file %s): %s", f->path, f->temp_path,
                           strerror(errno));
        }
        if (w == 0) return st_fail(ST_ERR_IO, "writing %s: write returned 0 bytes", f->path);
        p += w;
        n -= (size_t)w;
    }
    return ST_OK;
}

/* fsync of the directory makes the rename itself durable. Some file systems
 * refuse fsync on directories (EINVAL); the rename is still atomic there. */
static st_status sync_directory(const char *path) {
    const char *slash = strrchr(path, '/');
    char *dir;
    if (!slash) {
        dir = st_malloc(2, "directory path");
        if (!dir) return ST_ERR_NOMEM;
        strcpy(dir, ".");
    } else {
        size_t n = slash == path ? 1 : (size_t)(slash - path);
        dir = st_malloc(n + 1, "directory path");
        if (!dir) return ST_ERR_NOMEM;
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    st_status status = ST_OK;
    int fd = open(dir, O_RDONLY);
    if (fd < 0) {
        status = st_fail(ST_ERR_IO, "wrote %s but cannot open its directory %s to sync it: %s", path, dir,
                         strerror(errno));
    } else {
        if (fsync(fd) != 0 && errno != EINVAL && errno != EROFS)
            status = st_fail(ST_ERR_IO, "wrote %s but cannot sync its directory %s: %s", path, dir,
                             strerror(errno));
        close(fd);
    }
    free(dir);
    return status;
}

st_status st_atomic_file_commit(st_atomic_file *f) {
    if (!f || f->fd < 0) {
        st_atomic_file_abort(f);
        return st_fail(ST_ERR_ARGUMENT, "st_atomic_file_commit: file is not open");
    }
    if (fsync(f->fd) != 0) {
        st_fail(ST_ERR_IO, "writing %s: cannot sync temporary file %s: %s", f->path, f->temp_path,
                strerror(errno));
        st_atomic_file_abort(f);
        return ST_ERR_IO;
    }
    int fd = f->fd;
    f->fd = -1;
    if (close(fd) != 0) {   /* NFS and friends report deferred write errors here */
        st_fail(ST_ERR_IO, "writing %s: closing temporary file %s failed: %s", f->path, f->temp_path,
                strerror(errno));
        st_atomic_file_abort(f);
        return ST_ERR_IO;
    }
    if (rename(f->temp_path, f->path) != 0) {
        st_fail(ST_ERR_IO, "cannot replace %s with temporary file %s: %s", f->path, f->temp_path,
                strerror(errno));
        st_atomic_file_abort(f);
        return ST_ERR_IO;
    }
    free(f->temp_path);   /* renamed away: nothing left to remove */
    f->temp_path = NULL;
    st_status status = sync_directory(f->path);
    st_atomic_file_abort(f);
    return status;
}

void st_atomic_file_abort(st_atomic_file *f) {
    if (!f) return;
    int saved_errno = errno;
    if (f->fd >= 0) close(f->fd);
    if (f->temp_path) unlink(f->temp_path);
    free(f->temp_path);
    free(f->path);
    free(f);
    errno = saved_errno;
}

st_status st_atomic_write_file(const char *path, st_file_kind kind, int force, const void *data, size_t n) {
    st_atomic_file *f;
    ST_TRY(st_atomic_file_open(path, kind, force, &f));
    st_status status = st_atomic_file_write(f, data, n);
    if (status != ST_OK) {
        st_atomic_file_abort(f);
        return status;
    }
    return st_atomic_file_commit(f);
}

int st_atomic_clean_stale(const char *path) {
    if (!path || !path[0]) return 0;
    char dir[PATH_MAX];
    folder_of(path, dir, sizeof dir);
    const char *base = base_name(path);
    size_t nb = strlen(base);
    DIR *d = opendir(dir);
    if (!d) return 0;
    int removed = 0;
    for (struct dirent *e; (e = readdir(d));) {
        const char *name = e->d_name;
        if (strncmp(name, base, nb) != 0 || strncmp(name + nb, ".tmp.", 5) != 0) continue;
        const char *digits = name + nb + 5;
        char *end;
        errno = 0;
        long pid = strtol(digits, &end, 10);
        if (end == digits || *end || errno || pid <= 0 || pid > INT_MAX || pid == (long)getpid()) continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue; /* alive, or not ours to judge */
        char full[PATH_MAX];
        if (snprintf(full, sizeof full, "%s/%s", dir, name) >= (int)sizeof full) continue;
        if (unlink(full) == 0) removed++;
    }
    closedir(d);
    return removed;
}

/* ---- one invocation's inputs and outputs ------------------------------------------------------ */

void st_file_claims_init(st_file_claims *c) { memset(c, 0, sizeof *c); }

/* Identity of a path: the file's device and inode, or (missing) its folder's and its name. */
static int identify(const char *path, st_file_claim *out) {
    struct stat st;
    if (stat(path, &st) == 0) {
        out->exists = 1;
        out->dev = st.st_dev;
        out->ino = st.st_ino;
        out->name = NULL;
        return 1;
    }
    char dir[PATH_MAX];
    folder_of(path, dir, sizeof dir);
    if (stat(dir, &st) != 0) return 0;
    out->exists = 0;
    out->dev = st.st_dev;
    out->ino = st.st_ino;
    out->name = base_name(path);
    return 1;
}

static int same(const st_file_claim *a, const st_file_claim *b) {
    if (a->exists != b->exists || a->dev != b->dev || a->ino != b->ino) return 0;
    return a->exists || strcmp(a->name, b->name) == 0;
}

static st_status claim(st_file_claims *c, const char *path, const char *label, int output) {
    if (!c || !path || !path[0]) return ST_OK;
    st_file_claim me = {.path = path, .label = label ? label : "a file", .output = output};
    if (!identify(path, &me)) return ST_OK; /* its folder is missing: the write or read fails by itself */
    if (!output && !me.exists) return ST_OK;
    for (int i = 0; i < c->n; i++) {
        const st_file_claim *o = &c->items[i];
        if (!(output || o->output) || !same(&me, o)) continue;
        if ((output == 2 && !o->output) || (o->output == 2 && !output)) continue; /* a successor replaces its input */
        const st_file_claim *out = output ? &me : o, *other = output ? o : &me;
        if (other->output)
            return st_fail(ST_ERR_ARGUMENT, "%s %s and %s %s are the same file: each output needs its own path",
                           other->label, other->path, out->label, out->path);
        return st_fail(ST_ERR_ARGUMENT,
                       "%s %s is the same file as %s %s, which this command reads; refusing to write over it "
                       "(choose another path)",
                       out->label, out->path, other->label, other->path);
    }
    if (c->n >= ST_CLAIMS_MAX) return st_fail(ST_ERR_ARGUMENT, "too many files for one invocation (at most %d)", ST_CLAIMS_MAX);
    c->items[c->n++] = me;
    return ST_OK;
}

st_status st_claim_input(st_file_claims *c, const char *path, const char *label) { return claim(c, path, label, 0); }

st_status st_claim_output(st_file_claims *c, const char *path, const char *label) { return claim(c, path, label, 1); }

st_status st_claim_successor(st_file_claims *c, const char *path, const char *label) {
    return claim(c, path, label, 2);
}
