"""Measured throughput traces in their published formats, one value per second, scaled to a link.

Formats (detected per file by its number of columns; docs/policy.md names sources and licences):

- 6 columns, the HSDPA commute-path logs (Riiser et al., MMSys 2013, Oslo) and the 4G/LTE logs
  of Ghent (van der Hooft et al., IEEE Commun. Lett. 2016): ``time, ms since start, latitude,
  longitude, bytes since the previous line, ms since the previous line``; throughput =
  8 x bytes / elapsed.
- 2 columns, the "cooked" traces of Pensieve (Mao et al., SIGCOMM 2017: FCC Measuring Broadband
  America 2016 and the HSDPA logs): ``time in s, throughput in Mbit/s``; resampled to 1 s steps.
- 1 column: throughput in bit/s, one value per second (this project's own format).

A trace folder's files are split by name: every fourth file (sorted, the 4th, 8th, ...) is held out
for evaluation, the others are for training. Scaling: the training files' median throughput maps to
the link's nominal bandwidth, every value is multiplied by that factor and clipped into the link's
``bandwidth_min_bps .. bandwidth_max_bps``: the trace keeps its relative swings and its outages
(0 stays 0) on the link's scale.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contracts.boards import Link

EVAL_EVERY = 4  # every 4th file (sorted by name) is held out for evaluation


@dataclass(frozen=True)
class TraceSet:
    """Throughput traces (bit/s per second, on the link's scale) split into training and evaluation files."""

    train: tuple[str, ...]
    eval: tuple[str, ...]
    train_bps: np.ndarray  # the training files' values, concatenated
    eval_bps: np.ndarray
    factor: float  # applied to the measured values


def read(path: Path) -> np.ndarray:
    """One trace file as bit/s per second (formats in the module docstring); ValueError names the problem."""
    try:
        rows = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: not a throughput trace ({err}); formats: docs/policy.md") from None
    if rows.size == 0:
        raise ValueError(f"{path}: empty trace")
    cols = rows.shape[1]
    if cols == 1:
        values = rows[:, 0]
    elif cols == 2:
        t, mbps = rows[:, 0] - rows[0, 0], rows[:, 1]
        if (np.diff(t) < 0).any():
            raise ValueError(f"{path}: column 1 (time in s) must not decrease")
        idx = np.searchsorted(t, np.arange(int(t[-1]) + 1), side="right") - 1
        values = 1e6 * mbps[idx]
    elif cols == 6:
        ok = rows[:, 5] > 0
        values = 8e3 * rows[ok, 4] / rows[ok, 5]
    else:
        raise ValueError(f"{path}: {cols} columns per line; expected 1 (bit/s), 2 (s, Mbit/s) or 6 (HSDPA/LTE logs)")
    if len(values) == 0 or (values < 0).any() or not np.isfinite(values).all():
        raise ValueError(f"{path}: throughput values must be finite and >= 0")
    return values


def load_dir(folder: Path, link: Link) -> TraceSet:
    """Every trace file in ``folder``, split into training and evaluation files and scaled to ``link``."""
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")) if folder.is_dir() else []
    if len(files) < 2:
        raise ValueError(
            f"--bandwidth-trace {folder}: needs a folder of at least 2 trace files (training and evaluation are"
            " disjoint files); formats: docs/policy.md"
        )
    held = {i for i in range(len(files)) if i % EVAL_EVERY == EVAL_EVERY - 1} or {len(files) - 1}
    train = [f for i, f in enumerate(files) if i not in held]
    test = [f for i, f in enumerate(files) if i in held]
    raw_train = np.concatenate([read(f) for f in train])
    raw_eval = np.concatenate([read(f) for f in test])
    median = float(np.median(raw_train))
    if median <= 0:
        raise ValueError(f"--bandwidth-trace {folder}: the training files' median throughput is 0: nothing to scale")
    factor = link.bandwidth_bps / median
    high = link.bandwidth_max_bps or 2 * link.bandwidth_bps
    return TraceSet(
        tuple(f.name for f in train),
        tuple(f.name for f in test),
        np.clip(raw_train * factor, link.bandwidth_min_bps, high),
        np.clip(raw_eval * factor, link.bandwidth_min_bps, high),
        factor,
    )
