"""The checkpoint file: weights + architecture + normalization + classes + metrics.

A checkpoint is a ``torch.save`` of plain data (tensors, dicts, lists, numbers,
strings), loaded with ``weights_only=True``: no pickled code, no training code path.
``format_version`` guards against files from an incompatible release.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from earlyexit.arch import ArchConfig
from earlyexit.model import EarlyExitNet

FORMAT_VERSION = 1
BUNDLED_DIR = Path(__file__).parent / "models"


class CheckpointError(Exception):
    """A checkpoint is missing, corrupt or of another format; the message says which file."""


@dataclass
class Checkpoint:
    """A loaded model and what is needed to feed it and to name its outputs."""

    net: EarlyExitNet
    dataset: str
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    metrics: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)

    @property
    def arch(self) -> ArchConfig:
        return self.net.arch

    def model_hash(self) -> str:
        """sha256 over the architecture and every weight: equal iff the models compute the same."""
        h = hashlib.sha256(json.dumps(self.arch.to_dict(), sort_keys=True).encode())
        h.update(json.dumps({"mean": self.mean, "std": self.std}).encode())
        for name, tensor in sorted(self.net.state_dict().items()):
            h.update(name.encode())
            h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "arch": self.arch.to_dict(),
            "state_dict": self.net.state_dict(),
            "dataset": self.dataset,
            "classes": list(self.classes),
            "normalization": {"mean": list(self.mean), "std": list(self.std)},
            "metrics": self.metrics,
            "training": self.training,
        }


def save(ckpt: Checkpoint, path: str | Path) -> None:
    """Write ``ckpt`` atomically (a crash never leaves half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(ckpt.to_dict(), tmp)
    tmp.replace(path)


def bundled_models() -> list[str]:
    """Names accepted by ``--model`` besides a file path."""
    return sorted(p.stem for p in BUNDLED_DIR.glob("*.pt"))


def resolve(model: str) -> Path:
    """A bundled model's name or a checkpoint path -> the file."""
    path = Path(model)
    if path.is_file():
        return path
    if (BUNDLED_DIR / f"{model}.pt").is_file():
        return BUNDLED_DIR / f"{model}.pt"
    raise CheckpointError(
        f"--model {model!r} is neither a checkpoint file nor a bundled model "
        f"(bundled: {', '.join(bundled_models()) or 'none'}). Train one with "
        "`python -m earlyexit train ... --out CKPT` and pass its path."
    )


def load(model: str | Path) -> Checkpoint:
    """Load a bundled model by name or a checkpoint file, ready for inference (eval mode)."""
    path = resolve(str(model))
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a damaged file
        raise CheckpointError(
            f"{path}: not a readable checkpoint ({type(err).__name__}: {str(err).splitlines()[0][:200]}). "
            "The file is damaged or is not a checkpoint of this tool: train or copy it again."
        ) from None
    if not isinstance(raw, dict) or raw.get("format_version") != FORMAT_VERSION:
        found = raw.get("format_version") if isinstance(raw, dict) else type(raw).__name__
        raise CheckpointError(
            f"{path}: checkpoint format {found!r}, this tool reads format {FORMAT_VERSION}. "
            "Re-train with this version or use the release that wrote it."
        )
    try:
        arch = ArchConfig.from_dict(raw["arch"])
        net = EarlyExitNet(arch)
        net.load_state_dict(raw["state_dict"])
        norm = raw["normalization"]
        ckpt = Checkpoint(
            net=net,
            dataset=str(raw["dataset"]),
            classes=tuple(raw["classes"]),
            mean=tuple(float(v) for v in norm["mean"]),
            std=tuple(float(v) for v in norm["std"]),
            metrics=dict(raw.get("metrics", {})),
            training=dict(raw.get("training", {})),
        )
    except (KeyError, ValueError, RuntimeError, TypeError) as err:
        raise CheckpointError(
            f"{path}: checkpoint is incomplete or inconsistent ({err}); re-train or re-copy it"
        ) from None
    net.eval()
    return ckpt
