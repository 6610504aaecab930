#!/usr/bin/env bash
# Issue 4's targets on the cifar10 model (nano33 + edge-pc, default link); numbers in docs/policy.md.
#   benchmarks/policy_cifar10.sh traces | train B | size | compare
# traces: the exit traces policies learn from (the training hold-out) and the test split's, cached under build/cache/traces;
# train B: DQN (timed: the 10,000-episode target) and tabular at beta B, exported with the
#          benchmark build's logit scales (build/bench-cifar10), agreement with the float policy;
# size: the trained files exported for build/bench-cifar10 and its threshold policy, compiled for the
#       Cortex-M4F (arm-none-eabi-gcc -Os): flash (text), data + bss, stack per function;
# compare: every policy at the calibrated betas, calibration rows, JSON + Pareto PNG;
# seeds: DQN with seeds 0, 1 and 2 at each calibrated beta (the environments of compare), two at a time;
# headroom: what answering at exit 1 above a confidence t (otherwise fixed-split) gains over fixed-split,
#           per calibrated beta and t, on the hold-out and the test split: the room a learner has.
# ble: compare over the ble link (issue 15): Gilbert-Elliott outages, 260 devices sharing the edge, a CR2032
#      coin cell lasting a week at one request per second (2,430 J / 604,800 requests = 4.018 mJ per request,
#      as 4,018 mJ per period of 1,000 requests); timed. With real traces: BLE_TRACES=DIR (--bandwidth trace).
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
from policy.commands import LEARN_SPLIT, calibrated_betas, traces_for
ckpt = checkpoint.load('cifar10')
fit = traces_for(ckpt, LEARN_SPLIT, '$DATA', Path('build/cache'))
traces_for(ckpt, 'test', '$DATA', Path('build/cache'))
print('calibrated betas:', calibrated_betas(fit))"
    ;;
  train)
    for learner in dqn tabular; do
      $PY -m converter policy train "${ARGS[@]}" --learner $learner --beta "$2" --offload-at-split \
        --bundle build/bench-cifar10 --out build/policy/cifar10-$learner.policy | tee $OUT/policy_train_cifar10_$learner.txt
    done
    ;;
  size)
    # the trained files exported for the benchmark build (its placement and logit scales), next to the threshold policy
    $PY -c "
import json
from pathlib import Path
from policy import export_c
from policy.threshold import ThresholdPolicy
from policy import costs, export
bundle = Path('build/bench-cifar10')
manifest = json.loads((bundle / 'manifest.json').read_text())
scales = [s['outputs']['logits']['scale'] for s in manifest['slices']]
model = costs.from_manifest(bundle / 'manifest.json')
out = Path('build/policy/size')
out.mkdir(parents=True, exist_ok=True)
(out / 'ee_policy.h').write_text(export_c.header(''))
(out / 'threshold.c').write_text(export_c.source('', ThresholdPolicy.build(scales, [0.9] * len(scales), model.device_slices)))
for kind in ('dqn', 'tabular'):
    exported = export.export_file(Path(f'build/policy/cifar10-{kind}.policy'), model, scales, len(manifest['model']['classes']))
    (out / f'{kind}.c').write_text(export_c.source('', exported))"
    for name in threshold dqn tabular; do
      (cd build/policy/size && arm-none-eabi-gcc -std=c99 -Wall -Wextra -Werror -pedantic -Os -mcpu=cortex-m4 -mthumb \
        -mfloat-abi=hard -mfpu=fpv4-sp-d16 -fstack-usage -c $name.c -o $name.o &&
        echo "== $name" && arm-none-eabi-size $name.o && cat $name.su)
    done | tee $OUT/policy_size_cifar10.txt
    ;;
  compare)
    $PY -m converter policy compare "${ARGS[@]}" --json $OUT/policy_compare_cifar10.json | tee $OUT/policy_compare_cifar10.txt
    ;;
  seeds)
    betas=$($PY -c "import json; print(' '.join(str(c['beta']) for c in json.load(open('$OUT/policy_compare_cifar10.json'))['calibration']))")
    mkdir -p build/policy/seeds
    for beta in $betas; do for seed in 0 1 2; do echo "$beta $seed"; done; done |
      xargs -P 2 -n 2 sh -c '"$0" -m converter policy train --model cifar10 --data-dir "$1" --board nano33 \
        --learner dqn --beta "$2" --seed "$3" --out "build/policy/seeds/dqn-$2-$3.policy" 2>/dev/null |
        grep "^trained" | sed "s/^/seed $3: /"' "$PY" "$DATA" | sort -t' ' -k6,6g -k2,2n | tee $OUT/policy_dqn_seeds_cifar10.txt
    ;;
  headroom)
    $PY -c "
import argparse
from policy import baselines, commands, lockstep
from policy.env import EXIT
from policy.evaluate import episodes
parser = argparse.ArgumentParser()
commands.add_parser(parser.add_subparsers())  # compare's defaults: its environments, seed 0
args = parser.parse_args(['policy', 'compare', '--model', 'cifar10', '--data-dir', '$DATA', '--board', 'nano33', '--json', '/dev/null'])
_, model, fit, test, deadline, bps = commands._setup(args)
for _, _, beta in commands.calibrated_betas(fit):
    _, tune, held = commands._envs(args, model, fit, test, deadline, bps, beta)
    split = baselines.fixed_split(baselines.tune_split(tune, lockstep.evaluate_all))
    base = {env: episodes(env, split)['reward'] for env in (tune, held)}
    for t in (0.8, 0.9, 0.95, 0.98, 0.99):
        def early(env, t=t):
            s = env.state
            return EXIT if s.tier == 0 and s.exit == 0 and env.traces.probs[s.sample, 0].max() >= t else split(env)
        gain = [episodes(env, early)['reward'] - base[env] for env in (tune, held)]
        print(f'beta {beta:.3g} t {t}: minus fixed-split: hold-out {gain[0].mean():+.5f} ({(gain[0] != 0).sum()} differ),'
              f' test {gain[1].mean():+.5f} ({(gain[1] != 0).sum()} differ)')" | tee $OUT/policy_headroom_cifar10.txt
    ;;
  ble)
    LINK=(--link ble --edge-devices 260 --battery-mj 4018 --day-requests 1000)
    if [ -n "${BLE_TRACES:-}" ]; then LINK+=(--bandwidth trace --bandwidth-trace "$BLE_TRACES"); else LINK+=(--bandwidth gilbert); fi
    start=$(date +%s)
    $PY -m converter policy compare "${ARGS[@]}" "${LINK[@]}" --json $OUT/policy_compare_cifar10_ble.json |
      tee $OUT/policy_compare_cifar10_ble.txt
    echo "compare took $(($(date +%s) - start)) s" | tee -a $OUT/policy_compare_cifar10_ble.txt
    ;;
  ble-variant)
    # ble-variant I GAMMA EPISODES [PRICE]: a DQN variant (gamma_request, episodes; learning with the energy
    # weight alpha = 1 + PRICE x beta, selected and evaluated with alpha = 1) in the environments of `ble` at
    # calibrated beta I (0-based), against adaptive-threshold with the thresholds and reserve `ble` tuned
    $PY -c "
import argparse, json
from dataclasses import replace
import numpy as np
from policy import baselines, commands, dqn, lockstep
from policy.env import TraceEnv
from policy.evaluate import episodes, summarize
parser = argparse.ArgumentParser()
commands.add_parser(parser.add_subparsers())
args = parser.parse_args(['policy', 'compare', '--model', 'cifar10', '--data-dir', '$DATA', '--board', 'nano33', '--link', 'ble',
    '--bandwidth', 'gilbert', '--edge-devices', '260', '--battery-mj', '4018', '--day-requests', '1000', '--episodes', '$4',
    '--json', '/dev/null'])
_, model, fit, test, deadline, bps = commands._setup(args)
beta = commands.calibrated_betas(fit)[$2][2]
learn, tune, held = commands._envs(args, model, fit, test, deadline, bps, beta)
priced = TraceEnv(fit, model, replace(learn.cfg, alpha=1 + ${5:-0} * beta), learn.bandwidth, seed=args.seed, edge=learn.edge)
policy = dqn.train(priced, dqn.DQNConfig(episodes=args.episodes, gamma_request=$3), select=tune)[0]
thresholds, reserve = baselines.tune_adaptive(tune, lockstep.Lockstep(tune).evaluate_all, commands.THRESHOLD_GRID, commands.RESERVE_GRID)
d, a = episodes(held, policy), episodes(held, baselines.adaptive_threshold(thresholds, reserve))
diff = d['reward'] - a['reward']
half = 1.96 * diff.std(ddof=1) / np.sqrt(len(diff))
print(f'beta {beta:.3g} gamma_request $3 episodes $4 price ${5:-0}: dqn {json.dumps(summarize(d))}')
print(f'adaptive {json.dumps(summarize(a))}; dqn - adaptive {diff.mean():+.4f} ({diff.mean() - half:+.4f} .. {diff.mean() + half:+.4f})')
" | tee -a $OUT/policy_ble_variants_cifar10.txt
    ;;
  *)
    echo "usage: $0 traces | train BETA | size | compare | seeds | headroom | ble | ble-variant I GAMMA EPISODES [PRICE]" >&2
    exit 2
    ;;
esac
