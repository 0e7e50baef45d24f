/* `sparsetrain eval`: a checkpoint on a test set, with accuracy (top-1,
 * top-5), NLL, calibration (ECE + reliability table), optionally OOD
 * detection against a second data set or noise, and accuracy under an
 * L-inf attack (SPEC section 7). The result can be written as JSON, which
 * `sparsetrain report` reads back (docs/FORMATS.md). */
#ifndef ST_EVAL_EVAL_RUN_H
#define ST_EVAL_EVAL_RUN_H

#include <stdint.h>

#include "data/dataset.h"
#include "eval/attack.h"
#include "eval/metrics.h"
#include "sparsetrain.h"
#include "train/trainer.h"

#define ST_SCORE_BINS 20 /* histogram of maximum softmax probabilities over [0, 1] */

typedef struct st_eval_config {
    char checkpoint[ST_PATH_MAX];
    char data[32];             /* "" = the data set the checkpoint was trained on */
    char datadir[ST_PATH_MAX];
    int batch_size;
    int threads;               /* --threads, set by the caller (the library runs on the OpenMP thread count it is given) */
    int use_best;              /* evaluate the best-on-validation copy if present */
    int limit;                 /* evaluate only the first `limit` test (and OOD) images; 0 = all */
    char execution[16];        /* auto, sparse, mixed or dense (exec/policy.h); "" = auto */
    int attack_limit;          /* attack only the first `attack_limit` of those (PGD is costly); 0 = all */
    /* OOD: "" none; a data set name (mnist, fashion-mnist, cifar10, cifar100),
     * "noise" (= "noise:uniform") or "noise:gaussian" */
    char ood[ST_PATH_MAX];
    char ood_datadir[ST_PATH_MAX];
    uint64_t seed;             /* noise images and PGD random start */
    st_attack_config attack;
} st_eval_config;

/* Defaults: batch 100, best-on-validation weights, seed 17, no OOD, no attack. */
void st_eval_config_defaults(st_eval_config *c);

typedef struct st_eval_result {
    char model[64];
    char data[32];
    int64_t count;             /* test images evaluated */
    int num_classes;
    double accuracy;           /* top-1 */
    int has_top5;              /* 1 when the model has >= 5 classes; top-5 is omitted otherwise */
    double top5;               /* top-5 (0 when !has_top5) */
    double loss;               /* mean NLL */
    double ece;
    st_reliability_bin reliability[ST_ECE_BINS];
    int64_t score_hist_in[ST_SCORE_BINS];
    int has_ood;
    int64_t ood_count;
    st_ood_metrics ood;
    int64_t score_hist_out[ST_SCORE_BINS];
    int has_attack;
    int64_t attack_count;          /* images attacked (the first ones of the test set) */
    double adv_accuracy, adv_loss; /* under the attack */
    double attack_clean_accuracy;  /* clean accuracy on those same images */
} st_eval_result;

/*! Runs the evaluation. @return ST_ERR_ARGUMENT for an unknown data set, a
 * shape mismatch between the checkpoint and the data, or a bad OOD/attack
 * setting; ST_ERR_IO / ST_ERR_FORMAT for unreadable files (named). */
st_status st_eval_run(const st_eval_config *c, st_eval_result *result);

/*! The result (and the settings that produced it) as one JSON object; the
 * caller frees *text. */
st_status st_eval_result_json(const st_eval_config *c, const st_eval_result *r, char **text);

/*! Fills `out` with `count` noise images of the given shape: "uniform"
 * (every pixel uniform in 0..255) or "gaussian" (N(0.5, 0.25) in [0, 1]
 * units, clipped), labels 0, normalisation copied from `like`.
 * @return ST_ERR_ARGUMENT for an unknown kind. */
st_status st_noise_dataset(const char *kind, const st_dataset *like, int64_t count, uint64_t seed,
                           st_dataset *out);

#endif
