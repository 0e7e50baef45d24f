#!/usr/bin/env bash
# Runs every libFuzzer target (or those named) for a bounded time each.
#   tests/fuzz/run.sh [-t SECONDS] [-b BUILD_DIR] [target ...]
# Builds BUILD_DIR (default build-fuzz) with CC=clang -DST_FUZZ=ON when needed.
# Each target starts from its seed corpus (tests/fuzz/corpus/<target>, left
# unchanged) plus its regression inputs; new inputs go to BUILD_DIR/fuzz-work.
# A crash, leak, sanitizer report or timeout stops that target; the input is
# kept as BUILD_DIR/fuzz-work/<target>/crash-* (copy it to
# tests/fuzz/regressions/<target>/ once fixed). Exit status: 0 if no target
# found anything, 1 otherwise.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
seconds=30
build="$root/build-fuzz"
while getopts "t:b:" opt; do
  case $opt in
    t) seconds=$OPTARG ;;
    b) build=$OPTARG ;;
    *) echo "usage: $0 [-t SECONDS] [-b BUILD_DIR] [target ...]" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(idx idx_gz cifar cifar_py tar safetensors checkpoint json flags jpeg output_guard)

if [ ! -x "$build/tests/fuzz/fuzz_${targets[0]}" ]; then
  CC=clang cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Debug -DST_FUZZ=ON >/dev/null || exit 1
fi
cmake --build "$build" -j"$(nproc)" >/dev/null || { echo "fuzz build failed" >&2; exit 1; }

failed=()
for t in "${targets[@]}"; do
  work="$build/fuzz-work/$t"
  mkdir -p "$work/corpus"
  inputs=("$work/corpus" "$here/corpus/$t")
  [ -d "$here/regressions/$t" ] && inputs+=("$here/regressions/$t")
  dict=()
  case $t in
    json) dict=(-dict="$here/dict/json.dict") ;;
    safetensors|checkpoint) dict=(-dict="$here/dict/safetensors.dict") ;;
    flags) dict=(-dict="$here/dict/flags.dict") ;;
    cifar_py) dict=(-dict="$here/dict/pickle.dict") ;;
  esac
  echo "== fuzz_$t for ${seconds}s =="
  # rss_limit bounds memory per input; -timeout flags inputs slower than 10 s;
  # -max_len 65536 keeps inputs small enough to mutate quickly.
  if ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 \
     UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
     OMP_NUM_THREADS=1 \
     "$build/tests/fuzz/fuzz_$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
       -max_len=65536 -print_final_stats=1 -artifact_prefix="$work/" "${dict[@]}" "${inputs[@]}" \
       >"$work/log" 2>&1; then
    grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "$work/log" | tr '\n' ' '
    echo
  else
    echo "fuzz_$t FOUND A PROBLEM (log: $work/log):"
    grep -E "ERROR|runtime error|SUMMARY|Test unit written" "$work/log" | head -8
    failed+=("$t")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzzing found problems in: ${failed[*]}"
  exit 1
fi
echo "fuzzing: no problems found"
