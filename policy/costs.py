"""What every action costs: compute per slice and tier, transfers per offload.

Built from a build's manifest (measured slice sizes and placement) or, without one, from
the checkpoint's profile with the converter's placement rule applied to int8 estimates.
Measured per-slice device times (QEMU instruction counts, hardware timings) replace the
MAC-based estimates when given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from contracts import boards
from contracts.manifest import board_profile, read_manifest
from contracts.placement import SliceNeeds, place
from contracts.protocol import RESULT_FRAME_BYTES, Offload
from earlyexit.checkpoint import Checkpoint
from earlyexit.profile import exit_costs

TIERS = ("device", "edge", "cloud")


def offload_frame_bytes(tensor_bytes: int, rank: int = 4) -> int:
    """Worst-case wire size of an OFFLOAD frame (docs/protocol.md)."""
    return Offload.frame_bytes(tensor_bytes, rank)


@dataclass(frozen=True)
class CostModel:
    """Per slice k (0-based) and tier; per boundary k (after slice k) for transfers."""

    macs: tuple[int, ...]  # per slice
    trunk_bytes: tuple[int, ...]  # activation after slice k (0 for the last)
    device_slices: int  # how many slices the device can run
    tiers: tuple[boards.Board, ...]  # device, edge[, cloud]
    device_seconds: tuple[float, ...] | None = None  # measured per-slice device times

    @property
    def num_exits(self) -> int:
        return len(self.macs)

    @property
    def top_tier(self) -> int:
        return len(self.tiers) - 1

    def compute_seconds(self, k: int, tier: int) -> float:
        if tier == 0 and self.device_seconds is not None:
            return self.device_seconds[k]
        return self.tiers[tier].seconds_for(self.macs[k])

    def compute_energy_mj(self, k: int, tier: int) -> float:
        """Device battery energy of running slice k on ``tier`` (upper tiers cost the device nothing)."""
        return self.compute_seconds(k, 0) * self.tiers[0].active_power_mw if tier == 0 else 0.0

    def price(self, k: int, tier: int) -> float:
        return self.tiers[tier].price_per_inference if tier > 0 else 0.0

    def transfer(self, k: int, tier: int, bandwidth_bps: float) -> tuple[float, float, int]:
        """(seconds, device energy mJ, bytes) to send boundary k's activation from ``tier`` up one.

        The device's own link runs at ``bandwidth_bps`` (the state's bandwidth now); links
        further up run at their profile's bandwidth.
        """
        link = self.tiers[tier].links[0]
        size = offload_frame_bytes(self.trunk_bytes[k])
        bps = bandwidth_bps if tier == 0 else link.bandwidth_bps
        seconds = link.latency_ms / 1e3 + _bits_time(8 * size, bps)
        energy = (size * link.energy_per_byte_uj + link.energy_per_message_uj) / 1e3 if tier == 0 else 0.0
        return seconds, energy, size

    def answer_seconds(self, tier: int, bandwidth_bps: float) -> float:
        """Time for a RESULT to travel back down from ``tier`` to the device."""
        total = 0.0
        for t in range(tier):
            link = self.tiers[t].links[0]
            total += link.latency_ms / 1e3 + _bits_time(
                8 * RESULT_FRAME_BYTES, bandwidth_bps if t == 0 else link.bandwidth_bps
            )
        return total

    @cached_property
    def energy_unit_mj(self) -> float:
        """Device energy of one all-local inference (every device slice once): the unit of energy in rewards."""
        return sum(self.compute_energy_mj(k, 0) for k in range(max(1, self.device_slices)))


def _bits_time(bits: int, bps: float) -> float:
    """Seconds to send ``bits`` at ``bps``; an outage (0 bit/s) never delivers."""
    return bits / bps if bps > 0 else math.inf


def _tier_chain(device: boards.Board, with_cloud: bool) -> tuple[boards.Board, ...]:
    chain = [device]
    while chain[-1].links and len(chain) < (3 if with_cloud else 2):
        chain.append(boards.load(chain[-1].links[0].to))
    return tuple(chain)


def from_manifest(path: Path, with_cloud: bool = False) -> CostModel:
    """Costs from a build's manifest.json (its board, measured slice sizes and placement)."""
    manifest = read_manifest(path)
    slices = manifest["slices"]
    trunk = tuple(math.prod(s["outputs"]["trunk"]["shape"]) if "trunk" in s["outputs"] else 0 for s in slices)
    board = board_profile(Path(path).parent, manifest)  # the profile it was built for, also a user's own
    macs = [s["macs"] for s in slices]
    return from_slices(macs, trunk, manifest["device_slices"], board, with_cloud, manifest.get("link"))


def from_slices(
    macs: list[int],
    trunk_bytes: tuple[int, ...],
    device_slices: int,
    board: str,
    with_cloud: bool = False,
    link: str | None = None,
) -> CostModel:
    """Costs of a placed chain: MACs and trunk bytes per slice (0 for the last), device slices, board and link."""
    chain = _tier_chain(boards.load(board, link), with_cloud)
    return CostModel(tuple(macs), tuple(trunk_bytes), device_slices, chain)


def from_checkpoint(ckpt: Checkpoint, board: str, with_cloud: bool = False, link: str | None = None) -> CostModel:
    """Costs from the checkpoint's graph; placement estimated from int8 sizes.

    Estimates: flatbuffer = int8 weights + 10 % + 2 KB; TFLM arena = 1.25 x the peak
    activation bytes + 2 KB (the converter's measured figures replace these via --bundle).
    """
    costs = exit_costs(ckpt.net)
    arch = ckpt.arch
    needs, inputs = [], arch.in_channels * arch.input_size**2
    for c in costs:
        weights = c.stage.int8_weight_bytes + c.head.int8_weight_bytes
        trunk = math.prod(c.stage.output_shape)
        arena = int(c.peak_activation_bytes * 1.25) + 2048
        needs.append(SliceNeeds(int(weights * 1.1) + 2048, arena, inputs, trunk, arch.num_classes))
        inputs = trunk
    device = boards.load(board, link)
    return CostModel(
        macs=tuple(c.stage.macs + c.head.macs for c in costs),
        trunk_bytes=tuple(n.output_bytes if k < len(needs) - 1 else 0 for k, n in enumerate(needs)),
        device_slices=place(needs, device).device_slices,
        tiers=_tier_chain(device, with_cloud),
    )
