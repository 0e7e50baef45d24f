#!/usr/bin/env bash
# Proves that two sparsetrain binaries train bit-identically: the same short
# dense and sparse runs (same seed, same thread count) with each binary, then
# the loss curves (the JSON-lines logs without their timing fields) and every
# tensor of the final checkpoints compared byte for byte. Includes --bf16 runs.
#   usage: scripts/compare-runs.sh OLD_BINARY NEW_BINARY [WORK_DIR]
# Needs Fashion-MNIST (Debian's dataset-fashion-mnist) or ST_DATADIR.
set -euo pipefail
old=$1 new=$2 work=${3:-$(mktemp -d)}
data=${ST_DATADIR:-/usr/share/datasets/fashion-mnist}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$work"
runs=(
  "lenet300-100 dense|--model lenet300-100 --epochs 2"
  "lenet300-100 ERK 0.05|--model lenet300-100 --epochs 2 --sparse --fix --density 0.05 --execution sparse"
  "cifar_resnet_20 dense|--model cifar_resnet_20 --epochs 2 --max-batches 12"
  "cifar_resnet_20 ERK 0.05|--model cifar_resnet_20 --epochs 2 --max-batches 12 --sparse --fix --density 0.05 --execution sparse"
  # --bf16 (float32 again, and said so, on a CPU without AVX512_BF16)
  "cifar_resnet_20 ERK 0.05 --bf16|--model cifar_resnet_20 --epochs 2 --max-batches 12 --sparse --fix --density 0.05 --execution sparse --bf16"
  "lenet5 ERK 0.05 --bf16|--model lenet5 --epochs 1 --max-batches 40 --sparse --fix --density 0.05 --execution sparse --bf16"
)
status=0
# compare NAME TAG: OLD's and NEW's checkpoint and log of run TAG, byte for byte
compare() {
  if /usr/bin/python3 "$here/compare_checkpoints.py" "$work/old-$2.st" "$work/new-$2.st" \
       "$work/old-$2.jsonl" "$work/new-$2.jsonl"; then
    echo "identical: $1"
  else
    echo "DIFFERENT: $1"; status=1
  fi
}
for k in "${!runs[@]}"; do
  name=${runs[$k]%%|*} args=${runs[$k]#*|}
  for side in old new; do
    bin=$old; [ "$side" = new ] && bin=$new
    rm -f "$work/$side-$k.st" "$work/$side-$k.jsonl"
    # shellcheck disable=SC2086
    "$bin" train $args --datadir "$data" --threads 2 --quiet --seed 17 \
      --save "$work/$side-$k.st" --log "$work/$side-$k.jsonl" >/dev/null
  done
  compare "$name" "$k"
done
# A checkpoint written by OLD half-way through a run resumes with both
# binaries to the same end (NEW reads what OLD wrote).
name="lenet300-100 ERK 0.05, resumed from OLD's checkpoint"
args="--model lenet300-100 --epochs 2 --sparse --fix --density 0.05 --execution sparse"
rm -f "$work/half.st" "$work/half.jsonl"
# shellcheck disable=SC2086
"$old" train $args --datadir "$data" --threads 2 --quiet --seed 17 --stop-after 1 \
  --save "$work/half.st" --log "$work/half.jsonl" >/dev/null
for side in old new; do
  bin=$old; [ "$side" = new ] && bin=$new
  cp "$work/half.st" "$work/$side-resumed.st"
  cp "$work/half.jsonl" "$work/$side-resumed.jsonl"
  # --execution belongs to the invocation, not to the checkpoint: resume on the same kernels
  "$bin" train --resume "$work/$side-resumed.st" --save "$work/$side-resumed.st" --datadir "$data" \
    --execution sparse --threads 2 --quiet --log "$work/$side-resumed.jsonl" >/dev/null
done
compare "$name" resumed
exit $status
