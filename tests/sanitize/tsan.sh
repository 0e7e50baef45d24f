#!/usr/bin/env bash
# ThreadSanitizer pass over the threaded parts (CI; see docs/TESTING.md).
#   tests/sanitize/tsan.sh [BUILD_DIR]     (default build-tsan)
# Builds with clang -fsanitize=thread (-DST_TSAN=ON). clang's -fopenmp uses
# LLVM's libomp, and libarcher (LLVM's OpenMP tool for TSan) tells TSan about
# OpenMP's barriers and tasks, so our own OpenMP kernels are checked with 2
# threads. OpenBLAS and oneDNN bring their own uninstrumented libgomp:
# ignore_noninstrumented_modules=1 leaves their internals out.
# Checked: the background batch loader (test_data_loader, and test_image_folder
# with several workers decoding JPEGs: pthreads only), the
# OpenMP kernels and layers (test_sparse_conv, test_kernels, test_layers),
# and a short `train` + `eval` (loader thread + OpenMP) on generated data.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
build="${1:-$root/build-tsan}"
CC=clang cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Debug -DST_TSAN=ON >/dev/null
cmake --build "$build" -j"$(nproc)" --target sparsetrain test_data_loader test_image_folder test_sparse_conv test_kernels test_layers
archer=""
for dir in "$(clang -print-resource-dir)/../.." /usr/lib/llvm-*/lib; do
  [ -f "$dir/libarcher.so" ] && { archer="$(cd "$dir" && pwd)/libarcher.so"; break; }
done
export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 ignore_noninstrumented_modules=1"
export OMP_NUM_THREADS=2 GOMP_SPINCOUNT=10000
if [ -n "$archer" ]; then
  export OMP_TOOL_LIBRARIES="$archer"
else
  echo "tsan: libarcher.so not found: OpenMP kernels run with 1 thread (only the loader thread is checked)"
  export OMP_NUM_THREADS=1
fi
for t in test_data_loader test_image_folder test_sparse_conv test_kernels test_layers; do
  echo "== tsan: $t =="
  "$build/tests/$t" >"$build/tsan-$t.log" 2>&1 || { tail -60 "$build/tsan-$t.log"; exit 1; }
done
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
/usr/bin/python3 -c "import sys; sys.path.insert(0, '$root/tests'); import testlib; testlib.write_idx_dataset('$work/data', 128, 64)"
echo "== tsan: train + eval =="
"$build/sparsetrain" train --data mnist --datadir "$work/data" --model cifar_resnet_8_4 --sparse --fix \
  --density 0.3 --batch-size 32 --epochs 2 --threads 2 --plain --save "$work/ck.safetensors" >"$build/tsan-train.log" 2>&1 ||
  { tail -60 "$build/tsan-train.log"; exit 1; }
"$build/sparsetrain" eval --checkpoint "$work/ck.safetensors" --datadir "$work/data" --threads 2 \
  >"$build/tsan-eval.log" 2>&1 || { tail -60 "$build/tsan-eval.log"; exit 1; }
echo "tsan: no data races reported"
