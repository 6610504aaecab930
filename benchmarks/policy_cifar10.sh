#!/usr/bin/env bash
# Issue 4's targets on the cifar10 model (nano33 + edge-pc, default link); numbers in docs/policy.md.
#   benchmarks/policy_cifar10.sh traces | train B | size | compare
# traces: both splits' exit traces (a forward pass over 60k images, cached under build/cache/traces);
# train B: DQN (timed: the 10,000-episode target) and tabular at beta B, exported with the
#          benchmark build's logit scales (build/bench-cifar10), agreement with the float policy;
# size: builds embedding threshold / the trained dqn / tabular; ee_policy.o for the Cortex-M4F (arm-none-eabi-size);
# compare: every policy at the calibrated betas, calibration rows, JSON + Pareto PNG.
# Heavy: run each step alone, under `flock /work/notes/cpu.lock` where CPUs are shared.
set -euo pipefail
DATA=${DATA:-../shared/data/cifar10-jpeg}
PY=${PY:-.venv/bin/python}
OUT=benchmarks/results
ARGS=(--model cifar10 --data-dir "$DATA" --board nano33)
case "${1:-}" in
  traces)
    $PY -c "
from pathlib import Path
from earlyexit import checkpoint
from policy.commands import calibrated_betas, traces_for
ckpt = checkpoint.load('cifar10')
train = traces_for(ckpt, 'train', '$DATA', Path('build/cache'))
traces_for(ckpt, 'test', '$DATA', Path('build/cache'))
print('calibrated betas:', calibrated_betas(train))"
    ;;
  train)
    for learner in dqn tabular; do
      $PY -m converter policy train "${ARGS[@]}" --learner $learner --beta "$2" --offload-at-split \
        --bundle build/bench-cifar10 --out build/policy/cifar10-$learner.policy | tee $OUT/policy_train_cifar10_$learner.txt
    done
    ;;
  size)
    for policy in threshold build/policy/cifar10-dqn.policy build/policy/cifar10-tabular.policy; do
      name=$(basename "${policy%.policy}")
      $PY -m converter build "${ARGS[@]}" --eval-samples 500 --policy "$policy" --out build/policy/nano33-$name >/dev/null
      (cd build/policy/nano33-$name/firmware && arm-none-eabi-gcc -std=c99 -Wall -Wextra -Werror -pedantic -Os \
        -mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16 -fstack-usage -c ee_policy.c -o ee_policy.o &&
        echo "== $name" && arm-none-eabi-size ee_policy.o && cat ee_policy.su)
    done | tee $OUT/policy_size_cifar10.txt
    ;;
  compare)
    $PY -m converter policy compare "${ARGS[@]}" --json $OUT/policy_compare_cifar10.json | tee $OUT/policy_compare_cifar10.txt
    ;;
  *)
    echo "usage: $0 traces | train BETA | size | compare" >&2
    exit 2
    ;;
esac
