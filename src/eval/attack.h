/* L-inf adversarial attacks on a model's inputs (SPEC section 7): FGSM and
 * PGD, using the model's own backward pass to the images
 * (st_model.want_input_grad). The model's inputs are normalised images
 * (pixel/255 - mean_c) / std_c; the attack perturbs raw pixels in [0, 1]:
 * a perturbation delta (|delta| <= eps, raw + delta kept in [0, 1]) becomes
 * x + delta / std_c in the normalised space, so eps is in pixel units
 * (8/255 = eight grey levels) whatever the data set's normalisation. */
#ifndef ST_EVAL_ATTACK_H
#define ST_EVAL_ATTACK_H

#include <stdint.h>

#include "models/model.h"

typedef enum st_attack_kind { ST_ATTACK_NONE = 0, ST_ATTACK_FGSM, ST_ATTACK_PGD } st_attack_kind;

typedef struct st_attack_config {
    st_attack_kind kind;
    double eps;       /* L-inf radius in raw pixel units ([0, 1] scale) */
    int steps;        /* PGD iterations (FGSM: always one step of size eps) */
    double step_size; /* PGD step in raw pixel units */
    int random_start; /* PGD: start from a uniform point of the eps-ball (Madry et al.) instead of x */
    uint64_t seed;    /* for the random start */
} st_attack_config;

/*! Parses "fgsm" / "pgd" / "none". @return 0 for an unknown name. */
int st_attack_kind_parse(const char *name, st_attack_kind *kind);

/*! Checks eps >= 0, steps >= 1 and step_size > 0 for PGD; the message names the flag. */
st_status st_attack_config_check(const st_attack_config *a);

/*! Writes adversarial versions of `batch` normalised images (model input
 * shape) into `adversarial`, maximising the cross-entropy of `labels`.
 * mean/std: per-channel normalisation (m->in_channels entries).
 * `stream` picks the random-start stream (e.g. the batch index).
 * Runs the model in evaluation mode (running batch-norm statistics) and
 * leaves it in evaluation mode with want_input_grad as it found it;
 * parameter gradients are overwritten. With eps = 0 the output equals the
 * input bit for bit.
 * @return ST_ERR_NUMERIC if the loss becomes non-finite; ST_ERR_NOMEM. */
st_status st_attack_batch(st_model *m, const st_attack_config *a, const float *mean, const float *std,
                          const float *images, const int32_t *labels, int batch, uint64_t stream,
                          float *adversarial);

#endif
