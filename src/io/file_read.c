/* st_open_regular (see file_read.h). */
#include "io/file_read.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/status.h"

st_status st_open_regular(const char *path, uint64_t max_bytes, const char *what, int *fd, uint64_t *size) {
    *fd = -1;
    *size = 0;
    if (!path || !path[0]) return st_fail(ST_ERR_ARGUMENT, "cannot read a file with an empty name");
    int f;
    do {
        f = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    } while (f < 0 && errno == EINTR);
    if (f < 0) return st_fail(ST_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(f, &st) != 0) {
        int err = errno;
        close(f);
        return st_fail(ST_ERR_IO, "cannot examine %s: %s", path, strerror(err));
    }
    if (S_ISDIR(st.st_mode)) {
        close(f);
        return st_fail(ST_ERR_IO, "cannot read %s: it is a folder", path);
    }
    if (!S_ISREG(st.st_mode)) {
        close(f);
        return st_fail(ST_ERR_IO, "cannot read %s: not a regular file (%s)", path,
                       S_ISFIFO(st.st_mode) ? "a FIFO" : S_ISSOCK(st.st_mode) ? "a socket" : "a device");
    }
    if ((uint64_t)st.st_size > max_bytes) {
        close(f);
        return st_fail(ST_ERR_FORMAT, "%s is %llu bytes, more than %s can be (at most %llu bytes)", path,
                       (unsigned long long)st.st_size, what ? what : "this file", (unsigned long long)max_bytes);
    }
    int flags = fcntl(f, F_GETFL);
    if (flags >= 0) fcntl(f, F_SETFL, flags & ~O_NONBLOCK);
    *fd = f;
    *size = (uint64_t)st.st_size;
    return ST_OK;
}
