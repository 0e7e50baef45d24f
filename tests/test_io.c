/* Tests of src/io: the strict JSON parser and builder, the safetensors
 * reader/writer (round trips, every kind of corruption, failed writes) and the
 * atomic file writer. With `--roundtrip IN OUT` it instead copies a safetensors
 * file through the C reader and writer, and with `--checkpoint-roundtrip IN
 * OUT` a checkpoint through the checkpoint loader and writer (both used by
 * tests/checkpoint_io_test.py). */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "io/atomic_file.h"
#include "io/checkpoint.h"
#include "io/json.h"
#include "io/log_file.h"
#include "io/safetensors.h"
#include "sparsetrain.h"
#include "testing.h"

static char tmp_dir[4096];

static void path_in_tmp(char *out, size_t n, const char *name) { snprintf(out, n, "%s/%s", tmp_dir, name); }

static int file_exists(const char *path) {
    struct stat info;
    return stat(path, &info) == 0;
}

/* Number of entries in `dir` whose name contains ".tmp." (leftover temp files). */
static int count_temp_files(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strstr(e->d_name, ".tmp.")) n++;
    closedir(d);
    return n;
}

static st_status parse_text(const char *text, st_json_document **doc) {
    return st_json_parse(text, strlen(text), "test.json", NULL, doc);
}

/* ---- JSON ------------------------------------------------------------------------ */

static void test_json_valid(void) {
    st_json_document *doc = NULL;
    const char *text =
        " {\"a\": [1, -2, 3.5, 1e3, -0, 9223372036854775807, -9223372036854775808, 18446744073709551616],\n"
        "  \"s\": \"q\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\u20ac\\ud83d\\ude00\xc3\xa9\",\n"
        "  \"t\": true, \"f\": false, \"n\": null, \"o\": {}, \"e\": [], \"z\": \"a\\u0000b\"} \r\n";
    CHECK_OK(parse_text(text, &doc));
    if (!doc) return;
    const st_json_value *root = st_json_root(doc);
    CHECK(root->type == ST_JSON_OBJECT && root->count == 8);
    const st_json_value *a = st_json_object_get(root, "a");
    CHECK(a && a->type == ST_JSON_ARRAY && a->count == 8);
    CHECK(st_json_array_at(a, 0)->is_int64 && st_json_array_at(a, 0)->int64 == 1);
    CHECK(st_json_array_at(a, 1)->int64 == -2);
    CHECK(!st_json_array_at(a, 2)->is_int64 && st_json_array_at(a, 2)->number == 3.5);
    CHECK(!st_json_array_at(a, 3)->is_int64 && st_json_array_at(a, 3)->number == 1000.0);
    CHECK(st_json_array_at(a, 4)->is_int64 && st_json_array_at(a, 4)->int64 == 0);
    CHECK(st_json_array_at(a, 5)->int64 == INT64_MAX);
    CHECK(st_json_array_at(a, 6)->is_int64 && st_json_array_at(a, 6)->int64 == INT64_MIN);
    CHECK(!st_json_array_at(a, 7)->is_int64 && st_json_array_at(a, 7)->number == 18446744073709551616.0);
    CHECK(st_json_array_at(a, 8) == NULL);
    const st_json_value *s = st_json_object_get(root, "s");
    const char *expected = "q\"\\/\b\f\n\r\t\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xc3\xa9";
    CHECK(s && s->type == ST_JSON_STRING && strcmp(s->string, expected) == 0);
    CHECK(st_json_object_get(root, "t")->boolean == 1);
    CHECK(st_json_object_get(root, "f")->type == ST_JSON_BOOL && st_json_object_get(root, "f")->boolean == 0);
    CHECK(st_json_object_get(root, "n")->type == ST_JSON_NULL);
    CHECK(st_json_object_get(root, "o")->type == ST_JSON_OBJECT && st_json_object_get(root, "o")->count == 0);
    const st_json_value *z = st_json_object_get(root, "z");
    CHECK(z->string_length == 3 && memcmp(z->string, "a\0b", 3) == 0);
    CHECK(st_json_object_get(root, "missing") == NULL);
    st_json_free(doc);
    st_json_free(NULL);
}

static void test_json_invalid(void) {
    static const char *const bad[] = {
        "",
        "   ",
        "{",
        "}",
        "[1,]",
        "{\"a\":1,}",
        "[1 2]",
        "{\"a\" 1}",
        "{a:1}",
        "{'a':1}",
        "01",
        "-",
        "1.",
        ".5",
        "1e",
        "+1",
        "0x10",
        "1e400",
        "NaN",
        "Infinity",
        "tru",
        "nul",
        "\"abc",
        "\"a\\x\"",
        "\"\\u12\"",
        "\"\\u12G4\"",
        "\"\\ud800\"",
        "\"\\udc00\"",
        "\"\\ud800\\u0041\"",
        "\"tab\there\"",
        "\"bad utf8 \xff\"",
        "\"overlong \xc0\xaf\"",
        "\"surrogate \xed\xa0\x80\"",
        "\"cut \xe2\x82\"",
        "{\"a\":1,\"a\":2}",
        "{\"a\":1} x",
        "[1] [2]",
        "\xef\xbb\xbf{}",   /* a byte-order mark is not JSON */
        "\"trailing backslash\\",
        "[\"a\"\x01]",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        st_json_document *doc = (st_json_document *)1;
        st_status s = parse_text(bad[i], &doc);
        if (s != ST_ERR_FORMAT) fprintf(stderr, "accepted invalid JSON #%zu: %s\n", i, bad[i]);
        CHECK(s == ST_ERR_FORMAT);
        CHECK(doc == NULL);
        CHECK(strstr(st_last_error(), "test.json") != NULL);
    }
    /* Depth and size limits. */
    char deep[401];
    memset(deep, '[', 200);
    memset(deep + 200, ']', 200);
    deep[400] = '\0';
    st_json_document *doc = NULL;
    CHECK(parse_text(deep, &doc) == ST_ERR_FORMAT);
    CHECK(strstr(st_last_error(), "nesting") != NULL);
    st_json_limits limits = st_json_default_limits();
    limits.max_depth = 2;
    CHECK_OK(st_json_parse("[[1]]", 5, "x", &limits, &doc));
    st_json_free(doc);
    CHECK(st_json_parse("[[[1]]]", 7, "x", &limits, &doc) == ST_ERR_FORMAT);
    limits = st_json_default_limits();
    limits.max_bytes = 4;
    CHECK(st_json_parse("[1,2]", 5, "x", &limits, &doc) == ST_ERR_FORMAT);
    limits = st_json_default_limits();
    limits.max_values = 3;
    CHECK_OK(st_json_parse("[1,2]", 5, "x", &limits, &doc));
    st_json_free(doc);
    CHECK(st_json_parse("[1,2,3]", 7, "x", &limits, &doc) == ST_ERR_FORMAT);
    /* Error position is reported as line and column. */
    CHECK(parse_text("{\n  \"a\": tru\n}", &doc) == ST_ERR_FORMAT);
    CHECK(strstr(st_last_error(), "line 2, column 8") != NULL);
}

static void test_json_builder(void) {
    st_json_builder b;
    st_json_builder_init(&b);
    st_json_append_text(&b, "{");
    st_json_append_string(&b, "k\"\\\n\x01\xc3\xa9");
    st_json_append_text(&b, ":[");
    st_json_append_int(&b, INT64_MIN);
    st_json_append_text(&b, ",");
    st_json_append_double(&b, 0.1);
    st_json_append_text(&b, ",");
    st_json_append_double(&b, 1.0 / 3.0);
    st_json_append_text(&b, ",");
    st_json_append_double(&b, -1e300);
    st_json_append_text(&b, ",");
    st_json_append_double(&b, NAN);
    st_json_append_text(&b, ",");
    st_json_append_string_n(&b, "a\0b", 3);
    st_json_append_text(&b, "]}");
    char *text;
    size_t length;
    CHECK_OK(st_json_builder_finish(&b, &text, &length));
    CHECK(strstr(text, "\"k\\\"\\\\\\n\\u0001\xc3\xa9\"") != NULL);
    CHECK(strstr(text, "0.1,") != NULL);
    st_json_document *doc = NULL;
    CHECK_OK(st_json_parse(text, length, "built", NULL, &doc));
    if (doc) {
        const st_json_value *arr = st_json_object_get(st_json_root(doc), "k\"\\\n\x01\xc3\xa9");
        CHECK(arr && arr->count == 6);
        if (arr && arr->count == 6) {
            CHECK(st_json_array_at(arr, 0)->int64 == INT64_MIN);
            CHECK(st_json_array_at(arr, 1)->number == 0.1);
            CHECK(st_json_array_at(arr, 2)->number == 1.0 / 3.0);
            CHECK(st_json_array_at(arr, 3)->number == -1e300);
            CHECK(st_json_array_at(arr, 4)->type == ST_JSON_NULL);
            CHECK(st_json_array_at(arr, 5)->string_length == 3);
        }
    }
    st_json_free(doc);
    free(text);
    CHECK(st_json_utf8_valid("\xf4\x8f\xbf\xbf", 4) == 1);
    CHECK(st_json_utf8_valid("\xf4\x90\x80\x80", 4) == 0);
}

/* ---- safetensors ------------------------------------------------------------------ */

typedef struct sample {
    float weights[2 * 3 * 2];
    double scalar;
    int64_t counts[4];
    uint8_t mask[5];
    int32_t ints[3];
    st_tensor_entry tensors[6];
    st_meta_entry meta[3];
} sample;

static void make_sample(sample *s) {
    memset(s, 0, sizeof *s);
    for (int i = 0; i < 12; i++) s->weights[i] = (float)i * 0.25f - 1.0f;
    s->scalar = 3.141592653589793;
    for (int i = 0; i < 4; i++) s->counts[i] = (int64_t)1 << (i * 20);
    const uint8_t mask[5] = {1, 0, 1, 1, 0};
    memcpy(s->mask, mask, sizeof mask);
    s->ints[0] = -7;
    s->ints[1] = 0;
    s->ints[2] = 2147483647;
    s->tensors[0] = (st_tensor_entry){"conv.weight", ST_DTYPE_F32, 3, {2, 3, 2}, s->weights};
    s->tensors[1] = (st_tensor_entry){"bn.num_batches_tracked", ST_DTYPE_F64, 0, {0}, &s->scalar};
    s->tensors[2] = (st_tensor_entry){"optim.step", ST_DTYPE_I64, 2, {2, 2}, s->counts};
    s->tensors[3] = (st_tensor_entry){"empty", ST_DTYPE_F32, 2, {0, 7}, NULL};
    s->tensors[4] = (st_tensor_entry){"mask.conv.weight", ST_DTYPE_BOOL, 1, {5}, s->mask};
    s->tensors[5] = (st_tensor_entry){"ints", ST_DTYPE_I32, 1, {3}, s->ints};
    s->meta[0] = (st_meta_entry){"format", "sparsetrain-checkpoint-1"};
    s->meta[1] = (st_meta_entry){"args", "{\"lr\": 0.1, \"note\": \"caf\xc3\xa9\\n\"}"};
    s->meta[2] = (st_meta_entry){"empty", ""};
}

static void check_sample(const st_safetensors *f, const sample *s) {
    CHECK(st_safetensors_count(f) == 6);
    for (int i = 0; i < 6 && i < st_safetensors_count(f); i++) {
        const st_tensor_entry *t = st_safetensors_get(f, i), *e = &s->tensors[i];
        CHECK(strcmp(t->name, e->name) == 0);   /* data order == write order */
        CHECK(t->dtype == e->dtype && t->ndim == e->ndim);
        CHECK(memcmp(t->shape, e->shape, (size_t)e->ndim * sizeof(int64_t)) == 0);
        size_t bytes = (size_t)st_tensor_numel(e) * st_dtype_size(e->dtype);
        CHECK((bytes == 0 && t->data == NULL) || (t->data && memcmp(t->data, e->data, bytes) == 0));
        CHECK(!t->data || (uintptr_t)t->data % st_dtype_size(t->dtype) == 0);
        CHECK(st_safetensors_find(f, e->name) == t);
    }
    CHECK(st_safetensors_get(f, 6) == NULL && st_safetensors_get(f, -1) == NULL);
    CHECK(st_safetensors_find(f, "nope") == NULL);
    CHECK(st_safetensors_find(f, "") == NULL);
    CHECK(st_safetensors_meta_count(f) == 3);
    for (int i = 0; i < 3; i++) {
        const char *v = st_safetensors_meta(f, s->meta[i].key);
        CHECK(v && strcmp(v, s->meta[i].value) == 0);
        const st_meta_entry *m = st_safetensors_meta_get(f, i);
        CHECK(m && strcmp(m->key, s->meta[i].key) == 0);
    }
    CHECK(st_safetensors_meta(f, "model") == NULL);
}

static void test_safetensors_roundtrip(void) {
    sample s;
    make_sample(&s);
    char path[4200];
    path_in_tmp(path, sizeof path, "roundtrip.safetensors");
    CHECK_OK(st_safetensors_write(path, s.tensors, 6, s.meta, 3));
    CHECK(count_temp_files(tmp_dir) == 0);
    st_safetensors *f = NULL;
    CHECK_OK(st_safetensors_read(path, &f));
    if (f) check_sample(f, &s);
    st_safetensors_free(f);
    st_safetensors_free(NULL);

    /* The in-memory serialisation is byte-identical and its header is padded. */
    void *buf;
    size_t size;
    CHECK_OK(st_safetensors_serialize(s.tensors, 6, s.meta, 3, &buf, &size));
    FILE *fp = fopen(path, "rb");
    CHECK(fp != NULL);
    if (fp) {
        unsigned char *disk = malloc(size + 1);
        CHECK(fread(disk, 1, size + 1, fp) == size);
        CHECK(memcmp(disk, buf, size) == 0);
        fclose(fp);
        free(disk);
    }
    const unsigned char *bytes = buf;
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | bytes[i];
    CHECK(n % 8 == 0 && n + 8 <= size && bytes[8] == '{');
    free(buf);

    /* No tensors and no metadata: "{}" padded to 8 bytes. */
    path_in_tmp(path, sizeof path, "empty.safetensors");
    CHECK_OK(st_safetensors_write(path, NULL, 0, NULL, 0));
    CHECK_OK(st_safetensors_read(path, &f));
    CHECK(f && st_safetensors_count(f) == 0 && st_safetensors_meta_count(f) == 0);
    st_safetensors_free(f);
}

/* Builds a file from a header text (not padded) and data bytes. */
static unsigned char *make_file(const char *header, const void *data, size_t data_size, size_t *size) {
    size_t n = strlen(header);
    *size = 8 + n + data_size;
    unsigned char *buf = malloc(*size ? *size : 1);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)n >> (8 * i));
    memcpy(buf + 8, header, n);
    if (data_size) memcpy(buf + 8 + n, data, data_size);
    return buf;
}

static st_status read_header(const char *header, const void *data, size_t data_size) {
    size_t size;
    unsigned char *buf = make_file(header, data, data_size, &size);
    st_safetensors *f = NULL;
    st_status s = st_safetensors_read_memory(buf, size, "crafted.safetensors", &f);
    st_safetensors_free(f);
    free(buf);
    return s;
}

static void test_safetensors_crafted(void) {
    float four[4] = {1, 2, 3, 4};
    /* Valid hand-made files, including a misaligned tensor (header length 61). */
    CHECK_OK(read_header("{\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]},"
                         "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                         four, 16));
    {
        const char *h = "{\"x\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}    \t\n ";
        size_t size;
        unsigned char *buf = make_file(h, four, 16, &size);
        st_safetensors *f = NULL;
        CHECK_OK(st_safetensors_read_memory(buf, size, "misaligned", &f));
        const st_tensor_entry *t = f ? st_safetensors_find(f, "x") : NULL;
        CHECK(t && (uintptr_t)t->data % 4 == 0 && memcmp(t->data, four, 16) == 0);
        st_safetensors_free(f);
        free(buf);
    }
    /* Keys in any order; __metadata__ anywhere. */
    CHECK_OK(read_header("{\"x\":{\"shape\":[],\"data_offsets\":[0,4],\"dtype\":\"I32\"},\"__metadata__\":{}}",
                         four, 4));

    static const char *const bad[] = {
        /* not an object / wrong types */
        "[]",
        "{\"x\":1}",
        "{\"x\":{\"dtype\":\"F32\",\"shape\":[4]}}",
        "{\"x\":{\"dtype\":\"F33\",\"shape\":[4],\"data_offsets\":[0,16]}}",
        "{\"x\":{\"dtype\":7,\"shape\":[4],\"data_offsets\":[0,16]}}",
        "{\"x\":{\"dtype\":\"F32\",\"shape\":4,\"data_offsets\":[0,16]}}",
        "{\"x\":{\"dtype\":\"F32\",\"shape\":[-4],\"data_offsets\":[0,16]}}",
        "{\"x\":{\"dtype\":\"F32\",\"shape\":[4.0],\"data_offsets\":[0,16]}}",
        "{\"x\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,4],\"data_offsets\":[0,16]}}",
        "{\"x\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16],\"extra\":1}}",
        "{\"x\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0]}}",
        "{\"x\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[16,0]}}",
        "{\"x\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,\"16\"]}}",
        /* shape x itemsize != span */
        "{\"x\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,16]}}",
        "{\"x\":{\"dtype\":\"F64\",\"shape\":[4],\"data_offsets\":[0,16]}}",
        "{\"x\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,16]}}",
        /* offsets: hole, overlap, beyond the data, data left over */
        "{\"x\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[4,16]}}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]},"
        "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
        "{\"x\":{\"dtype\":\"F32\",\"shape\":[5],\"data_offsets\":[0,20]}}",
        "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
        "{}",
        "{\"x\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
        "\"x\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[16,16]}}",
        /* names and metadata */
        "{\"\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}",
        "{\"x\\u0000y\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}",
        "{\"__metadata__\":{\"k\":1},\"x\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}",
        "{\"__metadata__\":[],\"x\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}",
        "{\"__metadata__\":{\"k\":\"a\\u0000\"},\"x\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}",
        /* JSON syntax */
        "{\"x\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},}",
        " {\"x\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}",
        "{\"x\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}\x01",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        st_status s = read_header(bad[i], four, 16);
        if (s != ST_ERR_FORMAT) fprintf(stderr, "accepted bad header #%zu: %s\n", i, bad[i]);
        CHECK(s == ST_ERR_FORMAT);
        CHECK(strstr(st_last_error(), "crafted.safetensors") != NULL);
    }
    /* A BOOL tensor may only hold 0 and 1. */
    unsigned char bools[2] = {1, 2};
    CHECK(read_header("{\"m\":{\"dtype\":\"BOOL\",\"shape\":[2],\"data_offsets\":[0,2]}}", bools, 2) ==
          ST_ERR_FORMAT);
    bools[1] = 0;
    CHECK_OK(read_header("{\"m\":{\"dtype\":\"BOOL\",\"shape\":[2],\"data_offsets\":[0,2]}}", bools, 2));

    /* Bad header lengths. */
    sample s;
    make_sample(&s);
    void *buf;
    size_t size;
    CHECK_OK(st_safetensors_serialize(s.tensors, 6, s.meta, 3, &buf, &size));
    unsigned char *bytes = buf;
    const uint64_t lengths[] = {0, 1, 2, 7, size - 8 + 1, size, UINT64_MAX, (uint64_t)1 << 63, 100000001};
    unsigned char saved[8];
    memcpy(saved, bytes, 8);
    for (size_t i = 0; i < sizeof lengths / sizeof lengths[0]; i++) {
        for (int k = 0; k < 8; k++) bytes[k] = (unsigned char)(lengths[i] >> (8 * k));
        st_safetensors *f = NULL;
        CHECK(st_safetensors_read_memory(bytes, size, "len.safetensors", &f) == ST_ERR_FORMAT);
        CHECK(f == NULL);
    }
    memcpy(bytes, saved, 8);
    /* Header length off by a few bytes in either direction. */
    for (int delta = -16; delta <= 16; delta++) {
        if (delta == 0) continue;
        uint64_t n = 0;
        for (int k = 7; k >= 0; k--) n = (n << 8) | saved[k];
        n += (uint64_t)(int64_t)delta;
        for (int k = 0; k < 8; k++) bytes[k] = (unsigned char)(n >> (8 * k));
        st_safetensors *f = NULL;
        st_status st = st_safetensors_read_memory(bytes, size, "len.safetensors", &f);
        CHECK(st == ST_ERR_FORMAT);
        st_safetensors_free(f);
    }
    free(buf);
}

static void test_safetensors_corruption(void) {
    sample s;
    make_sample(&s);
    void *buf;
    size_t size;
    CHECK_OK(st_safetensors_serialize(s.tensors, 6, s.meta, 3, &buf, &size));
    unsigned char *bytes = buf;

    /* Every truncation fails, in memory ... */
    int truncation_failures = 0;
    for (size_t cut = 0; cut < size; cut++) {
        st_safetensors *f = NULL;
        st_status st = st_safetensors_read_memory(bytes, cut, "cut.safetensors", &f);
        if (st != ST_ERR_FORMAT || f != NULL || !strstr(st_last_error(), "cut.safetensors")) truncation_failures++;
        st_safetensors_free(f);
    }
    CHECK(truncation_failures == 0);
    /* ... and on disk, also with one byte appended. */
    char path[4200];
    path_in_tmp(path, sizeof path, "cut.safetensors");
    const size_t cuts[] = {0, 3, 8, 9, 40, size / 2, size - 1, size + 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        unsigned char *copy = calloc(size + 1, 1);
        memcpy(copy, bytes, size);
        CHECK_OK(st_atomic_write_file(path, ST_FILE_OTHER, 1, copy, cuts[i]));
        free(copy);
        st_safetensors *f = NULL;
        CHECK(st_safetensors_read(path, &f) == ST_ERR_FORMAT);
        CHECK(f == NULL && strstr(st_last_error(), path) != NULL);
    }

    /* Flipped bytes in the length prefix and the header never crash; most are
     * rejected, the rest (e.g. a changed letter in a name) still read cleanly. */
    uint64_t header_length = 0;
    for (int k = 7; k >= 0; k--) header_length = (header_length << 8) | bytes[k];
    int accepted = 0, rejected = 0, other = 0;
    const unsigned char flips[] = {0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0xff};
    for (size_t at = 0; at < 8 + header_length; at++) {
        for (size_t k = 0; k < sizeof flips; k++) {
            bytes[at] ^= flips[k];
            st_safetensors *f = NULL;
            st_status st = st_safetensors_read_memory(bytes, size, "flip.safetensors", &f);
            if (st == ST_OK) {
                accepted++;
                CHECK(st_safetensors_count(f) == 6);
            } else if (st == ST_ERR_FORMAT) {
                rejected++;
            } else {
                other++;
            }
            st_safetensors_free(f);
            bytes[at] ^= flips[k];
        }
    }
    CHECK(other == 0);
    CHECK(rejected > accepted);
    /* Every single byte value in every header position (structure bytes). */
    for (size_t at = 8; at < 8 + header_length; at++) {
        unsigned char old = bytes[at];
        for (int v = 0; v < 256; v++) {
            bytes[at] = (unsigned char)v;
            st_safetensors *f = NULL;
            st_status st = st_safetensors_read_memory(bytes, size, "byte.safetensors", &f);
            CHECK(st == ST_OK || st == ST_ERR_FORMAT);
            st_safetensors_free(f);
        }
        bytes[at] = old;
    }
    free(buf);
}

/* Deterministic random mutations anywhere in the file (header and data),
 * random truncations and random header lengths: never a crash, only OK or
 * ST_ERR_FORMAT (run under -DST_SANITIZE=ON to catch memory errors). */
static void test_safetensors_fuzz(void) {
    sample s;
    make_sample(&s);
    void *buf;
    size_t size;
    CHECK_OK(st_safetensors_serialize(s.tensors, 6, s.meta, 3, &buf, &size));
    unsigned char *original = buf, *bytes = malloc(size);
    uint64_t state = 0x9e3779b97f4a7c15u;
    int bad_status = 0;
    for (int iteration = 0; iteration < 20000; iteration++) {
        memcpy(bytes, original, size);
        state ^= state << 13, state ^= state >> 7, state ^= state << 17;
        int mutations = 1 + (int)(state % 4);
        for (int k = 0; k < mutations; k++) {
            state ^= state << 13, state ^= state >> 7, state ^= state << 17;
            bytes[(state >> 8) % size] = (unsigned char)(state >> 40);
        }
        size_t length = size;
        if (iteration % 5 == 0) length = (size_t)((state >> 20) % (size + 1));
        st_safetensors *f = NULL;
        st_status st = st_safetensors_read_memory(bytes, length, "fuzz.safetensors", &f);
        if (st != ST_OK && st != ST_ERR_FORMAT) bad_status++;
        if (st == ST_OK) {
            /* Whatever was accepted is self-consistent. */
            for (int i = 0; i < st_safetensors_count(f); i++) {
                const st_tensor_entry *t = st_safetensors_get(f, i);
                CHECK(st_safetensors_find(f, t->name) == t);
                size_t n = (size_t)st_tensor_numel(t) * st_dtype_size(t->dtype);
                CHECK(n == 0 || t->data != NULL);
                unsigned sum = 0;   /* touch every byte: AddressSanitizer flags any out-of-bounds view */
                for (size_t b = 0; b < n; b++) sum += ((const unsigned char *)t->data)[b];
                (void)sum;
            }
        }
        st_safetensors_free(f);
    }
    CHECK(bad_status == 0);
    free(bytes);
    free(buf);
}

static void test_safetensors_write_arguments(void) {
    float x[2] = {1, 2};
    uint8_t bad_bool[2] = {0, 3};
    char path[4200];
    path_in_tmp(path, sizeof path, "args.safetensors");
    unlink(path);
    st_tensor_entry dup[2] = {{"a", ST_DTYPE_F32, 1, {2}, x}, {"a", ST_DTYPE_F32, 1, {2}, x}};
    CHECK(st_safetensors_write(path, dup, 2, NULL, 0) == ST_ERR_ARGUMENT);
    CHECK(strstr(st_last_error(), "duplicate") != NULL);
    st_tensor_entry bad[] = {
        {"", ST_DTYPE_F32, 1, {2}, x},
        {"__metadata__", ST_DTYPE_F32, 1, {2}, x},
        {"n", (st_dtype)99, 1, {2}, x},
        {"n", ST_DTYPE_F32, 9, {2}, x},
        {"n", ST_DTYPE_F32, -1, {2}, x},
        {"n", ST_DTYPE_F32, 1, {-2}, x},
        {"n", ST_DTYPE_F32, 1, {2}, NULL},
        {"n", ST_DTYPE_BOOL, 1, {2}, bad_bool},
        {"\xff", ST_DTYPE_F32, 1, {2}, x},
        {NULL, ST_DTYPE_F32, 1, {2}, x},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) CHECK(st_safetensors_write(path, &bad[i], 1, NULL, 0) == ST_ERR_ARGUMENT);
    st_meta_entry dup_meta[2] = {{"k", "1"}, {"k", "2"}};
    CHECK(st_safetensors_write(path, NULL, 0, dup_meta, 2) == ST_ERR_ARGUMENT);
    st_meta_entry null_meta[1] = {{"k", NULL}};
    CHECK(st_safetensors_write(path, NULL, 0, null_meta, 1) == ST_ERR_ARGUMENT);
    CHECK(st_safetensors_write(path, NULL, 1, NULL, 0) == ST_ERR_ARGUMENT);
    CHECK(!file_exists(path));
    CHECK(count_temp_files(tmp_dir) == 0);
}

static void test_failed_writes(void) {
    sample s;
    make_sample(&s);
    char path[4400], dir[4200];

    /* Nonexistent directory. */
    path_in_tmp(path, sizeof path, "no/such/dir/x.safetensors");
    CHECK(st_safetensors_write(path, s.tensors, 6, s.meta, 3) == ST_ERR_IO);
    CHECK(strstr(st_last_error(), path) != NULL);
    CHECK(strstr(st_last_error(), strerror(ENOENT)) != NULL);

    /* Read-only directory (root can write anyway: then the case is skipped). */
    path_in_tmp(dir, sizeof dir, "readonly");
    mkdir(dir, 0755);
    chmod(dir, 0555);
    snprintf(path, sizeof path, "%s/x.safetensors", dir);
    if (access(dir, W_OK) != 0) {
        CHECK(st_safetensors_write(path, s.tensors, 6, s.meta, 3) == ST_ERR_IO);
        CHECK(strstr(st_last_error(), path) != NULL);
        CHECK(!file_exists(path) && count_temp_files(dir) == 0);
    } else {
        printf("note: running with write access to read-only directories (root?); read-only case skipped\n");
    }
    chmod(dir, 0755);
    /* A directory nobody may create files in, root included. */
    CHECK(st_safetensors_write("/proc/sparsetrain_test_io.safetensors", s.tensors, 6, s.meta, 3) == ST_ERR_IO);
    CHECK(strstr(st_last_error(), "/proc/sparsetrain_test_io.safetensors") != NULL);

    /* A failed write (file size limit: EFBIG, like a full disk) leaves the
     * existing file intact and no temporary file behind. */
    path_in_tmp(path, sizeof path, "keep.safetensors");
    CHECK_OK(st_safetensors_write(path, s.tensors, 6, s.meta, 3));
    enum { BIG = 1 << 18 };
    float *big = calloc(BIG, sizeof(float));
    st_tensor_entry big_entry = {"big", ST_DTYPE_F32, 1, {BIG}, big};
    struct rlimit old_limit, small_limit;
    CHECK(getrlimit(RLIMIT_FSIZE, &old_limit) == 0);
    small_limit = old_limit;
    small_limit.rlim_cur = 64 * 1024;
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    if (setrlimit(RLIMIT_FSIZE, &small_limit) == 0) {
        st_status st = st_safetensors_write_as(path, ST_FILE_SAFETENSORS, 1, &big_entry, 1, NULL, 0);
        setrlimit(RLIMIT_FSIZE, &old_limit);
        CHECK(st == ST_ERR_IO);
        CHECK(strstr(st_last_error(), path) != NULL && strstr(st_last_error(), strerror(EFBIG)) != NULL);
        st_safetensors *f = NULL;
        CHECK_OK(st_safetensors_read(path, &f));
        if (f) check_sample(f, &s);
        st_safetensors_free(f);
        CHECK(count_temp_files(tmp_dir) == 0);
    } else {
        printf("note: cannot lower RLIMIT_FSIZE; failed-write case skipped\n");
    }
    signal(SIGXFSZ, old_handler);
    free(big);

    /* Destination is a directory: rename fails, directory and its contents stay. */
    path_in_tmp(dir, sizeof dir, "a_directory");
    mkdir(dir, 0755);
    char inside[4300];
    snprintf(inside, sizeof inside, "%s/file", dir);
    CHECK_OK(st_atomic_write_file(inside, ST_FILE_OTHER, 0, "x", 1));
    CHECK(st_safetensors_write(dir, s.tensors, 6, s.meta, 3) == ST_ERR_ARGUMENT); /* refused by the guard */
    CHECK(strstr(st_last_error(), dir) != NULL);
    CHECK(file_exists(inside) && count_temp_files(tmp_dir) == 0);

    /* Reading: missing file and directory are I/O errors naming the path. */
    st_safetensors *f = NULL;
    path_in_tmp(path, sizeof path, "missing.safetensors");
    CHECK(st_safetensors_read(path, &f) == ST_ERR_IO && f == NULL);
    CHECK(strstr(st_last_error(), path) != NULL);
    CHECK(st_safetensors_read(dir, &f) == ST_ERR_IO && f == NULL);
}

static void test_atomic_file(void) {
    char path[4200];
    path_in_tmp(path, sizeof path, "atomic.txt");
    CHECK_OK(st_atomic_write_file(path, ST_FILE_OTHER, 0, "old", 3));
    st_atomic_file *f = NULL;
    CHECK_OK(st_atomic_file_open(path, ST_FILE_OTHER, 0, &f));
    CHECK_OK(st_atomic_file_write(f, "new contents", 12));
    CHECK(count_temp_files(tmp_dir) == 1);
    st_atomic_file_abort(f);   /* abandoned: old contents stay */
    CHECK(count_temp_files(tmp_dir) == 0);
    char buf[32] = {0};
    FILE *fp = fopen(path, "rb");
    CHECK(fp && fread(buf, 1, sizeof buf, fp) == 3 && memcmp(buf, "old", 3) == 0);
    if (fp) fclose(fp);
    CHECK_OK(st_atomic_file_open(path, ST_FILE_OTHER, 0, &f));
    CHECK_OK(st_atomic_file_write(f, "new contents", 12));
    CHECK_OK(st_atomic_file_commit(f));
    fp = fopen(path, "rb");
    CHECK(fp && fread(buf, 1, sizeof buf, fp) == 12 && memcmp(buf, "new contents", 12) == 0);
    if (fp) fclose(fp);
    st_atomic_file_abort(NULL);
    CHECK(st_atomic_write_file("", ST_FILE_OTHER, 0, "x", 1) == ST_ERR_ARGUMENT);
    CHECK(st_atomic_write_file("dir/", ST_FILE_OTHER, 0, "x", 1) == ST_ERR_ARGUMENT);
    /* A relative path without a directory part syncs "." */
    char cwd[4096];
    if (getcwd(cwd, sizeof cwd) && chdir(tmp_dir) == 0) {
        CHECK_OK(st_atomic_write_file("relative.txt", ST_FILE_OTHER, 0, "r", 1));
        CHECK(file_exists("relative.txt"));
        CHECK(chdir(cwd) == 0);
    }
}


static int read_whole(const char *path, char *buf, size_t size) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return -1;
    int n = (int)fread(buf, 1, size - 1, fp);
    fclose(fp);
    buf[n > 0 ? n : 0] = 0;
    return n;
}

static void write_text(const char *path, const char *text) {
    FILE *fp = fopen(path, "wb");
    if (fp) {
        fputs(text, fp);
        fclose(fp);
    }
}

/* The output guard: what may replace what, and never a folder/device/FIFO. */
static void test_output_guard(void) {
    char ck[4200], other[4200], fifo[4200], dir[4200], buf[256];
    path_in_tmp(ck, sizeof ck, "guard.safetensors");
    path_in_tmp(other, sizeof other, "guard-notes.txt");
    path_in_tmp(fifo, sizeof fifo, "guard.fifo");
    path_in_tmp(dir, sizeof dir, "guard-dir");
    const st_meta_entry meta[1] = {{"format", "sparsetrain-checkpoint-1"}};
    float x = 1;
    st_tensor_entry t = {"w", ST_DTYPE_F32, 1, {1}, &x};
    CHECK_OK(st_safetensors_write(ck, &t, 1, meta, 1)); /* declares itself a checkpoint */
    st_file_kind kind;
    CHECK_OK(st_file_kind_of(ck, &kind));
    CHECK(kind == ST_FILE_CHECKPOINT);
    /* anything else onto a checkpoint: refused, naming the file and --force; the file untouched */
    CHECK(st_atomic_write_file(ck, ST_FILE_EVAL_JSON, 0, "{}", 2) == ST_ERR_ARGUMENT);
    CHECK(strstr(st_last_error(), ck) && strstr(st_last_error(), "checkpoint") && strstr(st_last_error(), "--force"));
    CHECK(st_safetensors_write(ck, &t, 1, NULL, 0) == ST_ERR_ARGUMENT); /* a plain safetensors file too */
    CHECK_OK(st_file_kind_of(ck, &kind));
    CHECK(kind == ST_FILE_CHECKPOINT && count_temp_files(tmp_dir) == 0);
    CHECK_OK(st_safetensors_write(ck, &t, 1, meta, 1)); /* a checkpoint onto a checkpoint: allowed */
    /* a checkpoint whose header runs past the first 64 KiB before naming its format: still a checkpoint */
    char big_ck[4200];
    path_in_tmp(big_ck, sizeof big_ck, "guard-big-header.safetensors");
    size_t pad = 70000, hn = pad + 64;
    char *header = calloc(hn + 9, 1);
    int hl = snprintf(header + 8, hn, "{\"__metadata__\":{\"pad\":\"%0*d\",\"format\":\"sparsetrain-checkpoint-1\"}}",
                      (int)pad, 0);
    for (int i = 0; i < 8; i++) header[i] = (char)(((uint64_t)hl >> (8 * i)) & 0xff);
    FILE *hf = fopen(big_ck, "wb");
    CHECK(hf && fwrite(header, 1, (size_t)hl + 8, hf) == (size_t)hl + 8);
    if (hf) fclose(hf);
    free(header);
    CHECK_OK(st_file_kind_of(big_ck, &kind));
    CHECK(kind == ST_FILE_CHECKPOINT);
    unlink(big_ck);
    /* a file of another kind: refused unless forced */
    write_text(other, "my notes\n");
    CHECK_OK(st_file_kind_of(other, &kind));
    CHECK(kind == ST_FILE_OTHER);
    CHECK(st_atomic_write_file(other, ST_FILE_HTML, 0, "<!DOCTYPE html>", 15) == ST_ERR_ARGUMENT);
    CHECK(read_whole(other, buf, sizeof buf) == 9 && strcmp(buf, "my notes\n") == 0);
    CHECK_OK(st_atomic_write_file(other, ST_FILE_HTML, 1, "<!DOCTYPE html>", 15));
    CHECK_OK(st_file_kind_of(other, &kind));
    CHECK(kind == ST_FILE_HTML);
    CHECK_OK(st_atomic_write_file(other, ST_FILE_HTML, 0, "<!DOCTYPE html>x", 16)); /* same kind */
    /* a FIFO (never opened in a blocking way), a folder: refused even with force */
    CHECK(mkfifo(fifo, 0644) == 0);
    CHECK_OK(st_file_kind_of(fifo, &kind));
    CHECK(kind == ST_FILE_SPECIAL);
    CHECK(st_atomic_write_file(fifo, ST_FILE_EVAL_JSON, 1, "{}", 2) == ST_ERR_ARGUMENT);
    CHECK(strstr(st_last_error(), "FIFO") != NULL);
    struct stat st;
    CHECK(stat(fifo, &st) == 0 && S_ISFIFO(st.st_mode));
    mkdir(dir, 0755);
    CHECK(st_atomic_write_file(dir, ST_FILE_EVAL_JSON, 1, "{}", 2) == ST_ERR_ARGUMENT);
    CHECK(strstr(st_last_error(), "folder") != NULL);
    /* a device is classified without being opened for writing (never replaced) */
    CHECK_OK(st_file_kind_of("/dev/null", &kind));
    CHECK(kind == ST_FILE_SPECIAL);
    CHECK(st_output_check("/dev/null", "--out", ST_FILE_EVAL_JSON, 1) == ST_ERR_ARGUMENT);
    CHECK(strstr(st_last_error(), "--out /dev/null is a device") != NULL);
    /* a name too long for NAME.tmp.<pid>: refused before anything is written */
    char longname[4400], name[260];
    memset(name, 'n', 250);
    name[250] = 0;
    path_in_tmp(longname, sizeof longname, name);
    CHECK(st_output_check(longname, "--save", ST_FILE_CHECKPOINT, 0) == ST_ERR_ARGUMENT);
    CHECK(strstr(st_last_error(), "too long") != NULL);
    CHECK(count_temp_files(tmp_dir) == 0);
    unlink(fifo);
    rmdir(dir);
}

/* The temporary name is never followed: a planted link there is removed, its target untouched. */
static void test_temp_not_followed(void) {
    char path[4200], temp[4300], victim[4200], buf[64];
    path_in_tmp(path, sizeof path, "planted.json");
    path_in_tmp(victim, sizeof victim, "victim.txt");
    snprintf(temp, sizeof temp, "%s.tmp.%ld", path, (long)getpid());
    write_text(victim, "precious");
    CHECK(symlink(victim, temp) == 0);
    CHECK_OK(st_atomic_write_file(path, ST_FILE_EVAL_JSON, 0, "{\"checkpoint\": 1}", 17));
    CHECK(read_whole(victim, buf, sizeof buf) == 8 && strcmp(buf, "precious") == 0);
    CHECK(read_whole(path, buf, sizeof buf) == 17);
    struct stat st;
    CHECK(lstat(temp, &st) != 0 && count_temp_files(tmp_dir) == 0);
    /* stale temporaries of dead processes are cleaned, a live one's kept */
    pid_t child = fork();
    if (child == 0) _exit(0);
    waitpid(child, NULL, 0);
    char dead[4300], live[4300];
    snprintf(dead, sizeof dead, "%s.tmp.%ld", path, (long)child);
    snprintf(live, sizeof live, "%s.tmp.%ld", path, (long)getppid());
    write_text(dead, "x");
    write_text(live, "x");
    CHECK(st_atomic_clean_stale(path) == 1);
    CHECK(lstat(dead, &st) != 0 && lstat(live, &st) == 0);
    unlink(live);
    unlink(victim);
}

/* Outputs of one invocation: distinct files, none an input (by inode, not by name). */
static void test_claims(void) {
    char a[4200], a2[4200], b[4200], hard[4200], sub[4200], sub2[4300];
    path_in_tmp(a, sizeof a, "claim-a.safetensors");
    snprintf(a2, sizeof a2, "%s/./claim-a.safetensors", tmp_dir);
    path_in_tmp(b, sizeof b, "claim-b.jsonl");
    path_in_tmp(hard, sizeof hard, "claim-hard");
    path_in_tmp(sub, sizeof sub, "claim-sub");
    mkdir(sub, 0755);
    snprintf(sub2, sizeof sub2, "%s/../claim-b.jsonl", sub);
    write_text(a, "x");
    st_file_claims c;
    st_file_claims_init(&c);
    CHECK_OK(st_claim_input(&c, a, "--resume"));
    CHECK(st_claim_output(&c, a2, "--log") == ST_ERR_ARGUMENT); /* the input, by another name */
    CHECK(strstr(st_last_error(), "--log") && strstr(st_last_error(), "--resume"));
    CHECK_OK(st_claim_successor(&c, a2, "--save")); /* the next checkpoint may replace the one resumed */
    CHECK_OK(st_claim_output(&c, b, "--out"));      /* missing: folder + name */
    CHECK(st_claim_output(&c, sub2, "--log") == ST_ERR_ARGUMENT);
    CHECK(strstr(st_last_error(), "same file") != NULL);
    CHECK(link(a, hard) == 0);
    st_file_claims_init(&c);
    CHECK_OK(st_claim_input(&c, a, "--checkpoint"));
    CHECK(st_claim_output(&c, hard, "--out") == ST_ERR_ARGUMENT); /* a hard link is the same file */
    unlink(hard);
    unlink(a);
    rmdir(sub);
}

/* The training log: ours is appended to (a torn tail cut), others' refused; failed writes cut back. */
static void test_log_file(void) {
    char path[4200], buf[512];
    path_in_tmp(path, sizeof path, "run.jsonl");
    const char *id = "0123456789abcdef0123456789abcdef", *other = "ffffffffffffffffffffffffffffffff";
    st_log_file *f = NULL;
    CHECK_OK(st_log_open(path, "--log", id, 0, 0, &f));
    const char line[] = "{\"epoch\": 1, \"run_id\": \"0123456789abcdef0123456789abcdef\"}\n";
    CHECK_OK(st_log_append(f, line, strlen(line)));
    st_log_close(f);
    st_log_run_id(path, buf, sizeof buf);
    CHECK(strcmp(buf, id) == 0);
    /* a fresh run of another id: refused without --force, naming the other run */
    CHECK(st_log_check(path, "--log", other, 0, 0) == ST_ERR_ARGUMENT);
    CHECK(strstr(st_last_error(), "another run") && strstr(st_last_error(), id));
    /* resuming: appended, a torn last line cut off first */
    FILE *fp = fopen(path, "ab");
    fputs("{\"epoch\": 2, \"lr", fp);
    fclose(fp);
    CHECK_OK(st_log_open(path, "--log", id, 1, 0, &f));
    CHECK_OK(st_log_append(f, line, strlen(line)));
    st_log_close(f);
    CHECK(read_whole(path, buf, sizeof buf) == (int)(2 * strlen(line)));
    /* --force replaces another run's log */
    CHECK_OK(st_log_open(path, "--log", other, 0, 1, &f));
    st_log_close(f);
    CHECK(read_whole(path, buf, sizeof buf) == 0);
    /* a checkpoint or notes are never appended to */
    char notes[4200];
    path_in_tmp(notes, sizeof notes, "log-notes.txt");
    write_text(notes, "notes\n");
    CHECK(st_log_open(notes, "--log", id, 1, 0, &f) == ST_ERR_ARGUMENT && f == NULL);
    CHECK(read_whole(notes, buf, sizeof buf) == 6);
    /* a write past the file size limit (like a full disk) fails naming the log and keeps whole lines */
    CHECK_OK(st_log_open(path, "--log", id, 0, 0, &f));
    CHECK_OK(st_log_append(f, line, strlen(line)));
    struct rlimit old_limit, small_limit;
    CHECK(getrlimit(RLIMIT_FSIZE, &old_limit) == 0);
    small_limit = old_limit;
    small_limit.rlim_cur = strlen(line) + 10;
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    if (setrlimit(RLIMIT_FSIZE, &small_limit) == 0) {
        st_status s = st_log_append(f, line, strlen(line));
        setrlimit(RLIMIT_FSIZE, &old_limit);
        CHECK(s == ST_ERR_IO && strstr(st_last_error(), path) && strstr(st_last_error(), strerror(EFBIG)));
        CHECK(read_whole(path, buf, sizeof buf) == (int)strlen(line));
    }
    signal(SIGXFSZ, old_handler);
    st_log_close(f);
    unlink(notes);
}

/* Removes the test's own scratch directory (files and one level of subdirectories). */
static void remove_tree(const char *dir, int depth) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char child[8192];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        snprintf(child, sizeof child, "%s/%s", dir, e->d_name);
        struct stat info;
        if (lstat(child, &info) == 0 && S_ISDIR(info.st_mode) && depth < 4)
            remove_tree(child, depth + 1);
        else
            unlink(child);
    }
    closedir(d);
    rmdir(dir);
}

/* `test_io --roundtrip IN OUT`: read IN, write every tensor and metadata entry to OUT. */
static int roundtrip(const char *in, const char *out) {
    st_safetensors *f = NULL;
    st_status s = st_safetensors_read(in, &f);
    if (s != ST_OK) {
        fprintf(stderr, "test_io: %s\n", st_last_error());
        return 1;
    }
    int n = st_safetensors_count(f), m = st_safetensors_meta_count(f);
    st_tensor_entry *tensors = calloc((size_t)n + 1, sizeof *tensors);
    st_meta_entry *meta = calloc((size_t)m + 1, sizeof *meta);
    for (int i = 0; i < n; i++) tensors[i] = *st_safetensors_get(f, i);
    for (int i = 0; i < m; i++) meta[i] = *st_safetensors_meta_get(f, i);
    s = st_safetensors_write(out, tensors, n, meta, m);
    if (s != ST_OK) fprintf(stderr, "test_io: %s\n", st_last_error());
    else printf("copied %d tensors and %d metadata entries from %s to %s\n", n, m, in, out);
    free(tensors);
    free(meta);
    st_safetensors_free(f);
    return s == ST_OK ? 0 : 1;
}

/* `test_io --checkpoint-roundtrip IN OUT`: load the checkpoint IN into a
 * model, its optimiser state and its info (and its best-on-validation copy
 * when present), then write OUT with the checkpoint writer the trainer uses
 * (st_checkpoint_save). */
static int checkpoint_roundtrip(const char *in, const char *out) {
    st_safetensors *f = NULL;
    st_model *m = NULL, *best = NULL;
    st_optimizer opt;
    int have_opt = 0;
    st_param_snapshot snap = {0};
    int have_best = 0;
    int64_t *best_tracked = NULL;
    uint8_t *own = NULL, *live = NULL;
    char name[64];
    int classes, channels, height, width;
    st_checkpoint_info info;
    st_status s = st_safetensors_read(in, &f);
    if (s == ST_OK) s = st_checkpoint_describe(f, in, name, sizeof name, &classes, &channels, &height, &width);
    if (s == ST_OK) s = st_model_create(name, classes, channels, height, width, &m);
    if (s == ST_OK) s = st_checkpoint_load_model(f, in, m, "");
    if (s == ST_OK) s = st_checkpoint_read_info(f, in, &info);
    const char *kind = s == ST_OK ? st_safetensors_meta(f, "optimizer") : NULL;
    if (s == ST_OK && kind && strcmp(kind, "none") != 0) {
        const int adam = strcmp(kind, "adam") == 0;
        s = st_optimizer_create(&opt, m, adam ? ST_OPTIMIZER_ADAM : ST_OPTIMIZER_SGD, 0.9, 0, 0.0);
        have_opt = s == ST_OK;
        if (s == ST_OK) s = st_checkpoint_load_optimizer(f, in, m, &opt);
    }
    char probe[ST_NAME_MAX + 8];
    if (s == ST_OK) snprintf(probe, sizeof probe, "best.%s", m->params[0].name);
    if (s == ST_OK && st_safetensors_find(f, probe)) {
        /* as the trainer's resume: the best copy under the live mask where
         * the masks agree, else under its own */
        s = st_model_create(name, classes, channels, height, width, &best);
        if (s == ST_OK) s = st_checkpoint_load_model(f, in, best, "best.");
        if (s == ST_OK) s = st_param_snapshot_take(&m->store, &snap);
        have_best = s == ST_OK;
        best_tracked = calloc((size_t)m->n_ops + 1, sizeof(int64_t));
        if (!best_tracked) s = ST_ERR_NOMEM;
        for (int i = 0; s == ST_OK && i < m->n_params; i++) {
            const uint8_t *mask = NULL;
            if (m->params[i].sparse) {
                free(own), free(live);
                own = malloc((size_t)m->params[i].numel), live = malloc((size_t)m->params[i].numel);
                if (!own || !live) {
                    s = ST_ERR_NOMEM;
                    break;
                }
                st_sparse_weight_mask_dense(best->params[i].sparse, own);
                st_sparse_weight_mask_dense(m->params[i].sparse, live);
                if (memcmp(own, live, (size_t)m->params[i].numel) != 0) mask = own;
            }
            s = st_param_snapshot_set_dense(&m->store, &snap, i, best->params[i].value, mask);
        }
        for (int i = 0, k = 0; s == ST_OK && i < best->n_ops; i++)
            if (best->ops[i].kind == ST_OP_BATCHNORM) best_tracked[k++] = best->ops[i].num_batches_tracked;
    }
    uint8_t **itop = m ? calloc((size_t)m->n_params + 1, sizeof *itop) : NULL; /* dynamic sparse training's record */
    int itop_found = 0;
    if (s == ST_OK && !itop) s = ST_ERR_NOMEM;
    if (s == ST_OK) s = st_checkpoint_load_itop(f, in, m, itop, &itop_found);
    info.itop = itop_found ? itop : NULL;
    if (s == ST_OK)
        s = st_checkpoint_save(out, m, have_opt ? &opt : NULL, have_best ? &snap : NULL, best_tracked, &info);
    for (int i = 0; itop && i < m->n_params; i++) free(itop[i]);
    free(itop);
    if (s != ST_OK) fprintf(stderr, "test_io: %s\n", st_last_error());
    if (have_opt) st_optimizer_free(&opt);
    if (have_best) st_param_snapshot_release(&snap);
    free(own), free(live);
    free(best_tracked);
    st_model_free(best);
    st_model_free(m);
    st_safetensors_free(f);
    return s == ST_OK ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "--roundtrip") == 0) return roundtrip(argv[2], argv[3]);
    if (argc == 4 && strcmp(argv[1], "--checkpoint-roundtrip") == 0) return checkpoint_roundtrip(argv[2], argv[3]);
    if (argc != 1) {
        fprintf(stderr, "usage: test_io [--roundtrip | --checkpoint-roundtrip] IN.safetensors OUT.safetensors\n");
        return 2;
    }
    const char *base = getenv("ST_TEST_TMP");
    if (!base) base = "/tmp";
    mkdir(base, 0755);
    snprintf(tmp_dir, sizeof tmp_dir, "%s/test_io.%ld", base, (long)getpid());
    if (mkdir(tmp_dir, 0755) != 0) {
        fprintf(stderr, "cannot create %s: %s\n", tmp_dir, strerror(errno));
        return 1;
    }
    test_json_valid();
    test_json_invalid();
    test_json_builder();
    test_safetensors_roundtrip();
    test_safetensors_crafted();
    test_safetensors_corruption();
    test_safetensors_fuzz();
    test_safetensors_write_arguments();
    test_failed_writes();
    test_atomic_file();
    test_output_guard();
    test_temp_not_followed();
    test_claims();
    test_log_file();
    if (!st_test_failures) remove_tree(tmp_dir, 0);   /* keep the evidence of a failure */
    TEST_MAIN_END();
}
