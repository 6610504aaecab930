"""Issue 15's learner attempts: one DQN variant at one calibrated beta in the BLE setting of
`benchmarks/policy_cifar10.sh ble`, against the tuned adaptive rule on the test split (paired 95 % interval).

    python benchmarks/policy_ble_learner.py --beta-index 1 --demo-episodes 5000 --pretrain-steps 5000

Appends one JSON line to benchmarks/results/policy_ble_learner_cifar10.jsonl. The rule's tuned thresholds
and reserve and the oracle's test reward per beta are cached in build/cache/policy_ble_<hash>_<beta>.json
(tuning is deterministic: the environments of compare, seed 0).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from policy import baselines, commands, dqn, lockstep
from policy.env import TraceEnv
from policy.evaluate import episodes, evaluate, summarize

RESULTS = Path("benchmarks/results/policy_ble_learner_cifar10.jsonl")
BLE = ["--link", "ble", "--bandwidth", "gilbert", "--edge-devices", "260", "--battery-mj", "4018"]


def _reference(args, tune, held, beta: float, model_hash: str) -> dict:
    """The adaptive rule's tuned thresholds and reserve and the oracle's test reward at ``beta`` (cached)."""
    path = args.cache_dir / f"policy_ble_{model_hash[:16]}_{beta:.6g}.json"
    if path.is_file():
        return json.loads(path.read_text())
    tuning = lockstep.Lockstep(tune)
    thresholds, reserve = baselines.tune_adaptive(
        tune, tuning.evaluate_all, commands.THRESHOLD_GRID, commands.RESERVE_GRID
    )
    found = {"thresholds": thresholds, "reserve": reserve, "oracle": evaluate(held, baselines.oracle)["mean_reward"]}
    found["adaptive_on_selection"] = evaluate(tune, baselines.adaptive_threshold(thresholds, reserve))["mean_reward"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(found) + "\n")
    return found


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--beta-index", type=int, required=True, help="0, 1, 2: calibrated betas 2.51, 8.75, 43.3")
    p.add_argument("--data-dir", default="../shared/data/cifar10-jpeg")
    p.add_argument("--price", type=float, default=0.0, help="learn with energy weight 1 + PRICE x beta")
    p.add_argument("--label", default="", help="a name for the variant in the results")
    for field in dqn.DQNConfig.__dataclass_fields__.values():
        if field.name not in ("hidden", "seed"):
            p.add_argument(f"--{field.name.replace('_', '-')}", type=type(field.default), default=field.default)
    opts = p.parse_args()
    parser = argparse.ArgumentParser()
    commands.add_parser(parser.add_subparsers())
    args = parser.parse_args(
        ["policy", "compare", "--model", "cifar10", "--data-dir", opts.data_dir, "--board", "nano33", *BLE]
        + ["--day-requests", "1000", "--json", "/dev/null"]
    )
    ckpt, model, fit, test, deadline, bps = commands._setup(args)
    beta = commands.calibrated_betas(fit)[opts.beta_index][2]
    learn, tune, held = commands._envs(args, model, fit, test, deadline, bps, beta)
    ref = _reference(args, tune, held, beta, ckpt.model_hash())
    rule = baselines.adaptive_threshold(ref["thresholds"], ref["reserve"])
    if opts.price:  # a Lagrangian energy price while learning; selection and evaluation keep alpha = 1
        learn = TraceEnv(fit, model, replace(learn.cfg, alpha=1 + opts.price * beta), learn.bandwidth, edge=learn.edge)
    cfg = dqn.DQNConfig(**{k: getattr(opts, k) for k in dqn.DQNConfig.__dataclass_fields__ if hasattr(opts, k)})
    scores, score = [], dqn.evaluate  # the selection's scores of the snapshots, in order (the clone's first)
    dqn.evaluate = lambda env, pol: scores.append(score(env, pol)) or scores[-1]
    t0 = time.perf_counter()
    policy = dqn.train(learn, cfg, select=tune, teacher=rule)[0]
    seconds = time.perf_counter() - t0
    d, a = episodes(held, policy), episodes(held, rule)
    diff = d["reward"] - a["reward"]
    half = 1.96 * float(diff.std(ddof=1)) / np.sqrt(len(diff))
    best = summarize(a)["mean_reward"]
    row = {
        "label": opts.label,
        "beta": beta,
        "price": opts.price,
        "config": {k: v for k, v in vars(cfg).items() if v != getattr(dqn.DQNConfig, k)},
        "train_s": round(seconds),
        "dqn": summarize(d),
        "adaptive": summarize(a),
        "oracle": ref["oracle"],
        "selection": [round(s["mean_reward"], 4) for s in scores],
        "adaptive_on_selection": ref["adaptive_on_selection"],
        "dqn_minus_adaptive": float(diff.mean()),
        "ci95": [float(diff.mean()) - half, float(diff.mean()) + half],
        "differs_on": int(np.count_nonzero(np.abs(diff) > 1e-9)),
        "gap_closed_from_best": (summarize(d)["mean_reward"] - best) / (ref["oracle"] - best),
        "ratio_to_best": summarize(d)["mean_reward"] / best,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as f:
        f.write(json.dumps(row) + "\n")
    print(
        f"{opts.label} beta {beta:.3g}: dqn {row['dqn']['mean_reward']:.4f} (unanswered {row['dqn']['unanswered']}),"
        f" adaptive {best:.4f}, diff {diff.mean():+.4f} ({row['ci95'][0]:+.4f} .. {row['ci95'][1]:+.4f}),"
        f" ratio {row['ratio_to_best']:.4f}, gap closed {100 * row['gap_closed_from_best']:.1f} %, {seconds:.0f} s;"
        f" selection {row['selection']} (adaptive {ref['adaptive_on_selection']:.4f})"
    )


if __name__ == "__main__":
    main()
