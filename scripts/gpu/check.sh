#!/usr/bin/env bash
# GPU checks for a machine with an NVIDIA GPU and CUDA 13 (no network needed):
#   1. time to the first training step on a fresh process with an empty kernel cache,
#   2. the same with the cache filled by step 1 (what every later run sees),
#   3. steady-state ResNet-18 (CIFAR stem) step time and images/second, MK (k = 4) vs baseline,
#   4. a short ResNet-18 CIFAR-10 training run through the harness,
#   5. every bench family (MLP, ResNet-20, Transformer) at k = 1, 2, 4, 8, rows to
#      $CACHE/bench/cuda-<machine>.parquet (copy it into results/bench/ for the overhead figure).
# Build first (on any machine): CUDARC_CUDA_VERSION=13000 cargo build --release --features cuda
# Usage: scripts/gpu/check.sh [path/to/reproduce] ; data from ../shared/data or $MK_DATA_DIR
# (CIFAR-10's tar.gz is 19 MB; it is decoded into the cache on first use).
set -euo pipefail
BIN=${1:-target/release/reproduce}
CACHE=${MK_CACHE_DIR:-$(mktemp -d)}
export MK_CACHE_DIR=$CACHE
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
R18="--family resnet --blocks 2,2,2,2 --widths 64,128,256,512 --batch 128 --k 4 --backend cuda"
echo "== 1. fresh kernel cache ($CACHE/cubecl empty)"
rm -rf "$CACHE/cubecl"
"$BIN" bench $R18 --steps 5 --repeats 1 --no-save
echo "== 2. warm kernel cache"
"$BIN" bench $R18 --steps 5 --repeats 1 --no-save
echo "== 3. steady state"
"$BIN" bench $R18 --steps 50 --repeats 3 --no-save
echo "== 4. short training (table1 CIFAR-10, ResNet-18, 1 epoch on 5000 images)"
"$BIN" table1 --profile quick --dataset cifar10 --backend cuda --results-dir "$CACHE/results" \
  --set 'datasets.1.model={family: resnet, arch: resnet18, stem: cifar}' \
  --set datasets.1.recipe.epochs=1 --set 'seeds=[0]' --set 'methods=[baseline, mk]' -q
echo "== 5. every family, k = 1, 2, 4, 8"
"$BIN" bench --backend cuda --steps 50 --repeats 3 --out-dir "$CACHE/bench" --plots-dir "$CACHE/plots"
