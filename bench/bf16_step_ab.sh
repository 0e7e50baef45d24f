#!/usr/bin/env bash
# Whole-step A/B of --bf16 against float32 on one thread, by CPU time, for a
# shared machine: `sparsetrain bench` runs with S1 and S2 timed steps,
# interleaved fp32 / bf16 round by round (the order alternating); the CPU
# time of one training step is (cpu(S2 steps) - cpu(S1 steps)) / (S2 - S1),
# which cancels the set-up and the FMA-peak measurement. Prints each round
# and the medians. With OLD_BIN, each round also runs OLD_BIN in fp32 and
# bf16, for an A/B of two builds (e.g. main's binary against a branch's).
#   bench/bf16_step_ab.sh [ROUNDS] [MODEL] [DENSITY] [BIN] [OLD_BIN]
# (docs/PERFORMANCE.md, "bf16"). One thread: CPU time then leaves out the
# time the process waited for a core; cache contention from other jobs stays.
set -euo pipefail
ROUNDS=${1:-5}
MODEL=${2:-cifar_resnet_56}
DENSITY=${3:-0.05}
BIN=${4:-build/sparsetrain}
OLD_BIN=${5:-}
S1=2
S2=8
cpu() { # CPU seconds (user + system) of one bench run: binary, steps, flags
  local t
  # shellcheck disable=SC2086 # ${3:-} is no flag or one
  t=$( { /usr/bin/time -f "%U %S" "$1" bench --model "$MODEL" --sparse_init ERK --density "$DENSITY" \
      --batch-size 128 --threads 1 --execution sparse --warmup 1 --steps "$2" ${3:-} > /dev/null; } 2>&1 | tail -1)
  echo "$t" | awk '{print $1 + $2}'
}
variants=(fp32 bf16)
[[ -n $OLD_BIN ]] && variants=(fp32 bf16 old-fp32 old-bf16)
declare -A steps
for r in $(seq "$ROUNDS"); do
  n=${#variants[@]} order=()
  for i in $(seq 0 $((n - 1))); do order+=("${variants[$(( (i + r) % n ))]}"); done
  (( r % 2 )) || mapfile -t order < <(printf '%s\n' "${order[@]}" | tac)
  for v in "${order[@]}"; do
    flag=""; [[ $v == *bf16 ]] && flag="--bf16"
    bin=$BIN; [[ $v == old-* ]] && bin=$OLD_BIN
    a=$(cpu "$bin" $S1 "$flag"); b=$(cpu "$bin" $S2 "$flag")
    step=$(awk -v a="$a" -v b="$b" -v n=$((S2 - S1)) 'BEGIN {printf "%.4f", (b - a) / n}')
    echo "round $r $v: $step CPU s per step"
    steps[$v]="${steps[$v]:-} $step"
  done
done
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
declare -A med
for v in "${variants[@]}"; do
  # shellcheck disable=SC2086
  med[$v]=$(median ${steps[$v]})
done
echo "median CPU s per step: fp32 ${med[fp32]}, bf16 ${med[bf16]}, speed-up x$(awk -v a="${med[fp32]}" -v b="${med[bf16]}" 'BEGIN {printf "%.2f", a / b}')"
if [[ -n $OLD_BIN ]]; then
  echo "OLD_BIN: fp32 ${med[old-fp32]}, bf16 ${med[old-bf16]}, speed-up x$(awk -v a="${med[old-fp32]}" -v b="${med[old-bf16]}" 'BEGIN {printf "%.2f", a / b}')"
  echo "BIN vs OLD_BIN: fp32 x$(awk -v a="${med[old-fp32]}" -v b="${med[fp32]}" 'BEGIN {printf "%.3f", a / b}'), bf16 x$(awk -v a="${med[old-bf16]}" -v b="${med[bf16]}" 'BEGIN {printf "%.3f", a / b}')"
fi
