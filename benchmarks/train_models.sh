#!/usr/bin/env bash
# Trains the bundled models exactly as shipped, evaluates them on the full test split
# and copies the checkpoints into earlyexit/models/. Results: benchmarks/results/.
# Usage: benchmarks/train_models.sh [fashion-mnist|cifar10 ...]   (default: both)
set -euo pipefail
cd "$(dirname "$0")/.."
CIFAR_DIR=${CIFAR_DIR:-../shared/data/cifar10-jpeg}
FMNIST_DIR=${FMNIST_DIR:-/usr/share/datasets/fashion-mnist}
mkdir -p runs benchmarks/results

train() {  # name arch dataset data_dir epochs
  local name=$1 arch=$2 dataset=$3 dir=$4 epochs=$5
  python -m earlyexit train --arch "$arch" --dataset "$dataset" --data-dir "$dir" --out "runs/$name.pt" \
    --preset fast --epochs "$epochs" --threads 2 --quiet
  python -m earlyexit eval --model "runs/$name.pt" --data-dir "$dir" --quiet \
    --json "benchmarks/results/$name-eval.json" | tee "benchmarks/results/$name-eval.txt"
  cp "runs/$name.pt" "earlyexit/models/$name.pt"
  cp "runs/$name.metrics.csv" "benchmarks/results/$name-training.csv"
}

for model in "${@:-fashion-mnist cifar10}"; do
  case $model in
    fashion-mnist) train fashion-mnist mcu-fmnist fashion-mnist "$FMNIST_DIR" 15 ;;
    cifar10) train cifar10 mcu-cifar cifar10 "$CIFAR_DIR" 25 ;;
    *) echo "unknown model $model (fashion-mnist, cifar10)" >&2; exit 2 ;;
  esac
done
