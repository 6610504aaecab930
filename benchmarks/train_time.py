"""Seconds per training epoch of an architecture on CIFAR-10 with the bundled models' recipe,
measured on a few batches, and the full training projected against the issue's 3 h budget.

Runs the real training loop (earlyexit.train.train, preset ``fast``, the epochs of
benchmarks/train_models.sh) for one epoch over ``--batches`` batches of the training split,
then one validation pass over the 5,000 held-out images; projects 45,000 images x epochs.
The machine is shared, so the bundled cifar10 architecture (mcu-cifar) is timed in the same
run as an anchor: its full training was measured (benchmarks/results/cifar10-training-time.json),
and every projection is also given scaled by measured / timed-here of the anchor.
Writes benchmarks/results/train_time.json.
Usage: python benchmarks/train_time.py [--data-dir ../shared/data/cifar10-jpeg] [--batches 20] [ARCH ...]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from earlyexit import data
from earlyexit.model import EarlyExitNet
from earlyexit.profile import exit_costs
from earlyexit.train import config_for, train
from earlyexit.zoo import build_arch

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 25  # cifar10's in benchmarks/train_models.sh
BUDGET_S = 3 * 3600
ANCHOR = "mcu-cifar"
ANCHOR_MEASURED = ROOT / "benchmarks" / "results" / "cifar10-training-time.json"


def measure(arch: str, train_ds: data.Dataset, val_ds: data.Dataset, batches: int) -> dict:
    cfg = config_for("fast", "cifar10", epochs=1)
    n = batches * cfg.batch_size
    part = data.Dataset(train_ds.name, "train[:n]", train_ds.x[:n], train_ds.y[:n], train_ds.classes)
    torch.manual_seed(cfg.seed)
    net = EarlyExitNet(build_arch(arch))
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        train(net, part, val_ds, cfg, Path(tmp) / "m.pt", progress=False)
        wall = time.perf_counter() - t0
        train_s = json.loads((Path(tmp) / "m.metrics.json").read_text())[-1]["seconds"]
    per_batch = train_s / batches
    steps = math.ceil(len(train_ds) / cfg.batch_size)
    epoch_s = per_batch * steps + (wall - train_s)  # + validation and checkpoint writing
    return {
        "arch": arch,
        "final_exit_macs": exit_costs(net)[-1].cumulative_macs,
        "batches_timed": batches,
        "batch_size": cfg.batch_size,
        "seconds_per_batch": round(per_batch, 3),
        "validation_and_save_seconds": round(wall - train_s, 1),
        "projected_epoch_seconds": round(epoch_s),
        "epochs": EPOCHS,
        "projected_total_hours": round(EPOCHS * epoch_s / 3600, 2),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("archs", nargs="*", default=["resnet8", "ee-resnet-s", "ee-resnet-m"])
    p.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data" / "cifar10-jpeg"))
    p.add_argument("--batches", type=int, default=20, help="batches to time per architecture (default %(default)s)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    train_ds = data.load("cifar10", "train", args.data_dir)
    val_ds = data.load("cifar10", "val", args.data_dir)
    rows = []
    for arch in [ANCHOR, *args.archs]:
        print(f"timing {arch}: {args.batches} batches + one validation pass, {args.threads} threads ...", flush=True)
        rows.append(measure(arch, train_ds, val_ds, args.batches))
        print(f"  {rows[-1]['seconds_per_batch']} s/batch -> {rows[-1]['projected_total_hours']} h for {EPOCHS} epochs")
    measured = json.loads(ANCHOR_MEASURED.read_text())["wall_seconds"]
    load_factor = measured / (EPOCHS * rows[0]["projected_epoch_seconds"])
    for r in rows:
        r["load_normalized_total_hours"] = round(r["projected_total_hours"] * load_factor, 2)
        r["within_3h"] = r["load_normalized_total_hours"] * 3600 <= BUDGET_S
        print(
            f"{r['arch']}: {r['projected_total_hours']} h as timed here, {r['load_normalized_total_hours']} h "
            f"at the anchor's measured speed ({'within' if r['within_3h'] else 'over'} 3 h)"
        )
    result = {
        "anchor": {"arch": ANCHOR, "measured_wall_seconds": measured, "load_factor": round(load_factor, 3)},
        "rows": rows,
        "threads": args.threads,
        "cpus": os.cpu_count(),
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        "processor": platform.processor() or platform.machine(),
        "torch": torch.__version__,
    }
    out = ROOT / "benchmarks" / "results" / "train_time.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
