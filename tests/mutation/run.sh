#!/usr/bin/env bash
# Mutation check: applies each mutation of tests/mutation/catalogue.txt, one at
# a time, to a scratch copy of the working tree (never to the tree itself),
# rebuilds it, runs the CTest tests the mutation names, and reports
#   caught        a named test failed (what we want)
#   MISSED        every named test passed: the suite cannot see this bug
#   STALE         the original line is no longer in the file, or a named test
#                 does not exist (update the entry)
#   UNCOMPILABLE  the mutated copy does not build (not a realistic bug)
# Before the mutations, the union of the named tests runs on the unmutated copy
# (all must pass, else every "caught" would be meaningless).
#
#   tests/mutation/run.sh                 # the whole catalogue
#   tests/mutation/run.sh adam-no-wd ...  # some mutations, by id
#   tests/mutation/run.sh -l              # list the catalogue
#   -k keeps the scratch copy; -s DIR reuses (or creates) DIR as the scratch copy
#   (its build folder is kept between calls, so a second run rebuilds little).
# Exit 0 only if every selected mutation was caught. Slow: one incremental
# build (~20-60 s) plus the named tests per mutation; see docs/TESTING.md.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
catalogue="$here/catalogue.txt"
py=/usr/bin/python3
keep=0
scratch=""
while getopts "kls:" opt; do
  case $opt in
    k) keep=1 ;;
    l) "$py" "$here/mutate.py" list "$catalogue" | column -t -s $'\t'; exit 0 ;;
    s) scratch="$OPTARG"; keep=1 ;;
    *) echo "usage: $0 [-k] [-l] [-s DIR] [ID...]" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))

mapfile -t rows < <("$py" "$here/mutate.py" list "$catalogue")
if [ $# -gt 0 ]; then
  selected=()
  for id in "$@"; do
    found=0
    for r in "${rows[@]}"; do [ "${r%%$'\t'*}" = "$id" ] && selected+=("$r") && found=1; done
    [ $found = 1 ] || { echo "run.sh: no mutation '$id' in $catalogue" >&2; exit 2; }
  done
  rows=("${selected[@]}")
fi

if [ -z "$scratch" ]; then scratch="$(mktemp -d "${TMPDIR:-/tmp}/sparsetrain-mutation.XXXXXX")"; fi
mkdir -p "$scratch"
cleanup() { [ $keep = 1 ] || rm -rf "$scratch"; }
trap cleanup EXIT
echo "scratch copy: $scratch"
# tracked and untracked-but-not-ignored files: the working tree as it is now
(cd "$root" && git ls-files -co --exclude-standard -z | tar --null -T - -cf -) | tar -xf - -C "$scratch"
cmake -S "$scratch" -B "$scratch/build" -DCMAKE_BUILD_TYPE=Release >/dev/null
jobs="${MUTATION_JOBS:-$(nproc)}"
log="$scratch/mutation.log"
: > "$log"
build() { cmake --build "$scratch/build" -j"$jobs" >>"$log" 2>&1; }
# the catalogue's "tests:" are whole test names: test_data must not also run test_data_loader
run_tests() {
  local out rc=0
  out=$(cd "$scratch/build" && ctest -R "^($1)\$" --timeout 600 2>&1) || rc=$?
  printf '%s\n' "$out" >>"$log"
  # the names of the tests that failed, for the report
  failed=$(printf '%s\n' "$out" | sed -n 's/^[[:space:]]*[0-9]* - \([A-Za-z0-9_]*\) (.*)$/\1/p' | paste -sd, -)
  return $rc
}

echo "building the unmutated copy ..."
build || { echo "run.sh: the unmutated copy does not build (see $log)" >&2; keep=1; exit 1; }
union=$(for r in "${rows[@]}"; do IFS=$'\t' read -r _ _ _ t <<<"$r"; echo "$t" | tr '|' '\n'; done | sort -u | paste -sd'|')
echo "baseline: the named tests on the unmutated copy ($union) ..."
if ! run_tests "$union"; then
  echo "run.sh: the named tests fail without any mutation (see $log)" >&2; keep=1; exit 1
fi

caught=0; missed=0; stale=0; broken=0
declare -a report
for r in "${rows[@]}"; do
  IFS=$'\t' read -r id area file tests <<<"$r"
  cp -p "$scratch/$file" "$scratch/$file.orig-mutation" 2>/dev/null || true
  start=$(date +%s)
  wanted=$(echo "$tests" | tr '|' '\n' | wc -l)
  found=$(cd "$scratch/build" && ctest -N -R "^($tests)\$" | grep -c "Test *#" || true)
  if [ "$found" -ne "$wanted" ]; then
    result="STALE (tests '$tests': $found of $wanted exist)"; stale=$((stale + 1))
  elif ! out=$("$py" "$here/mutate.py" apply "$catalogue" "$id" "$scratch"); then
    result="STALE ($out)"; stale=$((stale + 1))
  else
    echo "== $id ($file; tests $tests)" >>"$log"
    if ! build; then
      result="UNCOMPILABLE"; broken=$((broken + 1))
    elif run_tests "$tests"; then
      result="MISSED"; missed=$((missed + 1))
    else
      result="caught by ${failed:-?}"; caught=$((caught + 1))
    fi
  fi
  [ -f "$scratch/$file.orig-mutation" ] && mv "$scratch/$file.orig-mutation" "$scratch/$file" && touch "$scratch/$file"
  line=$(printf '%-32s %-14s %-13s %4ss  %s' "$id" "$area" "${result%% *}" "$(( $(date +%s) - start ))" "$tests")
  [ "${result%% *}" = STALE ] && line="$line  ${result#STALE }"
  [ "${result%% *}" = caught ] && line="$line  (failed: ${result#caught by })"
  echo "$line"
  report+=("$line")
done
build || true  # leave the scratch build unmutated
total=${#rows[@]}
echo "mutation check: $caught/$total caught, $missed missed, $stale stale, $broken uncompilable ($(date -u +%Y-%m-%d))"
[ $((missed + stale + broken)) -eq 0 ]
