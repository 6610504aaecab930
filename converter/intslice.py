"""A converted int8 slice as plain data: importable without the training stack (no torch).

The converter produces these (``converter.slicing``); the host and the verifier only read them.
"""

from __future__ import annotations

from dataclasses import dataclass

from converter.flatbuf import TensorInfo


@dataclass(frozen=True)
class IntSlice:
    """One converted slice and its int8 interface."""

    index: int
    tflite: bytes
    ops: tuple[str, ...]
    input: TensorInfo
    logits: TensorInfo
    trunk: TensorInfo | None
