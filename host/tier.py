"""One tier above the device: continue an offloaded int8 activation through its slices in LiteRT.

A tier runs slices ``first..last`` (1-based) with LiteRT's reference kernels (bit-identical with
TFLM, checked at build time; ``optimized`` trades that for speed) and takes the same threshold
decisions as the firmware: it answers at the first confident exit; at its last slice it
offloads further when an upper tier exists, and the model's last exit always answers.
:class:`Upstream` is what a tier hands that offload to (the cloud client, or any other engine).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np

from contracts.protocol import Offload, Result, Tier
from converter import verify
from host.bundle import Bundle
from policy.threshold import EXIT


class Upstream(Protocol):
    """The next tier up as the edge sees it: one offload in, its answer or None (unreachable, too late)."""

    def offload(self, message: Offload) -> Result | None: ...


def split_outputs(outs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
    """(logits (C,), trunk (1, H, W, C) or None) from one slice's outputs, told apart by rank."""
    by_rank = {o.ndim: o for o in outs}
    return by_rank[2][0], by_rank.get(4)


@dataclass(frozen=True)
class Outcome:
    """A tier's answer, or the activation to hand up (``answer`` then is its own best exit, as a fallback)."""

    answer: Result | None
    forward: Offload | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)


class TierRunner:
    """Slices ``first..last`` of ``bundle`` on one tier."""

    def __init__(self, bundle: Bundle, first: int, last: int, tier: Tier, optimized: bool = False) -> None:
        self.first, self.last, self.tier = first, last, tier
        self.bundle = bundle
        self.policy = bundle.policy(last)
        self.runners = {k: verify.litert_runner(bundle.slices[k], optimized) for k in range(first - 1, last)}

    def check(self, offload: Offload) -> str | None:
        """Why this tier cannot continue ``offload``, or None when it can."""
        if not self.first - 1 <= offload.exit <= self.last:
            return f"this tier continues from exits {self.first - 1}..{self.last}, not {offload.exit}"
        trunk = self.bundle.slices[offload.exit - 1].trunk
        if trunk is None:
            return f"exit {offload.exit} is the model's last: nothing to continue"
        if (
            tuple(offload.shape) != trunk.shape
            or np.float32(offload.scale) != np.float32(trunk.scale)
            or offload.zero_point != trunk.zero_point
        ):
            return (
                f"exit {offload.exit} activation {offload.shape} (scale {offload.scale:.8g}, zero point "
                f"{offload.zero_point}) is not this model's {trunk.shape} ({trunk.scale:.8g}, {trunk.zero_point})"
            )
        return None

    def run(self, offload: Offload) -> Outcome:
        """Continue a checked ``offload`` from slice ``offload.exit + 1``."""
        t0 = time.perf_counter()
        h = np.frombuffer(offload.tensor, np.int8).reshape(offload.shape)
        answer = None
        for k in range(offload.exit, self.last):
            logits, trunk = split_outputs(self.runners[k](h))
            answer = Result(int(np.argmax(logits)), self.policy.confidence_q15(k, logits), k + 1, self.tier)
            if self.policy.decide(k, logits) == EXIT:
                return Outcome(answer, timings_ms={self.tier.name.lower(): ms_since(t0)})
            h = trunk
        spent_us = int(1e6 * (time.perf_counter() - t0))
        info = self.bundle.slices[self.last - 1].trunk
        forward = Offload(
            self.last,
            h.shape,
            info.scale,
            info.zero_point,
            min(offload.time_spent_us + spent_us, 2**32 - 1),
            offload.energy_spent_uj,
            max(offload.deadline_left_us - spent_us, 0),
            h.tobytes(),
        )
        fallback = replace(answer, fallback=True) if answer else None
        return Outcome(fallback, forward, {self.tier.name.lower(): ms_since(t0)})


def ms_since(t0: float) -> float:
    """Milliseconds since ``time.perf_counter()`` read ``t0``, to the microsecond."""
    return round(1e3 * (time.perf_counter() - t0), 3)
