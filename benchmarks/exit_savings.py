"""Issue 14's early-exit target: mean device MACs per inference with the threshold policy on the
device, against ResNet-8 at no more than one point below ResNet-8's accuracy (T-RECX's anchor: 31.6 %
fewer FLOPs for a point).

The device answers at the first of its exits whose top softmax probability reaches that exit's
threshold, else at its last device exit (the firmware's threshold policy, never offloading). Thresholds
are chosen on the training hold-out (the validation split's traces): the cheapest per-exit thresholds
whose hold-out accuracy is within ``--points`` of the reference's hold-out accuracy (and, to show the
trade-off, within 2, 3, 4 and 5 points); the test split's figures are then reported for them. Where even
the last device exit falls short, that is the result: the row says so, beside the exit's accuracy.
Float exits (traces); the int8 exits are within 0.5 point of them (docs/converter.md).

Usage: python benchmarks/exit_savings.py --model runs/ee-resnet-s.pt --reference resnet8
           [--data-dir ../shared/data/cifar10-jpeg] [--board nano33] [--points 1.0]
Writes benchmarks/results/exit_savings-NAME.json and prints a summary.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np

from earlyexit import checkpoint
from earlyexit.traces import Traces
from policy import costs
from policy.commands import LEARN_SPLIT, traces_for

ROOT = Path(__file__).resolve().parents[1]
GRID = np.round(np.concatenate([np.arange(0.30, 0.90, 0.05), np.arange(0.90, 1.0, 0.01), [1.01]]), 2)  # 1.01: never


def device_only(t: Traces, thresholds: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(exit index, correct) per sample: the first device exit whose confidence reaches its threshold, else the last."""
    last = len(thresholds)
    confident = t.probs[:, :last].max(axis=2) >= np.asarray(thresholds)[None]
    stop = np.where(confident.any(axis=1), confident.argmax(axis=1), last)
    return stop, t.correct[np.arange(len(stop)), stop]


def cheapest(t: Traces, device_exits: int, floor: float) -> tuple[tuple[float, ...], float, float] | None:
    """Per-exit thresholds (all device exits but the last) of least mean MACs with accuracy >= ``floor``
    (None: no thresholds reach it)."""
    best: tuple[tuple[float, ...], float, float] | None = None
    for thresholds in itertools.product(GRID, repeat=device_exits - 1):
        stop, correct = device_only(t, thresholds)
        macs, accuracy = float(t.macs[stop].mean()), float(correct.mean())
        if accuracy >= floor and (best is None or macs < best[1]):
            best = (tuple(float(x) for x in thresholds), macs, accuracy)
    return best


def row(fit: Traces, test: Traces, device_exits: int, ref_fit: float, ref_test: float, ref_macs: int, points: float):
    """The cheapest thresholds within ``points`` of the reference (on the hold-out) and their test figures."""
    found = cheapest(fit, device_exits, ref_fit - points / 100)
    if found is None:
        return {"points_allowed": points, "reachable": False}
    thresholds, fit_macs, fit_acc = found
    stop, correct = device_only(test, thresholds)
    macs, accuracy = float(test.macs[stop].mean()), float(correct.mean())
    return {
        "points_allowed": points,
        "reachable": True,
        "thresholds": list(thresholds),
        "hold_out": {"accuracy": fit_acc, "mean_device_macs": fit_macs},
        "test": {
            "accuracy": accuracy,
            "mean_device_macs": macs,
            "exit_shares": [float(np.mean(stop == k)) for k in range(device_exits)],
            "macs_saved_vs_reference": 1.0 - macs / ref_macs,
            "points_below_reference": 100 * (ref_test - accuracy),
        },
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="early-exit checkpoint (bundled name or .pt)")
    p.add_argument("--reference", default="resnet8", help="single-exit reference checkpoint (bundled name or .pt)")
    p.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data" / "cifar10-jpeg"))
    p.add_argument("--board", default="nano33")
    p.add_argument("--points", type=float, default=1.0, help="accuracy the device may give up against the reference")
    p.add_argument("--cache-dir", type=Path, default=ROOT / "build" / "cache")
    args = p.parse_args()
    model, ref = checkpoint.load(args.model), checkpoint.load(args.reference)
    device_exits = costs.from_checkpoint(model, args.board).device_slices
    fit, test = (traces_for(model, split, args.data_dir, args.cache_dir) for split in (LEARN_SPLIT, "test"))
    ref_fit, ref_test = (traces_for(ref, split, args.data_dir, args.cache_dir) for split in (LEARN_SPLIT, "test"))
    ref_macs = int(ref_test.macs[-1])
    ref_fit_acc, ref_test_acc = (float(r.correct[:, -1].mean()) for r in (ref_fit, ref_test))
    allowed = sorted({args.points, 2.0, 3.0, 4.0, 5.0})
    last = device_exits - 1
    result = {
        "model": args.model,
        "model_hash": model.model_hash(),
        "reference": args.reference,
        "reference_hash": ref.model_hash(),
        "board": args.board,
        "device_exits": device_exits,
        "exit_macs": [int(m) for m in test.macs[:device_exits]],
        "last_device_exit": {"hold_out_accuracy": float(fit.correct[:, last].mean())}
        | {"test_accuracy": float(test.correct[:, last].mean())},
        "reference_macs": ref_macs,
        "reference_accuracy": {"hold_out": ref_fit_acc, "test": ref_test_acc},
        "rows": [row(fit, test, device_exits, ref_fit_acc, ref_test_acc, ref_macs, k) for k in allowed],
    }
    out = ROOT / "benchmarks" / "results" / f"exit_savings-{Path(args.model).stem}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    deepest = 100 * result["last_device_exit"]["test_accuracy"]
    print(
        f"{args.model} on {args.board}: {device_exits} device exits, the last {deepest:.2f} % at"
        f" {test.macs[last] / 1e6:.2f} M MACs; {args.reference}: {100 * ref_test_acc:.2f} % at"
        f" {ref_macs / 1e6:.2f} M MACs"
    )
    for r in result["rows"]:
        if not r["reachable"]:
            print(f"  within {r['points_allowed']:g} points: not reachable on the device (hold-out)")
            continue
        t = r["test"]
        saved = 100 * t["macs_saved_vs_reference"]
        print(
            f"  within {r['points_allowed']:g} points (thresholds {r['thresholds']}):"
            f" test {100 * t['accuracy']:.2f} % at {t['mean_device_macs'] / 1e6:.2f} M MACs,"
            f" {abs(saved):.1f} % {'fewer' if saved >= 0 else 'more'} than {args.reference},"
            f" {t['points_below_reference']:.2f} points below it (exit shares"
            f" {', '.join(f'{100 * s:.1f} %' for s in t['exit_shares'])})"
        )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
