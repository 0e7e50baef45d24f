/* ImageFolder scanning (torchvision's find_classes + make_dataset order), the
 * unreadable-file register, and loading one image through decode + transform
 * (see image_folder.h). Only paths and labels are kept in memory. */
#define _DEFAULT_SOURCE /* d_type and DT_* of readdir (glibc); without them every entry is stat'ed */
#include "data/image_folder.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/status.h"

/* ------------------------------------------------------------ string lists */

typedef struct string_list {
    char **items;
    int64_t count, capacity;
} string_list;

static void list_free(string_list *l) {
    for (int64_t i = 0; i < l->count; i++) free(l->items[i]);
    free(l->items);
    memset(l, 0, sizeof *l);
}

static st_status list_push(string_list *l, const char *s) {
    if (l->count == l->capacity) {
        int64_t cap = l->capacity ? l->capacity * 2 : 64;
        char **grown = realloc(l->items, sizeof(char *) * (size_t)cap);
        if (!grown) return st_fail(ST_ERR_NOMEM, "out of memory listing image files");
        l->items = grown;
        l->capacity = cap;
    }
    char *copy = strdup(s);
    if (!copy) return st_fail(ST_ERR_NOMEM, "out of memory listing image files");
    l->items[l->count++] = copy;
    return ST_OK;
}

/* Byte order = code-point order for UTF-8: Python's sorted() of str. */
static int compare_strings(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void list_sort(string_list *l) {
    if (l->count > 1) qsort(l->items, (size_t)l->count, sizeof(char *), compare_strings);
}

static int is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode); /* follows links, as os.walk(followlinks=True) */
}

static int ends_with_ci(const char *name, const char *suffix) {
    size_t n = strlen(name), m = strlen(suffix);
    return n >= m && strcasecmp(name + n - m, suffix) == 0;
}

static int is_jpeg_name(const char *name) { return ends_with_ci(name, ".jpg") || ends_with_ci(name, ".jpeg"); }

/* torchvision's IMG_EXTENSIONS that are not JPEG: listed by ImageFolder, not decodable here. */
static int is_other_image_name(const char *name) {
    static const char *const other[] = {".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", NULL};
    for (int i = 0; other[i]; i++)
        if (ends_with_ci(name, other[i])) return 1;
    return 0;
}

/* Entries of folder `path` (without . and ..), split into folders and others. */
static st_status list_folder(const char *path, string_list *dirs, string_list *files) {
    DIR *d = opendir(path);
    if (!d) return st_fail(ST_ERR_IO, "cannot open folder %s: %s", path, strerror(errno));
    st_status s = ST_OK;
    char full[4096];
    for (struct dirent *e; s == ST_OK && (errno = 0, e = readdir(d)) != NULL;) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        if (snprintf(full, sizeof full, "%s/%s", path, e->d_name) >= (int)sizeof full) {
            s = st_fail(ST_ERR_FORMAT, "%s/%s: path too long", path, e->d_name);
            break;
        }
        /* d_type spares a stat per file (a million on ImageNet); links and
         * unknown types are stat'ed, so linked folders are followed. */
#ifdef DT_DIR
        int folder = e->d_type == DT_DIR ? 1 : e->d_type == DT_REG ? 0 : is_dir(full);
#else
        int folder = is_dir(full);
#endif
        if (folder)
            s = dirs ? list_push(dirs, e->d_name) : ST_OK;
        else if (files)
            s = list_push(files, e->d_name);
    }
    if (s == ST_OK && errno != 0) s = st_fail(ST_ERR_IO, "cannot read folder %s: %s", path, strerror(errno));
    closedir(d);
    return s;
}

/* Sorted class folder names of a split folder. */
static st_status find_classes(const char *split_dir, string_list *classes) {
    ST_TRY(list_folder(split_dir, classes, NULL));
    list_sort(classes);
    return ST_OK;
}

/* ------------------------------------------------------------ the scanner */

typedef struct scan {
    const char *split_dir;
    string_list *paths;    /* relative image paths, in order */
    int64_t other_count;   /* files with a non-JPEG image extension */
    char other_first[4096];
} scan;

/* All folders under class folder `rel` (itself included), relative to the split folder. */
static st_status collect_folders(const scan *sc, const char *rel, int depth, string_list *out) {
    if (depth > ST_IMAGE_FOLDER_MAX_DEPTH)
        return st_fail(ST_ERR_FORMAT, "%s/%s: folders nested deeper than %d levels (a symbolic link loop?)",
                       sc->split_dir, rel, ST_IMAGE_FOLDER_MAX_DEPTH);
    ST_TRY(list_push(out, rel));
    char full[4096];
    snprintf(full, sizeof full, "%s/%s", sc->split_dir, rel);
    string_list subs = {0};
    st_status s = list_folder(full, &subs, NULL);
    list_sort(&subs);
    char child[4096];
    for (int64_t i = 0; s == ST_OK && i < subs.count; i++) {
        if (snprintf(child, sizeof child, "%s/%s", rel, subs.items[i]) >= (int)sizeof child)
            s = st_fail(ST_ERR_FORMAT, "%s/%s/%s: path too long", sc->split_dir, rel, subs.items[i]);
        else
            s = collect_folders(sc, child, depth + 1, out);
    }
    list_free(&subs);
    return s;
}

/* Appends the images of class folder `cls` in make_dataset's order:
 * sorted(os.walk(...)) visits folders by sorted path, each folder's files sorted. */
static st_status scan_class(scan *sc, const char *cls, int64_t *found) {
    string_list folders = {0};
    st_status s = collect_folders(sc, cls, 0, &folders);
    list_sort(&folders);
    *found = 0;
    char full[4096], rel[4096];
    for (int64_t i = 0; s == ST_OK && i < folders.count; i++) {
        snprintf(full, sizeof full, "%s/%s", sc->split_dir, folders.items[i]);
        string_list files = {0};
        s = list_folder(full, NULL, &files);
        list_sort(&files);
        for (int64_t k = 0; s == ST_OK && k < files.count; k++) {
            if (snprintf(rel, sizeof rel, "%s/%s", folders.items[i], files.items[k]) >= (int)sizeof rel) {
                s = st_fail(ST_ERR_FORMAT, "%s/%s: path too long", full, files.items[k]);
            } else if (is_jpeg_name(files.items[k])) {
                s = list_push(sc->paths, rel);
                ++*found;
            } else if (is_other_image_name(files.items[k])) {
                if (sc->other_count++ == 0) snprintf(sc->other_first, sizeof sc->other_first, "%s", rel);
            }
        }
        list_free(&files);
    }
    list_free(&folders);
    return s;
}

void st_image_folder_free(st_image_folder *f) {
    if (!f) return;
    for (int c = 0; f->class_names && c < f->num_classes; c++) free(f->class_names[c]);
    free(f->class_names);
    free(f->split_dir);
    free(f->names);
    free(f->name_offset);
    free(f->labels);
    free(f->bad);
    pthread_mutex_destroy(&f->bad_lock);
    free(f);
}

/* A zeroed folder with its lock ready and room for `count` images. */
static st_image_folder *folder_new(int64_t count) {
    st_image_folder *f = st_calloc(1, sizeof *f, "image folder");
    if (!f) return NULL;
    pthread_mutex_init(&f->bad_lock, NULL);
    size_t n = (size_t)(count > 0 ? count : 1);
    f->name_offset = st_malloc(sizeof(int64_t) * n, "image folder paths");
    f->labels = st_malloc(sizeof(int32_t) * n, "image folder labels");
    f->bad = st_calloc(n, 1, "image folder marks");
    if (!f->name_offset || !f->labels || !f->bad) {
        st_image_folder_free(f);
        return NULL;
    }
    f->count = count;
    return f;
}

static st_status copy_classes(st_image_folder *f, char *const *names, int count) {
    f->class_names = st_calloc((size_t)(count > 0 ? count : 1), sizeof(char *), "class names");
    if (!f->class_names) return ST_ERR_NOMEM;
    f->num_classes = count;
    for (int c = 0; c < count; c++)
        if (!(f->class_names[c] = strdup(names[c]))) return st_fail(ST_ERR_NOMEM, "out of memory for class names");
    return ST_OK;
}

static int find_class(char *const *names, int count, const char *name) {
    for (int c = 0; c < count; c++)
        if (strcmp(names[c], name) == 0) return c;
    return -1;
}

st_status st_image_folder_open(const char *dir, int train, int image_size, st_image_folder **out) {
    if (!out) return st_fail(ST_ERR_ARGUMENT, "st_image_folder_open: no output pointer");
    *out = NULL;
    if (!dir) return st_fail(ST_ERR_ARGUMENT, "st_image_folder_open: no folder given");
    if (image_size < 8 || image_size > 4096)
        return st_fail(ST_ERR_ARGUMENT, "image size %d is outside [8, 4096]", image_size);
    char split_dir[4096], train_dir[4096];
    if (snprintf(split_dir, sizeof split_dir, "%s/%s", dir, train ? "train" : "val") >= (int)sizeof split_dir)
        return st_fail(ST_ERR_ARGUMENT, "%s: path too long", dir);
    snprintf(train_dir, sizeof train_dir, "%s/train", dir);
    if (!is_dir(split_dir))
        return st_fail(ST_ERR_IO, "%s: no such folder (an ImageFolder tree has %s/train/<class>/*.JPEG and %s/val/<class>/*.JPEG)",
                       split_dir, dir, dir);
    string_list classes = {0}, label_classes = {0}, paths = {0};
    st_status s = find_classes(split_dir, &classes);
    if (s == ST_OK && classes.count == 0)
        s = st_fail(ST_ERR_FORMAT, "%s: no class folders (expected %s/<class>/*.JPEG)", split_dir, split_dir);
    if (s == ST_OK && classes.count > INT32_MAX / 2) s = st_fail(ST_ERR_FORMAT, "%s: too many class folders", split_dir);
    /* Labels come from the training split's class list when there is one. */
    if (s == ST_OK && !train && is_dir(train_dir)) {
        s = find_classes(train_dir, &label_classes);
        for (int64_t c = 0; s == ST_OK && c < classes.count; c++)
            if (find_class(label_classes.items, (int)label_classes.count, classes.items[c]) < 0)
                s = st_fail(ST_ERR_FORMAT, "%s/%s: class folder has no counterpart in %s", split_dir, classes.items[c],
                            train_dir);
    }
    const string_list *labels_of = label_classes.count ? &label_classes : &classes;
    scan sc = {.split_dir = split_dir, .paths = &paths};
    int64_t *first = st_malloc(sizeof(int64_t) * (size_t)(classes.count + 1), "image folder classes");
    if (s == ST_OK && !first) s = ST_ERR_NOMEM;
    for (int64_t c = 0; s == ST_OK && c < classes.count; c++) {
        int64_t found;
        first[c] = paths.count;
        s = scan_class(&sc, classes.items[c], &found);
        if (s == ST_OK && found == 0)
            s = st_fail(ST_ERR_FORMAT, "%s/%s: class folder holds no .jpg/.jpeg images (torchvision's ImageFolder refuses an empty class too)",
                        split_dir, classes.items[c]);
    }
    st_image_folder *f = NULL;
    if (s == ST_OK && !(f = folder_new(paths.count))) s = ST_ERR_NOMEM;
    if (s == ST_OK) s = copy_classes(f, labels_of->items, (int)labels_of->count);
    if (s == ST_OK && !(f->split_dir = strdup(split_dir))) s = st_fail(ST_ERR_NOMEM, "out of memory");
    size_t arena = 0;
    for (int64_t i = 0; s == ST_OK && i < paths.count; i++) arena += strlen(paths.items[i]) + 1;
    if (s == ST_OK && !(f->names = st_malloc(arena ? arena : 1, "image folder paths"))) s = ST_ERR_NOMEM;
    if (s == ST_OK) {
        size_t at = 0;
        int64_t c = 0;
        for (int64_t i = 0; i < paths.count; i++) {
            while (c + 1 < classes.count && i >= first[c + 1]) c++;
            size_t n = strlen(paths.items[i]) + 1;
            memcpy(f->names + at, paths.items[i], n);
            f->name_offset[i] = (int64_t)at;
            at += n;
            f->labels[i] = labels_of == &classes ? (int32_t)c
                                                 : (int32_t)find_class(labels_of->items, (int)labels_of->count,
                                                                       classes.items[c]);
        }
        f->image_size = image_size;
    }
    if (s == ST_OK && sc.other_count > 0)
        fprintf(stderr, "sparsetrain: warning: %s: %lld file(s) with image extensions other than .jpg/.jpeg left out "
                        "(only JPEG is decoded; first: %s)\n",
                split_dir, (long long)sc.other_count, sc.other_first);
    free(first);
    list_free(&classes);
    list_free(&label_classes);
    list_free(&paths);
    if (s != ST_OK) {
        st_image_folder_free(f);
        return s;
    }
    *out = f;
    return ST_OK;
}

st_status st_image_folder_slice(const st_image_folder *src, int64_t start, int64_t count, st_image_folder **out) {
    *out = NULL;
    if (start < 0 || count < 0 || start > src->count || count > src->count - start)
        return st_fail(ST_ERR_ARGUMENT, "image folder slice [%lld, %lld) is outside the %lld images", (long long)start,
                       (long long)(start + count), (long long)src->count);
    st_image_folder *f = folder_new(count);
    if (!f) return ST_ERR_NOMEM;
    st_status s = copy_classes(f, src->class_names, src->num_classes);
    size_t arena = 0;
    for (int64_t i = 0; i < count; i++) arena += strlen(src->names + src->name_offset[start + i]) + 1;
    if (s == ST_OK && !(f->split_dir = strdup(src->split_dir))) s = st_fail(ST_ERR_NOMEM, "out of memory");
    if (s == ST_OK && !(f->names = st_malloc(arena ? arena : 1, "image folder paths"))) s = ST_ERR_NOMEM;
    if (s != ST_OK) {
        st_image_folder_free(f);
        return s;
    }
    size_t at = 0;
    pthread_mutex_lock((pthread_mutex_t *)&src->bad_lock);
    for (int64_t i = 0; i < count; i++) {
        const char *name = src->names + src->name_offset[start + i];
        size_t n = strlen(name) + 1;
        memcpy(f->names + at, name, n);
        f->name_offset[i] = (int64_t)at;
        at += n;
        f->labels[i] = src->labels[start + i];
        f->bad[i] = src->bad[start + i];
        f->bad_count += f->bad[i];
    }
    pthread_mutex_unlock((pthread_mutex_t *)&src->bad_lock);
    f->image_size = src->image_size;
    f->quiet = src->quiet;
    *out = f;
    return ST_OK;
}

int st_image_folder_path(const st_image_folder *f, int64_t index, char *buf, size_t size) {
    int n = snprintf(buf, size, "%s/%s", f->split_dir, f->names + f->name_offset[index]);
    return n >= 0 && (size_t)n < size ? 0 : -1;
}

void st_image_folder_mark_bad(st_image_folder *f, int64_t index, const char *why) {
    pthread_mutex_lock(&f->bad_lock);
    if (!f->bad[index]) {
        f->bad[index] = 1;
        f->bad_count++;
        if (!f->quiet) fprintf(stderr, "sparsetrain: warning: skipping an unreadable image: %s\n", why);
    }
    pthread_mutex_unlock(&f->bad_lock);
}

int st_image_folder_is_bad(st_image_folder *f, int64_t index) {
    pthread_mutex_lock(&f->bad_lock);
    int bad = f->bad[index];
    pthread_mutex_unlock(&f->bad_lock);
    return bad;
}

void st_image_scratch_free(st_image_scratch *s) {
    if (!s) return;
    free(s->file);
    st_rgb_image_free(&s->decoded);
    free(s->out);
    memset(s, 0, sizeof *s);
}

st_status st_read_file_into(const char *path, size_t max_bytes, uint8_t **buf, size_t *capacity, size_t *size) {
    *size = 0;
    /* O_NONBLOCK: a FIFO named like an image must not block the open; anything
     * but a regular file is refused before a byte is read. */
    int fd = open(path, O_RDONLY | O_NONBLOCK);
    if (fd < 0) return st_fail(ST_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return st_fail(ST_ERR_IO, "%s: not a regular file", path);
    }
    FILE *fp = fdopen(fd, "rb");
    if (!fp) {
        close(fd);
        return st_fail(ST_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    }
    if ((uint64_t)st.st_size > max_bytes) {
        fclose(fp);
        return st_fail(ST_ERR_FORMAT, "%s: %lld bytes is larger than the limit of %zu", path, (long long)st.st_size,
                       max_bytes);
    }
    size_t want = (size_t)st.st_size;
    if (*capacity < want + 1) {
        uint8_t *grown = realloc(*buf, want + 1);
        if (!grown) {
            fclose(fp);
            return st_fail(ST_ERR_NOMEM, "out of memory reading %s", path);
        }
        *buf = grown;
        *capacity = want + 1;
    }
    size_t got = fread(*buf, 1, want, fp);
    int failed = ferror(fp);
    fclose(fp);
    if (failed || got != want) return st_fail(ST_ERR_IO, "%s: read error", path);
    *size = got;
    return ST_OK;
}

st_status st_image_transform(const st_rgb_image *img, int size, int train, uint64_t seed, int64_t epoch,
                             int64_t position, const char *name, st_image_scratch *scratch, st_crop *crop_used) {
    const int S = size;
    if (!scratch->out) {
        scratch->out = st_malloc((size_t)S * S * 3, "transformed image");
        if (!scratch->out) return ST_ERR_NOMEM;
    }
    st_crop crop;
    if (train) {
        crop = st_random_resized_crop(seed, epoch, position, img->height, img->width, NULL);
        ST_TRY(st_image_resize_bilinear(img->pixels, img->width, crop.top, crop.left, crop.height, crop.width, S, S,
                                        scratch->out));
    } else {
        int rh, rw;
        st_eval_geometry(img->height, img->width, st_eval_resize_size(S), S, &rh, &rw, &crop);
        if ((uint64_t)rh * (uint64_t)rw > ST_IMAGE_MAX_PIXELS) /* a sliver such as 20000 x 1 */
            return st_fail(ST_ERR_FORMAT, "%s: %dx%d image would resize to %dx%d, above the limit of %u pixels", name,
                           img->width, img->height, rw, rh, ST_IMAGE_MAX_PIXELS);
        /* only the center crop's window of the resized image is computed */
        ST_TRY(st_image_resize_bilinear_window(img->pixels, img->width, 0, 0, img->height, img->width, rh, rw, crop.top,
                                               crop.left, S, S, scratch->out));
    }
    if (crop_used) *crop_used = crop;
    return ST_OK;
}

st_status st_image_folder_load(const st_image_folder *f, int64_t index, int train, uint64_t seed, int64_t epoch,
                               int64_t position, st_image_scratch *scratch, st_crop *crop_used) {
    char path[4096];
    if (st_image_folder_path(f, index, path, sizeof path) != 0)
        return st_fail(ST_ERR_IO, "%s/...: path too long", f->split_dir);
    size_t size;
    ST_TRY(st_read_file_into(path, ST_IMAGE_MAX_FILE_BYTES, &scratch->file, &scratch->file_capacity, &size));
    ST_TRY(st_jpeg_decode(scratch->file, size, path, &scratch->decoded));
    return st_image_transform(&scratch->decoded, f->image_size, train, seed, epoch, position, path, scratch, crop_used);
}
