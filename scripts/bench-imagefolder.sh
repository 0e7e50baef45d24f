#!/usr/bin/env bash
# Data pipeline throughput on generated ImageNet-sized JPEGs (docs/PERFORMANCE.md):
# writes N 500x375 JPEGs (quality 90, 4:2:0, textured content) into a temporary
# ImageFolder tree with Pillow, then runs `sparsetrain bench --imagefolder` for the
# training transform with 1 and 2 workers and the evaluation transform with 1.
#   scripts/bench-imagefolder.sh [-n IMAGES] [-s SIZE] [-b BUILD_DIR] [-k KEEP_DIR]
# Needs python3-pil. The files stay in the page cache (they were just written), so
# this measures decode + augment, not the disk.
set -euo pipefail
cd "$(dirname "$0")/.."
n=400
size=224
build=build
keep=""
while getopts "n:s:b:k:" opt; do
  case $opt in
    n) n=$OPTARG ;;
    s) size=$OPTARG ;;
    b) build=$OPTARG ;;
    k) keep=$OPTARG ;;
    *) echo "usage: $0 [-n IMAGES] [-s SIZE] [-b BUILD_DIR] [-k KEEP_DIR]" >&2; exit 2 ;;
  esac
done
tree=${keep:-$(mktemp -d)}
[ -n "$keep" ] || trap 'rm -rf "$tree"' EXIT
/usr/bin/python3 - "$tree" "$n" <<'EOF'
import os, sys
import numpy as np
from PIL import Image
root, n = sys.argv[1], int(sys.argv[2])
rng = np.random.RandomState(0)
y, x = np.mgrid[0:375, 0:500].astype(np.float32)
for i in range(n):
    cls = os.path.join(root, "train", f"n{i % 4:08d}")
    path = os.path.join(cls, f"img_{i:05d}.JPEG")
    if os.path.exists(path):
        continue
    os.makedirs(cls, exist_ok=True)
    f = rng.uniform(5, 40, size=3)
    img = np.stack([128 + 100 * np.sin(x / f[c] + i) * np.cos(y / (f[(c + 1) % 3]) + c) for c in range(3)], -1)
    img += rng.normal(0, 18, size=img.shape)
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path, "JPEG", quality=90)
EOF
bin="$build/sparsetrain"
echo "== $n generated 500x375 JPEGs, output ${size}x${size}, $(nproc) cores ($(uptime | sed 's/.*load average/load average/'))"
for w in 1 2; do
  "$bin" bench --imagefolder "$tree" --workers "$w" --image-size "$size" --batch-size 32
done
"$bin" bench --imagefolder "$tree" --workers 1 --image-size "$size" --batch-size 32 --eval-transform
