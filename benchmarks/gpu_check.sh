#!/usr/bin/env bash
# memobert on one GPU, one table (< 8 minutes): the base training step in fp32/bf16/fp16, fairseq-train
# updates with --fp16 and --bf16 and as a 1-rank nccl distributed run, and the extractors on cuda.
#   bash benchmarks/gpu_check.sh                 # first GPU
#   CUDA_VISIBLE_DEVICES=3 bash benchmarks/gpu_check.sh --batch-size 32
#   bash benchmarks/gpu_check.sh --device cpu    # every row the CPU allows, tiny shape (what the tests run)
set -euo pipefail
cd "$(dirname "$0")/.."
exec timeout 480 python benchmarks/gpu_check.py "$@"
