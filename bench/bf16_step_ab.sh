#!/usr/bin/env bash
# Whole-step A/B of --bf16 against float32 on one thread, by CPU time, for a
# shared machine: `sparsetrain bench` runs with S1 and S2 timed steps,
# interleaved fp32 / bf16 round by round; the CPU time of one training step
# is (cpu(S2 steps) - cpu(S1 steps)) / (S2 - S1), which cancels the set-up
# and the FMA-peak measurement. Prints each round and the medians.
#   bench/bf16_step_ab.sh [ROUNDS] [MODEL] [DENSITY] [BIN]
# (docs/PERFORMANCE.md, "bf16"). One thread: CPU time then leaves out the
# time the process waited for a core; cache contention from other jobs stays.
set -euo pipefail
ROUNDS=${1:-5}
MODEL=${2:-cifar_resnet_56}
DENSITY=${3:-0.05}
BIN=${4:-build/sparsetrain}
S1=2
S2=8
cpu() { # CPU seconds (user + system) of one bench run
  local t
  t=$( { /usr/bin/time -f "%U %S" "$BIN" bench --model "$MODEL" --sparse_init ERK --density "$DENSITY" \
      --batch-size 128 --threads 1 --execution sparse --warmup 1 --steps "$1" ${2:-} > /dev/null; } 2>&1 | tail -1)
  echo "$t" | awk '{print $1 + $2}'
}
f32=() b16=()
for r in $(seq "$ROUNDS"); do
  if (( r % 2 )); then order="fp32 bf16"; else order="bf16 fp32"; fi
  for v in $order; do
    flag=""; [[ $v == bf16 ]] && flag="--bf16"
    a=$(cpu $S1 "$flag"); b=$(cpu $S2 "$flag")
    step=$(awk -v a="$a" -v b="$b" -v n=$((S2 - S1)) 'BEGIN {printf "%.4f", (b - a) / n}')
    echo "round $r $v: $step CPU s per step"
    if [[ $v == fp32 ]]; then f32+=("$step"); else b16+=("$step"); fi
  done
done
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
m32=$(median "${f32[@]}"); m16=$(median "${b16[@]}")
echo "median CPU s per step: fp32 $m32, bf16 $m16, speed-up x$(awk -v a="$m32" -v b="$m16" 'BEGIN {printf "%.2f", a / b}')"
