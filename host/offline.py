"""The same samples without any link: the int8 chain and the tiers' policies, as the reference answers.

Device slices run in TFLite Micro (as in the simulator), the others in LiteRT's reference
kernels (as on the edge and cloud). The device decides with its own policy (the bundle's
thresholds or its exported learned policy) on the simulated device's clock and budget, and
answers with the fallback flag where that budget passes before an exit answers; the upper
tiers decide with the threshold policy, as the bridge and the cloud do.

With a bandwidth trace (bit/s, one value per request, request ``n`` taking value ``n - 1``
cyclically, as the SIL relay throttles the device's link) the device sees the link as the
firmware does: each offload's throughput, reported back in the edge's RESULT, updates its
smoothed estimate (:class:`~host.simulator.EdgeView`) for the requests after it; an offload whose
frame takes longer to send than the budget left is answered by the device with the fallback flag
(its late RESULT still reports the throughput). The edge's wait is 0: one device, one edge.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from contracts.protocol import Offload, Tier, encode
from converter import verify
from host.bundle import Bundle
from host.simulator import DEFAULT_DEADLINE_MS, DeviceClock, EdgeView
from policy.threshold import EXIT


@dataclass(frozen=True)
class Decision:
    """Where and what a sample answers: class, Q15 confidence, exit (1-based), tier, and whether the device
    answered because its budget ran out (the RESULT's fallback flag)."""

    label: int
    confidence_q15: int
    exit: int
    tier: int
    fallback: bool = False


def evaluate(
    bundle: Bundle,
    images: np.ndarray,
    edge_slices: int | None = None,
    deadline_ms: float = DEFAULT_DEADLINE_MS,
    bandwidth: Sequence[float] | None = None,
) -> list[Decision]:
    """One decision per uint8 NHWC image, as the tiers take them over a perfect link or one throttled by
    ``bandwidth`` (bit/s per request, see the module docstring)."""
    d = bundle.device_slices
    x = verify.quantize_images(images, bundle.input_lut())
    device = verify.run_chain(list(bundle.slices[:d]), x, verify.tflm_runner)
    logits = list(device.logits)
    if d < len(bundle.slices):
        logits += verify.run_chain(list(bundle.slices[d:]), device.trunks[d - 1], verify.litert_runner).logits
    device_tier = _DeviceTier(bundle, deadline_ms)
    upper = [(first, last, tier, bundle.policy(last)) for first, last, tier in bundle.tier_ranges(edge_slices)[1:]]
    out = []
    for n in range(len(images)):
        z = [per_exit[n] for per_exit in logits]
        local, spent = device_tier.decide(z)
        if local is not None:
            out.append(local)
            continue
        if bandwidth is not None:
            bps = round(bandwidth[n % len(bandwidth)])
            send_us = 8e6 * device_tier.offload_bytes(n + 1, spent, device.trunks[d - 1][n]) / max(bps, 1)
            device_tier.edge.observe(bps, 0)
            if spent + send_us >= device_tier.clock.budget_us:  # the edge's answer comes too late
                out.append(replace(device_tier.deepest(z), fallback=True))
                continue
        out.append(_decide_upper(upper, z))
    return out


class _DeviceTier:
    """The firmware's decisions over device exits, given every exit's logits of one sample."""

    def __init__(self, bundle: Bundle, deadline_ms: float) -> None:
        self.bundle = bundle
        self.policy = bundle.device_policy()
        self.clock = DeviceClock.of(bundle, deadline_ms)
        self.deadline_us = int(deadline_ms * 1e3)
        self.can_offload = bundle.device_slices < len(bundle.slices)
        self.edge = EdgeView()

    def deepest(self, logits: list[np.ndarray]) -> Decision:
        """The answer of the last device exit."""
        k = len(self.clock.slice_us) - 1
        return Decision(int(np.argmax(logits[k])), self.policy.confidence_q15(k, logits[k]), k + 1, int(Tier.DEVICE))

    def offload_bytes(self, request_id: int, spent_us: int, trunk: np.ndarray) -> int:
        """Wire bytes of the simulator's OFFLOAD after ``spent_us`` on the device."""
        k = len(self.clock.slice_us) - 1
        info = self.bundle.slices[k].trunk
        left, energy = max(self.deadline_us - spent_us, 0), self.clock.energy_uj(spent_us)
        message = Offload(k + 1, info.shape, info.scale, info.zero_point, spent_us, energy, left, trunk.tobytes())
        return len(encode(message, request_id))

    def decide(self, logits: list[np.ndarray]) -> tuple[Decision | None, int]:
        """The device's answer (None when it offloads) and the device time spent."""
        spent = 0
        for k, us in enumerate(self.clock.slice_us):
            z = logits[k]
            spent += us
            state = self.clock.state(k, z, spent, self.can_offload, self.edge)
            local = Decision(int(np.argmax(z)), self.policy.confidence_q15(k, z), k + 1, int(Tier.DEVICE))
            if self.policy.decide_device(state) == EXIT:
                return local, spent
            if spent >= self.clock.budget_us:  # eecore.c run_device: the budget passed, answer with the flag
                return replace(local, fallback=True), spent
        return (None if self.can_offload else local), spent


def _decide_upper(policies: list, logits: list[np.ndarray]) -> Decision:
    for first, last, tier, policy in policies:
        for k in range(first - 1, last):
            if policy.decide(k, logits[k]) == EXIT:
                return Decision(int(np.argmax(logits[k])), policy.confidence_q15(k, logits[k]), k + 1, int(tier))
    raise AssertionError("the last exit always answers")
