"""A shared edge: N devices send it requests, it serves them one at a time; the wait grows with load.

Each second a share ``a`` of the N devices is active, one request per second each: ``a`` is the
logistic of a slow AR(1) walk (``x <- RHO x + N(0, SIGMA)``: devices wake and sleep together, the
load drifts over minutes), and the edge's arrivals that second are Poisson(N a). The edge serves
``1 / service_s`` requests per second; the queue evolves as ``q <- max(0, q + arrivals - served)``
and a request arriving now waits ``q x service_s`` before the edge runs its slices. With
``N x service_s`` > 1 the edge is overloaded while most devices are active, and the wait climbs
by seconds until they quiet down; it turns requests away beyond ``MAX_WAIT_S`` of queue.
"""

from __future__ import annotations

import math

import numpy as np

RHO, SIGMA = 0.99, 0.14  # the activity walk: stationary standard deviation 1.0, correlation time 100 s
MAX_WAIT_S = 10.0  # admission control: the queue holds at most this much work


class EdgeLoad:
    """The edge's queueing wait (s) for successive requests of one device; ``restart`` replays it."""

    def __init__(self, devices: int, service_s: float, seed: int = 0) -> None:
        if devices < 0 or service_s <= 0:
            raise ValueError(f"edge load: devices ({devices}) must be >= 0 and service time ({service_s}) > 0")
        self.devices, self.service_s, self.seed = devices, service_s, seed
        self.restart()

    def restart(self) -> None:
        self.rng = np.random.default_rng(self.seed + 7919)
        self.x, self.queue = 0.0, 0.0

    def next(self) -> float:
        """Advance one second; the wait (s) a request arriving now sees at the edge."""
        if not self.devices:
            return 0.0
        self.x = RHO * self.x + self.rng.normal(0.0, SIGMA)
        arrivals = self.rng.poisson(self.devices / (1.0 + math.exp(-self.x)))
        self.queue = min(max(0.0, self.queue + arrivals - 1.0 / self.service_s), MAX_WAIT_S / self.service_s)
        return self.queue * self.service_s
