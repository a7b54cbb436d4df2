#!/usr/bin/env bash
# The performance figures of the README / issue 7, on this machine: one command each, JSON into results/bench/.
#   bash scripts/perf.sh          # ~10 min on 2 CPU cores (run it on a quiet machine)
set -euo pipefail
cd "$(dirname "$0")/.."
export TQDM_DISABLE=1
B=results/bench
mkdir -p $B
# 1. one attack batch: CIFAR ResNet-18 (random weights), batch 32, 10 targeted l2 steps, 1 and 2 threads
advgen bench --model resnet18 --batch 32 --steps 10 --device cpu --repeats 5 --threads 1 --out $B/resnet18_b32_t1.json
advgen bench --model resnet18 --batch 32 --steps 10 --device cpu --repeats 5 --threads 2 --out $B/resnet18_b32_t2.json
# 2. the same on a trained model and real images: does the fast default change what the attack achieves?
advgen bench --checkpoint cache/cifar_cpu_standard.safetensors --data ../shared/data/cifar10 --batch 125 \
    --steps 100 --eval-batches 2 --repeats 1 --threads 2 --methods torchattacks,advgen,advgen_fp32 \
    --out $B/cifar_cpu_trained.json
# 3. whole generate vs the attack alone, and 1 vs 2 processes on the same 2 cores
advgen bench-e2e recipes/cifar_cpu_det.yaml --processes 1,2 --repeats 1 --out $B/e2e_cifar_cpu_det.json
