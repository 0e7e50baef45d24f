/* Run ids and the --save overwrite guard (see run_guard.h). */
#include "train/run_guard.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/status.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"

static int read_random(uint8_t *bytes, size_t n) {
    int fd = open("/dev/urandom", O_RDONLY);
    if (fd < 0) return 0;
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, bytes + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    return got == n;
}

/* splitmix64 step: spreads clock and pid bits when /dev/urandom is missing. */
static uint64_t mix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

void st_run_id_new(char out[ST_RUN_ID_CHARS + 1]) {
    uint8_t bytes[ST_RUN_ID_CHARS / 2];
    if (!read_random(bytes, sizeof bytes)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t a = mix64((uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec);
        uint64_t b = mix64(a ^ (uint64_t)getpid());
        for (int i = 0; i < 8; i++) {
            bytes[i] = (uint8_t)(a >> (8 * i));
            bytes[8 + i] = (uint8_t)(b >> (8 * i));
        }
    }
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < sizeof bytes; i++) {
        out[2 * i] = hex[bytes[i] >> 4];
        out[2 * i + 1] = hex[bytes[i] & 15];
    }
    out[ST_RUN_ID_CHARS] = '\0';
}

int st_run_id_valid(const char *id) {
    if (!id || strlen(id) != ST_RUN_ID_CHARS) return 0;
    for (const char *p = id; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'))) return 0;
    return 1;
}

static int same_file(const char *a, const char *b) {
    struct stat sa, sb;
    return a[0] && b[0] && stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

st_status st_save_guard(const char *save, const char *run_id, const char *resume, int force) {
    if (!save || !save[0] || force) return ST_OK;
    struct stat info;
    if (stat(save, &info) != 0) return ST_OK; /* nothing to overwrite */
    if (S_ISDIR(info.st_mode)) return st_fail(ST_ERR_ARGUMENT, "--save %s names a folder, not a file", save);
    if (same_file(save, resume)) return ST_OK;
    st_safetensors *f = NULL;
    st_status s = st_safetensors_read(save, &f);
    const char *format = s == ST_OK ? st_safetensors_meta(f, "format") : NULL;
    if (!format || strcmp(format, ST_CHECKPOINT_FORMAT) != 0) {
        st_safetensors_free(f);
        return st_fail(ST_ERR_ARGUMENT,
                       "--save %s: the file exists and is not a sparsetrain checkpoint; refusing to overwrite it "
                       "(choose another path, or pass --force)",
                       save);
    }
    const char *theirs = st_safetensors_meta(f, "run_id");
    if (theirs && run_id && strcmp(theirs, run_id) == 0) {
        st_safetensors_free(f);
        return ST_OK;
    }
    const char *model = st_safetensors_meta(f, "model");
    const char *epoch = st_safetensors_meta(f, "epoch");
    s = st_fail(ST_ERR_ARGUMENT,
                "--save %s holds a checkpoint of another run (run id %s, model %s, %s epoch(s) done); refusing to "
                "overwrite it: continue that run with --resume %s, choose another --save path, or pass --force",
                save, theirs ? theirs : "none recorded", model ? model : "?", epoch ? epoch : "?", save);
    st_safetensors_free(f);
    return s;
}
