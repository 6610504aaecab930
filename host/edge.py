"""The edge tier: what the bridge does with a device's offload (its own slices, then the next tier's).

The edge's slices run in a :class:`~host.tier.TierRunner`; above them, an :class:`~host.tier.Upstream`
passed in (the cloud client of ``host/cloud.py`` or any other engine) continues what the edge forwards.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from contracts.protocol import Offload, Tier
from host.bundle import Bundle
from host.tier import Outcome, TierRunner, Upstream, ms_since


class EdgeService:
    """What the bridge does with a device's offload: its own slices, then the cloud's when configured."""

    def __init__(
        self, bundle: Bundle, cloud: Upstream | None = None, edge_slices: int = 0, optimized: bool = False
    ) -> None:
        d = bundle.device_slices
        last = len(bundle.slices) if cloud is None else d + edge_slices
        self.runner = TierRunner(bundle, d + 1, last, Tier.EDGE, optimized)
        self.cloud = cloud

    def check(self, offload: Offload) -> str | None:
        return self.runner.check(offload)

    def serve(self, offload: Offload) -> Outcome:
        """The RESULT for the device (None: no answer, the device falls back) and the timings."""
        outcome = self.runner.run(offload)
        if outcome.forward is None or self.cloud is None:
            return outcome
        t0 = time.perf_counter()
        answer = self.cloud.offload(outcome.forward)
        timings = dict(outcome.timings_ms, cloud=ms_since(t0))
        return Outcome(answer or outcome.answer, timings_ms=timings)


class EdgeLoad:
    """The offloads an edge serves at once over all its ports, and the wait it advertises in its RESULTs:
    the others in service times the mean service time so far (0 while it serves no other)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.in_service = 0
        self.served = 0
        self.total_us = 0

    @contextmanager
    def serving(self) -> Iterator[None]:
        """Count one offload in service for the ``with`` block, and its time."""
        t0 = time.perf_counter()
        with self._lock:
            self.in_service += 1
        try:
            yield
        finally:
            with self._lock:
                self.in_service -= 1
                self.served += 1
                self.total_us += round(1e6 * (time.perf_counter() - t0))

    def wait_us(self) -> int:
        """Expected wait for an offload arriving now, besides the one being answered (microseconds, u32)."""
        with self._lock:
            others = max(self.in_service - 1, 0)
            return min(others * (self.total_us // self.served if self.served else 0), 0xFFFFFFFF)
