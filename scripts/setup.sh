#!/usr/bin/env bash
# Installs what sparsetrain needs from Debian packages (when missing) and
# builds it into ./build. Run as root on a fresh Debian machine, or as a user
# who already has the packages.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  build-essential cmake pkg-config   # compiler and build system
  libopenblas-openmp-dev             # dense GEMM (OpenMP build of OpenBLAS)
  libdnnl-dev                        # oneDNN convolutions (dense path)
  zlib1g-dev                         # .gz data files
  libjpeg62-turbo-dev                # ImageFolder (ImageNet) JPEG decoding
  dataset-fashion-mnist              # the embedded default data set
  python3 python3-numpy python3-torch  # PyTorch parity tests and benchmarks
  python3-pil python3-torchvision    # ImageFolder tests (JPEG writing) and the CIFAR augmentation: torchvision's transforms as reference
  clang libclang-rt-dev libomp-dev valgrind  # CI only: libFuzzer, ThreadSanitizer, leak checks
  python3-sklearn                    # independent reference for the OOD metrics (tests)
  chromium                           # headless rendering test of `sparsetrain report`
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing Debian packages (${missing[*]}); run as root or install them" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

BUILD_DIR=${BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release ${CMAKE_ARGS:-} >/dev/null
cmake --build "$BUILD_DIR" -j"$(nproc)"
