#!/usr/bin/env bash
# Sets up, then runs the main job on the embedded default data: a randomly
# pruned (ERK, density 0.1) cifar_resnet_20 on Fashion-MNIST for 2 epochs
# (cosine learning rate, 2-5 minutes on 2 cores), and prints its
# test accuracy. Extra arguments are passed to `sparsetrain train`. Each call
# starts a new run, so --force lets it replace the previous run's checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mkdir -p runs/fashion-mnist
exec ./build/sparsetrain train --model cifar_resnet_20 --data fashion-mnist \
  --sparse --fix --sparse_init ERK --density 0.1 --epochs 2 --lr-schedule cosine --valid_split 0.1 \
  --save runs/fashion-mnist/checkpoint.safetensors --force --log runs/fashion-mnist/log.jsonl "$@"
