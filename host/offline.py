"""The same samples without any link: the int8 chain and the tiers' policies, as the reference answers.

Device slices run in TFLite Micro (as in the simulator), the others in LiteRT's reference
kernels (as on the edge and cloud); every tier decides with the threshold policy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from converter import verify
from converter.threshold import EXIT
from host.bundle import Bundle


@dataclass(frozen=True)
class Decision:
    """Where and what a sample answers: class, Q15 confidence, exit (1-based), tier."""

    label: int
    confidence_q15: int
    exit: int
    tier: int


def evaluate(bundle: Bundle, images: np.ndarray, edge_slices: int | None = None) -> list[Decision]:
    """One decision per uint8 NHWC image, exactly as the tiers take them over a perfect link."""
    d = bundle.device_slices
    x = verify.quantize_images(images, bundle.input_lut())
    device = verify.run_chain(list(bundle.slices[:d]), x, verify.tflm_runner)
    logits = list(device.logits)
    if d < len(bundle.slices):
        logits += verify.run_chain(list(bundle.slices[d:]), device.trunks[d - 1], verify.litert_runner).logits
    policies = [(first, last, tier, bundle.policy(last)) for first, last, tier in bundle.tier_ranges(edge_slices)]
    return [_decide(policies, [z[n] for z in logits]) for n in range(len(images))]


def _decide(policies: list, logits: list[np.ndarray]) -> Decision:
    for first, last, tier, policy in policies:
        for k in range(first - 1, last):
            if policy.decide(k, logits[k]) == EXIT:
                return Decision(int(np.argmax(logits[k])), policy.confidence_q15(k, logits[k]), k + 1, int(tier))
    raise AssertionError("the last exit always answers")
