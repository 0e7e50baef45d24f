/* Tests of the argparse-style flag parser (cli/flags.c): exact names,
 * unambiguous prefixes, ambiguous prefixes refused naming the candidates,
 * --flag=value, '-' = '_', ignored and refused compatibility flags, and one
 * message per mistake. stderr is captured into a file to check the messages. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "flags.h"
#include "sparsetrain.h"
#include "testing.h"

static char text[32];
static int integer, on, quiet_on;
static uint64_t seed;
static double real;

static st_flag table[] = {
    {"epochs", ST_FLAG_INT, &integer, 0, 0, "an integer", NULL, NULL, 0},
    {"save", ST_FLAG_STRING, text, sizeof text, 0, "a string", NULL, NULL, 0},
    {"save-features", ST_FLAG_SWITCH, NULL, 0, 1, "reference flag", "never read", NULL, 0},
    {"seed", ST_FLAG_U64, &seed, 0, 0, "unsigned", NULL, NULL, 0},
    {"density", ST_FLAG_DOUBLE, &real, 0, 0, "a number", NULL, NULL, 0},
    {"decay_frequency", ST_FLAG_INT, NULL, 0, 0, "reference flag", "unused by the reference", NULL, 0},
    {"death-rate", ST_FLAG_DOUBLE, NULL, 0, 0, "dst", NULL, NULL, 0},
    {"sparse", ST_FLAG_SWITCH, &on, 0, 1, "a switch", NULL, NULL, 0},
    {"sparse_init", ST_FLAG_STRING, text, sizeof text, 0, "a string", NULL, NULL, 0},
    {"quiet", ST_FLAG_SWITCH, &quiet_on, 0, 1, "a switch", NULL, NULL, 0},
    {"fp16", ST_FLAG_SWITCH, NULL, 0, 1, "half precision", NULL, "waits for bf16 support", 0},
};
#define N_FLAGS ((int)(sizeof table / sizeof table[0]))

static char captured[4096];
static const st_short_flag shorts[] = {{'e', "epochs"}, {'s', "sparse"}, {'d', "density"}};
static char folder[16];
static int extended; /* 1: parse with the short names and a positional folder */

/* Parses the NULL-terminated argument list with stderr captured; returns the
 * parser's result, the stderr text in `captured`. */
static int parse(const char *const *args) {
    char *argv[32];
    int argc = 0;
    argv[argc++] = "sparsetrain";
    argv[argc++] = "test";
    for (int i = 0; args[i]; i++) argv[argc++] = (char *)args[i];
    memset(text, 0, sizeof text);
    integer = on = quiet_on = 0;
    seed = 0;
    real = 0;
    fflush(stderr);
    FILE *tmp = tmpfile();
    if (!tmp) {
        perror("tmpfile");
        return -99;
    }
    int saved = dup(fileno(stderr));
    dup2(fileno(tmp), fileno(stderr));
    int r = extended ? st_flags_parse_extended("test", "usage: test", table, N_FLAGS, argc, argv, 2, shorts, 3, folder,
                                               sizeof folder, "data folder")
                     : st_flags_parse("test", "usage: test", table, N_FLAGS, argc, argv, 2);
    fflush(stderr);
    dup2(saved, fileno(stderr));
    close(saved);
    rewind(tmp);
    size_t n = fread(captured, 1, sizeof captured - 1, tmp);
    captured[n] = 0;
    fclose(tmp);
    return r;
}

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

/* argparse's short options and one positional argument (the reference
 * ImageNet main.py: DATA_DIR -b 192 -j 10 -e). */
static void test_extended(void) {
    extended = 1;
    CHECK(parse(ARGS("-e", "7", "data/x", "-d0.5", "-s")) == 0);
    CHECK(integer == 7 && real == 0.5 && on == 1 && strcmp(folder, "data/x") == 0 && captured[0] == 0);
    CHECK(parse(ARGS("--epochs", "3")) == 0 && integer == 3 && folder[0] == 0);
    CHECK(parse(ARGS("-s3")) == -1 && strstr(captured, "-s takes no value"));
    CHECK(parse(ARGS("-x", "3")) == -1 && strstr(captured, "unknown flag '-x'"));
    CHECK(parse(ARGS("-e")) == -1 && strstr(captured, "--epochs needs a value"));
    CHECK(parse(ARGS("a", "b")) == -1 && strstr(captured, "a second data folder 'b'"));
    CHECK(parse(ARGS("a-very-long-folder-name")) == -1 && strstr(captured, "too long"));
    extended = 0;
    /* without the extended parse, neither is accepted */
    CHECK(parse(ARGS("-e", "7")) == -1 && strstr(captured, "unexpected argument '-e'"));
    CHECK(parse(ARGS("data/x")) == -1 && strstr(captured, "unexpected argument 'data/x'"));
}

int main(void) {
    test_extended();
    /* exact names, both value forms */
    CHECK(parse(ARGS("--epochs", "7", "--density=0.25", "--sparse")) == 0);
    CHECK(integer == 7 && real == 0.25 && on == 1 && captured[0] == 0);
    /* an unambiguous prefix: --epoch is --epochs, --dens is --density, also with = */
    CHECK(parse(ARGS("--epoch", "160", "--dens=0.05")) == 0);
    CHECK(integer == 160 && real == 0.05);
    CHECK(parse(ARGS("--e=3")) == 0 && integer == 3);
    /* '-' and '_' interchangeable, also inside a prefix */
    CHECK(parse(ARGS("--sparse-init", "ERK")) == 0 && strcmp(text, "ERK") == 0);
    CHECK(parse(ARGS("--sparse_i=SNIP")) == 0 && strcmp(text, "SNIP") == 0);
    CHECK(parse(ARGS("--decay-freq", "5")) == 0);
    /* an exact name wins over the longer names it is a prefix of */
    CHECK(parse(ARGS("--save", "x.safetensors")) == 0 && strcmp(text, "x.safetensors") == 0);
    CHECK(parse(ARGS("--sparse")) == 0 && on == 1);
    /* ambiguous prefixes are refused, naming every candidate */
    CHECK(parse(ARGS("--sa", "x")) == -1);
    CHECK(strstr(captured, "ambiguous flag '--sa'") && strstr(captured, "--save") &&
          strstr(captured, "--save-features"));
    CHECK(parse(ARGS("--de=1")) == -1);
    CHECK(strstr(captured, "--density") && strstr(captured, "--decay_frequency") && strstr(captured, "--death-rate"));
    CHECK(parse(ARGS("--s")) == -1 && strstr(captured, "--seed") && strstr(captured, "--sparse_init"));
    /* "--sparse_" is a prefix of sparse_init only (sparse is shorter) */
    CHECK(parse(ARGS("--sparse_", "uniform")) == 0 && strcmp(text, "uniform") == 0);
    /* unknown names and bad values: one message naming the culprit */
    CHECK(parse(ARGS("--bogus", "1")) == -1 && strstr(captured, "unknown flag '--bogus'"));
    CHECK(parse(ARGS("--epochs", "ten")) == -1 && strstr(captured, "--epochs expects an integer, got 'ten'"));
    CHECK(parse(ARGS("--epochs")) == -1 && strstr(captured, "--epochs needs a value"));
    CHECK(parse(ARGS("--sparse=1")) == -1 && strstr(captured, "--sparse takes no value"));
    CHECK(parse(ARGS("epochs")) == -1 && strstr(captured, "unexpected argument 'epochs'"));
    CHECK(parse(ARGS("--")) == -1 && strstr(captured, "unexpected argument"));
    CHECK(parse(ARGS("--=3")) == -1);
    CHECK(parse(ARGS("--seed", "-1")) == -1);
    /* ignored flags: accepted, value type still checked, one note each */
    CHECK(parse(ARGS("--save-features", "--decay_frequency", "25000", "--save-features")) == 0);
    CHECK(strstr(captured, "--save-features is ignored: never read") &&
          strstr(captured, "--decay_frequency is ignored: unused by the reference"));
    CHECK(strstr(strstr(captured, "never read") + 1, "never read") == NULL); /* noted once */
    CHECK(table[2].given == 2 && table[5].given == 1 && table[0].given == 0);
    CHECK(parse(ARGS("--decay_frequency", "x")) == -1);
    /* a flag without target and without a note (decided by the caller) */
    CHECK(parse(ARGS("--death-rate", "0.5")) == 0 && table[6].given == 1 && captured[0] == 0);
    /* refused flags */
    CHECK(parse(ARGS("--fp16")) == -1 && strstr(captured, "--fp16 is not available: waits for bf16 support"));
    CHECK(parse(ARGS("--fp")) == -1 && strstr(captured, "--fp16 is not available"));
    /* lookup API */
    int cand[4], nc;
    CHECK(st_flags_lookup(table, N_FLAGS, "ep", 2, cand, 4, &nc) == 0 && nc == 1);
    CHECK(st_flags_lookup(table, N_FLAGS, "sa", 2, cand, 4, &nc) == -2 && nc == 2 && cand[0] == 1 && cand[1] == 2);
    CHECK(st_flags_lookup(table, N_FLAGS, "zz", 2, cand, 4, &nc) == -1 && nc == 0);
    CHECK(st_flags_find(table, N_FLAGS, "sparse-init") == &table[8]);
    CHECK(st_flags_find(table, N_FLAGS, "spars") == NULL);
    TEST_MAIN_END();
}
