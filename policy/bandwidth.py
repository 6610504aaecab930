"""The device link's bandwidth per request (one request per second): constant, random walk,
a two-state Gilbert-Elliott channel with outages, or a measured trace (:mod:`policy.linktraces`)."""

from __future__ import annotations

import numpy as np

KINDS = ("constant", "walk", "gilbert", "trace")
# Gilbert-Elliott: per second, good -> outage with P_OUTAGE, outage -> good with P_RECOVER: outages of
# 1 / P_RECOVER = 5 s on average, every 1 / P_OUTAGE = 50 s of good link, 9.1 % of the time in all.
P_OUTAGE, P_RECOVER = 0.02, 0.2


class Bandwidth:
    """Bandwidth (bit/s) for successive requests; ``restart`` replays the same sequence."""

    def __init__(
        self,
        kind: str,
        bps: float,
        seed: int = 0,
        low: float | None = None,
        high: float | None = None,
        step: float = 0.15,
        trace: np.ndarray | None = None,
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"bandwidth process {kind!r}: choose {', '.join(KINDS)}")
        if kind == "trace" and (trace is None or len(trace) == 0):
            raise ValueError("a trace bandwidth process needs --bandwidth-trace DIR (trace files, docs/policy.md)")
        self.kind, self.bps, self.step = kind, float(bps), step
        self.low, self.high = (low or bps / 10), (high or bps * 2)
        self.seed = seed
        self.values = None if trace is None else np.asarray(trace, np.float64)
        self.restart()

    def restart(self) -> None:
        """Back to the first request's bandwidth (evaluations replay the same sequence)."""
        self.rng = np.random.default_rng(self.seed)
        # a trace starts at an offset drawn from the seed (seed 0: at its first value)
        self.i = int(self.rng.integers(len(self.values))) if self.values is not None and self.seed else 0
        self.good, self.level = True, self.bps
        self.now = float(self.values[self.i]) if self.values is not None else self.bps

    def next(self) -> float:
        """Advance one request and return the bandwidth now (0: an outage)."""
        if self.kind in ("walk", "gilbert"):
            self.level = float(np.clip(self.level * np.exp(self.rng.normal(0, self.step)), self.low, self.high))
            self.now = self.level
        if self.kind == "gilbert":
            self.good = self.rng.random() >= P_OUTAGE if self.good else self.rng.random() < P_RECOVER
            self.now = self.level if self.good else 0.0
        elif self.kind == "trace":
            self.now = float(self.values[self.i % len(self.values)])
            self.i += 1
        return self.now
