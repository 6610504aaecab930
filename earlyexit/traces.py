"""Per-sample, per-exit outputs (the seed's Algorithm 2) and the per-exit summary.

Trace file (``.npz``, format version 1):

=================  ===========  ==================================================
array              shape/dtype  meaning
=================  ===========  ==================================================
``probs``          (N,E,C) f32  softmax output of every exit
``loss``           (N,E) f32    cross-entropy of every exit against the label
``pred``           (N,E) i16    argmax class of every exit
``label``          (N,) i16     ground truth
``correct``        (N,E) bool   ``pred == label``
``macs``           (E,) i64     cumulative MACs to reach each exit
``model_hash``     () str       :meth:`Checkpoint.model_hash` of the model
``dataset``        () str       dataset name
``split``          () str       split name
``format_version`` () i64       1
=================  ===========  ==================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from earlyexit.checkpoint import Checkpoint
from earlyexit.console import bar
from earlyexit.data import Dataset
from earlyexit.profile import exit_costs
from earlyexit.transforms import to_input

TRACE_FORMAT_VERSION = 1
_FIELDS = ("probs", "loss", "pred", "label", "macs", "model_hash", "dataset", "split", "format_version")


@dataclass(frozen=True)
class Traces:
    probs: np.ndarray
    loss: np.ndarray
    pred: np.ndarray
    label: np.ndarray
    macs: np.ndarray
    model_hash: str
    dataset: str
    split: str

    @property
    def correct(self) -> np.ndarray:
        return self.pred == self.label[:, None]

    @property
    def num_exits(self) -> int:
        return self.probs.shape[1]


@torch.no_grad()
def collect(ckpt: Checkpoint, ds: Dataset, batch_size: int = 500, progress: bool | None = True) -> Traces:
    """Run every exit of ``ckpt`` over ``ds``; ``progress`` None: a bar only when stderr is a terminal."""
    net = ckpt.net.eval()
    probs, losses = [], []
    for start in bar(range(0, len(ds), batch_size), progress=progress, desc=f"exits on {ds.name}/{ds.split}"):
        x = to_input(ds.x[start : start + batch_size], ckpt.mean, ckpt.std)
        y = torch.as_tensor(ds.y[start : start + batch_size])
        logits = torch.stack(net(x), 1)  # (B, E, C)
        probs.append(F.softmax(logits, -1).numpy())
        losses.append(
            F.cross_entropy(logits.transpose(1, 2), y[:, None].expand(-1, logits.shape[1]), reduction="none").numpy()
        )
    p = np.concatenate(probs).astype(np.float32)
    return Traces(
        probs=p,
        loss=np.concatenate(losses).astype(np.float32),
        pred=p.argmax(-1).astype(np.int16),
        label=ds.y.astype(np.int16),
        macs=np.array([c.cumulative_macs for c in exit_costs(net)], dtype=np.int64),
        model_hash=ckpt.model_hash(),
        dataset=ds.name,
        split=ds.split,
    )


def save(traces: Traces, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        path,
        probs=traces.probs,
        loss=traces.loss,
        pred=traces.pred,
        label=traces.label,
        correct=traces.correct,
        macs=traces.macs,
        model_hash=np.array(traces.model_hash),
        dataset=np.array(traces.dataset),
        split=np.array(traces.split),
        format_version=np.array(TRACE_FORMAT_VERSION),
    )


def load(path: str | Path) -> Traces:
    """Read a trace file; ``ValueError`` names the file and the problem."""
    try:
        with np.load(path, allow_pickle=False) as f:
            raw = {key: f[key] for key in f.files}
    except (OSError, ValueError) as err:
        raise ValueError(
            f"{path}: not a trace file of this tool ({err}); regenerate it with `earlyexit traces`"
        ) from None
    missing = sorted(set(_FIELDS) - raw.keys())
    if missing:
        raise ValueError(f"{path}: trace file lacks {', '.join(missing)}; regenerate it with `earlyexit traces`")
    if int(raw["format_version"]) != TRACE_FORMAT_VERSION:
        raise ValueError(f"{path}: trace format {raw['format_version']}, this tool reads {TRACE_FORMAT_VERSION}")
    return Traces(
        probs=raw["probs"],
        loss=raw["loss"],
        pred=raw["pred"],
        label=raw["label"],
        macs=raw["macs"],
        model_hash=str(raw["model_hash"]),
        dataset=str(raw["dataset"]),
        split=str(raw["split"]),
    )


def exit_table(traces: Traces) -> list[dict[str, float]]:
    """Per exit (numbered from 1): accuracy, mean loss and cumulative MACs."""
    acc = traces.correct.mean(0)
    loss = traces.loss.mean(0)
    return [
        {
            "exit": k + 1,
            "accuracy": round(float(acc[k]), 6),
            "loss": round(float(loss[k]), 6),
            "macs": int(traces.macs[k]),
        }
        for k in range(traces.num_exits)
    ]
