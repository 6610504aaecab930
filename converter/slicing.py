"""Split a checkpoint at its exits and convert every slice to full-int8 TFLite.

Slice k = stage k + exit head k: input = slice k-1's trunk activation, outputs = exit-k
logits and (except for the last slice) its own trunk activation. Slices are calibrated on
real samples propagated through the preceding float slices, and slice k+1's input
quantization is set to slice k's output quantization, so the int8 tensor passes unchanged.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from converter import flatbuf
from converter.errors import ConvertError
from converter.intslice import IntSlice
from converter.tflite import TFLM_OPS, export_onnx, onnx_to_int8
from earlyexit.checkpoint import Checkpoint
from earlyexit.console import bar
from earlyexit.model import Slice
from earlyexit.transforms import to_input

# Boundary scales calibrated on the same samples agree to ~1e-7; more means a real mismatch.
HANDOFF_TOLERANCE = 1e-4


def _split_outputs(
    data: bytes, num_classes: int, last: bool, name: str
) -> tuple[flatbuf.TensorInfo, flatbuf.TensorInfo | None]:
    """Map outputs by shape (onnx2tf does not keep the ONNX order)."""
    outs = flatbuf.outputs(data)
    logits = [o for o in outs if o.shape == (1, num_classes)]
    trunk = [o for o in outs if len(o.shape) == 4]
    if len(logits) != 1 or len(trunk) != (0 if last else 1) or len(outs) != (1 if last else 2):
        raise ConvertError(
            f"{name}: unexpected outputs {[o.shape for o in outs]}; expected logits (1, {num_classes})"
            + ("" if last else " and one NHWC activation")
        )
    return logits[0], (trunk[0] if trunk else None)


def _check_ops(data: bytes, name: str) -> tuple[str, ...]:
    ops = flatbuf.ops(data)
    bad = [f"{op} (layer {layer})" for op, layer in ops if op not in TFLM_OPS]
    if bad:
        raise ConvertError(
            f"{name}: {', '.join(bad)} cannot run in TFLite Micro's op resolver (supported: "
            f"{', '.join(sorted(TFLM_OPS))}). Replace the layers that produce them and retrain."
        )
    return tuple(op for op, _ in ops)


def convert(
    ckpt: Checkpoint,
    calibration: np.ndarray,
    cache_dir: Path,
    progress: bool | None = False,
) -> list[IntSlice]:
    """Convert every slice of ``ckpt``; ``calibration`` is uint8 NHWC images; ``progress``: a bar on stderr."""
    if len(calibration) == 0:
        raise ConvertError("no calibration samples: pass --data-dir with the model's dataset, or use a bundled model")
    net = ckpt.net.eval()
    x = to_input(calibration, ckpt.mean, ckpt.std)
    out: list[IntSlice] = []
    n = net.arch.num_exits
    with tempfile.TemporaryDirectory() as tmp, bar(total=n, progress=progress, unit="slice") as shown:
        for k in range(n):
            name = f"slice {k + 1}"
            shown.set_description(f"convert {name}/{n} to int8 (ONNX, onnx2tf, TFLite calibration)")
            module = Slice(net, k)
            onnx_path = Path(tmp) / f"slice{k + 1}.onnx"
            export_onnx(module, tuple(x.shape[1:]), onnx_path)
            data = flatbuf.without_output_transposes(onnx_to_int8(onnx_path, x.permute(0, 2, 3, 1).numpy(), cache_dir))
            ops = _check_ops(data, name)
            logits, trunk = _split_outputs(data, net.arch.num_classes, module.last, name)
            if out:
                prev = out[-1].trunk
                here = flatbuf.inputs(data)[0]
                if abs(here.scale - prev.scale) > HANDOFF_TOLERANCE * prev.scale or here.zero_point != prev.zero_point:
                    raise ConvertError(
                        f"{name}: input quantization (scale {here.scale:.8g}, zero point {here.zero_point}) differs "
                        f"from slice {k}'s output (scale {prev.scale:.8g}, zero point {prev.zero_point}) beyond "
                        "rounding: calibrate both on the same samples."
                    )
                data = flatbuf.with_input_quantization(data, prev.scale, prev.zero_point)
            out.append(IntSlice(k, data, ops, flatbuf.inputs(data)[0], logits, trunk))
            with torch.no_grad():
                y = module(x)
            x = y[1] if isinstance(y, tuple) else x
            shown.update()
    return out
