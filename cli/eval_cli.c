/* `sparsetrain eval` (see eval_cli.h): flag parsing, the text report and the
 * JSON output; the work is st_eval_run (src/eval/eval_run.c). */
#include "eval_cli.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "core/threads.h"
#include "eval/eval_run.h"
#include "flags.h"
#include "io/atomic_file.h"

/* Parses "0.03", "8/255" or "8 / 255" into *out; 0 on a malformed value. */
static int parse_fraction(const char *text, double *out) {
    char *end;
    double num = strtod(text, &end);
    if (end == text) return 0;
    while (*end == ' ') end++;
    if (*end == 0) {
        *out = num;
        return 1;
    }
    if (*end != '/') return 0;
    const char *rest = end + 1;
    double den = strtod(rest, &end);
    if (end == rest || *end != 0 || den == 0) return 0;
    *out = num / den;
    return 1;
}

static void print_text(const st_eval_config *c, const st_eval_result *r) {
    printf("test accuracy: %.2f%%  loss: %.4f  (%lld images)\n", 100 * r->accuracy, r->loss, (long long)r->count);
    printf("%s on %s: top-1 %.2f%%", r->model, r->data, 100 * r->accuracy);
    if (r->has_top5) printf("  top-5 %.2f%%", 100 * r->top5); /* omitted with fewer than 5 classes */
    printf("  NLL %.4f  ECE %.4f (%d bins)\n", r->loss, r->ece, ST_ECE_BINS);
    printf("\nreliability (confidence bin: images, mean confidence, accuracy)\n");
    for (int b = 0; b < ST_ECE_BINS; b++) {
        const st_reliability_bin *bin = &r->reliability[b];
        if (!bin->count) continue;
        printf("  (%.3f, %.3f]  %7lld  %.4f  %.4f\n", bin->lower, bin->upper, (long long)bin->count,
               bin->mean_confidence, bin->accuracy);
    }
    if (r->has_ood)
        printf("\nOOD detection vs %s (%lld images, maximum softmax probability): AUROC %.4f  AUPR-in %.4f  "
               "AUPR-out %.4f  FPR at 95%% TPR %.4f\n",
               c->ood, (long long)r->ood_count, r->ood.auroc, r->ood.aupr_in, r->ood.aupr_out,
               r->ood.fpr_at_95_tpr);
    if (r->has_attack) {
        const st_attack_config *a = &c->attack;
        if (a->kind == ST_ATTACK_FGSM)
            printf("\nFGSM eps %.5g (%.3g/255): ", a->eps, 255 * a->eps);
        else
            printf("\nPGD eps %.5g (%.3g/255), %d steps of %.5g%s: ", a->eps, 255 * a->eps, a->steps, a->step_size,
                   a->random_start ? ", random start" : "");
        printf("accuracy %.2f%% (clean %.2f%% on the same %lld images)  NLL %.4f\n", 100 * r->adv_accuracy,
               100 * r->attack_clean_accuracy, (long long)r->attack_count, r->adv_loss);
    }
}

int st_cli_eval(int argc, char **argv) {
    st_eval_config c;
    st_eval_config_defaults(&c);
    int last = 0, json = 0, force = 0;
    char attack[16] = "", eps[32] = "8/255", step_size[32] = "2/255", out[ST_PATH_MAX] = "";
    st_flag flags[] = {
        {"checkpoint", ST_FLAG_STRING, c.checkpoint, sizeof c.checkpoint, 0, "checkpoint file (.safetensors) to evaluate", NULL, NULL, 0},
        {"data", ST_FLAG_STRING, c.data, sizeof c.data, 0, "data set (default: the one the checkpoint was trained on)", NULL, NULL, 0},
        {"datadir", ST_FLAG_STRING, c.datadir, sizeof c.datadir, 0, "folder holding the data set files", NULL, NULL, 0},
        {"test-batch-size", ST_FLAG_INT, &c.batch_size, 0, 0, "evaluation batch size (100)", NULL, NULL, 0},
        {"threads", ST_FLAG_INT, &c.threads, 0, 0, "worker threads (default: all cores)", NULL, NULL, 0},
        {"last", ST_FLAG_SWITCH, &last, 0, 1, "evaluate the last epoch's weights instead of the best-on-validation ones", NULL, NULL, 0},
        {"limit", ST_FLAG_INT, &c.limit, 0, 0, "evaluate only the first N test (and OOD) images (default: all)", NULL, NULL, 0},
        {"execution", ST_FLAG_STRING, c.execution, sizeof c.execution, 0, "auto, sparse, mixed or dense (auto: as train chooses)", NULL, NULL, 0},
        {"ood", ST_FLAG_STRING, c.ood, sizeof c.ood, 0, "OOD set: mnist, fashion-mnist, cifar10, cifar100, a folder holding one, noise (= noise:uniform) or noise:gaussian", NULL, NULL, 0},
        {"ood-datadir", ST_FLAG_STRING, c.ood_datadir, sizeof c.ood_datadir, 0, "folder holding the OOD data set files", NULL, NULL, 0},
        {"attack", ST_FLAG_STRING, attack, sizeof attack, 0, "fgsm or pgd: also report accuracy under this L-inf attack", NULL, NULL, 0},
        {"eps", ST_FLAG_STRING, eps, sizeof eps, 0, "attack radius in pixel units, a number or a fraction (8/255)", NULL, NULL, 0},
        {"steps", ST_FLAG_INT, &c.attack.steps, 0, 0, "PGD iterations (10)", NULL, NULL, 0},
        {"step-size", ST_FLAG_STRING, step_size, sizeof step_size, 0, "PGD step in pixel units (2/255)", NULL, NULL, 0},
        {"attack-limit", ST_FLAG_INT, &c.attack_limit, 0, 0, "attack only the first N evaluated images (default: all)", NULL, NULL, 0},
        {"random-start", ST_FLAG_SWITCH, &c.attack.random_start, 0, 1, "PGD starts at a random point of the eps-ball", NULL, NULL, 0},
        {"seed", ST_FLAG_U64, &c.seed, 0, 0, "seed of the noise images and the PGD random start (17)", NULL, NULL, 0},
        {"json", ST_FLAG_SWITCH, &json, 0, 1, "print one JSON object instead of the text report", NULL, NULL, 0},
        {"out", ST_FLAG_STRING, out, sizeof out, 0, "also write the JSON object to this file (e.g. RUN_DIR/eval.json for report)", NULL, NULL, 0},
        {"force", ST_FLAG_SWITCH, &force, 0, 1, "let --out replace a file that is not an eval result (never a folder, device or FIFO)", NULL, NULL, 0},
    };
    int r = st_flags_parse("eval",
                           "usage: sparsetrain eval --checkpoint FILE [--data D] [--ood D2|noise] [--attack fgsm|pgd "
                           "--eps E --steps S --step-size A] [--json] [--out FILE]\n\nReports top-1/top-5 accuracy, NLL, "
                           "ECE and the reliability table of a checkpoint; optionally OOD detection (maximum softmax "
                           "probability) and accuracy under an adversarial attack.",
                           flags, (int)(sizeof flags / sizeof flags[0]), argc, argv, 2);
    if (r != 0) return r > 0 ? 0 : 2;
    const char *problem = NULL;
    if (!c.checkpoint[0]) problem = "--checkpoint is required";
    else if (!st_attack_kind_parse(attack, &c.attack.kind)) problem = "--attack must be fgsm or pgd";
    else if (!parse_fraction(eps, &c.attack.eps)) problem = "--eps must be a number or a fraction such as 8/255";
    else if (!parse_fraction(step_size, &c.attack.step_size))
        problem = "--step-size must be a number or a fraction such as 2/255";
    else if (c.batch_size <= 0) problem = "--test-batch-size must be positive";
    else if (c.threads < 0) problem = "--threads must be >= 0";
    else if (c.limit < 0) problem = "--limit must be >= 0";
    else if (c.attack_limit < 0) problem = "--attack-limit must be >= 0";
    if (problem) {
        fprintf(stderr, "sparsetrain eval: %s\n", problem);
        return 2;
    }
    c.attack.seed = c.seed;
    c.use_best = !last;
    /* --out is checked before the work: never the checkpoint itself, never a device */
    st_file_claims claims;
    st_file_claims_init(&claims);
    st_status s = st_claim_input(&claims, c.checkpoint, "--checkpoint");
    if (s == ST_OK) s = st_claim_output(&claims, out, "--out");
    if (s == ST_OK && out[0]) s = st_output_check(out, "--out", ST_FILE_EVAL_JSON, force);
    if (s == ST_OK) s = st_threads_check("--threads", c.threads); /* before OpenMP sees it */
    if (s == ST_OK && c.threads > 0) omp_set_num_threads(c.threads); /* the library uses the caller's thread count */
    st_eval_result res;
    if (s == ST_OK) s = st_eval_run(&c, &res);
    char *text = NULL;
    if (s == ST_OK && (json || out[0])) s = st_eval_result_json(&c, &res, &text);
    if (s == ST_OK && out[0]) s = st_atomic_write_file(out, ST_FILE_EVAL_JSON, force, text, strlen(text));
    if (s != ST_OK) {
        free(text);
        fprintf(stderr, "sparsetrain eval: error: %s\n", st_last_error());
        return s == ST_ERR_ARGUMENT ? 2 : 1;
    }
    if (json)
        printf("%s\n", text);
    else
        print_text(&c, &res);
    free(text);
    return 0;
}
