/* The file readers the format loaders share: whole files and heads of files,
 * plain or gzip (zlib's transparent gzread), with bounded sizes, and the
 * existence checks. */
#include "data/dataset.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "core/status.h"
#include "io/file_read.h"

int st_data_path_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

int st_data_is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* gzerror's view of the stream: Z_ERRNO is an operating-system read error,
 * anything else (Z_BUF_ERROR = stream ends early, Z_DATA_ERROR = corrupt
 * deflate data or CRC) is a damaged file. */
st_status st_data_gzip_failure(gzFile f, const char *path) {
    int code = Z_OK;
    const char *msg = gzerror(f, &code);
    if (code == Z_ERRNO) return st_fail(ST_ERR_IO, "%s: read error: %s", path, strerror(errno));
    if (code == Z_BUF_ERROR) return st_fail(ST_ERR_FORMAT, "%s: truncated gzip data (unexpected end of file)", path);
    if (code == Z_MEM_ERROR) return st_fail(ST_ERR_NOMEM, "%s: out of memory while decompressing", path);
    return st_fail(ST_ERR_FORMAT, "%s: corrupt gzip data (%s)", path, msg && *msg ? msg : "unknown zlib error");
}

st_status st_data_read_head(const char *path, uint8_t *buf, size_t n, size_t *got) {
    *got = 0;
    int fd;
    uint64_t file_size;
    ST_TRY(st_open_regular(path, UINT64_MAX, NULL, &fd, &file_size));
    gzFile f = gzdopen(fd, "rb");
    if (!f) {
        close(fd);
        return st_fail(ST_ERR_NOMEM, "cannot read %s: out of memory", path);
    }
    int r = n ? gzread(f, buf, (unsigned)n) : 0;
    st_status s = r < 0 ? st_data_gzip_failure(f, path) : ST_OK;
    gzclose(f);
    if (s == ST_OK) *got = (size_t)r;
    return s;
}

st_status st_data_read_file(const char *path, size_t max_bytes, uint8_t **out, size_t *size) {
    *out = NULL;
    *size = 0;
    int fd;
    uint64_t file_size;
    /* a compressed file is hardly larger than its contents (gzip adds a few
     * bytes, 0.03% at worst on random data): about the same bound holds for it */
    ST_TRY(st_open_regular(path, (uint64_t)max_bytes + max_bytes / 64 + 4096, "a data file of this data set", &fd,
                           &file_size));
    gzFile f = gzdopen(fd, "rb");
    if (!f) {
        close(fd);
        return st_fail(ST_ERR_NOMEM, "cannot read %s: out of memory", path);
    }
    gzbuffer(f, 1 << 17);

    /* Plain files are read in one allocation; compressed ones grow by doubling
     * so that a lying header or a gzip bomb cannot request memory up front;
     * decompression stops at max_bytes. */
    size_t cap = (size_t)file_size + 1;
    if (cap < (1u << 16)) cap = 1u << 16;
    if (cap > max_bytes + 1) cap = max_bytes + 1;
    uint8_t *buf = st_malloc(cap, path);
    if (!buf) {
        gzclose(f);
        return ST_ERR_NOMEM;
    }
    size_t used = 0;
    for (;;) {
        if (used == cap) {
            if (cap > max_bytes) {
                free(buf);
                gzclose(f);
                return st_fail(ST_ERR_FORMAT, "%s: larger than expected (more than %zu bytes)", path, max_bytes);
            }
            size_t grown = cap * 2 > max_bytes + 1 ? max_bytes + 1 : cap * 2;
            uint8_t *bigger = realloc(buf, grown);
            if (!bigger) {
                free(buf);
                gzclose(f);
                return st_fail(ST_ERR_NOMEM, "out of memory reading %s", path);
            }
            buf = bigger;
            cap = grown;
        }
        size_t want = cap - used;
        if (want > (1u << 30)) want = 1u << 30;
        int n = gzread(f, buf + used, (unsigned)want);
        if (n < 0) {
            st_status s = st_data_gzip_failure(f, path);
            free(buf);
            gzclose(f);
            return s;
        }
        if (n == 0) break;
        used += (size_t)n;
    }
    /* gzread reports a truncated stream only through gzerror at the end. */
    int code = Z_OK;
    gzerror(f, &code);
    if (code != Z_OK) {
        st_status s = st_data_gzip_failure(f, path);
        free(buf);
        gzclose(f);
        return s;
    }
    gzclose(f);
    *out = buf;
    *size = used;
    return ST_OK;
}
