"""Run the chained int8 slices in TFLite Micro and in LiteRT's reference kernels.

Raw uint8 pixels enter slice 1 through a per-channel lookup table (the same table the
firmware uses), each slice's int8 trunk activation feeds the next slice unchanged, and
every exit's int8 logits are kept.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from converter import flatbuf
from converter.intslice import IntSlice
from converter.quiet import descriptors_to
from earlyexit.console import bar

PROBE_ARENA = 8 * 1024 * 1024


def input_lut(mean: tuple[float, ...], std: tuple[float, ...], scale: float, zero_point: int) -> np.ndarray:
    """(C, 256) int8: the quantized, normalized value of every raw pixel value per channel."""
    v = np.arange(256, dtype=np.float64) / 255.0
    table = [(v - m) / s / scale + zero_point for m, s in zip(mean, std)]
    return np.clip(np.floor(np.array(table) + 0.5), -128, 127).astype(np.int8)


def quantize_images(images: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """uint8 NHWC -> int8 NHWC through the per-channel table."""
    return lut[np.arange(images.shape[-1]), images]


@dataclass
class ChainOutputs:
    """Per exit: int8 logits (N, C); per boundary: int8 trunk activations (N, H, W, C)."""

    logits: list[np.ndarray]
    trunks: list[np.ndarray]


def _c_stderr_of(fn: Callable[[], None]) -> str:
    """What ``fn`` writes to C-level stderr (TFLM's reports go there, not to Python)."""
    with tempfile.TemporaryFile(mode="w+") as capture:
        with descriptors_to(capture, (2,)):
            fn()
        capture.seek(0)
        return capture.read()


def _tflm(data: bytes, arena: int):
    from tflite_micro.python.tflite_micro import runtime

    return runtime.Interpreter.from_bytes(data, arena_size=arena)


def _allocation(report: str, what: str) -> int:
    found = re.search(rf"Arena allocation {what} (\d+) bytes", report)
    if not found:
        raise RuntimeError(f"TFLM printed no allocation {what}: {report[:200]!r}")
    return int(found.group(1))


def arena_bytes(data: bytes) -> tuple[int, int, int]:
    """(bytes TFLM's recording allocator used, arena size to give the firmware, of the used bytes those in the
    arena's persistent tail: tensor and node structs, op data, which live as long as the interpreter).

    The firmware arena adds a margin to what the x86-64 interpreter used: 25 % (pointers
    are smaller on a 32-bit MCU, but CMSIS-NN kernels ask for scratch buffers) and at
    least the memory planner's working space while it plans (~64 B per tensor + 1 KB),
    which the report leaves out. Probing sizes instead is unsafe: this TFLM build crashes
    on some too-small arenas.
    """
    report = _c_stderr_of(_tflm(data, PROBE_ARENA).print_allocations)
    used = _allocation(report, "total")
    margin = max(used // 4, 1024 + 64 * flatbuf.num_tensors(data))
    return used, (used + margin + 15) // 16 * 16, _allocation(report, "tail")


Runner = Callable[[np.ndarray], list[np.ndarray]]


def tflm_runner(s: IntSlice) -> Runner:
    """Runs ``s`` in TFLM with exactly the arena the firmware gets."""
    interp = _tflm(s.tflite, arena_bytes(s.tflite)[1])
    n_out = 1 if s.trunk is None else 2

    def run(x: np.ndarray) -> list[np.ndarray]:
        interp.set_input(x, 0)
        interp.invoke()
        return [interp.get_output(i).copy() for i in range(n_out)]

    return run


def litert_runner(s: IntSlice, optimized: bool = False) -> Runner:
    """Runs ``s`` in LiteRT: reference kernels (bit-exact with TFLM), or its optimized ones on one thread
    (several times faster; int8 results may differ from TFLM's in the last bit)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    kind = OpResolverType.AUTO if optimized else OpResolverType.BUILTIN_REF
    interp = Interpreter(model_content=s.tflite, experimental_op_resolver_type=kind, num_threads=1)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]["index"]
    outs = [d["index"] for d in interp.get_output_details()]

    def run(x: np.ndarray) -> list[np.ndarray]:
        interp.set_tensor(inp, x)
        interp.invoke()
        return [interp.get_tensor(i).copy() for i in outs]

    return run


def run_chain(
    slices: list[IntSlice],
    x_int8: np.ndarray,
    make_runner: Callable[[IntSlice], Runner],
    name: str = "",
    progress: bool | None = False,
) -> ChainOutputs:
    """Chain ``slices`` over every sample of ``x_int8`` (N, H, W, C) with one runner kind (called ``name``).

    Slice by slice: slice k runs on every sample's slice k-1 activation, as it would one sample at a time.
    """
    logits, trunks = [], []
    h = x_int8[:, None]  # (N, 1, H, W, C): one batch-1 input per sample
    with bar(total=len(slices) * len(x_int8), progress=progress, unit="inference") as shown:
        for k, s in enumerate(slices):
            shown.set_description(f"verify slice {k + 1}/{len(slices)} in {name}")
            run = make_runner(s)
            out = np.empty((len(x_int8), s.logits.shape[1]), np.int8)
            nxt = None if s.trunk is None else np.empty((len(x_int8), *s.trunk.shape), np.int8)
            for n, sample in enumerate(h):
                by_rank = {o.ndim: o for o in run(sample)}
                out[n] = by_rank[2][0]
                if nxt is not None:
                    nxt[n] = by_rank[4]
                shown.update()
            logits.append(out)
            if nxt is not None:
                trunks.append(nxt[:, 0])
                h = nxt
    return ChainOutputs(logits, trunks)
