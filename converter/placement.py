"""Which slices run on the device: the longest prefix that fits the board's flash and RAM.

Flash holds the device slices' flatbuffers beside the firmware's reserve. RAM holds one
arena shared by all device slices (the largest one), the raw input, the hand-off buffer
between slices, the offload frame buffer, and the firmware's reserve.
"""

from __future__ import annotations

from dataclasses import dataclass

from converter.boards import Board
from converter.errors import ConvertError

# Offload frame beyond the tensor: COBS overhead, header, quantization fields and CRC.
FRAME_OVERHEAD_BYTES = 64


@dataclass(frozen=True)
class SliceNeeds:
    """What one int8 slice needs on a device."""

    flatbuffer_bytes: int
    arena_bytes: int
    input_bytes: int
    output_bytes: int  # its trunk activation (0 for the last slice)


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
    handoff = max(n.output_bytes for n in on_device)
    offload = max(max(n.input_bytes, n.output_bytes) for n in on_device) + FRAME_OVERHEAD_BYTES
    ram = max(n.arena_bytes for n in on_device) + on_device[0].input_bytes + handoff + offload
    flash = sum(n.flatbuffer_bytes for n in on_device)
    return Fit(device_slices, flash, board.model_flash_bytes, ram, board.model_ram_bytes)


def place(needs: list[SliceNeeds], board: Board, forced: int | None = None) -> Fit:
    """The longest fitting prefix, or exactly ``forced`` slices (error if they do not fit)."""
    if board.tier != "device":
        raise ConvertError(f"board {board.name!r} is a {board.tier} profile; build for a device board")
    if forced is not None:
        if not 0 <= forced <= len(needs):
            raise ConvertError(f"--device-slices {forced}: the model has {len(needs)} slices (0..{len(needs)})")
        result = fit(needs, board, forced)
        if not result.ok:
            raise ConvertError(_shortfall(needs, board, forced))
        return result
    best = fit(needs, board, 0)
    for d in range(1, len(needs) + 1):
        candidate = fit(needs, board, d)
        if not candidate.ok:
            break
        best = candidate
    return best


def _shortfall(needs: list[SliceNeeds], board: Board, forced: int) -> str:
    breaking = next(d for d in range(1, forced + 1) if not fit(needs, board, d).ok)
    result = fit(needs, board, forced)
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
    return (
        f"--device-slices {forced} does not fit {board.name}: {'; '.join(parts)}. Slice {breaking} is the first "
        f"that breaks the budget; use --device-slices {breaking - 1} or fewer, or a smaller model."
    )
