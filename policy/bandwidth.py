"""The device link's bandwidth over time: constant, random walk, or a recorded trace."""

from __future__ import annotations

from pathlib import Path

import numpy as np


class Bandwidth:
    """Bandwidth (bit/s) for successive episodes."""

    def __init__(
        self,
        kind: str,
        bps: float,
        seed: int = 0,
        low: float | None = None,
        high: float | None = None,
        step: float = 0.15,
        trace: Path | None = None,
    ) -> None:
        if kind not in ("constant", "walk", "trace"):
            raise ValueError(f"bandwidth process {kind!r}: choose constant, walk or trace")
        self.kind, self.bps, self.step = kind, float(bps), step
        self.low, self.high = (low or bps / 10), (high or bps * 2)
        self.seed = seed
        self.values = self._read(trace) if kind == "trace" else None
        self.restart()

    def restart(self) -> None:
        """Back to the first episode's bandwidth (evaluations replay the same sequence)."""
        self.rng = np.random.default_rng(self.seed)
        self.i = 0
        self.now = float(self.values[0]) if self.values is not None else self.bps

    @staticmethod
    def _read(path: Path | None) -> np.ndarray:
        if path is None:
            raise ValueError("a trace bandwidth process needs --bandwidth-trace FILE (one bit/s value per line)")
        try:
            values = np.loadtxt(path, dtype=np.float64, ndmin=1)
        except (OSError, ValueError) as err:
            raise ValueError(f"{path}: not a list of bandwidth values in bit/s ({err})") from None
        if len(values) == 0 or (values <= 0).any():
            raise ValueError(f"{path}: bandwidth values must be positive numbers of bit/s")
        return values

    def next(self) -> float:
        """Advance one episode and return the bandwidth now."""
        if self.kind == "walk":
            self.now = float(np.clip(self.now * np.exp(self.rng.normal(0, self.step)), self.low, self.high))
        elif self.kind == "trace":
            self.now = float(self.values[self.i % len(self.values)])
            self.i += 1
        return self.now
