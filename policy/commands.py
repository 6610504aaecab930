"""``python -m converter policy train|compare``."""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing
import time
from pathlib import Path

import numpy as np
import torch

from contracts.manifest import read_manifest
from earlyexit import checkpoint, data, traces
from earlyexit.console import add_progress_option
from policy import baselines, costs, dqn, export, linktraces, lockstep, plot, tabular, workers
from policy.bandwidth import KINDS, P_OUTAGE, P_RECOVER, Bandwidth
from policy.class_weights import add_class_weights_option, class_weights
from policy.edgeload import EdgeLoad
from policy.env import EnvConfig, TraceEnv
from policy.evaluate import episodes, evaluate, summarize

BASELINES = ("threshold", "adaptive-threshold", "fixed-split", "always-local", "offload-first")  # deployable
COMPARED = (*BASELINES, "dqn", "tabular", "oracle")  # by `compare`, in this order
THRESHOLD_GRID = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98)  # 0: always answer there
RESERVE_GRID = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)  # adaptive-threshold: battery pace to go deeper locally
# Policies learn on traces of training images the network never fitted (the hold-out its training
# keeps, `--val-size`): on the images it fitted, its exits are far more confident and accurate than
# on new ones (cifar10 exit 4: 93.9 % on them, 86.2 % on the hold-out, 86.0 % on the test split).
LEARN_SPLIT = "val"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("policy", help="learn and compare Stay/Exit/Offload policies")
    psub = p.add_subparsers(dest="policy_command", required=True)
    for name, helptext in (("train", "learn one policy"), ("compare", "every policy, several betas, test traces")):
        c = psub.add_parser(name, help=helptext)
        c.add_argument("--model", default="fashion-mnist", help="bundled model or checkpoint")
        c.add_argument("--data-dir", help="the model's dataset (default: bundled samples, split 500/500)")
        c.add_argument("--board", default="nano33", help="device board profile")
        c.add_argument("--link", help="the board's link to the edge (default: its profile's first, e.g. usb-serial)")
        c.add_argument("--bundle", type=Path, help="a build folder: use its manifest's sizes and placement")
        c.add_argument("--cloud", action="store_true", help="add the cloud tier above the edge")
        c.add_argument("--deadline-ms", type=float, help="default: 1.5 x the all-local device time")
        c.add_argument("--energy-budget-mj", type=float, default=float("inf"))
        c.add_argument("--bandwidth", choices=KINDS, default="walk", help="gilbert: random walk with outages")
        c.add_argument("--bandwidth-bps", type=float, help="default: the board link's figure")
        c.add_argument(
            "--bandwidth-trace", type=Path, help="a folder of throughput trace files (with --bandwidth trace)"
        )
        c.add_argument("--edge-devices", type=int, default=0, help="devices sharing the edge (0: a free edge)")
        c.add_argument("--edge-service-ms", type=float, help="the edge's time per request (default: cost model)")
        c.add_argument("--battery-mj", type=float, default=float("inf"), help="device energy per day of requests")
        c.add_argument("--day-requests", type=int, default=1000, help="requests per day (one per second)")
        c.add_argument("--features", choices=("summary", "full"), default="summary")
        c.add_argument("--episodes", type=int, default=10_000)
        c.add_argument("--seed", type=int, default=0)
        c.add_argument("--cache-dir", type=Path, default=Path("build/cache"))
        c.add_argument(
            "--traces",
            type=Path,
            help="the hold-out's traces to learn from, written by `earlyexit traces --split val` (default: computed)",
        )
        add_class_weights_option(c)
        add_progress_option(c)
        if name == "train":
            c.add_argument("--learner", choices=("dqn", "tabular"), default="dqn")
            c.add_argument("--beta", type=float, required=True)
            c.add_argument("--out", type=Path, required=True, help="policy file to write")
            c.add_argument(
                "--offload-at-split",
                action="store_true",
                help="the device offloads only at its last exit, as the firmware does (for `build --policy FILE`)",
            )
        else:
            c.add_argument("--betas", type=float, nargs="+", help="default: the calibrated betas")
            c.add_argument("--json", type=Path, required=True)
            c.add_argument(
                "--jobs",
                type=int,
                default=workers.default_jobs(),
                help="worker processes for the betas and calibration rows (default: min(2, CPUs)); same results",
            )
    p.set_defaults(func=run)


def hold_out_traces(path: Path, ckpt: checkpoint.Checkpoint, model: str) -> traces.Traces:
    """``--traces FILE``: traces of this model on its training hold-out, or ``ValueError`` saying what to run."""
    found = traces.load(path)
    fix = f"write them with `python -m earlyexit traces --model {model} --split {LEARN_SPLIT} --out {path}`"
    if found.model_hash != ckpt.model_hash():
        raise ValueError(
            f"{path}: traces of model {found.model_hash[:12]}, not of {model} ({ckpt.model_hash()[:12]}); {fix}"
        )
    if found.probs.shape[1:] != (ckpt.arch.num_exits, ckpt.arch.num_classes):
        raise ValueError(
            f"{path}: {found.probs.shape[1]} exits x {found.probs.shape[2]} classes, {model} has "
            f"{ckpt.arch.num_exits} x {ckpt.arch.num_classes}; {fix}"
        )
    if found.split != LEARN_SPLIT:
        raise ValueError(
            f"{path}: traces of the {found.split} split; policies learn on the training hold-out, which the network"
            f" never fitted (docs/policy.md); {fix}"
        )
    return found


def traces_for(
    ckpt: checkpoint.Checkpoint, split: str, data_dir: str | None, cache: Path, progress: bool | None = None
) -> traces.Traces:
    """Traces of the model on ``split`` (bundled Fashion-MNIST samples: 500 train or val / 500 test), cached."""
    path = cache / "traces" / f"{ckpt.model_hash()[:16]}-{split}-{Path(data_dir).name if data_dir else 'bundled'}.npz"
    if path.is_file():
        return traces.load(path)
    if data_dir is None and ckpt.dataset == "fashion-mnist":
        samples = data.load("fashion-mnist-samples", "test")
        part = slice(500, None) if split == "test" else slice(0, 500)
        ds = data.Dataset(samples.name, split, samples.x[part], samples.y[part], samples.classes)
    else:
        ds = data.load(ckpt.dataset, split, data_dir)
    result = traces.collect(ckpt, ds, progress=progress)
    traces.save(result, path)
    return result


def calibrated_betas(fit: traces.Traces) -> list[tuple[int, int, float]]:
    """Seed eq. 4.1: beta between exits i and i+1 = 1 / (loss_i - loss_{i+1}) (1-based, where positive)."""
    loss = fit.loss.mean(0)
    return [(k + 1, k + 2, float(1.0 / (loss[k] - loss[k + 1]))) for k in range(len(loss) - 1) if loss[k] > loss[k + 1]]


def default_deadline_s(model: costs.CostModel) -> float:
    """1.5 x the device time of one all-local inference (every device slice once; slice 1 if none is placed)."""
    return 1.5 * sum(model.compute_seconds(k, 0) for k in range(max(1, model.device_slices)))


def _setup(args: argparse.Namespace):
    ckpt = checkpoint.load(args.model)
    args.class_weights = class_weights(args.class_weights, ckpt.classes)
    if args.bundle:
        built = read_manifest(args.bundle)["model"]
        if built["hash"] != ckpt.model_hash():
            raise ValueError(
                f"--bundle {args.bundle} was built from model {built['name']}, not {args.model}: "
                f"pass the build of {args.model} (python -m converter build --model {args.model} ...)"
            )
    if args.bundle:
        model = costs.from_manifest(args.bundle / "manifest.json", args.cloud)
        if args.link and model.tiers[0].links[0].name != args.link:
            raise ValueError(f"--link {args.link}: --bundle {args.bundle} was built for another link; rebuild with it")
    else:
        model = costs.from_checkpoint(ckpt, args.board, args.cloud, args.link)
    if args.traces:
        fit = hold_out_traces(args.traces, ckpt, args.model)
    else:
        fit = traces_for(ckpt, LEARN_SPLIT, args.data_dir, args.cache_dir, args.progress)
    test = traces_for(ckpt, "test", args.data_dir, args.cache_dir, args.progress)
    deadline = args.deadline_ms / 1e3 if args.deadline_ms else default_deadline_s(model)
    bps = args.bandwidth_bps or model.tiers[0].links[0].bandwidth_bps
    if args.bandwidth == "trace":
        if args.bandwidth_trace is None:
            raise ValueError("--bandwidth trace needs --bandwidth-trace DIR (throughput trace files, docs/policy.md)")
        args.trace_set = linktraces.load_dir(args.bandwidth_trace, model.tiers[0].links[0])
    return ckpt, model, fit, test, deadline, bps


def link_summary(args: argparse.Namespace, model: costs.CostModel) -> dict:
    """The link and bandwidth process of a run, with the trace files used for learning and for evaluation."""
    out = {"name": model.tiers[0].links[0].name, "bandwidth": args.bandwidth, "edge_devices": args.edge_devices}
    if args.bandwidth == "trace":
        t = args.trace_set
        out["traces"] = {"dir": str(args.bandwidth_trace), "train": t.train, "eval": t.eval, "scale": t.factor}
    elif args.bandwidth == "gilbert":
        out["gilbert"] = {"p_outage": P_OUTAGE, "p_recover": P_RECOVER}
    return out


def edge_service_s(args: argparse.Namespace, model: costs.CostModel) -> float:
    """The edge's time per request: ``--edge-service-ms`` or the cost model's time for the slices above the device."""
    if args.edge_service_ms:
        return args.edge_service_ms / 1e3
    return sum(model.compute_seconds(k, 1) for k in range(model.device_slices, model.num_exits)) or 1e-3


def _envs(args, model, fit, test, deadline, bps, beta, allow_offload=True):
    cfg = EnvConfig(
        beta=beta,
        deadline_s=deadline,
        energy_budget_mj=args.energy_budget_mj,
        features=args.features,
        allow_offload=allow_offload,
        offload_at_split=getattr(args, "offload_at_split", False),
        class_weights=args.class_weights,
        battery_mj=args.battery_mj,
        day_requests=args.day_requests,
    )

    def bw(seed: int, held_out: bool = False) -> Bandwidth:
        trace = None
        if args.bandwidth == "trace":  # learning and tuning on the training files, evaluation on the others
            trace = args.trace_set.eval_bps if held_out else args.trace_set.train_bps
        return Bandwidth(args.bandwidth, bps, seed=seed, trace=trace)

    def edge(seed: int) -> EdgeLoad | None:
        return EdgeLoad(args.edge_devices, edge_service_s(args, model), seed) if args.edge_devices else None

    learn = TraceEnv(fit, model, cfg, bw(args.seed), seed=args.seed, edge=edge(args.seed))
    tune = TraceEnv(fit, model, cfg, bw(args.seed + 1), order=np.arange(len(fit.label)), edge=edge(args.seed + 1))
    held_out = TraceEnv(
        test, model, cfg, bw(args.seed + 2, True), order=np.arange(len(test.label)), edge=edge(args.seed + 2)
    )
    return learn, tune, held_out


def adaptive_rule(tune: TraceEnv, tuning: lockstep.Lockstep | None = None) -> baselines.Policy:
    """The adaptive-threshold rule tuned on ``tune`` (through ``tuning``, its lockstep evaluator, when given):
    compare's baseline and the DQN's teacher (warm start)."""
    evaluate_all = (tuning or lockstep.Lockstep(tune)).evaluate_all
    return baselines.adaptive_threshold(*baselines.tune_adaptive(tune, evaluate_all, THRESHOLD_GRID, RESERVE_GRID))


def _train_one(args, learn_env, select_env):
    if args.learner == "tabular":
        policy = tabular.train(
            learn_env, tabular.TabularConfig(episodes=args.episodes, seed=args.seed), progress=args.progress
        )
    else:
        policy, log = dqn.train(
            learn_env,
            dqn.DQNConfig(episodes=args.episodes, seed=args.seed),
            args.out.with_suffix(".loss.csv"),
            select=select_env,
            progress=args.progress,
            teacher=adaptive_rule(select_env),
        )
        _plot_loss(log, args.out.with_suffix(".loss.png"))
    export.save_learned(policy, learn_env, args.out)
    return policy


def _plot_loss(log: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([r["episode"] for r in log], [r["loss"] for r in log])
    ax.set_xlabel("episode")
    ax.set_ylabel("TD loss (Huber)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


def cmd_train(args: argparse.Namespace) -> None:
    _, model, fit, test, deadline, bps = _setup(args)
    learn, tune, held_out = _envs(args, model, fit, test, deadline, bps, args.beta)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    policy = _train_one(args, learn, tune)
    result = evaluate(held_out, policy)
    print(
        f"trained {args.learner} (beta {args.beta:g}, {args.episodes} episodes) in {time.perf_counter() - t0:.0f} s;"
        f" test: {json.dumps(result)}"
    )
    if args.bundle:
        manifest = read_manifest(args.bundle)
        scales = [s["outputs"]["logits"]["scale"] for s in manifest["slices"]]
        exported = export.export_learned(policy, learn, scales, test.probs.shape[2])
        same, steps, _ = export.agreement(held_out, policy, exported, scales)
        print(
            f"exported to the device: decides like the float policy on {same} of {steps} device steps"
            f" ({100 * same / steps:.2f} %)"
        )
    print(f"wrote {args.out}")


def _compare_one(args, model, fit, test, deadline, bps, beta, report) -> tuple[list[dict], dict[str, np.ndarray], dict]:
    """Every policy's metrics on the test traces at ``beta``, its per-sample rewards (same samples, same order),
    and the per-sample outcomes of the DQN and the adaptive rule; ``report`` (workers.Report) hears each policy
    start and finish."""
    learn, tune, held_out = _envs(args, model, fit, test, deadline, bps, beta)
    tuning, testing = lockstep.Lockstep(tune), lockstep.Lockstep(held_out)
    rule = functools.cache(lambda: adaptive_rule(tune, tuning))  # tuned once: a baseline and the DQN's teacher
    find = {
        "threshold": lambda: baselines.threshold(baselines.tune_threshold(tune, tuning.evaluate_all, THRESHOLD_GRID)),
        "adaptive-threshold": rule,
        "fixed-split": lambda: baselines.fixed_split(baselines.tune_split(tune, tuning.evaluate_all)),
        "always-local": lambda: baselines.always_local,
        "offload-first": lambda: baselines.offload_first,
        "dqn": lambda: dqn.train(
            learn,
            dqn.DQNConfig(episodes=args.episodes, seed=args.seed),
            select=tune,
            progress=args.progress,
            teacher=rule(),
        )[0],
        "tabular": lambda: tabular.train(
            learn, tabular.TabularConfig(episodes=args.episodes, seed=args.seed), progress=args.progress
        ),
        "oracle": lambda: baselines.oracle,
    }
    outcomes = {}
    for name in COMPARED:
        report("start", f"beta {beta:.3g}, {name}")
        policy = find[name]()
        fast = isinstance(policy, baselines.Rule)
        outcomes[name] = testing.outcomes([policy])[0] if fast else episodes(held_out, policy)
        report("done", f"beta {beta:.3g}, {name}")
    rows = [{"name": name, "beta": beta, **summarize(f)} for name, f in outcomes.items()]
    traced = {name: outcomes[name] for name in ("dqn", "adaptive-threshold")}
    return rows, {name: f["reward"] for name, f in outcomes.items()}, traced


def cmd_compare(args: argparse.Namespace) -> None:
    if args.jobs < 1:
        raise ValueError(f"--jobs {args.jobs}: give 1 or more worker processes")
    _, model, fit, test, deadline, bps = _setup(args)
    calibration = calibrated_betas(fit)
    betas = args.betas or [b for _, _, b in calibration]
    jobs = min(args.jobs, len(betas) + len(calibration))
    # in workers, no bars of their own (DQN, tabular): the parent's shows what each one runs
    inner = args if jobs == 1 else argparse.Namespace(**{**vars(args), "progress": False})
    setup = (model, fit, test, deadline, bps)
    units = [(inner, setup, "compare", beta) for beta in betas]
    units += [(inner, setup, "calibration", calibrated) for calibrated in calibration]
    total = len(COMPARED) * len(betas) + len(calibration)
    with workers.Progress(total, args.progress, "policy", "compare") as shown:
        done = workers.run(_compare_unit, units, jobs, shown)
    rows = [row for found, _, _ in done[: len(betas)] for row in found]
    rewards = {beta: found[1] for beta, found in zip(betas, done, strict=False)}
    traced = {beta: found[2] for beta, found in zip(betas, done, strict=False)}
    cal_rows = done[len(betas) :]
    result = {
        "policies": rows,
        "calibration": cal_rows,
        "targets": targets(rows, rewards),
        "deadline_ms": 1e3 * deadline,
        "bandwidth": args.bandwidth,
        "link": link_summary(args, model),
        "device_slices": model.device_slices,
        "tiers": [t.name for t in model.tiers],
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    _print(rows, result["targets"], cal_rows)
    title = (
        f"{args.model}: {' / '.join(result['tiers'])}, test traces\n"
        f"deadline {result['deadline_ms']:.0f} ms, bandwidth {args.bandwidth}, {len(test.label)} samples"
    )
    plot.pareto(rows, title, args.json.with_suffix(".png"))
    plot.reward_vs_beta(rows, args.json.with_name(args.json.stem + "_reward.png"))
    plot.decisions(traced[betas[0]], betas[0], args.json.with_name(args.json.stem + "_decisions.png"))
    print(f"wrote {args.json} and its plots ({args.json.with_suffix('.png')}, *_reward.png, *_decisions.png)")


def _calibration_row(args, model, fit, test, deadline, bps, calibrated, report) -> dict:
    """At a calibrated beta: the mean exit depth of a device-only DQN and of tuned thresholds (seed eq. 4.1)."""
    i, j, beta = calibrated
    report("start", f"calibration: beta {beta:.3g}")
    learn, tune, held_out = _envs(args, model, fit, test, deadline, bps, beta, allow_offload=False)
    learned = dqn.train(
        learn, dqn.DQNConfig(episodes=args.episodes, seed=args.seed), select=tune, progress=args.progress
    )[0]
    tuned = baselines.threshold(baselines.tune_threshold(tune, lockstep.Lockstep(tune).evaluate_all, THRESHOLD_GRID))
    row = {
        "between": [i, j],
        "beta": beta,
        "dqn_mean_exit_depth": evaluate(held_out, learned)["mean_exit_depth"],
        # the best confidence thresholds at this beta, device only: the deployable optimum, for reference
        "threshold_mean_exit_depth": lockstep.evaluate_all(held_out, [tuned])[0]["mean_exit_depth"],
    }
    report("done", f"calibration: beta {beta:.3g}")
    return row


def _compare_unit(unit: tuple, report: workers.Report):
    """One unit of compare's work (a beta's policies or a calibration row), in this process or a worker."""
    args, setup, kind, item = unit
    if multiprocessing.parent_process() is not None:
        torch.set_num_threads(1)  # a worker: one core each
    return (_compare_one if kind == "compare" else _calibration_row)(args, *setup, item, report)


def targets(rows: list[dict], rewards: dict[float, dict[str, np.ndarray]]) -> list[dict]:
    """Per beta: DQN vs the best deployable baseline (with the 95 % interval of the mean paired difference
    over the test samples), and the share of the always-local -> oracle gap it closes."""
    out = []
    for beta in dict.fromkeys(r["beta"] for r in rows):
        by = {r["name"]: r for r in rows if r["beta"] == beta}
        best = max(BASELINES, key=lambda n: by[n]["mean_reward"])
        local, oracle, learned = (by[n]["mean_reward"] for n in ("always-local", "oracle", "dqn"))
        diff = rewards[beta]["dqn"] - rewards[beta][best]
        half = 1.96 * float(diff.std(ddof=1)) / np.sqrt(len(diff)) if len(diff) > 1 else float("nan")
        out.append(
            {
                "beta": beta,
                "best_baseline": best,
                "dqn_minus_best_baseline": learned - by[best]["mean_reward"],
                "dqn_minus_best_baseline_ci95": [float(diff.mean()) - half, float(diff.mean()) + half],
                "dqn_differs_on": int(np.count_nonzero(np.abs(diff) > 1e-9)),
                "dqn_gap_closed": (learned - local) / (oracle - local) if oracle > local else None,
                "dqn_gap_closed_from_best": (learned - by[best]["mean_reward"]) / (oracle - by[best]["mean_reward"])
                if oracle > by[best]["mean_reward"]
                else None,
                "tabular_gap_closed": (by["tabular"]["mean_reward"] - local) / (oracle - local)
                if oracle > local
                else None,
            }
        )
    return out


def _print(rows: list[dict], found: list[dict], cal_rows: list[dict]) -> None:
    print(
        f"{'policy':<18} {'beta':>7} {'reward':>8} {'acc %':>6} {'dev. mJ':>8} {'ms':>8} {'miss':>5} {'unans':>5} "
        f"{'offload':>7} {'bytes':>7} {'depth':>6}"
    )
    for r in rows:
        print(
            f"{r['name']:<18} {r['beta']:>7.3g} {r['mean_reward']:>8.3f} {100 * r['accuracy']:>6.2f} "
            f"{r['device_energy_mj']:>8.3f} {r['latency_ms']:>8.1f} {r['deadline_misses']:>5} {r['unanswered']:>5} "
            f"{r['offload_rate']:>7.2f} {r['bytes_sent']:>7.0f} {r['mean_exit_depth']:>6.2f}"
        )
    for t in found:
        gap = "n/a" if t["dqn_gap_closed"] is None else f"{100 * t['dqn_gap_closed']:.1f} %"
        lo, hi = t["dqn_minus_best_baseline_ci95"]
        print(
            f"beta {t['beta']:.3g}: dqn - {t['best_baseline']} = {t['dqn_minus_best_baseline']:+.4f}"
            f" (95 % interval {lo:+.4f} .. {hi:+.4f}; rewards differ on {t['dqn_differs_on']} samples);"
            f" always-local -> oracle gap closed by dqn: {gap}"
        )
    for c in cal_rows:
        print(
            f"calibration: beta {c['beta']:.3g} between exits {c['between']}: "
            f"DQN mean exit depth {c['dqn_mean_exit_depth']:.2f}, tuned thresholds "
            f"{c['threshold_mean_exit_depth']:.2f} (device only)"
        )


def run(args: argparse.Namespace) -> None:
    (cmd_train if args.policy_command == "train" else cmd_compare)(args)
