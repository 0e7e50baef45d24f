#!/usr/bin/env bash
# The paper's two experiments in one command (SPEC section 9): a depth sweep
# (cifar_resnet_20/32/44/56/110) and a width sweep (cifar_resnet_20_8/16/24/32),
# each model trained dense and randomly pruned (--sparse_init at --density),
# with several seeds; every run gets a folder (train --run-dir) and an
# evaluation (eval --out RUN/eval.json); the sweep ends with
# `sparsetrain report`, whose "gap to dense vs model size" plot is the result.
#
# usage: scripts/sweep.sh [options] [-- extra sparsetrain train flags]
#   --out DIR            where run folders and report.html go (runs/sweep)
#   --data D             data set (fashion-mnist); --datadir DIR for its folder
#   --sparse-init X      layer-wise densities of the sparse runs (ERK)
#   --density d          overall density of the sparse runs (0.05)
#   --seeds "S..."       seeds (default "17 18 19")
#   --depths "N..."      cifar_resnet_N depths ("20 32 44 56 110"; "" skips the depth sweep)
#   --widths "W..."      cifar_resnet_20_W widths ("8 16 24 32"; "" skips the width sweep)
#   --width-depth N      depth of the width sweep's models (20)
#   --epochs E           epochs per run (160, the paper's recipe)
#   --eval-args "..."    extra flags for sparsetrain eval (e.g. "--ood noise --limit 2000")
#   --dry-run            print the commands only
# Run folders with an eval.json are skipped and a run with a checkpoint but
# no eval.json is resumed (train --resume), so an interrupted sweep continues
# where it stopped. SPARSETRAIN overrides the binary (build/sparsetrain).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${SPARSETRAIN:-./build/sparsetrain}
out=runs/sweep data=fashion-mnist datadir="" init=ERK density=0.05 seeds="17 18 19"
depths="20 32 44 56 110" widths="8 16 24 32" width_depth=20 epochs=160 eval_args="" dry=0
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --data) data=$2; shift 2 ;;
    --datadir) datadir=$2; shift 2 ;;
    --sparse-init) init=$2; shift 2 ;;
    --density) density=$2; shift 2 ;;
    --seeds) seeds=$2; shift 2 ;;
    --depths) depths=$2; shift 2 ;;
    --widths) widths=$2; shift 2 ;;
    --width-depth) width_depth=$2; shift 2 ;;
    --epochs) epochs=$2; shift 2 ;;
    --eval-args) eval_args=$2; shift 2 ;;
    --dry-run) dry=1; shift ;;
    --) shift; break ;;
    -h|--help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "sweep.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -x "$BIN" ] || { echo "sweep.sh: $BIN not found: run scripts/setup.sh first" >&2; exit 1; }

models=()
for n in $depths; do models+=("cifar_resnet_$n"); done
for w in $widths; do models+=("cifar_resnet_${width_depth}_$w"); done
[ ${#models[@]} -gt 0 ] || { echo "sweep.sh: nothing to run (--depths and --widths are empty)" >&2; exit 2; }
data_flags=(--data "$data")
[ -n "$datadir" ] && data_flags+=(--datadir "$datadir")

run() { echo "+ $*"; [ "$dry" = 1 ] || "$@"; }

dirs=()
for model in "${models[@]}"; do
  for seed in $seeds; do
    for kind in dense sparse; do
      dir="$out/$model-$( [ $kind = dense ] && echo dense || echo "$init-$density" )-s$seed"
      dirs+=("$dir")
      [ -f "$dir/eval.json" ] && { echo "= $dir done"; continue; }
      flags=()
      [ $kind = sparse ] && flags=(--sparse --fix --sparse_init "$init" --density "$density")
      if [ -f "$dir/checkpoint.safetensors" ]; then  # interrupted earlier: continue that run
        run "$BIN" train --resume "$dir/checkpoint.safetensors" --plain --run-dir "$dir" "$@"
      else
        run "$BIN" train --model "$model" "${data_flags[@]}" --epochs "$epochs" --seed "$seed" --plain \
          "${flags[@]}" --run-dir "$dir" "$@"
      fi
      # shellcheck disable=SC2086
      run "$BIN" eval --checkpoint "$dir/checkpoint.safetensors" "${data_flags[@]}" $eval_args --out "$dir/eval.json"
    done
  done
done
run "$BIN" report "${dirs[@]}" -o "$out/report.html"
