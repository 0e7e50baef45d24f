/* Run ids and the --save overwrite guard (see run_guard.h). */
#include "train/run_guard.h"

#include <errno.h>
#include <math.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/status.h"
#include "io/atomic_file.h"
#include "io/checkpoint.h"
#include "io/json.h"
#include "io/log_file.h"
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
    return a && b && a[0] && b[0] && stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* The metadata of a safetensors file, reading only its header (at most
 * ST_SAFETENSORS_MAX_HEADER bytes, never the tensors): 1 and *doc (free it)
 * with *meta the "__metadata__" object (or NULL), 0 if it is not readable as one. */
static int read_header_meta(const char *path, st_json_document **doc, const st_json_value **meta) {
    *doc = NULL;
    *meta = NULL;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) return 0;
    struct stat st;
    unsigned char prefix[8];
    int ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size >= 10 && pread(fd, prefix, 8, 0) == 8;
    uint64_t n = 0;
    for (int i = 7; ok && i >= 0; i--) n = (n << 8) | prefix[i];
    ok = ok && n >= 2 && n <= ST_SAFETENSORS_MAX_HEADER && n <= (uint64_t)st.st_size - 8;
    char *header = ok ? malloc((size_t)n) : NULL;
    ok = header && pread(fd, header, (size_t)n, 8) == (ssize_t)n;
    close(fd);
    if (ok) {
        char source[ST_PATH_MAX + 32];
        snprintf(source, sizeof source, "header of %s", path);
        ok = st_json_parse(header, (size_t)n, source, NULL, doc) == ST_OK;
    }
    free(header);
    if (!ok) return 0;
    const st_json_value *m = st_json_object_get(st_json_root(*doc), "__metadata__");
    *meta = m && m->type == ST_JSON_OBJECT ? m : NULL;
    return 1;
}

static const char *meta_string(const st_json_value *meta, const char *key) {
    const st_json_value *v = st_json_object_get(meta, key);
    return v && v->type == ST_JSON_STRING ? v->string : NULL;
}

st_status st_save_guard(const char *save, const char *run_id, const char *resume, int force) {
    if (!save || !save[0]) return ST_OK;
    /* folders, devices, FIFOs and names too long for the temporary file: always refused */
    ST_TRY(st_output_check(save, "--save", ST_FILE_CHECKPOINT, 1));
    if (force) return ST_OK;
    st_file_kind kind;
    ST_TRY(st_file_kind_of(save, &kind));
    if (kind == ST_FILE_MISSING || kind == ST_FILE_EMPTY) return ST_OK; /* nothing to overwrite */
    if (resume && same_file(save, resume)) return ST_OK;
    st_json_document *doc = NULL;
    const st_json_value *meta = NULL;
    const char *format = NULL;
    if (kind == ST_FILE_CHECKPOINT && read_header_meta(save, &doc, &meta)) format = meta_string(meta, "format");
    if (!format || strcmp(format, ST_CHECKPOINT_FORMAT) != 0) {
        st_json_free(doc);
        return st_fail(ST_ERR_ARGUMENT,
                       "--save %s: the file exists and is not a sparsetrain checkpoint; refusing to overwrite it "
                       "(choose another path, or pass --force)",
                       save);
    }
    const char *theirs = meta_string(meta, "run_id");
    if (theirs && run_id && strcmp(theirs, run_id) == 0) {
        st_json_free(doc);
        return ST_OK;
    }
    const char *model = meta_string(meta, "model");
    const char *epoch = meta_string(meta, "epoch");
    st_status s = st_fail(ST_ERR_ARGUMENT,
                "--save %s holds a checkpoint of another run (run id %s, model %s, %s epoch(s) done); refusing to "
                "overwrite it: continue that run with --resume %s, choose another --save path, or pass --force",
                save, theirs ? theirs : "none recorded", model ? model : "?", epoch ? epoch : "?", save);
    st_json_free(doc);
    return s;
}

st_status st_run_dir_guard(const char *dir, const char *run_id, const char *resume, int force) {
    if (!dir || !dir[0] || force) return ST_OK;
    char ck[ST_PATH_MAX + 32], log[ST_PATH_MAX + 32];
    snprintf(ck, sizeof ck, "%s/checkpoint.safetensors", dir);
    snprintf(log, sizeof log, "%s/log.jsonl", dir);
    char theirs[64] = "";
    const char *where = NULL;
    st_file_kind kind;
    if (st_file_kind_of(ck, &kind) == ST_OK && kind == ST_FILE_CHECKPOINT && !(resume && same_file(ck, resume))) {
        st_json_document *doc = NULL;
        const st_json_value *meta = NULL;
        const char *id = read_header_meta(ck, &doc, &meta) ? meta_string(meta, "run_id") : NULL;
        snprintf(theirs, sizeof theirs, "%s", id ? id : "none recorded");
        const int another = !id || !run_id || strcmp(id, run_id) != 0; /* before the document (holding id) is freed */
        st_json_free(doc);
        if (another) where = ck;
    }
    if (!where) {
        st_log_run_id(log, theirs, sizeof theirs);
        if (theirs[0] && (!run_id || strcmp(theirs, run_id) != 0)) where = log;
    }
    if (!where) return ST_OK;
    return st_fail(ST_ERR_ARGUMENT,
                   "--run-dir %s belongs to another run (run id %s, in %s); refusing to write into it (continue that "
                   "run with --resume %s, choose another folder, or pass --force)",
                   dir, theirs, where, ck);
}

#define LOCK_MARK "sparsetrain run lock, pid "

/* flock on PATH.lock (created, holding our pid; removed at the end). The
 * lock file, not the checkpoint, is locked: a save renames a new file over
 * the checkpoint, which would leave a lock on the old inode behind. */
static st_status lock_save(const char *save, st_run_guard *g) {
    snprintf(g->save_lock, sizeof g->save_lock, "%s.lock", save);
    for (int attempt = 0; attempt < 8; attempt++) {
        /* read-only: flock needs no write access, and a file held open for
         * writing would keep its file system from being remounted read-only */
        int fd = open(g->save_lock, O_RDONLY | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC, 0666);
        if (fd < 0)
            return st_fail(ST_ERR_IO, "--save %s: cannot create its lock file %s: %s", save, g->save_lock,
                           strerror(errno));
        struct stat st, now;
        char head[64] = "";
        if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
            close(fd);
            return st_fail(ST_ERR_ARGUMENT, "--save %s: %s exists and is not a lock file; remove it or choose another --save path",
                           save, g->save_lock);
        }
        ssize_t got = pread(fd, head, sizeof head - 1, 0);
        head[got > 0 ? got : 0] = 0;
        if (st.st_size > 0 && strncmp(head, LOCK_MARK, strlen(LOCK_MARK)) != 0) {
            close(fd);
            return st_fail(ST_ERR_ARGUMENT,
                           "--save %s: %s exists and is not a sparsetrain lock file; remove it or choose another --save path",
                           save, g->save_lock);
        }
        if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            int err = errno;
            close(fd);
            if (err == EWOULDBLOCK) {
                char *nl = strchr(head, '\n');
                if (nl) *nl = 0;
                return st_fail(ST_ERR_IO,
                               "--save %s is in use: another sparsetrain run (pid %s) holds its lock %s; wait for that run "
                               "to finish, or choose another --save path",
                               save, head[0] ? head + strlen(LOCK_MARK) : "unknown", g->save_lock);
            }
            /* no locks on this file system (some network mounts): run unlocked */
            if (err == ENOLCK || err == EOPNOTSUPP || err == EINVAL) return ST_OK;
            return st_fail(ST_ERR_IO, "--save %s: cannot lock %s: %s", save, g->save_lock, strerror(err));
        }
        /* The holder we waited for may have removed the file: lock the one at the path. */
        if (stat(g->save_lock, &now) != 0 || now.st_ino != st.st_ino || now.st_dev != st.st_dev) {
            close(fd);
            continue;
        }
        char mark[64];
        int n = snprintf(mark, sizeof mark, LOCK_MARK "%ld\n", (long)getpid());
        int wfd = open(g->save_lock, O_WRONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
        if (wfd >= 0) { /* the pid is a note for the message of a second run; the lock holds without it */
            if (ftruncate(wfd, 0) == 0 && pwrite(wfd, mark, (size_t)n, 0) == n) {
            }
            close(wfd);
        }
        g->save_lock_fd = fd;
        return ST_OK;
    }
    return st_fail(ST_ERR_IO, "--save %s: cannot lock %s: it keeps being replaced", save, g->save_lock);
}

static st_status lock_dir(const char *dir, st_run_guard *g) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return st_fail(ST_ERR_IO, "--run-dir %s: cannot open it: %s", dir, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int err = errno;
        close(fd);
        if (err == EWOULDBLOCK)
            return st_fail(ST_ERR_IO,
                           "--run-dir %s is in use: another sparsetrain run holds its lock; wait for that run to "
                           "finish, or choose another folder",
                           dir);
        if (err == ENOLCK || err == EOPNOTSUPP || err == EINVAL) return ST_OK; /* no locks here: run unlocked */
        return st_fail(ST_ERR_IO, "--run-dir %s: cannot lock it: %s", dir, strerror(err));
    }
    g->dir_fd = fd;
    return ST_OK;
}

static st_status writable_folder(const char *save) {
    char dir[ST_PATH_MAX];
    snprintf(dir, sizeof dir, "%s", save);
    char *slash = strrchr(dir, '/');
    if (slash)
        slash[slash == dir ? 1 : 0] = 0;
    else
        snprintf(dir, sizeof dir, ".");
    if (access(dir, W_OK) != 0)
        return st_fail(ST_ERR_IO, "cannot write checkpoint %s: folder %s is missing or not writable", save, dir);
    return ST_OK;
}

static st_status guard_begin(const st_train_config *c, st_run_guard *g) {
    st_file_claims claims;
    st_file_claims_init(&claims);
    ST_TRY(st_claim_input(&claims, c->resume, "--resume"));
    ST_TRY(st_claim_successor(&claims, c->save, "--save"));
    ST_TRY(st_claim_output(&claims, c->log, "--log"));
    if (c->save[0]) ST_TRY(writable_folder(c->save));
    if (c->run_dir[0]) ST_TRY(lock_dir(c->run_dir, g));
    if (c->save[0]) ST_TRY(lock_save(c->save, g));
    ST_TRY(st_save_guard(c->save, c->run_id, c->resume, c->force));
    ST_TRY(st_run_dir_guard(c->run_dir, c->run_id, c->resume, c->force));
    ST_TRY(st_log_check(c->log, "--log", c->run_id, c->resume[0] != 0, c->force));
    if (c->save[0]) st_atomic_clean_stale(c->save);
    return ST_OK;
}

st_status st_run_guard_begin(const st_train_config *c, st_run_guard *g) {
    memset(g, 0, sizeof *g);
    g->save_lock_fd = g->dir_fd = -1;
    st_status s = guard_begin(c, g);
    if (s != ST_OK) st_run_guard_end(g);
    return s;
}

void st_run_guard_end(st_run_guard *g) {
    if (!g) return;
    int saved = errno;
    if (g->save_lock_fd >= 0) {
        unlink(g->save_lock); /* still ours: the lock is held until close */
        close(g->save_lock_fd);
    }
    if (g->dir_fd >= 0) close(g->dir_fd);
    g->save_lock_fd = g->dir_fd = -1;
    errno = saved;
}

st_status st_resume_counters_check(const st_checkpoint_info *info, const st_train_config *c,
                                   int64_t batches_per_epoch) {
    const char *path = c->resume;
    int64_t total = batches_per_epoch;
    if (c->max_batches > 0 && total > c->max_batches) total = c->max_batches;
    if (info->epoch > c->epochs)
        return st_fail(ST_ERR_FORMAT, "%s: checkpoint metadata 'epoch' = %d is more than the run's %d epochs", path,
                       info->epoch, c->epochs);
    if (info->batch_in_epoch > 0 && info->epoch == c->epochs)
        return st_fail(ST_ERR_FORMAT,
                       "%s: checkpoint metadata 'batch_in_epoch' = %lld, but all %d epochs of the run are done", path,
                       (long long)info->batch_in_epoch, c->epochs);
    /* == total: interrupted after the epoch's last step, before its evaluation */
    if (info->batch_in_epoch > total)
        return st_fail(ST_ERR_FORMAT,
                       "%s: checkpoint metadata 'batch_in_epoch' = %lld is more than the %lld batches of an epoch of "
                       "this run",
                       path, (long long)info->batch_in_epoch, (long long)total);
    int64_t most_seen = info->batch_in_epoch * (int64_t)c->batch_size;
    if (info->epoch_seen > most_seen)
        return st_fail(ST_ERR_FORMAT,
                       "%s: checkpoint metadata 'epoch_seen' = %lld is more than %lld batch(es) of %d can hold", path,
                       (long long)info->epoch_seen, (long long)info->batch_in_epoch, c->batch_size);
    if (info->epoch_correct > info->epoch_seen)
        return st_fail(ST_ERR_FORMAT, "%s: checkpoint metadata 'epoch_correct' = %lld is more than 'epoch_seen' = %lld",
                       path, (long long)info->epoch_correct, (long long)info->epoch_seen);
    if (!isfinite(info->epoch_loss_sum) || info->epoch_loss_sum < 0 || (info->epoch_seen == 0 && info->epoch_loss_sum != 0))
        return st_fail(ST_ERR_FORMAT, "%s: checkpoint metadata 'epoch_loss_sum' = %g is not a loss sum of %lld images",
                       path, info->epoch_loss_sum, (long long)info->epoch_seen);
    int64_t done = (int64_t)info->epoch * total + info->batch_in_epoch;
    if (info->step > done)
        return st_fail(ST_ERR_FORMAT,
                       "%s: checkpoint metadata 'step' = %lld is more than the %lld batches done (%d epoch(s) of %lld, "
                       "+ %lld)",
                       path, (long long)info->step, (long long)done, info->epoch, (long long)total,
                       (long long)info->batch_in_epoch);
    if (info->best_epoch >= info->epoch && info->best_epoch >= 0)
        return st_fail(ST_ERR_FORMAT, "%s: checkpoint metadata 'best_epoch' = %d is not below the %d epoch(s) done",
                       path, info->best_epoch, info->epoch);
    return ST_OK;
}

st_status st_layers_kept_check(const st_model *m, const st_train_config *c) {
    if (!c->sparse || c->allow_empty_layers) return ST_OK;
    int empty = 0, layers = 0;
    const st_param *first = NULL;
    for (int i = 0; i < m->n_params; i++) {
        const st_param *p = &m->params[i];
        if (!p->sparse) continue;
        layers++;
        if (p->sparse->kept == 0) {
            if (!first) first = p;
            empty++;
        }
    }
    if (!empty) return ST_OK;
    return st_fail(ST_ERR_ARGUMENT,
                   "--density %g leaves %d of %d sparse layers with no kept weight (the first: %s, %lld weights): "
                   "nothing can flow through them; raise --density, or pass --allow-empty-layers",
                   c->density, empty, layers, first->name, (long long)first->numel);
}
