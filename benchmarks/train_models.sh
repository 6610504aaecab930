#!/usr/bin/env bash
# Trains the models on their full training split, evaluates them on the full test split (and
# the cifar10 ones on the 200 lossless MLPerf Tiny samples too). Results: benchmarks/results/.
# fashion-mnist, cifar10 and resnet8 are bundled: their checkpoints are copied into
# earlyexit/models/. ee-resnet-s and ee-resnet-m stay in runs/ until one of them replaces
# the bundled cifar10 model (docs/models.md).
# Usage: benchmarks/train_models.sh [fashion-mnist|cifar10|resnet8|ee-resnet-s|ee-resnet-m ...]
#        (default: fashion-mnist cifar10). Same seed, same checkpoint bytes.
set -euo pipefail
cd "$(dirname "$0")/.."
CIFAR_DIR=${CIFAR_DIR:-../shared/data/cifar10-jpeg}
FMNIST_DIR=${FMNIST_DIR:-/usr/share/datasets/fashion-mnist}
MLPERF_DIR=${MLPERF_DIR:-../shared/data/mlperf-tiny}
mkdir -p runs benchmarks/results

train() {  # name arch dataset data_dir epochs bundle(yes|no)
  local name=$1 arch=$2 dataset=$3 dir=$4 epochs=$5 bundle=$6
  python -m earlyexit train --arch "$arch" --dataset "$dataset" --data-dir "$dir" --out "runs/$name.pt" \
    --preset fast --epochs "$epochs" --threads 2 --quiet
  python -m earlyexit eval --model "runs/$name.pt" --data-dir "$dir" --quiet \
    --json "benchmarks/results/$name-eval.json" | tee "benchmarks/results/$name-eval.txt"
  if [ "$dataset" = cifar10 ] && [ -d "$MLPERF_DIR" ]; then
    python -m earlyexit eval --model "runs/$name.pt" --dataset mlperf-perf --data-dir "$MLPERF_DIR" --quiet \
      --json "benchmarks/results/$name-eval-mlperf-perf.json" | tee "benchmarks/results/$name-eval-mlperf-perf.txt"
  fi
  if [ "$bundle" = yes ]; then cp "runs/$name.pt" "earlyexit/models/$name.pt"; fi
  cp "runs/$name.metrics.csv" "benchmarks/results/$name-training.csv"
}

for model in ${@:-fashion-mnist cifar10}; do
  case $model in
    fashion-mnist) train fashion-mnist mcu-fmnist fashion-mnist "$FMNIST_DIR" 15 yes ;;
    cifar10) train cifar10 mcu-cifar cifar10 "$CIFAR_DIR" 25 yes ;;
    resnet8 | ee-resnet-s | ee-resnet-m) train "$model" "$model" cifar10 "$CIFAR_DIR" 25 "$([ "$model" = resnet8 ] && echo yes || echo no)" ;;
    *) echo "unknown model $model (fashion-mnist, cifar10, resnet8, ee-resnet-s, ee-resnet-m)" >&2; exit 2 ;;
  esac
done
echo "then: python benchmarks/tradeoff.py (the trade-off table and plot of docs/models.md) and"
echo "      python benchmarks/exit_savings.py --model runs/ee-resnet-s.pt --reference resnet8 (the device MACs target)"
