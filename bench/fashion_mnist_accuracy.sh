#!/usr/bin/env bash
# Accuracy experiment of the foundation issue: dense cifar_resnet_20 on
# Fashion-MNIST for 10 epochs (reference recipe: SGD Nesterov 0.9, lr 0.1,
# x0.1 at 50 % / 75 %, weight decay 5e-4, batch 128, 10 % validation split),
# plus the same network randomly pruned with ERK at density 0.1.
# Results go to runs/accuracy/*.jsonl; docs/RESULTS.md records them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mkdir -p runs/accuracy
THREADS=${THREADS:-2}
./build/sparsetrain train --model cifar_resnet_20 --data fashion-mnist --epochs 10 --threads "$THREADS" \
  --plain --save runs/accuracy/dense.safetensors --log runs/accuracy/dense.jsonl "$@"
./build/sparsetrain train --model cifar_resnet_20 --data fashion-mnist --epochs 10 --threads "$THREADS" \
  --sparse --fix --sparse_init ERK --density 0.1 \
  --plain --save runs/accuracy/erk-0.1.safetensors --log runs/accuracy/erk-0.1.jsonl "$@"
