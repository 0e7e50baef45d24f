#!/usr/bin/env bash
# valgrind memcheck over a short train + eval (CI; see docs/TESTING.md).
#   tests/sanitize/valgrind.sh [BUILD_DIR]   (default build: the normal Release build)
# Fails (exit 1) on any invalid read/write, use of uninitialised values in a
# branch, or a definitely/indirectly lost block. "Still reachable" blocks
# (one-time allocations of OpenBLAS, oneDNN and the OpenMP runtime kept until
# exit) are not leaks and are not counted.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
build="${1:-$root/build}"
bin="$build/sparsetrain"
[ -x "$bin" ] || { echo "valgrind: build $bin first" >&2; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
/usr/bin/python3 -c "import sys; sys.path.insert(0, '$root/tests'); import testlib; testlib.write_idx_dataset('$work/data', 64, 32)"
# GOMP_SPINCOUNT set: sparsetrain does not re-exec itself (cli/main.c).
export GOMP_SPINCOUNT=10000 OMP_NUM_THREADS=2
vg=(valgrind --quiet --leak-check=full --errors-for-leak-kinds=definite,indirect
    --show-leak-kinds=definite,indirect --error-exitcode=99 --track-origins=no)
echo "== valgrind: train (lenet5, epoch 1 of 2, 2 batches, checkpoint) =="
"${vg[@]}" "$bin" train --data mnist --datadir "$work/data" --model lenet5 --sparse --fix --density 0.2 \
  --batch-size 16 --epochs 2 --stop-after 1 --max-batches 2 --threads 2 --plain --save "$work/ck.safetensors"
echo "== valgrind: resume (epoch 2) + eval =="
"${vg[@]}" "$bin" train --resume "$work/ck.safetensors" --save "$work/ck.safetensors" --plain --quiet
"${vg[@]}" "$bin" eval --checkpoint "$work/ck.safetensors" --datadir "$work/data" --threads 2
echo "== valgrind: a bad input (corrupt checkpoint) =="
head -c 300 "$work/ck.safetensors" >"$work/bad.safetensors"
set +e
"${vg[@]}" "$bin" eval --checkpoint "$work/bad.safetensors" --datadir "$work/data"
code=$?
set -e
[ "$code" = 1 ] || { echo "valgrind: corrupt checkpoint gave exit $code (expected 1, 99 = memcheck error)"; exit 1; }
echo "valgrind: no memory errors, no leaks"
