"""Joint (BranchyNet-style) training: the loss is a weighted sum of every exit's loss."""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F
from tqdm import tqdm

from earlyexit.checkpoint import Checkpoint, load, save
from earlyexit.data import Dataset
from earlyexit.model import EarlyExitNet
from earlyexit.transforms import channel_stats, random_crop_flip, to_input


@dataclass(frozen=True)
class TrainConfig:
    """Optimizer, schedule and augmentation. ``exit_weights`` empty = all exits weigh 1."""

    preset: str
    optimizer: str  # "adam" | "sgd"
    lr: float
    weight_decay: float
    epochs: int
    batch_size: int
    schedule: str = "constant"  # "constant" | "onecycle"
    momentum: float = 0.9
    label_smoothing: float = 0.0
    crop_pad: int = 0
    flip: bool = False
    exit_weights: tuple[float, ...] = field(default=())
    seed: int = 0


PRESETS = {
    # The seed's recipe.
    "seed": TrainConfig("seed", "adam", 3e-4, 1e-3, epochs=30, batch_size=128),
    # Ours: one-cycle SGD with Nesterov momentum and label smoothing; reaches the
    # bundled models' targets on 2 CPU cores in the time budget (see docs/models.md).
    "fast": TrainConfig("fast", "sgd", 0.1, 5e-4, epochs=25, batch_size=256, schedule="onecycle", label_smoothing=0.1),
}
AUGMENT = {"cifar10": (4, True), "fashion-mnist": (2, True)}


def config_for(preset: str, dataset: str, **overrides: Any) -> TrainConfig:
    """A preset with the dataset's augmentation and any non-None ``overrides`` applied."""
    pad, flip = AUGMENT.get(dataset, (0, False))
    cfg = replace(PRESETS[preset], crop_pad=pad, flip=flip)
    return replace(cfg, **{k: v for k, v in overrides.items() if v is not None})


def joint_loss(
    logits: Sequence[torch.Tensor], y: torch.Tensor, weights: Sequence[float], label_smoothing: float = 0.0
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Weighted sum of the exits' cross-entropies, and each exit's (detached) loss."""
    losses = [F.cross_entropy(z, y, label_smoothing=label_smoothing) for z in logits]
    total = sum(w * loss for w, loss in zip(weights, losses))
    return total, [loss.detach() for loss in losses]


class _Log:
    """Per-epoch, per-exit metrics to CSV + JSON (and TensorBoard when asked)."""

    def __init__(self, out: Path, tensorboard: Path | None, resume_rows: list[dict[str, Any]]) -> None:
        self.rows = resume_rows
        self.csv_path = out.with_suffix(".metrics.csv")
        self.json_path = out.with_suffix(".metrics.json")
        self.tb = None
        if tensorboard is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(tensorboard))

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        if self.tb is not None:
            for key in ("loss", "accuracy"):
                self.tb.add_scalar(f"{row['split']}/exit{row['exit']}/{key}", row[key], row["epoch"])
        with self.csv_path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(self.rows[0]))
            writer.writeheader()
            writer.writerows(self.rows)
        self.json_path.write_text(json.dumps(self.rows, indent=1))


def _schedule(kind: str, total_steps: int) -> Callable[[int], float]:
    """LR multiplier per step: constant, or one-cycle (linear warm-up over the first
    quarter, cosine decay to zero)."""
    if kind == "constant":
        return lambda _: 1.0
    warm = max(1, total_steps // 4)
    return lambda step: (
        (step + 1) / warm if step < warm else 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total_steps - warm)))
    )


@torch.no_grad()
def _evaluate(net: EarlyExitNet, ds: Dataset, mean: Sequence[float], std: Sequence[float]) -> list[tuple[float, float]]:
    """(mean loss, accuracy) per exit."""
    net.eval()
    sums = torch.zeros(net.arch.num_exits, 2, dtype=torch.float64)
    for start in range(0, len(ds), 500):
        x = to_input(ds.x[start : start + 500], mean, std)
        y = torch.as_tensor(ds.y[start : start + 500])
        for k, z in enumerate(net(x)):
            sums[k, 0] += F.cross_entropy(z, y, reduction="sum").item()
            sums[k, 1] += (z.argmax(1) == y).sum().item()
    return [(float(loss) / len(ds), float(acc) / len(ds)) for loss, acc in sums]


def train(
    net: EarlyExitNet,
    train_ds: Dataset,
    val_ds: Dataset | None,
    cfg: TrainConfig,
    out: str | Path,
    tensorboard: str | Path | None = None,
    progress: bool = True,
) -> Checkpoint:
    """Train ``net`` and write the checkpoint to ``out`` after every epoch.

    ``out.resume`` holds optimizer, schedule and RNG state; training picks up from it
    when present and deletes it when done. Metrics, with the seconds of training so far, go
    to ``out.metrics.{csv,json}``; the checkpoint holds no wall-clock time, so the same seed
    and data give the same bytes.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    weights = cfg.exit_weights or (1.0,) * net.arch.num_exits
    if len(weights) != net.arch.num_exits:
        raise ValueError(f"{len(weights)} exit weights given for {net.arch.num_exits} exits")
    mean, std = channel_stats(train_ds.x)
    net = net.to(memory_format=torch.channels_last)
    params = net.parameters()
    if cfg.optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=True, weight_decay=cfg.weight_decay)
    steps = (len(train_ds) + cfg.batch_size - 1) // cfg.batch_size
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _schedule(cfg.schedule, cfg.epochs * steps))
    resume_path = out.with_name(out.name + ".resume")
    start_epoch, rows, elapsed = 0, [], 0.0
    if resume_path.is_file():
        state = torch.load(resume_path, weights_only=False)
        net.load_state_dict(state["net"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        gen.set_state(state["gen"])
        torch.set_rng_state(state["torch_rng"])
        start_epoch, rows, elapsed = state["epoch"], state["rows"], state["elapsed"]
    log = _Log(out, Path(tensorboard) if tensorboard else None, rows)
    x_all = torch.as_tensor(train_ds.x)
    y_all = torch.as_tensor(train_ds.y)
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        net.train()
        order = torch.randperm(len(train_ds), generator=gen)
        sums = torch.zeros(net.arch.num_exits, 2, dtype=torch.float64)
        bar = tqdm(range(steps), desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not progress, leave=False)
        for step in bar:
            idx = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
            x = to_input(x_all[idx], mean, std)
            if cfg.crop_pad or cfg.flip:
                x = random_crop_flip(x, cfg.crop_pad, cfg.flip, gen)
            y = y_all[idx]
            logits = net(x)
            total, losses = joint_loss(logits, y, weights, cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
            sched.step()
            for k, (z, loss) in enumerate(zip(logits, losses)):
                sums[k, 0] += loss.item() * len(y)
                sums[k, 1] += (z.detach().argmax(1) == y).sum().item()
            bar.set_postfix(
                loss=f"{total.item():.3f}", final_acc=f"{sums[-1, 1].item() / ((step + 1) * cfg.batch_size):.3f}"
            )
        elapsed += time.perf_counter() - t0
        results = {"train": [(float(loss) / len(train_ds), float(acc) / len(train_ds)) for loss, acc in sums]}
        if val_ds is not None and len(val_ds):
            results["val"] = _evaluate(net, val_ds, mean, std)
        for split, per_exit in results.items():
            for k, (loss, acc) in enumerate(per_exit):
                log.add(
                    {
                        "epoch": epoch + 1,
                        "split": split,
                        "exit": k + 1,
                        "loss": round(loss, 6),
                        "accuracy": round(acc, 6),
                        "lr": round(sched.get_last_lr()[0], 8),
                        "seconds": round(elapsed, 1),
                    }
                )
        if progress:
            shown = results.get("val", results["train"])
            tqdm.write(
                f"epoch {epoch + 1}/{cfg.epochs} {elapsed:.0f}s "
                + ("val" if "val" in results else "train")
                + " acc per exit: "
                + " ".join(f"{a:.3f}" for _, a in shown)
            )
        ckpt = Checkpoint(
            net=net,
            dataset=train_ds.name,
            classes=train_ds.classes,
            mean=mean,
            std=std,
            # no wall-clock times in the checkpoint (they are in the metrics files): same seed, same bytes
            metrics={"history": [{k: v for k, v in row.items() if k != "seconds"} for row in log.rows]},
            training={
                "config": asdict(cfg),
                "epochs_done": epoch + 1,
                "train_samples": len(train_ds),
                "torch": str(torch.__version__),
                "threads": torch.get_num_threads(),
            },
        )
        save(ckpt, out)
        torch.save(
            {
                "net": net.state_dict(),
                "opt": opt.state_dict(),
                "sched": sched.state_dict(),
                "gen": gen.get_state(),
                "torch_rng": torch.get_rng_state(),
                "epoch": epoch + 1,
                "rows": log.rows,
                "elapsed": elapsed,
            },
            resume_path,
        )
    resume_path.unlink(missing_ok=True)
    return load(out)
