/* What `sparsetrain report` knows about one run folder: the training log
 * (JSON lines of `train --log`), the checkpoint (model, arguments, masks ->
 * layer-wise densities and FLOPs) and the evaluation (`eval --out
 * RUN_DIR/eval.json`). Each part is optional; a folder with none of them is
 * an error. File choice: log.jsonl, else the alphabetically first *.jsonl;
 * checkpoint.safetensors, else the first *.safetensors; eval.json. */
#ifndef ST_REPORT_RUN_DATA_H
#define ST_REPORT_RUN_DATA_H

#include <stdint.h>

#include "eval/eval_run.h"
#include "eval/flops_summary.h"
#include "models/model.h"
#include "train/trainer.h"

typedef struct st_report_layer {
    char name[ST_NAME_MAX];
    int64_t numel, kept;
} st_report_layer;

typedef struct st_report_run {
    char dir[ST_PATH_MAX];
    char name[128];            /* the folder's last path component */
    char files[3][ST_PATH_MAX + 300]; /* the log, checkpoint and eval.json read ("" where absent) */
    /* checkpoint */
    int has_checkpoint;
    char model[64], data[32], sparse_init[32];
    int sparse;                /* 0: dense run */
    double density;
    int64_t seed;
    int64_t parameters;        /* trainable parameters of the dense model */
    st_flops_summary flops;
    int n_layers;
    st_report_layer *layers;
    /* log */
    int n_epochs;
    int skipped_lines;         /* log lines that were not log objects (torn by a kill): skipped */
    char first_skipped[512];   /* the first of them and why, for the warning */
    double *epoch, *lr, *train_loss, *train_acc, *val_acc, *test_acc; /* NaN where absent */
    double train_flops_dense, train_flops_sparse; /* summed over the logged epochs */
    double *itop;              /* per epoch: the ITOP rate (sparse runs; NaN where absent) */
    double train_flops_updates; /* dynamic sparse training: dense gradients of the update steps, summed */
    /* dynamic sparse training: one entry per mask update ("mask_update" lines), by optimiser step */
    int n_updates;
    double *update_step, *update_death_rate, *update_itop;
    /* eval.json */
    int has_eval;
    double top1, top5, nll, ece;
    st_reliability_bin reliability[ST_ECE_BINS];
    int64_t hist_in[ST_SCORE_BINS], hist_out[ST_SCORE_BINS];
    int has_ood;
    char ood_data[32];
    st_ood_metrics ood;
    int has_attack;
    char attack_kind[8];
    double attack_eps, attack_accuracy, attack_count;
} st_report_run;

/*! Reads the run in `dir` into `out` (zeroed first; free with
 * st_report_run_free). @return ST_ERR_IO if the folder cannot be read or
 * holds none of the three files; ST_ERR_FORMAT for a malformed file (named). */
st_status st_report_run_load(const char *dir, st_report_run *out);
void st_report_run_free(st_report_run *r);

/*! The run's accuracy for comparisons: eval.json's top-1 if present, else
 * the last logged test accuracy; NaN if neither. */
double st_report_run_accuracy(const st_report_run *r);

#endif
