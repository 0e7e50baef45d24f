/* POSIX implementation of st_atomic_file (see atomic_file.h): open/write/
 * fsync/rename/fsync-directory, with every failure reported as the path plus
 * strerror(errno) and the temporary file removed. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include "io/atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/status.h"

struct st_atomic_file {
    int fd;             /* open temporary file, -1 once closed */
    char *path;         /* final destination */
    char *temp_path;    /* PATH.tmp.<pid> */
};

st_status st_atomic_file_open(const char *path, st_atomic_file **out) {
    if (!out) return st_fail(ST_ERR_ARGUMENT, "st_atomic_file_open: NULL output");
    *out = NULL;
    if (!path || !path[0]) return st_fail(ST_ERR_ARGUMENT, "cannot write a file with an empty path");
    size_t n = strlen(path);
    if (path[n - 1] == '/') return st_fail(ST_ERR_ARGUMENT, "cannot write %s: the path names a directory", path);

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

    do {
        f->fd = open(f->temp_path, O_WRONLY | O_CREAT | O_TRUNC, 0666);
    } while (f->fd < 0 && errno == EINTR);
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

st_status st_atomic_write_file(const char *path, const void *data, size_t n) {
    st_atomic_file *f;
    ST_TRY(st_atomic_file_open(path, &f));
    st_status status = st_atomic_file_write(f, data, n);
    if (status != ST_OK) {
        st_atomic_file_abort(f);
        return status;
    }
    return st_atomic_file_commit(f);
}
