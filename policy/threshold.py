"""Confidence-threshold policy (BranchyNet style), integer-only so that C and Python agree.

At exit k with int8 logits l (scale s): the top softmax probability is
``1 / sum_j exp(-s * (l_max - l_j))``. With ``E_k[d] = round(2^15 * exp(-s_k * d))`` for
``d = 0..255``, the policy exits when ``sum_j E_k[l_max - l_j] <= T_k`` where
``T_k = floor(2^15 / t_k)``: no floating point on the device, the same integers here.
Below the threshold it stays on; at the last device exit it offloads; the last exit always answers.

:class:`DeviceState` is what the firmware knows at a device exit; every device policy (this
one and the learned ones of :mod:`policy.intpolicy`) decides from it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ONE = 1 << 15
STAY, EXIT, OFFLOAD = 0, 1, 2
ACTIONS = ("stay", "exit", "offload")
NO_BUDGET = 0xFFFFFFFF  # energy budget "none" in the C tables


@dataclass(frozen=True)
class DeviceState:
    """The firmware's view at device exit ``exit`` (0-based): the C ``ee_policy_state``."""

    exit: int
    logits: np.ndarray  # (C,) int8
    time_spent_us: int = 0
    energy_spent_uj: int = 0
    deadline_left_us: int = 0xFFFFFFFF
    bandwidth_bps: int = 0  # the smoothed measured throughput; 0: the policy's nominal figure (none measured yet)
    can_offload: bool = True
    edge_wait_us: int = 0  # the edge's queueing wait (0: unknown or free)
    battery_pace_uj: int = NO_BUDGET  # battery left per request left before recharge (NO_BUDGET: none)


def exp_tables(logit_scales: list[float]) -> np.ndarray:
    """(E, 256) uint16: ``round(2^15 * exp(-s_k * d))``."""
    d = np.arange(256, dtype=np.float64)
    return np.stack([np.floor(ONE * np.exp(-s * d) + 0.5) for s in logit_scales]).astype(np.uint16)


@dataclass(frozen=True)
class ThresholdPolicy:
    """Tables and integer thresholds per exit; ``device_exits`` exits run on the device."""

    exp_tables: np.ndarray  # (E, 256) uint16
    limits: np.ndarray  # (E,) uint32
    thresholds: tuple[float, ...]
    device_exits: int

    @classmethod
    def build(cls, logit_scales: list[float], thresholds: list[float], device_exits: int) -> ThresholdPolicy:
        if len(thresholds) != len(logit_scales):
            raise ValueError(f"{len(thresholds)} thresholds for {len(logit_scales)} exits")
        if not all(0 < t <= 1 for t in thresholds):
            raise ValueError(f"thresholds must lie in (0, 1], got {thresholds}")
        limits = np.array([int(ONE // t) for t in thresholds], dtype=np.uint32)
        return cls(exp_tables(logit_scales), limits, tuple(thresholds), device_exits)

    @property
    def num_exits(self) -> int:
        return len(self.limits)

    def _sum(self, k: int, logits: np.ndarray) -> int:
        gaps = int(logits.max()) - logits.astype(np.int32)
        return int(self.exp_tables[k][gaps].astype(np.uint32).sum())

    def confident(self, k: int, logits: np.ndarray) -> bool:
        """Whether exit ``k``'s top probability reaches its threshold (int8 logits)."""
        return self._sum(k, logits) <= int(self.limits[k])

    def confidence_q15(self, k: int, logits: np.ndarray) -> int:
        """Top softmax probability at exit ``k`` in Q15 (32767 = 1.0), integer-only like the C."""
        return min(ONE - 1, (ONE << 15) // self._sum(k, logits))

    def decide(self, k: int, logits: np.ndarray) -> int:
        """STAY, EXIT or OFFLOAD at exit ``k`` (0-based) on the tier that runs it."""
        last = len(self.limits) - 1
        if k == last or self.confident(k, logits):
            return EXIT
        return OFFLOAD if k == self.device_exits - 1 else STAY

    def decide_device(self, state: DeviceState) -> int:
        """The firmware's ``ee_policy_decide``: thresholds need only the exit and its logits."""
        return self.decide(state.exit, state.logits)
