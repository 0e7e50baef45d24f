/* Flag parsing with one clear message per mistake (see flags.h). */
#include "flags.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/trainer.h"

static char fold(char c) { return c == '_' ? '-' : c; }

/* 1 when the first `len` bytes of `given` equal the start of `name` ('-' = '_'). */
static int is_prefix(const char *name, const char *given, size_t len) {
    for (size_t i = 0; i < len; i++)
        if (!name[i] || fold(name[i]) != fold(given[i])) return 0;
    return 1;
}

int st_flags_lookup(const st_flag *flags, int n, const char *name, size_t len, int *candidates, int max_candidates,
                    int *n_candidates) {
    if (n_candidates) *n_candidates = 0;
    if (len == 0) return -1;
    for (int k = 0; k < n; k++)
        if (strlen(flags[k].name) == len && is_prefix(flags[k].name, name, len)) return k;
    int found = -1, count = 0;
    for (int k = 0; k < n; k++) {
        if (!is_prefix(flags[k].name, name, len)) continue;
        if (candidates && count < max_candidates) candidates[count] = k;
        count++;
        found = k;
    }
    if (n_candidates) *n_candidates = count;
    if (count == 0) return -1;
    return count == 1 ? found : -2;
}

st_flag *st_flags_find(st_flag *flags, int n, const char *name) {
    size_t len = strlen(name);
    for (int k = 0; k < n; k++)
        if (strlen(flags[k].name) == len && is_prefix(flags[k].name, name, len)) return &flags[k];
    return NULL;
}

static void print_usage(const char *usage, const st_flag *flags, int n, const st_short_flag *shorts, int n_shorts) {
    printf("%s\n\nOptions:\n", usage);
    int compat = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < n; i++) {
            int is_compat = flags[i].ignored || flags[i].refused;
            if (is_compat != pass) continue;
            if (is_compat && !compat++)
                printf("\nAccepted for compatibility with the reference code (no effect here, or refused):\n");
            const char *arg = flags[i].type == ST_FLAG_SWITCH   ? ""
                              : flags[i].type == ST_FLAG_STRING ? " S"
                              : flags[i].type == ST_FLAG_DOUBLE ? " X"
                                                                : " N";
            char left[64];
            char letter = 0;
            for (int k = 0; k < n_shorts; k++)
                if (strcmp(shorts[k].name, flags[i].name) == 0) letter = shorts[k].letter;
            if (letter)
                snprintf(left, sizeof left, "-%c, --%s%s", letter, flags[i].name, arg);
            else
                snprintf(left, sizeof left, "--%s%s", flags[i].name, arg);
            if (flags[i].ignored)
                printf("  %-24s ignored: %s\n", left, flags[i].ignored);
            else if (flags[i].refused)
                printf("  %-24s refused: %s\n", left, flags[i].refused);
            else
                printf("  %-24s %s\n", left, flags[i].help);
        }
        if (pass == 0) printf("  %-24s %s\n", "--help", "show this help");
    }
    printf("\nAny unambiguous prefix of a flag works (--epoch = --epochs); '-' and '_' are interchangeable;\n"
           "--flag value and --flag=value are the same.\n");
}

/* Numbers are plain decimals: no leading blanks (strtoull would read " -1"
 * as 2^64 - 1), no hexadecimal ("0x10"). */
static int plain_decimal(const char *value) {
    if (!value[0] || value[0] == ' ' || (value[0] >= '\t' && value[0] <= '\r')) return 0;
    return strpbrk(value, "xXpP") == NULL;
}

static int set_value(const char *command, st_flag *f, const char *value) {
    char *end = NULL;
    errno = 0;
    if (f->type != ST_FLAG_STRING && f->type != ST_FLAG_SWITCH && !plain_decimal(value)) {
        fprintf(stderr, "sparsetrain %s: --%s expects %s, got '%s'\n", command, f->name,
                f->type == ST_FLAG_DOUBLE ? "a decimal number" : "a decimal integer", value);
        return -1;
    }
    switch (f->type) {
    case ST_FLAG_STRING:
        if (f->target && strlen(value) >= f->size) {
            fprintf(stderr, "sparsetrain %s: value of --%s is too long\n", command, f->name);
            return -1;
        }
        if (f->target) memcpy(f->target, value, strlen(value) + 1);
        return 0;
    case ST_FLAG_INT: {
        long v = strtol(value, &end, 10);
        if (!*value || *end || errno || v < -2147483647L || v > 2147483647L) break;
        if (f->target) *(int *)f->target = (int)v;
        return 0;
    }
    case ST_FLAG_U64: {
        if (value[0] == '-') break;
        unsigned long long v = strtoull(value, &end, 10);
        if (!*value || *end || errno) break;
        if (f->target) *(uint64_t *)f->target = v;
        return 0;
    }
    case ST_FLAG_DOUBLE: {
        double v = strtod(value, &end);
        if (!*value || *end || errno || !isfinite(v)) break;
        if (f->target) *(double *)f->target = v;
        return 0;
    }
    case ST_FLAG_SWITCH: break;
    }
    fprintf(stderr, "sparsetrain %s: --%s expects %s, got '%s'\n", command, f->name,
            f->type == ST_FLAG_DOUBLE ? "a number" : "an integer", value);
    return -1;
}

static void print_candidates(const char *command, const char *arg, size_t len, const st_flag *flags,
                             const int *cand, int n_cand, int shown) {
    fprintf(stderr, "sparsetrain %s: ambiguous flag '%.*s' could be", command, (int)len + 2, arg);
    for (int i = 0; i < shown; i++) fprintf(stderr, "%s --%s", i ? (i + 1 == n_cand ? " or" : ",") : "",
                                            flags[cand[i]].name);
    if (shown < n_cand) fprintf(stderr, " and %d more", n_cand - shown);
    fprintf(stderr, " (give more of the name)\n");
}

int st_flags_parse(const char *command, const char *usage, st_flag *flags, int n, int argc, char **argv, int first) {
    return st_flags_parse_extended(command, usage, flags, n, argc, argv, first, NULL, 0, NULL, 0, NULL);
}

/* -x, -xVALUE: the index of the flag with short name x, or -1. */
static int short_flag(const st_flag *flags, int n, const st_short_flag *shorts, int n_shorts, char letter) {
    for (int k = 0; k < n_shorts; k++)
        if (shorts[k].letter == letter) {
            const st_flag *f = st_flags_find((st_flag *)flags, n, shorts[k].name);
            return f ? (int)(f - flags) : -1;
        }
    return -1;
}

int st_flags_parse_extended(const char *command, const char *usage, st_flag *flags, int n, int argc, char **argv,
                            int first, const st_short_flag *shorts, int n_shorts, char *positional, size_t size,
                            const char *what) {
    for (int k = 0; k < n; k++) flags[k].given = 0;
    if (positional && size) positional[0] = 0;
    for (int i = first; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "-h") == 0) {
            print_usage(usage, flags, n, shorts, n_shorts);
            return 1;
        }
        if (positional && arg[0] != '-' && arg[0]) {
            if (positional[0]) {
                fprintf(stderr, "sparsetrain %s: a second %s '%s' (the first was '%s')\n", command, what, arg,
                        positional);
                return -1;
            }
            if (strlen(arg) >= size) {
                fprintf(stderr, "sparsetrain %s: the %s is too long\n", command, what);
                return -1;
            }
            memcpy(positional, arg, strlen(arg) + 1);
            continue;
        }
        const char *name, *eq, *inline_value = NULL;
        size_t len;
        int k;
        if (n_shorts > 0 && arg[0] == '-' && arg[1] && arg[1] != '-') { /* -x [value], -xvalue */
            k = short_flag(flags, n, shorts, n_shorts, arg[1]);
            if (k < 0) {
                fprintf(stderr, "sparsetrain %s: unknown flag '-%c' (see sparsetrain %s --help)\n", command, arg[1],
                        command);
                return -1;
            }
            name = flags[k].name, len = strlen(name), eq = NULL;
            if (arg[2]) {
                if (flags[k].type == ST_FLAG_SWITCH) {
                    fprintf(stderr, "sparsetrain %s: -%c takes no value (got '%s')\n", command, arg[1], arg);
                    return -1;
                }
                inline_value = arg + 2;
            }
        } else {
            if (strncmp(arg, "--", 2) != 0 || arg[2] == 0 || arg[2] == '=') {
                fprintf(stderr, "sparsetrain %s: unexpected argument '%s' (flags start with --; see --help)\n",
                        command, arg);
                return -1;
            }
            name = arg + 2, eq = strchr(name, '=');
            len = eq ? (size_t)(eq - name) : strlen(name);
            if (eq) inline_value = eq + 1;
            int cand[8], n_cand = 0;
            k = st_flags_lookup(flags, n, name, len, cand, 8, &n_cand);
            if (k == -1 && !eq && len <= 4 && strncmp(name, "help", len) == 0) {
                print_usage(usage, flags, n, shorts, n_shorts);
                return 1;
            }
            if (k == -2) {
                print_candidates(command, arg, len, flags, cand, n_cand, n_cand < 8 ? n_cand : 8);
                return -1;
            }
            if (k < 0) {
                fprintf(stderr, "sparsetrain %s: unknown flag '--%.*s' (see sparsetrain %s --help)\n", command,
                        (int)len, name, command);
                return -1;
            }
        }
        st_flag *f = &flags[k];
        if (f->refused) {
            fprintf(stderr, "sparsetrain %s: --%s is not available: %s\n", command, f->name, f->refused);
            return -1;
        }
        if (f->type == ST_FLAG_SWITCH) {
            if (eq) {
                fprintf(stderr, "sparsetrain %s: --%s takes no value\n", command, f->name);
                return -1;
            }
            if (f->target) *(int *)f->target = f->value;
        } else {
            const char *value = inline_value ? inline_value : (i + 1 < argc ? argv[++i] : NULL);
            if (!value) {
                fprintf(stderr, "sparsetrain %s: --%s needs a value\n", command, f->name);
                return -1;
            }
            if (set_value(command, f, value) != 0) return -1;
        }
        if (f->ignored && !f->given) fprintf(stderr, "sparsetrain %s: --%s is ignored: %s\n", command, f->name, f->ignored);
        f->given++;
    }
    return 0;
}

/* ------------------------------------------- the reference's train flags */

int st_flags_check_train(const char *command, st_flag *flags, int n, const st_train_config *c, int multiplier) {
    static const char *const dst[] = {"growth", "death", "prune", "redistribution", "death-rate", "prune-rate",
                                      "update_frequency", "decay-schedule"};
    for (size_t k = 0; k < sizeof dst / sizeof dst[0] && !(c->sparse && !c->fix); k++) {
        const st_flag *f = st_flags_find(flags, n, dst[k]);
        if (f && f->given)
            fprintf(stderr, "sparsetrain %s: --%s is ignored: %s\n", command, f->name,
                    c->sparse ? "the sparse connectivity is fixed (--fix)" : "the network is dense (no --sparse)");
    }
    const st_flag *m = st_flags_find(flags, n, "multiplier");
    if (m && m->given) {
        if (multiplier < 1 || multiplier > 100) {
            fprintf(stderr, "sparsetrain %s: --multiplier must be in 1..100 (got %d)\n", command, multiplier);
            return -1;
        }
        if (c->resume[0]) {
            fprintf(stderr,
                    "sparsetrain %s: --multiplier cannot be given with --resume (the run keeps the --epochs it was "
                    "stretched to; give --epochs to change them)\n",
                    command);
            return -1;
        }
        if ((int64_t)c->epochs * multiplier > 1000000) {
            fprintf(stderr, "sparsetrain %s: --epochs %d times --multiplier %d is too many epochs\n", command,
                    c->epochs, multiplier);
            return -1;
        }
    }
    if (c->iters < 1 || c->iters > 64) {
        fprintf(stderr, "sparsetrain %s: --iters must be in 1..64 (got %d)\n", command, c->iters);
        return -1;
    }
    if (c->iters > 1 && c->resume[0]) {
        fprintf(stderr, "sparsetrain %s: --iters cannot be combined with --resume (resume each run on its own)\n",
                command);
        return -1;
    }
    if (c->log_interval < 0) {
        fprintf(stderr, "sparsetrain %s: --log-interval must be >= 0 (got %d)\n", command, c->log_interval);
        return -1;
    }
    return 0;
}
