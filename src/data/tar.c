/* A small streaming tar reader (ustar, GNU long names, pax path records) over
 * zlib's gzread, so the CIFAR .tar.gz archives are read in one pass without
 * extracting anything to disk. Only the wanted members are kept in memory. */
#include "data/dataset.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "core/status.h"
#include "io/file_read.h"

#define TAR_BLOCK 512
#define TAR_MAX_NAME 4096

/* Reads up to `len` bytes; *got < len only at the clean end of the stream. */
static st_status tar_read(gzFile f, const char *path, void *buf, size_t len, size_t *got) {
    *got = 0;
    while (*got < len) {
        size_t want = len - *got;
        if (want > (1u << 30)) want = 1u << 30;
        int n = gzread(f, (uint8_t *)buf + *got, (unsigned)want);
        if (n < 0) return st_data_gzip_failure(f, path);
        if (n == 0) break;
        *got += (size_t)n;
    }
    int code = Z_OK;
    gzerror(f, &code);
    if (code != Z_OK) return st_data_gzip_failure(f, path);
    return ST_OK;
}

static st_status tar_read_exact(gzFile f, const char *path, void *buf, size_t len, const char *member) {
    size_t got;
    ST_TRY(tar_read(f, path, buf, len, &got));
    if (got < len)
        return st_fail(ST_ERR_FORMAT, "%s: truncated tar archive (member '%s' ends after %zu of %zu bytes)", path,
                       member, got, len);
    return ST_OK;
}

static st_status tar_skip(gzFile f, const char *path, uint64_t len, const char *member) {
    uint8_t scratch[1 << 14];
    while (len > 0) {
        size_t chunk = len > sizeof scratch ? sizeof scratch : (size_t)len;
        ST_TRY(tar_read_exact(f, path, scratch, chunk, member));
        len -= chunk;
    }
    return ST_OK;
}

/* Reads a member's `size` bytes into a new buffer (*out, malloc'd). The
 * buffer grows as data arrives, so a header that declares a huge member in a
 * tiny archive fails as truncated instead of allocating the declared size. */
static st_status tar_read_member(gzFile f, const char *path, size_t size, const char *member, uint8_t **out) {
    size_t cap = size < ((size_t)1 << 20) ? size : ((size_t)1 << 20);
    uint8_t *data = st_malloc(cap ? cap : 1, member);
    if (!data) return ST_ERR_NOMEM;
    size_t used = 0;
    while (used < size) {
        if (used == cap) {
            size_t grown = cap > size / 2 ? size : cap * 2;
            uint8_t *bigger = realloc(data, grown);
            if (!bigger) {
                free(data);
                return st_fail(ST_ERR_NOMEM, "out of memory reading member '%s' of %s", member, path);
            }
            data = bigger;
            cap = grown;
        }
        size_t got;
        st_status s = tar_read(f, path, data + used, cap - used, &got);
        if (s == ST_OK && got < cap - used)
            s = st_fail(ST_ERR_FORMAT, "%s: truncated tar archive (member '%s' ends after %zu of %zu bytes)", path,
                        member, used + got, size);
        if (s != ST_OK) {
            free(data);
            return s;
        }
        used += got;
    }
    *out = data;
    return ST_OK;
}

/* Numeric header field: octal digits padded with spaces / NULs, or GNU
 * base-256 (high bit of the first byte set) for large sizes. */
static int tar_number(const uint8_t *field, size_t len, uint64_t *value) {
    uint64_t v = 0;
    if (field[0] & 0x80) {
        if (field[0] & 0x40) return 0; /* negative */
        v = field[0] & 0x3f;
        for (size_t i = 1; i < len; i++) {
            if (v >> 55) return 0;
            v = (v << 8) | field[i];
        }
        *value = v;
        return 1;
    }
    size_t i = 0;
    while (i < len && field[i] == ' ') i++;
    int digits = 0;
    for (; i < len && field[i] >= '0' && field[i] <= '7'; i++, digits++) {
        if (v >> 60) return 0;
        v = v * 8 + (uint64_t)(field[i] - '0');
    }
    for (; i < len; i++)
        if (field[i] != ' ' && field[i] != '\0') return 0;
    *value = v;
    return digits > 0;
}

static int tar_checksum_ok(const uint8_t *block) {
    uint64_t stored;
    if (!tar_number(block + 148, 8, &stored)) return 0;
    /* The checksum field counts as eight spaces; very old tars summed signed chars. */
    uint64_t unsigned_sum = 0;
    int64_t signed_sum = 0;
    for (int i = 0; i < TAR_BLOCK; i++) {
        uint8_t b = (i >= 148 && i < 156) ? (uint8_t)' ' : block[i];
        unsigned_sum += b;
        signed_sum += (int8_t)b;
    }
    return stored == unsigned_sum || (int64_t)stored == signed_sum;
}

static void copy_field(char *dst, const uint8_t *src, size_t len) {
    size_t n = 0;
    while (n < len && src[n]) n++;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* Extracts "path=" from a pax extended header ("<len> <key>=<value>\n" records). */
static void pax_path(const char *records, size_t size, char *name) {
    size_t pos = 0;
    while (pos < size) {
        char *end;
        unsigned long len = strtoul(records + pos, &end, 10);
        if (len == 0 || pos + len > size || *end != ' ') return;
        const char *key = end + 1;
        const char *stop = records + pos + len;
        if (stop - key > 5 && memcmp(key, "path=", 5) == 0) {
            size_t n = (size_t)(stop - key - 5);
            if (n > 0 && key[5 + n - 1] == '\n') n--;
            if (n >= TAR_MAX_NAME) n = TAR_MAX_NAME - 1;
            memcpy(name, key + 5, n);
            name[n] = '\0';
        }
        pos += len;
    }
}

static const char *base_name(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

static st_status tar_scan(gzFile f, const char *path, st_tar_member *members, int count, size_t max_member_bytes,
                          char *long_name, char *name) {
    uint8_t block[TAR_BLOCK];
    long_name[0] = '\0';
    for (int64_t index = 0;; index++) {
        size_t got;
        ST_TRY(tar_read(f, path, block, TAR_BLOCK, &got));
        if (got == 0) return ST_OK; /* no end-of-archive blocks: tolerated */
        if (got < TAR_BLOCK) return st_fail(ST_ERR_FORMAT, "%s: truncated tar archive (partial header block)", path);
        int zero = 1;
        for (int i = 0; i < TAR_BLOCK && zero; i++) zero = block[i] == 0;
        if (zero) return ST_OK; /* end-of-archive marker */
        if (!tar_checksum_ok(block))
            return st_fail(ST_ERR_FORMAT, "%s: corrupt tar header %lld (bad checksum): not a tar archive or damaged",
                           path, (long long)index);
        uint64_t size;
        if (!tar_number(block + 124, 12, &size))
            return st_fail(ST_ERR_FORMAT, "%s: corrupt tar header %lld (bad size field)", path, (long long)index);
        uint64_t padded = (size + TAR_BLOCK - 1) / TAR_BLOCK * TAR_BLOCK;
        char type = (char)block[156];

        if (long_name[0]) {
            snprintf(name, TAR_MAX_NAME, "%s", long_name);
        } else if (memcmp(block + 257, "ustar", 5) == 0 && block[345]) {
            char prefix[156], shortname[101];
            copy_field(prefix, block + 345, 155);
            copy_field(shortname, block, 100);
            snprintf(name, TAR_MAX_NAME, "%s/%s", prefix, shortname);
        } else {
            copy_field(name, block, 100);
        }

        if (type == 'L' || type == 'x') {
            /* The next header's name comes from this member's data. */
            if (size >= TAR_MAX_NAME * 4)
                return st_fail(ST_ERR_FORMAT, "%s: tar header %lld: implausible %llu-byte extended header", path,
                               (long long)index, (unsigned long long)size);
            char *data = st_calloc(padded + 1, 1, "tar extended header");
            if (!data) return ST_ERR_NOMEM;
            st_status s = tar_read_exact(f, path, data, (size_t)padded, name);
            if (s == ST_OK) {
                long_name[0] = '\0';
                if (type == 'L') {
                    snprintf(long_name, TAR_MAX_NAME, "%.*s", (int)(TAR_MAX_NAME - 1), data);
                } else {
                    pax_path(data, (size_t)size, long_name);
                }
            }
            free(data);
            ST_TRY(s);
            continue;
        }
        long_name[0] = '\0';

        st_tar_member *target = NULL;
        if (type == '0' || type == '\0' || type == '7') {
            const char *base = base_name(name);
            for (int i = 0; i < count && !target; i++)
                if (!members[i].data && strcmp(members[i].wanted, base) == 0) target = &members[i];
        }
        if (!target) {
            ST_TRY(tar_skip(f, path, padded, name));
            continue;
        }
        if (size > max_member_bytes)
            return st_fail(ST_ERR_FORMAT, "%s: member '%s' is %llu bytes, more than the %zu expected", path, name,
                           (unsigned long long)size, max_member_bytes);
        uint8_t *data = NULL;
        st_status s = tar_read_member(f, path, (size_t)size, name, &data);
        if (s == ST_OK) s = tar_skip(f, path, padded - size, name);
        if (s != ST_OK) {
            free(data);
            return s;
        }
        target->data = data;
        target->size = (size_t)size;
    }
}

st_status st_tar_read_members(const char *path, st_tar_member *members, int count, size_t max_member_bytes) {
    for (int i = 0; i < count; i++) {
        members[i].data = NULL;
        members[i].size = 0;
    }
    int fd;
    uint64_t file_size;
    ST_TRY(st_open_regular(path, UINT64_MAX, NULL, &fd, &file_size)); /* never blocks on a FIFO */
    gzFile f = gzdopen(fd, "rb");
    if (!f) {
        close(fd);
        return st_fail(ST_ERR_NOMEM, "cannot read %s: out of memory", path);
    }
    gzbuffer(f, 1 << 17);
    char *long_name = st_malloc(TAR_MAX_NAME, "tar member name");
    char *name = st_malloc(TAR_MAX_NAME, "tar member name");
    st_status s = (long_name && name) ? tar_scan(f, path, members, count, max_member_bytes, long_name, name)
                                      : ST_ERR_NOMEM;
    free(long_name);
    free(name);
    gzclose(f);
    if (s != ST_OK) {
        for (int i = 0; i < count; i++) {
            free(members[i].data);
            members[i].data = NULL;
            members[i].size = 0;
        }
    }
    return s;
}
