/* Evaluation metrics against hand-computed values: logits summary (softmax
 * confidence, NLL, label rank with ties), top-k, ECE and its reliability
 * bins (boundaries belong to the lower bin), OOD AUROC / AUPR-in / AUPR-out /
 * FPR at 95 % TPR with tied scores, histogram, bad input.
 * With `--ood FILE` or `--ece FILE` it is the C side of
 * tests/eval_metrics_sklearn_test.py: FILE holds lines "in S" / "out S"
 * (OOD) or "C K" (confidence, correct 0/1); prints the metrics as JSON.
 *
 * Tolerances: 0 where the metric is a ratio of small integers (exact in
 * double), else 1e-12 / 1e-15: the rounding of a few double operations on
 * hand-computed values.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/metrics.h"
#include "testing.h"

static void test_logits_summary(void) {
    const float logits[] = {1, 2, 3, 0, 0, 0};
    const int32_t labels[] = {0, 2};
    double conf[2], nll[2];
    int rank[2];
    st_logits_summary(2, 3, logits, labels, conf, nll, rank);
    CHECK_NEAR(conf[0], 1.0 / (exp(-2.0) + exp(-1.0) + 1.0), 1e-12);
    CHECK_NEAR(nll[0], log(exp(1.0) + exp(2.0) + exp(3.0)) - 1.0, 1e-12);
    CHECK(rank[0] == 2);
    CHECK_NEAR(conf[1], 1.0 / 3.0, 1e-12);
    CHECK_NEAR(nll[1], log(3.0), 1e-12);
    CHECK(rank[1] == 2); /* ties: classes 0 and 1 come first (argmax convention) */
    const int32_t first[] = {0, 0};
    st_logits_summary(2, 3, logits, first, NULL, NULL, rank);
    CHECK(rank[1] == 0);
    const int ranks[] = {2, 2, 0, 1};
    CHECK_NEAR(st_topk_accuracy(4, ranks, 1), 0.25, 0);
    CHECK_NEAR(st_topk_accuracy(4, ranks, 2), 0.5, 0);
    CHECK_NEAR(st_topk_accuracy(4, ranks, 3), 1.0, 0);
    CHECK_NEAR(st_topk_accuracy(0, ranks, 3), 0.0, 0);
}

/* Top-5 on 7 classes with a five-way tie: classes 1..5 share the second
 * largest logit. The rule (a class ranks before the label if its logit is
 * larger, or equal at a smaller index) puts classes 1..4 in the top 5 and
 * class 5 at rank 5, outside; the lone larger logit and the smaller one
 * behave as without ties. */
static void test_top5_ties(void) {
    const float z[] = {3, 1, 1, 1, 1, 1, 0};
    const int32_t labels[] = {0, 1, 4, 5, 6};
    const int expect[] = {0, 1, 4, 5, 6};
    float logits[5 * 7];
    for (int n = 0; n < 5; n++)
        for (int k = 0; k < 7; k++) logits[n * 7 + k] = z[k];
    int rank[5];
    st_logits_summary(5, 7, logits, labels, NULL, NULL, rank);
    for (int n = 0; n < 5; n++) CHECK(rank[n] == expect[n]);
    CHECK_NEAR(st_topk_accuracy(5, rank, 5), 3.0 / 5.0, 0); /* labels 0, 1, 4 */
    CHECK_NEAR(st_topk_accuracy(5, rank, 1), 1.0 / 5.0, 0);
    /* all logits equal: class k has rank k, so top-5 holds exactly classes 0..4 */
    const float flat[7] = {0};
    for (int32_t label = 0; label < 7; label++) {
        int r;
        st_logits_summary(1, 7, flat, &label, NULL, NULL, &r);
        CHECK(r == label);
    }
}

static void test_calibration(void) {
    const double conf[] = {0.95, 0.95, 0.5, 0.1};
    const uint8_t correct[] = {1, 0, 1, 0};
    st_reliability_bin table[ST_ECE_BINS];
    double ece = -1;
    CHECK_OK(st_calibration(4, conf, correct, ST_ECE_BINS, table, &ece));
    /* bins (14/15, 1]: 2 images, conf 0.95, acc 0.5; (7/15, 8/15]: conf 0.5,
     * acc 1; (1/15, 2/15]: conf 0.1, acc 0 -> 2/4*0.45 + 1/4*0.5 + 1/4*0.1 */
    CHECK_NEAR(ece, 0.375, 1e-12);
    CHECK(table[14].count == 2 && table[7].count == 1 && table[1].count == 1 && table[0].count == 0);
    CHECK_NEAR(table[14].accuracy, 0.5, 0);
    CHECK_NEAR(table[14].mean_confidence, 0.95, 1e-12);
    CHECK_NEAR(table[7].lower, 7.0 / 15, 1e-15);
    CHECK_NEAR(table[7].upper, 8.0 / 15, 1e-15);
    /* a confidence on a boundary belongs to the bin it closes: 0.2 = 3/15 -> (2/15, 3/15] */
    const double edge[] = {0.2, 1.0, 0.0};
    const uint8_t ok[] = {1, 1, 0};
    CHECK_OK(st_calibration(3, edge, ok, ST_ECE_BINS, table, &ece));
    CHECK(table[2].count == 1 && table[3].count == 0 && table[14].count == 1 && table[0].count == 1);
    CHECK_NEAR(ece, (0.8 + 0.0 + 0.0) / 3, 1e-12);
    /* perfectly calibrated: confidence 0.75 everywhere, 3 of 4 right */
    const double flat[] = {0.75, 0.75, 0.75, 0.75};
    const uint8_t three[] = {1, 1, 1, 0};
    CHECK_OK(st_calibration(4, flat, three, ST_ECE_BINS, NULL, &ece));
    CHECK_NEAR(ece, 0.0, 1e-15);
    const double bad[] = {1.5};
    CHECK(st_calibration(1, bad, ok, ST_ECE_BINS, NULL, &ece) == ST_ERR_ARGUMENT);
    const double nan_conf[] = {NAN};
    CHECK(st_calibration(1, nan_conf, ok, ST_ECE_BINS, NULL, &ece) == ST_ERR_ARGUMENT);
    CHECK(st_calibration(1, flat, ok, 0, NULL, &ece) == ST_ERR_ARGUMENT);
}

static void test_ood(void) {
    /* descending: 0.9 in | 0.8 in, 0.8 out | 0.6 in, 0.6 in, 0.6 out | 0.5 out
     * ROC points (0,0) (0,1/4) (1/3,1/2) (2/3,1) (1,1): area 17/24 (= Mann-Whitney 8.5/12);
     * AP-in = 1/4*1 + 1/4*2/3 + 1/2*4/6 = 3/4; AP-out (score negated) = 1/3 + 1/3*1/2 + 1/3*1/2 = 2/3;
     * TPR first reaches 0.95 at threshold 0.6, where FPR = 2/3. */
    const double in[] = {0.9, 0.8, 0.6, 0.6}, out[] = {0.8, 0.5, 0.6};
    st_ood_metrics m;
    CHECK_OK(st_ood_compute(in, 4, out, 3, &m));
    CHECK_NEAR(m.auroc, 17.0 / 24.0, 1e-12);
    CHECK_NEAR(m.aupr_in, 0.75, 1e-12);
    CHECK_NEAR(m.aupr_out, 2.0 / 3.0, 1e-12);
    CHECK_NEAR(m.fpr_at_95_tpr, 2.0 / 3.0, 1e-12);
    /* perfect separation and its mirror image */
    const double hi[] = {0.9, 0.8}, lo[] = {0.3, 0.2, 0.1};
    CHECK_OK(st_ood_compute(hi, 2, lo, 3, &m));
    CHECK_NEAR(m.auroc, 1.0, 0);
    CHECK_NEAR(m.aupr_in, 1.0, 0);
    CHECK_NEAR(m.aupr_out, 1.0, 0);
    CHECK_NEAR(m.fpr_at_95_tpr, 0.0, 0);
    CHECK_OK(st_ood_compute(lo, 3, hi, 2, &m));
    CHECK_NEAR(m.auroc, 0.0, 0);
    CHECK_NEAR(m.fpr_at_95_tpr, 1.0, 0);
    CHECK_NEAR(m.aupr_in, 43.0 / 90.0, 1e-12); /* 1/3*1/3 + 1/3*2/4 + 1/3*3/5 */
    /* every score tied: AUROC 1/2, AP = prevalence */
    const double same_in[] = {0.5, 0.5, 0.5}, same_out[] = {0.5};
    CHECK_OK(st_ood_compute(same_in, 3, same_out, 1, &m));
    CHECK_NEAR(m.auroc, 0.5, 0);
    CHECK_NEAR(m.aupr_in, 0.75, 1e-15);
    CHECK_NEAR(m.aupr_out, 0.25, 1e-15);
    CHECK_NEAR(m.fpr_at_95_tpr, 1.0, 0);
    CHECK(st_ood_compute(in, 0, out, 3, &m) == ST_ERR_ARGUMENT);
    const double nan_in[] = {NAN};
    CHECK(st_ood_compute(nan_in, 1, out, 3, &m) == ST_ERR_ARGUMENT);
}

static void test_histogram(void) {
    const double v[] = {0.0, 0.05, 0.1, 0.55, 1.0, 1.5, -1, NAN, INFINITY, -1e300};
    int64_t counts[10];
    st_histogram(10, v, 0.0, 1.0, 10, counts);
    CHECK(counts[0] == 4); /* 0, 0.05, -1 and -1e300 (clamped) */
    CHECK(counts[1] == 1); /* 0.1 */
    CHECK(counts[5] == 1);
    CHECK(counts[9] == 3); /* 1.0, 1.5 and infinity */
    int64_t total = 0;
    for (int i = 0; i < 10; i++) total += counts[i];
    CHECK(total == 9); /* NaN skipped */
}

/* Reads "<tag> <number>" lines; tag_a / tag_b pick the two arrays. */
static int read_pairs(const char *path, double **a, int64_t *na, double **b, int64_t *nb) {
    FILE *f = fopen(path, "r");
    if (!f) return 1;
    char tag[16];
    double v;
    *na = *nb = 0;
    *a = malloc(sizeof(double) * 100000), *b = malloc(sizeof(double) * 100000);
    while (fscanf(f, "%15s %lf", tag, &v) == 2 && *na < 100000 && *nb < 100000) {
        if (strcmp(tag, "in") == 0 || strcmp(tag, "conf") == 0)
            (*a)[(*na)++] = v;
        else
            (*b)[(*nb)++] = v;
    }
    fclose(f);
    return 0;
}

static int file_mode(const char *mode, const char *path) {
    double *a, *b;
    int64_t na, nb;
    if (read_pairs(path, &a, &na, &b, &nb)) return 1;
    int rc = 0;
    if (strcmp(mode, "--ood") == 0) {
        st_ood_metrics m;
        if (st_ood_compute(a, na, b, nb, &m) != ST_OK) rc = 1;
        else
            printf("{\"auroc\": %.17g, \"aupr_in\": %.17g, \"aupr_out\": %.17g, \"fpr_at_95_tpr\": %.17g}\n", m.auroc,
                   m.aupr_in, m.aupr_out, m.fpr_at_95_tpr);
    } else { /* --ece: "conf C" then "ok K" lines, in the same order */
        uint8_t *correct = calloc((size_t)na + 1, 1);
        for (int64_t i = 0; i < na && i < nb; i++) correct[i] = b[i] != 0;
        st_reliability_bin table[ST_ECE_BINS];
        double ece;
        if (nb != na || st_calibration(na, a, correct, ST_ECE_BINS, table, &ece) != ST_OK) rc = 1;
        else {
            printf("{\"ece\": %.17g, \"counts\": [", ece);
            for (int i = 0; i < ST_ECE_BINS; i++) printf("%s%lld", i ? ", " : "", (long long)table[i].count);
            printf("]}\n");
        }
        free(correct);
    }
    free(a), free(b);
    return rc;
}

int main(int argc, char **argv) {
    if (argc == 3) return file_mode(argv[1], argv[2]);
    test_logits_summary();
    test_top5_ties();
    test_calibration();
    test_ood();
    test_histogram();
    TEST_MAIN_END();
}
