"""The same samples without any link: the int8 chain and the tiers' policies, as the reference answers.

Device slices run in TFLite Micro (as in the simulator), the others in LiteRT's reference
kernels (as on the edge and cloud). The device decides with its own policy (the bundle's
thresholds or its exported learned policy) on the simulated device's clock and budget, and
answers with the fallback flag where that budget passes before an exit answers; the upper
tiers decide with the threshold policy, as the bridge and the cloud do.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from contracts.protocol import Tier
from converter import verify
from host.bundle import Bundle
from host.simulator import DEFAULT_DEADLINE_MS, DeviceClock
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
    bundle: Bundle, images: np.ndarray, edge_slices: int | None = None, deadline_ms: float = DEFAULT_DEADLINE_MS
) -> list[Decision]:
    """One decision per uint8 NHWC image, exactly as the tiers take them over a perfect link."""
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
        out.append(device_tier.decide(z) or _decide_upper(upper, z))
    return out


class _DeviceTier:
    """The firmware's decisions over device exits, given every exit's logits of one sample."""

    def __init__(self, bundle: Bundle, deadline_ms: float) -> None:
        self.policy = bundle.device_policy()
        self.clock = DeviceClock.of(bundle, deadline_ms)
        self.can_offload = bundle.device_slices < len(bundle.slices)

    def decide(self, logits: list[np.ndarray]) -> Decision | None:
        """The device's answer, or None when it offloads."""
        spent = 0
        for k, us in enumerate(self.clock.slice_us):
            z = logits[k]
            spent += us
            state = self.clock.state(k, z, spent, self.can_offload)
            local = Decision(int(np.argmax(z)), self.policy.confidence_q15(k, z), k + 1, int(Tier.DEVICE))
            if self.policy.decide_device(state) == EXIT:
                return local
            if spent >= self.clock.budget_us:  # eecore.c run_device: the budget passed, answer with the flag
                return replace(local, fallback=True)
        return None if self.can_offload else local


def _decide_upper(policies: list, logits: list[np.ndarray]) -> Decision:
    for first, last, tier, policy in policies:
        for k in range(first - 1, last):
            if policy.decide(k, logits[k]) == EXIT:
                return Decision(int(np.argmax(logits[k])), policy.confidence_q15(k, logits[k]), k + 1, int(tier))
    raise AssertionError("the last exit always answers")
