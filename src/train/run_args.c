/* The run's identity as JSON (stored in every checkpoint as metadata "args")
 * and back, so that --resume continues with exactly the arguments of the run. */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "core/status.h"
#include "io/json.h"
#include "train/run_args.h"

st_status st_train_config_to_json(const st_train_config *c, char **json) {
    /* every string is stored in the checkpoint's JSON: refuse at start, not at the first save */
    const struct { const char *flag, *value; } text[] = {
        {"--model", c->model},         {"--data", c->data},           {"--datadir", c->datadir},
        {"--optimizer", c->optimizer}, {"--lr-schedule", c->lr_schedule}, {"--sparse_init", c->sparse_init},
        {"--mask-sampling", c->mask_sampling}, {"--death", c->death}, {"--growth", c->growth},
        {"--redistribution", c->redistribution}, {"--decay-schedule", c->decay_schedule}};
    for (size_t i = 0; i < sizeof text / sizeof text[0]; i++)
        if (!st_json_utf8_valid(text[i].value, strlen(text[i].value)))
            return st_fail(ST_ERR_ARGUMENT,
                           "%s is not valid UTF-8 text; it is stored in the checkpoint's arguments (JSON): use a name "
                           "in UTF-8 (for a folder, a symbolic link with a UTF-8 name)",
                           text[i].flag);
    st_json_builder b;
    st_json_builder_init(&b);
#define KEY(k) st_json_append_text(&b, first ? "{\"" k "\": " : ", \"" k "\": "), first = 0
    int first = 1;
    KEY("model"); st_json_append_string(&b, c->model);
    KEY("data"); st_json_append_string(&b, c->data);
    KEY("datadir"); st_json_append_string(&b, c->datadir);
    KEY("batch_size"); st_json_append_int(&b, c->batch_size);
    KEY("test_batch_size"); st_json_append_int(&b, c->test_batch_size);
    KEY("epochs"); st_json_append_int(&b, c->epochs);
    KEY("lr"); st_json_append_double(&b, c->lr);
    KEY("momentum"); st_json_append_double(&b, c->momentum);
    KEY("l2"); st_json_append_double(&b, c->l2);
    KEY("optimizer"); st_json_append_string(&b, c->optimizer);
    KEY("lr_schedule"); st_json_append_string(&b, c->lr_schedule);
    KEY("seed"); st_json_append_int(&b, (int64_t)c->seed);
    KEY("valid_split"); st_json_append_double(&b, c->valid_split);
    KEY("sparse"); st_json_append_int(&b, c->sparse);
    KEY("fix"); st_json_append_int(&b, c->fix);
    KEY("sparse_init"); st_json_append_string(&b, c->sparse_init);
    KEY("density"); st_json_append_double(&b, c->density);
    KEY("fc_density"); st_json_append_double(&b, c->fc_density);
    KEY("mask_sampling"); st_json_append_string(&b, c->mask_sampling);
    KEY("scaled"); st_json_append_int(&b, c->scaled);
    KEY("augment"); st_json_append_int(&b, c->augment);
    KEY("image_size"); st_json_append_int(&b, c->image_size);
    KEY("max_batches"); st_json_append_int(&b, c->max_batches);
    KEY("protocol"); st_json_append_string(&b, c->protocol);
    KEY("update_frequency"); st_json_append_int(&b, c->update_frequency);
    KEY("death"); st_json_append_string(&b, c->death);
    KEY("growth"); st_json_append_string(&b, c->growth);
    KEY("redistribution"); st_json_append_string(&b, c->redistribution);
    KEY("death_rate"); st_json_append_double(&b, c->death_rate);
    KEY("decay_schedule"); st_json_append_string(&b, c->decay_schedule);
#undef KEY
    st_json_append_text(&b, "}");
    size_t len;
    return st_json_builder_finish(&b, json, &len);
}

static st_status get_string(const st_json_value *root, const char *key, char *dst, size_t size) {
    const st_json_value *v = st_json_object_get(root, key);
    if (!v || v->type != ST_JSON_STRING || v->string_length >= size)
        return st_fail(ST_ERR_FORMAT, "argument '%s' is missing or invalid", key);
    snprintf(dst, size, "%s", v->string);
    return ST_OK;
}

static st_status get_number(const st_json_value *root, const char *key, double *out) {
    const st_json_value *v = st_json_object_get(root, key);
    if (!v || v->type != ST_JSON_NUMBER) return st_fail(ST_ERR_FORMAT, "argument '%s' is missing or invalid", key);
    *out = v->number;
    return ST_OK;
}

/* An integer argument: a JSON integer literal within int's range. */
static st_status get_int(const st_json_value *root, const char *key, int *out) {
    const st_json_value *v = st_json_object_get(root, key);
    if (!v || v->type != ST_JSON_NUMBER || !v->is_int64 || v->int64 < INT_MIN || v->int64 > INT_MAX)
        return st_fail(ST_ERR_FORMAT, "argument '%s' is missing or not an integer", key);
    *out = (int)v->int64;
    return ST_OK;
}

/* The seed is written as the int64 with the same bits (st_json_append_int),
 * so seeds above INT64_MAX come back negative and convert back exactly. */
static st_status get_seed(const st_json_value *root, uint64_t *out) {
    const st_json_value *v = st_json_object_get(root, "seed");
    if (!v || v->type != ST_JSON_NUMBER || !v->is_int64)
        return st_fail(ST_ERR_FORMAT, "argument 'seed' is missing or not an integer");
    *out = (uint64_t)v->int64;
    return ST_OK;
}

st_status st_train_config_from_json(const char *json, const char *source, st_train_config *c) {
    st_json_document *doc;
    ST_TRY(st_json_parse(json, strlen(json), source, NULL, &doc));
    const st_json_value *r = st_json_root(doc);
    st_status s = r->type == ST_JSON_OBJECT ? ST_OK : st_fail(ST_ERR_FORMAT, "arguments are not a JSON object");
    if (s == ST_OK) s = get_string(r, "model", c->model, sizeof c->model);
    if (s == ST_OK) s = get_string(r, "data", c->data, sizeof c->data);
    if (s == ST_OK) s = get_string(r, "datadir", c->datadir, sizeof c->datadir);
    if (s == ST_OK) s = get_int(r, "batch_size", &c->batch_size);
    if (s == ST_OK) s = get_int(r, "test_batch_size", &c->test_batch_size);
    if (s == ST_OK) s = get_int(r, "epochs", &c->epochs);
    if (s == ST_OK) s = get_number(r, "lr", &c->lr);
    if (s == ST_OK) s = get_number(r, "momentum", &c->momentum);
    if (s == ST_OK) s = get_number(r, "l2", &c->l2);
    if (s == ST_OK) s = get_string(r, "optimizer", c->optimizer, sizeof c->optimizer);
    if (s == ST_OK) s = get_string(r, "lr_schedule", c->lr_schedule, sizeof c->lr_schedule);
    if (s == ST_OK) s = get_seed(r, &c->seed);
    if (s == ST_OK) s = get_number(r, "valid_split", &c->valid_split);
    if (s == ST_OK) s = get_int(r, "sparse", &c->sparse);
    if (s == ST_OK) s = get_int(r, "fix", &c->fix);
    if (s == ST_OK) s = get_string(r, "sparse_init", c->sparse_init, sizeof c->sparse_init);
    if (s == ST_OK) s = get_number(r, "density", &c->density);
    if (s == ST_OK) s = get_number(r, "fc_density", &c->fc_density);
    if (s == ST_OK) s = get_string(r, "mask_sampling", c->mask_sampling, sizeof c->mask_sampling);
    if (s == ST_OK) s = get_int(r, "scaled", &c->scaled);
    if (s == ST_OK) s = get_int(r, "augment", &c->augment);
    c->image_size = 0; /* absent from checkpoints written before ImageFolder data */
    if (s == ST_OK && st_json_object_get(r, "image_size")) s = get_int(r, "image_size", &c->image_size);
    if (s == ST_OK) s = get_int(r, "max_batches", &c->max_batches);
    /* Keys added after the first checkpoints: missing = the value before they existed. */
    if (s == ST_OK) s = st_json_object_get(r, "protocol") ? get_string(r, "protocol", c->protocol, sizeof c->protocol)
                                                          : (snprintf(c->protocol, sizeof c->protocol, "sound"), ST_OK);
    /* dynamic sparse training: checkpoints written before it are --fix or dense runs; the defaults */
    if (s == ST_OK && st_json_object_get(r, "update_frequency")) s = get_int(r, "update_frequency", &c->update_frequency);
    if (s == ST_OK && st_json_object_get(r, "death")) s = get_string(r, "death", c->death, sizeof c->death);
    if (s == ST_OK && st_json_object_get(r, "growth")) s = get_string(r, "growth", c->growth, sizeof c->growth);
    if (s == ST_OK && st_json_object_get(r, "redistribution"))
        s = get_string(r, "redistribution", c->redistribution, sizeof c->redistribution);
    if (s == ST_OK && st_json_object_get(r, "death_rate")) s = get_number(r, "death_rate", &c->death_rate);
    if (s == ST_OK && st_json_object_get(r, "decay_schedule"))
        s = get_string(r, "decay_schedule", c->decay_schedule, sizeof c->decay_schedule);
    st_json_free(doc);
    if (s != ST_OK) return st_fail_context(s, "%s", source);
    return ST_OK;
}

static int given(const char *list, const char *key) {
    size_t n = strlen(key);
    for (const char *p = list; (p = strstr(p, key)) != NULL; p += n)
        if ((p == list || p[-1] == ',') && (p[n] == ',' || p[n] == 0)) return 1;
    return 0;
}

static st_status differs(const st_train_config *c, const char *flag, const char *ours, const char *theirs) {
    return st_fail(ST_ERR_ARGUMENT,
                   "--%s %s differs from the run being resumed (%s has %s %s): a resumed run keeps its run-defining "
                   "flags; drop --%s, or start a new run without --resume",
                   flag, ours, c->resume, flag, theirs, flag);
}

/* Every run-defining flag, with what a resume does with it (st_resume_merge):
 * a flag added to st_train_config's run-defining part must be listed here,
 * or a resume that gives it is refused rather than silently ignoring it. */
static const char *const resume_known[] = {
    "epochs", "datadir", "test_batch_size", "execution", /* take the command line's value */
    "model", "data", "batch_size", "lr", "momentum", "l2", "optimizer", "lr_schedule", "seed", "valid_split",
    "sparse", "fix", "sparse_init", "density", "fc_density", "mask_sampling", "scaled", "augment", "max_batches",
    "image_size", "update_frequency", "death", "growth", "redistribution", "death_rate", "decay_schedule",
    /* must equal the checkpoint's */
};

st_status st_resume_merge(const st_train_config *cmdline, st_train_config *c) {
    const char *g = cmdline->given;
    for (const char *p = g; *p;) {
        size_t n = strcspn(p, ",");
        int known = 0;
        for (size_t k = 0; k < sizeof resume_known / sizeof resume_known[0] && !known; k++)
            known = strlen(resume_known[k]) == n && strncmp(resume_known[k], p, n) == 0;
        if (!known)
            return st_fail(ST_ERR_ARGUMENT, "--%.*s cannot be given with --resume (the run keeps its own value)", (int)n,
                           p);
        p += n + (p[n] == ',');
    }
    char a[64], b[64];
    if (given(g, "epochs")) {
        if (cmdline->epochs <= 0) return st_fail(ST_ERR_ARGUMENT, "--epochs must be positive (got %d)", cmdline->epochs);
        c->epochs = cmdline->epochs;
    }
    if (given(g, "datadir")) snprintf(c->datadir, sizeof c->datadir, "%s", cmdline->datadir);
    if (given(g, "test_batch_size")) c->test_batch_size = cmdline->test_batch_size;
#define SAME_STRING(key, flag, field) \
    if (given(g, key) && strcmp(cmdline->field, c->field) != 0) return differs(c, flag, cmdline->field, c->field)
#define SAME_INT(key, flag, field)                                                \
    if (given(g, key) && cmdline->field != c->field) {                        \
        snprintf(a, sizeof a, "%lld", (long long)cmdline->field);             \
        snprintf(b, sizeof b, "%lld", (long long)c->field);                   \
        return differs(c, flag, a, b);                                        \
    }
#define SAME_DOUBLE(key, flag, field)                                             \
    if (given(g, key) && cmdline->field != c->field) {                        \
        snprintf(a, sizeof a, "%.10g", cmdline->field);                        \
        snprintf(b, sizeof b, "%.10g", c->field);                              \
        return differs(c, flag, a, b);                                        \
    }
    SAME_STRING("model", "model", model);
    SAME_STRING("data", "data", data);
    SAME_INT("batch_size", "batch-size", batch_size);
    SAME_DOUBLE("lr", "lr", lr);
    SAME_DOUBLE("momentum", "momentum", momentum);
    SAME_DOUBLE("l2", "l2", l2);
    SAME_STRING("optimizer", "optimizer", optimizer);
    SAME_STRING("lr_schedule", "lr-schedule", lr_schedule);
    SAME_INT("seed", "seed", seed);
    SAME_DOUBLE("valid_split", "valid_split", valid_split);
    SAME_INT("sparse", "sparse", sparse);
    SAME_INT("fix", "fix", fix);
    SAME_STRING("sparse_init", "sparse_init", sparse_init);
    SAME_DOUBLE("density", "density", density);
    SAME_DOUBLE("fc_density", "fc_density", fc_density);
    SAME_STRING("mask_sampling", "mask-sampling", mask_sampling);
    SAME_INT("scaled", "scaled", scaled);
    SAME_INT("augment", "augment", augment);
    SAME_INT("max_batches", "max-batches", max_batches);
    SAME_INT("image_size", "image-size", image_size);
    SAME_INT("update_frequency", "update_frequency", update_frequency);
    SAME_STRING("death", "death", death);
    SAME_STRING("growth", "growth", growth);
    SAME_STRING("redistribution", "redistribution", redistribution);
    SAME_DOUBLE("death_rate", "death-rate", death_rate);
    SAME_STRING("decay_schedule", "decay-schedule", decay_schedule);
#undef SAME_STRING
#undef SAME_INT
#undef SAME_DOUBLE
    return ST_OK;
}
