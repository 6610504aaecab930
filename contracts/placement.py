"""Which slices run on the device: the longest prefix that fits the board's flash and RAM.

A build with nothing on the device stops (unless asked for), and one whose device slices take longer
than the firmware's default deadline is warned about: both say by how much and what to change.

Flash holds the device slices' flatbuffers beside the firmware's reserve. RAM holds one
arena shared by all device slices (the largest one), the device core's state (``eec_ctx`` in
firmware/lib/eecore/eecore.h: frame buffers and hand-off buffers, sized from the model) and
the firmware's reserve (OS, interpreter, stack: the board profile).
"""

from __future__ import annotations

from dataclasses import dataclass

from contracts.boards import Board
from contracts.protocol import frame_bytes

# Mirrors of eecore.h constants (tests compare core_ram_bytes with the compiled sizeof).
_OFFLOAD_HEAD = 2 + 2 * 8 + 4 + 1 + 12  # exit, rank, dims up to rank 8, scale, zero point, 3 x u32
_HELLO = 2 + 1 + 255 + 32  # fw version, board name length, name, model hash
_ERROR = 2 + 1 + 255  # request id, code, message
_INFER_HEAD = 6  # request id, h, w, c
# The firmwares' default deadline per request and the margin before it at which the device answers itself
# (eecore.h EEC_DEFAULT_DEADLINE_US, EEC_DEFAULT_MARGIN_US).
DEFAULT_DEADLINE_US = 500_000
FALLBACK_MARGIN_US = 5_000
# eec_ctx's fixed members (callbacks, config, counters, reader and request state): measured on x86-64,
# an upper bound for 32-bit targets.
CORE_STATE_BYTES = 192


class PlacementError(ValueError):
    """The board is no device, or the slices forced onto it do not fit; the message says what to change."""


def core_ram_bytes(input_bytes: int, max_trunk_bytes: int, num_classes: int, device_slices: int) -> int:
    """``sizeof(eec_ctx)`` for a model: receive frame, two hand-off buffers, outgoing payload and frame."""
    act = max(input_bytes, max_trunk_bytes)
    rx = max(_INFER_HEAD + input_bytes, _ERROR)
    tx = max(_OFFLOAD_HEAD + act, _HELLO, 1 + 5 * device_slices)
    return frame_bytes(rx) + 2 * act + tx + frame_bytes(tx) + num_classes + 5 * device_slices + CORE_STATE_BYTES


@dataclass(frozen=True)
class SliceNeeds:
    """What one int8 slice needs on a device."""

    flatbuffer_bytes: int
    arena_bytes: int
    input_bytes: int
    output_bytes: int  # its trunk activation (0 for the last slice)
    num_classes: int  # its exit's int8 logits
    arena_tail_bytes: int = 0  # of arena_bytes, the persistent part its kept interpreter holds on to


def shared_arena_bytes(needs: list[SliceNeeds]) -> int:
    """The one TFLM arena of the device slices when every slice keeps its interpreter (firmware/src/tflm_runner.cpp):
    one allocator, each slice's persistent tail stacked, the non-persistent head shared (the largest)."""
    if not needs:
        return 0
    return max(n.arena_bytes - n.arena_tail_bytes for n in needs) + sum(n.arena_tail_bytes for n in needs)


@dataclass(frozen=True)
class Fit:
    """Resource use of running the first ``device_slices`` slices on a board."""

    device_slices: int
    flash_needed: int
    flash_available: int
    ram_needed: int
    ram_available: int

    @property
    def ok(self) -> bool:
        return self.flash_needed <= self.flash_available and self.ram_needed <= self.ram_available


def fit(needs: list[SliceNeeds], board: Board, device_slices: int) -> Fit:
    """Flash and RAM needed for ``device_slices`` slices, against what the board leaves."""
    on_device = needs[:device_slices]
    if not on_device:
        return Fit(0, 0, board.model_flash_bytes, 0, board.model_ram_bytes)
    core = core_ram_bytes(
        on_device[0].input_bytes, max(n.output_bytes for n in on_device), on_device[0].num_classes, device_slices
    )
    ram = shared_arena_bytes(on_device) + core
    flash = sum(n.flatbuffer_bytes for n in on_device)
    return Fit(device_slices, flash, board.model_flash_bytes, ram, board.model_ram_bytes)


def place(needs: list[SliceNeeds], board: Board, forced: int | None = None) -> Fit:
    """The longest fitting prefix, or exactly ``forced`` slices (error if they do not fit)."""
    if board.tier != "device":
        raise PlacementError(f"board {board.name!r} is a {board.tier} profile; build for a device board")
    if forced is not None:
        if not 0 <= forced <= len(needs):
            raise PlacementError(f"--device-slices {forced}: the model has {len(needs)} slices (0..{len(needs)})")
        result = fit(needs, board, forced)
        if not result.ok:
            raise PlacementError(_shortfall(needs, board, forced))
        return result
    best = fit(needs, board, 0)
    for d in range(1, len(needs) + 1):
        candidate = fit(needs, board, d)
        if not candidate.ok:
            break
        best = candidate
    return best


def _short(result: Fit, board: Board) -> str:
    """The resources ``result`` lacks on ``board``, each with bytes short, needed and left."""
    parts = []
    if result.flash_needed > result.flash_available:
        parts.append(
            f"flash short by {result.flash_needed - result.flash_available:,} bytes "
            f"(needs {result.flash_needed:,}, {board.name} leaves {result.flash_available:,} after "
            f"the firmware's {board.reserve_flash_bytes:,})"
        )
    if result.ram_needed > result.ram_available:
        parts.append(
            f"RAM short by {result.ram_needed - result.ram_available:,} bytes "
            f"(needs {result.ram_needed:,}, {board.name} leaves {result.ram_available:,} after "
            f"the firmware's {board.reserve_ram_bytes:,})"
        )
    return "; ".join(parts)


def _shortfall(needs: list[SliceNeeds], board: Board, forced: int) -> str:
    breaking = next(d for d in range(1, forced + 1) if not fit(needs, board, d).ok)
    return (
        f"--device-slices {forced} does not fit {board.name}: {_short(fit(needs, board, forced), board)}. "
        f"Slice {breaking} is the first that breaks the budget; use --device-slices {breaking - 1} or fewer, "
        "or a smaller model."
    )


def empty_device(needs: list[SliceNeeds], board: Board, forced: int | None) -> str:
    """Why a placement puts nothing on the device, by how many bytes, and what to do."""
    anyway = "or pass --allow-empty-device to build an edge-only bundle (`python -m host` needs a device slice)"
    if forced == 0:
        return f"--device-slices 0 leaves {board.name} with nothing to run: use --device-slices 1 or more, {anyway}."
    return (
        f"no slice fits {board.name}: slice 1 alone has {_short(fit(needs, board, 1), board)}. Use a board with "
        f"more memory or a model with a smaller first block, {anyway}."
    )


def over_deadline(slice_us: list[int], board: Board, deadline_us: int = DEFAULT_DEADLINE_US) -> str | None:
    """None when the device slices' estimated times (microseconds each) fit the firmware's budget; else
    by how many milliseconds they exceed it and what to change."""
    budget = max(deadline_us - FALLBACK_MARGIN_US, 0)
    done = [sum(slice_us[: d + 1]) for d in range(len(slice_us))]
    if not done or done[-1] < budget:  # eecore.c answers with the fallback flag once elapsed >= budget
        return None
    keep = sum(t < budget for t in done)
    span = "slice 1" if len(done) == 1 else f"slices 1-{len(done)}"
    past = f"a request that goes past exit {keep}" if keep else "every request"
    fewer = f"--device-slices {keep} ({done[keep - 1] / 1e3:,.0f} ms), " if keep else ""
    longer = -(-(done[-1] + FALLBACK_MARGIN_US + 1) // 10_000) * 10_000  # rounded up to 10 ms
    return (
        f"the device part ({span}) takes an estimated {done[-1] / 1e3:,.0f} ms on {board.name}, "
        f"{(done[-1] - budget) / 1e3:,.0f} ms over the firmware's default deadline of {deadline_us / 1e3:,.0f} ms "
        f"(less its {FALLBACK_MARGIN_US / 1e3:,.0f} ms margin): {past} overruns it in slice {keep + 1} "
        f"and answers from there with the fallback flag. Use {fewer}a faster board, or a longer deadline "
        f"(-DEEFW_DEADLINE_US={longer}u in the firmware, --deadline-ms {longer / 1e3:g} for `python -m host`)."
    )
