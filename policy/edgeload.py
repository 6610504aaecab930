"""A shared edge: N devices send it requests, it serves them one at a time; the wait grows with load.

Per second: each device is active (sending one request per second) or idle, and flips with
probability ``FLIP`` (so the load drifts over minutes, as devices wake and sleep together); the
edge serves ``1 / service_s`` requests per second. The queue (requests waiting) evolves as
``q <- max(0, q + active - served)``; a request arriving now waits ``q x service_s`` before the
edge runs its slices. With ``devices x service_s`` > 1 the edge is overloaded while most devices
are active, and the wait climbs by seconds until they quiet down.
"""

from __future__ import annotations

import numpy as np

FLIP = 0.01  # per device and second: active <-> idle


class EdgeLoad:
    """The edge's queueing wait (s) for successive requests of one device; ``restart`` replays it."""

    def __init__(self, devices: int, service_s: float, seed: int = 0) -> None:
        if devices < 0 or service_s <= 0:
            raise ValueError(f"edge load: devices ({devices}) must be >= 0 and service time ({service_s}) > 0")
        self.devices, self.service_s, self.seed = devices, service_s, seed
        self.restart()

    def restart(self) -> None:
        self.rng = np.random.default_rng(self.seed + 7919)
        self.active = self.rng.random(self.devices) < 0.5
        self.queue = 0.0

    def next(self) -> float:
        """Advance one second; the wait (s) a request arriving now sees at the edge."""
        if not self.devices:
            return 0.0
        flip = self.rng.random(self.devices) < FLIP
        self.active ^= flip
        self.queue = max(0.0, self.queue + float(self.active.sum()) - 1.0 / self.service_s)
        return self.queue * self.service_s
