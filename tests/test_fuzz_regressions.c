/* Replays every seed input (tests/fuzz/corpus/<target>/) and every input that
 * once crashed a parser (tests/fuzz/regressions/<target>/) through the fuzz
 * entry points, without libFuzzer. A regression shows up as a crash, an
 * abort of one of the targets' own consistency checks, or (in the sanitizer
 * builds) an ASan/UBSan report. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "targets.h"
#include "testing.h"

#ifndef ST_FUZZ_DIR
#error "ST_FUZZ_DIR must name tests/fuzz"
#endif

static int read_whole(const char *path, uint8_t **data, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    size_t cap = 1 << 12, used = 0;
    uint8_t *buf = new_bytes(cap);
    for (;;) {
        if (used == cap) {
            cap *= 2;
            uint8_t *bigger = realloc(buf, cap);
            if (!bigger) exit(2);
            buf = bigger;
        }
        size_t n = fread(buf + used, 1, cap - used, f);
        if (n == 0) break;
        used += n;
    }
    fclose(f);
    *data = buf;
    *size = used;
    return 1;
}

/* Runs every file of dir through `target`; @return the number of files. */
static int replay_folder(const st_fuzz_target *target, const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        uint8_t *data;
        size_t size;
        if (!read_whole(path, &data, &size)) continue;
        printf("  %s <- %s (%zu bytes)\n", target->name, e->d_name, size);
        fflush(stdout);
        target->run(data, size);
        free(data);
        n++;
    }
    closedir(d);
    return n;
}

int main(void) {
    int total = 0;
    for (const st_fuzz_target *t = st_fuzz_targets; t->name; t++) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/corpus/%s", ST_FUZZ_DIR, t->name);
        int seeds = replay_folder(t, dir);
        CHECK(seeds > 0); /* every target has a seed corpus */
        snprintf(dir, sizeof dir, "%s/regressions/%s", ST_FUZZ_DIR, t->name);
        int regressions = replay_folder(t, dir);
        printf("%s: %d seed(s), %d regression input(s)\n", t->name, seeds, regressions);
        total += seeds + regressions;
    }
    st_fuzz_cleanup();
    printf("%d inputs replayed\n", total);
    TEST_MAIN_END();
}
