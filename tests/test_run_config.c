/* The run-config table (train/run_config.h) and what comes from it: the
 * defaults, the flags (cli/config_flags.c: every spelling parses into its
 * field, help shows the default), the checkpoint's args JSON (round trip,
 * keys an older checkpoint lacks take their defaults, a checkpoint of the
 * first format reads back), and the resume rules. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "config_flags.h"
#include "core/status.h"
#include "train/run_config.h"
#include "testing.h"

/* A checkpoint's args as sparsetrain wrote them before the table (a9ea666). */
static const char old_args[] =
    "{\"model\": \"lenet5\", \"data\": \"fashion-mnist\", \"datadir\": \"/data/fm\", \"batch_size\": 64, "
    "\"test_batch_size\": 100, \"epochs\": 3, \"lr\": 0.05, \"momentum\": 0.9, \"l2\": 0.0005, \"optimizer\": "
    "\"sgd\", \"lr_schedule\": \"cosine\", \"seed\": 18, \"valid_split\": 0.1, \"sparse\": 1, \"fix\": 1, "
    "\"sparse_init\": \"ERK\", \"density\": 0.1, \"fc_density\": 1, \"mask_sampling\": \"exact\", \"scaled\": 2, "
    "\"augment\": -1, \"max_batches\": 0}";

static int parse(st_config_flags *t, int argc, char **argv) {
    return st_flags_parse("test", "usage: test", t->flags, t->n, argc, argv, 0);
}

int main(void) {
    int n;
    const st_config_field *fields = st_config_fields(&n);
    CHECK(n > 30);
    /* keys and flag spellings are unique; every row has help */
    for (int i = 0; i < n; i++) {
        CHECK(fields[i].help && (fields[i].help[0] || fields[i].switches[0].flag));
        CHECK(st_config_field_find(fields[i].key) == &fields[i]);
        for (int j = 0; j < i; j++) CHECK(strcmp(fields[i].key, fields[j].key) != 0);
        CHECK(fields[i].type != ST_FIELD_STRING || fields[i].size > 1);
    }
    CHECK(st_config_field_find("batch-size") == st_config_field_find("batch_size"));
    CHECK(st_config_field_find("nonsense") == NULL);

    st_train_config d;
    st_train_config_defaults(&d);
    CHECK(strcmp(d.model, "cifar_resnet_20") == 0 && strcmp(d.data, "fashion-mnist") == 0);
    CHECK(d.batch_size == 128 && d.test_batch_size == 100 && d.epochs == 160 && d.seed == 17);
    CHECK(d.lr == 0.1 && d.momentum == 0.9 && d.l2 == 5e-4 && d.density == 0.05 && d.fc_density == 1.0);
    CHECK(strcmp(d.sparse_init, "ERK") == 0 && strcmp(d.mask_sampling, "exact") == 0 && strcmp(d.protocol, "sound") == 0);
    CHECK(strcmp(d.execution, "auto") == 0 && d.augment == -1 && d.progress == -1 && d.iters == 1);
    CHECK(isnan(d.valid_split) && d.sparse == 0 && d.fix == 0 && d.given[0] == 0);

    /* every spelling of every field parses into the field */
    st_train_config c;
    st_train_config_defaults(&c);
    static st_config_flags t;
    st_config_flags_init(&t);
    st_config_flags_add_all(&t, &c);
    char *argv1[] = {"--batch_size", "32", "--density=0.2", "--seed", "18446744073709551615", "--no-augment",
                     "--scaled-per-layer", "--max-threads", "3", "--sparse", "--fix", "--plain", "--data", "cifar10"};
    CHECK(parse(&t, 14, argv1) == 0);
    CHECK(c.batch_size == 32 && c.density == 0.2 && c.seed == UINT64_MAX && c.augment == 0 && c.scaled == 2);
    CHECK(c.workers == 3 && c.sparse == 1 && c.fix == 1 && c.progress == 0 && strcmp(c.data, "cifar10") == 0);
    st_config_flags_record_given(&t, &c);
    CHECK(strcmp(c.given, "data,batch_size,seed,sparse,fix,density,scaled,augment,workers,progress") == 0);
    int found = 0;
    for (int i = 0; i < t.n; i++)
        if (strcmp(t.flags[i].name, "batch-size") == 0) found = strstr(t.flags[i].help, "(128)") != NULL;
    CHECK(found); /* help shows the default */

    /* args JSON: round trip of the stored fields; the invocation's fields are not stored */
    snprintf(c.save, sizeof c.save, "run.safetensors");
    c.threads = 2;
    c.image_size = 64;
    snprintf(c.protocol, sizeof c.protocol, "reference");
    char *json = NULL;
    CHECK(st_train_config_to_json(&c, &json) == ST_OK && json);
    CHECK(json && strstr(json, "\"save\"") == NULL && strstr(json, "\"threads\"") == NULL);
    CHECK(json && strncmp(json, "{\"model\": \"cifar_resnet_20\", \"data\": \"cifar10\", \"datadir\": \"\"", 60) == 0);
    st_train_config back;
    st_train_config_defaults(&back);
    CHECK(json && st_train_config_from_json(json, "test", &back) == ST_OK);
    CHECK(back.batch_size == 32 && back.density == 0.2 && back.seed == UINT64_MAX && back.augment == 0);
    CHECK(back.scaled == 2 && back.image_size == 64 && strcmp(back.protocol, "reference") == 0);
    CHECK(back.workers == 0 && back.threads == 0 && back.save[0] == 0);
    free(json);

    /* a checkpoint of the first format: the keys it has, the defaults for those added since */
    st_train_config_defaults(&back);
    back.image_size = 99;
    snprintf(back.protocol, sizeof back.protocol, "reference");
    CHECK(st_train_config_from_json(old_args, "old.safetensors", &back) == ST_OK);
    CHECK(strcmp(back.model, "lenet5") == 0 && back.batch_size == 64 && back.epochs == 3 && back.seed == 18);
    CHECK(back.scaled == 2 && back.density == 0.1 && strcmp(back.lr_schedule, "cosine") == 0);
    CHECK(back.image_size == 0 && strcmp(back.protocol, "sound") == 0);
    /* an empty object: every stored field at its default */
    CHECK(st_train_config_from_json("{}", "empty", &back) == ST_OK && back.batch_size == 128 && back.epochs == 160);
    /* wrong types are named */
    CHECK(st_train_config_from_json("{\"epochs\": 1.5}", "bad", &back) == ST_ERR_FORMAT &&
          strstr(st_last_error(), "epochs") != NULL);
    CHECK(st_train_config_from_json("{\"model\": 3}", "bad", &back) == ST_ERR_FORMAT &&
          strstr(st_last_error(), "model") != NULL);
    CHECK(st_train_config_from_json("[1]", "bad", &back) == ST_ERR_FORMAT);

    /* resume: run-defining flags must agree, --epochs / --test-batch-size / invocation flags win */
    st_train_config ck, cmd;
    st_train_config_defaults(&ck);
    CHECK(st_train_config_from_json(old_args, "old.safetensors", &ck) == ST_OK);
    snprintf(ck.resume, sizeof ck.resume, "old.safetensors");
    st_train_config_defaults(&cmd);
    cmd.epochs = 10;
    cmd.threads = 1;
    cmd.density = 0.1;
    snprintf(cmd.given, sizeof cmd.given, "epochs,threads,density");
    st_train_config merged = ck;
    merged.threads = 0;
    CHECK(st_resume_merge(&cmd, &merged) == ST_OK && merged.epochs == 10 && merged.threads == 1 &&
          merged.density == 0.1 && merged.batch_size == 64);
    cmd.density = 0.2;
    merged = ck;
    CHECK(st_resume_merge(&cmd, &merged) == ST_ERR_ARGUMENT && strstr(st_last_error(), "--density 0.2 differs") &&
          strstr(st_last_error(), "density 0.1"));
    cmd.density = 0.1;
    cmd.epochs = 0;
    merged = ck;
    CHECK(st_resume_merge(&cmd, &merged) == ST_ERR_ARGUMENT && strstr(st_last_error(), "--epochs must be positive"));
    cmd.epochs = 10;
    cmd.scaled = 1;
    snprintf(cmd.given, sizeof cmd.given, "scaled");
    merged = ck;
    CHECK(st_resume_merge(&cmd, &merged) == ST_ERR_ARGUMENT && strstr(st_last_error(), "--scaled 1 differs"));
    TEST_MAIN_END();
}
