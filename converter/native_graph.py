"""Lower an int8 .tflite slice to the native kernels' ops with every parameter precomputed.

The arithmetic follows TFLite's int8 quantization spec as TFLite Micro's reference kernels
implement it: per-channel (conv) or per-tensor (fully connected) real multipliers computed in
double precision from the float32 scales and split into a Q31 multiplier and an exponent
(:func:`quantize_multiplier`); activation clamps from the output quantization; SAME padding as
TFLite computes it. firmware/lib/eenative/eenative.h documents the kernels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from tflite_micro.python.tflite_micro import runtime

from converter.errors import ConvertError

_fb = runtime.schema_fb
_OP_NAMES = {v: k for k, v in vars(_fb.BuiltinOperator).items() if not k.startswith("_")}
_SAME = _fb.Padding.SAME
_INT8, _INT32 = _fb.TensorType.INT8, _fb.TensorType.INT32
# The layout-only ops: the output is the input's bytes under another shape.
ALIAS_OPS = ("RESHAPE", "SQUEEZE")


class NativeError(ConvertError):
    """A slice the native backend cannot compile (an op or a form of an op without a kernel)."""


@dataclass(frozen=True)
class Tensor:
    """An activation tensor of the slice: its id, shape and affine quantization."""

    index: int
    shape: tuple[int, ...]
    scale: float
    zero_point: int

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


@dataclass
class NativeOp:
    """One kernel call: ``kind`` names the C struct/function (conv, fc, ...), ``fields`` its scalars."""

    kind: str
    layer: str
    inputs: list[int]  # activation tensor ids
    output: int
    fields: dict[str, object] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)  # weights, bias, mult, shift
    scratch_bytes: int = 0  # the SIMD path's int16 column (eenative.h)


@dataclass
class NativeGraph:
    """A slice as a sequence of native ops over activation tensors."""

    tensors: dict[int, Tensor]
    ops: list[NativeOp]
    input: int
    outputs: list[int]


def round_half_away(x: float) -> int:
    """C's round(): ties away from zero."""
    return int(math.floor(abs(x) + 0.5)) * (1 if x >= 0 else -1)


def quantize_multiplier(real: float) -> tuple[int, int]:
    """``real`` as a Q31 multiplier and a power-of-two exponent (TFLite's QuantizeMultiplier)."""
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    fixed = round_half_away(q * (1 << 31))
    if fixed == 1 << 31:
        fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return fixed, shift


def activation_range(act: int, scale: float, zero_point: int) -> tuple[int, int]:
    """The int8 clamp of a fused activation on an output quantized with (scale, zero_point)."""

    def quantize(x: float) -> int:
        return zero_point + round_half_away(float(np.float32(x) / np.float32(scale)))

    kinds = _fb.ActivationFunctionType
    if act == kinds.NONE:
        return -128, 127
    if act == kinds.RELU:
        return max(-128, quantize(0.0)), 127
    if act == kinds.RELU6:
        return max(-128, quantize(0.0)), min(127, quantize(6.0))
    if act == kinds.RELU_N1_TO_1:
        return max(-128, quantize(-1.0)), min(127, quantize(1.0))
    raise NativeError(f"fused activation {act} has no int8 kernel")


def same_padding(size: int, kernel: int, stride: int, dilation: int, padding: int) -> tuple[int, int]:
    """(output size, leading padding) of one spatial axis, as TFLite computes them."""
    effective = (kernel - 1) * dilation + 1
    if padding == _SAME:
        out = (size + stride - 1) // stride
    else:
        out = (size - effective + stride) // stride
    return out, max(0, ((out - 1) * stride + effective - size) // 2)


class _Reader:
    """Access to one subgraph's tensors, constants and op options."""

    def __init__(self, data: bytes, name: str):
        self.model = runtime.convert_bytearray_to_object(bytearray(data))
        if len(self.model.subgraphs) != 1:
            raise NativeError(f"{name}: {len(self.model.subgraphs)} subgraphs; the native backend runs one")
        self.sg = self.model.subgraphs[0]
        self.name = name

    def op_name(self, op) -> str:
        code = runtime.get_builtin_code_from_operator_code(self.model.operatorCodes[op.opcodeIndex])
        return _OP_NAMES.get(code, "CUSTOM")

    def tensor_name(self, i: int) -> str:
        n = self.sg.tensors[i].name
        return n.decode() if isinstance(n, bytes) else str(n)

    def const(self, i: int, dtype) -> np.ndarray | None:
        t = self.sg.tensors[i]
        data = self.model.buffers[t.buffer].data
        if data is None or len(data) == 0:
            return None
        return np.frombuffer(bytes(data), dtype=dtype).reshape([int(d) for d in t.shape])

    def scales(self, i: int) -> np.ndarray:
        q = self.sg.tensors[i].quantization
        if q is None or q.scale is None or len(q.scale) == 0:
            raise NativeError(f"{self.name}: tensor {self.tensor_name(i)!r} is not quantized")
        return np.asarray(q.scale, dtype=np.float32)

    def activation(self, i: int) -> Tensor:
        t = self.sg.tensors[i]
        if t.type != _INT8:
            raise NativeError(f"{self.name}: tensor {self.tensor_name(i)!r} is not int8 (type {t.type})")
        scale = self.scales(i)
        if len(scale) != 1:
            raise NativeError(f"{self.name}: activation {self.tensor_name(i)!r} is not per-tensor quantized")
        zp = int(self.sg.tensors[i].quantization.zeroPoint[0])
        return Tensor(i, tuple(int(d) for d in t.shape), float(scale[0]), zp)


def _hwc(t: Tensor, what: str) -> dict[str, int]:
    if len(t.shape) != 4 or t.shape[0] != 1:
        raise NativeError(f"{what}: expected a batch-1 NHWC tensor, got shape {t.shape}")
    return {"h": t.shape[1], "w": t.shape[2], "c": t.shape[3]}


def _bias(r: _Reader, op, n: int) -> np.ndarray | None:
    if len(op.inputs) < 3 or op.inputs[2] < 0:
        return None
    b = r.const(op.inputs[2], np.int32)
    if b is None or b.size != n:
        raise NativeError(f"{r.name}: the bias of layer {r.tensor_name(op.outputs[0])!r} is not a constant int32[{n}]")
    return b.reshape(-1)


def _multipliers(in_scale: float, w_scales: np.ndarray, out_scale: float) -> tuple[np.ndarray, np.ndarray]:
    pairs = [quantize_multiplier(float(in_scale) * float(s) / float(out_scale)) for s in w_scales]
    return np.array([p[0] for p in pairs], np.int32), np.array([p[1] for p in pairs], np.int32)


def _conv_common(r: _Reader, op, x: Tensor, y: Tensor, kh: int, kw: int) -> dict[str, object]:
    o = op.builtinOptions
    out_h, pad_h = same_padding(x.shape[1], kh, o.strideH, o.dilationHFactor, o.padding)
    out_w, pad_w = same_padding(x.shape[2], kw, o.strideW, o.dilationWFactor, o.padding)
    if (out_h, out_w) != y.shape[1:3]:
        raise NativeError(f"{r.name}: layer {r.tensor_name(y.index)!r}: output {y.shape} is not ({out_h}, {out_w})")
    lo, hi = activation_range(o.fusedActivationFunction, y.scale, y.zero_point)
    return {
        "in": _hwc(x, r.name),
        "out": _hwc(y, r.name),
        "kh": kh,
        "kw": kw,
        "stride_h": o.strideH,
        "stride_w": o.strideW,
        "dil_h": o.dilationHFactor,
        "dil_w": o.dilationWFactor,
        "pad_h": pad_h,
        "pad_w": pad_w,
        "input_offset": -x.zero_point,
        "output_offset": y.zero_point,
        "act_min": lo,
        "act_max": hi,
    }


def _conv(r: _Reader, op, x: Tensor, y: Tensor) -> NativeOp:
    w = r.const(op.inputs[1], np.int8)
    if w is None or w.ndim != 4 or w.shape[3] != x.shape[3] or w.shape[0] != y.shape[3]:
        raise NativeError(f"{r.name}: CONV_2D {r.tensor_name(y.index)!r}: unsupported filter (grouped or not constant)")
    fields = _conv_common(r, op, x, y, w.shape[1], w.shape[2])
    mult, shift = _multipliers(x.scale, _per_channel(r, op.inputs[1], w.shape[0]), y.scale)
    arrays = {"weights": _word_padded(w), "mult": mult, "shift": shift}
    bias = _bias(r, op, w.shape[0])
    if bias is not None:
        arrays["bias"] = bias
    scratch = column_bytes(w.shape[1] * w.shape[2] * w.shape[3], x.shape[3] % 4 != 0)
    return NativeOp("conv", r.tensor_name(y.index), [x.index], y.index, fields, arrays, scratch)


def _word_padded(w: np.ndarray) -> np.ndarray:
    """Weights flattened, then zeros up to a whole word past the last row's last group of 4 (the SIMD
    dot products read rows of n values as ceil(n / 4) words)."""
    n = int(np.prod(w.shape[1:]))
    return np.concatenate([w.reshape(-1), np.zeros(-n % 4, np.int8)])


def column_bytes(n: int, staged: bool) -> int:
    """The SIMD path's scratch for patches of n values: a two-lane column of int16 (x + offset) in groups
    of 4 (4 B per value, n rounded up to a multiple of 4), plus an int8 staging copy of one patch when
    the values do not come in whole groups straight from the input (eenative.c)."""
    n4 = -(-n // 4) * 4
    return 4 * n4 + (n4 if staged else 0)


def _per_channel(r: _Reader, i: int, n: int) -> np.ndarray:
    s = r.scales(i)
    zp = np.asarray(r.sg.tensors[i].quantization.zeroPoint)
    if np.any(zp != 0):
        raise NativeError(f"{r.name}: weights {r.tensor_name(i)!r} are not symmetric (zero point != 0)")
    return np.broadcast_to(s, (n,)) if len(s) == 1 else s


def _depthwise(r: _Reader, op, x: Tensor, y: Tensor) -> NativeOp:
    w = r.const(op.inputs[1], np.int8)
    if w is None or w.ndim != 4 or w.shape[0] != 1 or w.shape[3] != y.shape[3]:
        raise NativeError(f"{r.name}: DEPTHWISE_CONV_2D {r.tensor_name(y.index)!r}: unsupported filter")
    fields = _conv_common(r, op, x, y, w.shape[1], w.shape[2])
    fields["depth_multiplier"] = y.shape[3] // x.shape[3]
    mult, shift = _multipliers(x.scale, _per_channel(r, op.inputs[1], w.shape[3]), y.scale)
    arrays = {"weights": w.reshape(-1), "mult": mult, "shift": shift}
    bias = _bias(r, op, w.shape[3])
    if bias is not None:
        arrays["bias"] = bias
    return NativeOp("depthwise", r.tensor_name(y.index), [x.index], y.index, fields, arrays)


def _fc(r: _Reader, op, x: Tensor, y: Tensor) -> NativeOp:
    w = r.const(op.inputs[1], np.int8)
    if w is None or w.ndim != 2 or x.size % w.shape[1] != 0:
        raise NativeError(f"{r.name}: FULLY_CONNECTED {r.tensor_name(y.index)!r}: unsupported weights")
    per_channel = len(r.scales(op.inputs[1])) > 1
    scales = _per_channel(r, op.inputs[1], w.shape[0])
    mult, shift = _multipliers(x.scale, scales if per_channel else scales[:1], y.scale)
    lo, hi = activation_range(op.builtinOptions.fusedActivationFunction, y.scale, y.zero_point)
    fields = {
        "in_depth": w.shape[1],
        "out_depth": w.shape[0],
        "batches": x.size // w.shape[1],
        "per_channel": int(per_channel),
        "input_offset": -x.zero_point,
        "output_offset": y.zero_point,
        "act_min": lo,
        "act_max": hi,
    }
    arrays = {"weights": _word_padded(w), "mult": mult, "shift": shift}
    bias = _bias(r, op, w.shape[0])
    if bias is not None:
        arrays["bias"] = bias
    return NativeOp("fc", r.tensor_name(y.index), [x.index], y.index, fields, arrays, column_bytes(w.shape[1], True))


def _pool(kind: str):
    def lower(r: _Reader, op, x: Tensor, y: Tensor) -> NativeOp:
        o = op.builtinOptions
        out_h, pad_h = same_padding(x.shape[1], o.filterHeight, o.strideH, 1, o.padding)
        out_w, pad_w = same_padding(x.shape[2], o.filterWidth, o.strideW, 1, o.padding)
        if (out_h, out_w) != y.shape[1:3] or (x.scale, x.zero_point) != (y.scale, y.zero_point):
            raise NativeError(f"{r.name}: pooling {r.tensor_name(y.index)!r}: unexpected output shape or quantization")
        if pad_h >= o.filterHeight or pad_w >= o.filterWidth:
            raise NativeError(f"{r.name}: pooling {r.tensor_name(y.index)!r}: a window lies wholly in the padding")
        lo, hi = activation_range(o.fusedActivationFunction, y.scale, y.zero_point)
        fields = {
            "in": _hwc(x, r.name),
            "out": _hwc(y, r.name),
            "kh": o.filterHeight,
            "kw": o.filterWidth,
            "stride_h": o.strideH,
            "stride_w": o.strideW,
            "pad_h": pad_h,
            "pad_w": pad_w,
            "act_min": lo,
            "act_max": hi,
        }
        return NativeOp(kind, r.tensor_name(y.index), [x.index], y.index, fields)

    return lower


def _pad(r: _Reader, op, x: Tensor, y: Tensor) -> NativeOp:
    p = r.const(op.inputs[1], np.int32)
    if p is None or p.shape != (4, 2) or p[0].any() or np.any(p < 0) or x.zero_point != y.zero_point:
        raise NativeError(f"{r.name}: PAD {r.tensor_name(y.index)!r}: only constant H/W/C padding is supported")
    value = y.zero_point
    if len(op.inputs) > 2 and op.inputs[2] >= 0:  # PADV2's constant
        c = r.const(op.inputs[2], np.int8)
        value = int(c.reshape(-1)[0]) if c is not None else value
    fields = {
        "in": _hwc(x, r.name),
        "out": _hwc(y, r.name),
        "before_h": int(p[1, 0]),
        "before_w": int(p[2, 0]),
        "before_c": int(p[3, 0]),
        "value": value,
    }
    return NativeOp("pad", r.tensor_name(y.index), [x.index], y.index, fields)


def mean_multiplier(in_scale: float, out_scale: float, count: int) -> tuple[int, int]:
    """The multiplier of input_scale / output_scale with 1 / count folded in, as TFLite folds it."""
    mult, shift = quantize_multiplier(float(in_scale) / float(out_scale))
    extra = min(count.bit_length() - 1, 32, 31 + shift)
    return (mult << extra) // count, shift - extra


def _mean(r: _Reader, op, x: Tensor, y: Tensor) -> NativeOp:
    axes = r.const(op.inputs[1], np.int32)
    if axes is None or sorted(int(a) for a in axes.reshape(-1)) != [1, 2] or len(x.shape) != 4:
        raise NativeError(f"{r.name}: MEAN {r.tensor_name(y.index)!r}: only the mean over H and W is supported")
    mult, shift = mean_multiplier(x.scale, y.scale, x.shape[1] * x.shape[2])
    fields = {
        "in": _hwc(x, r.name),
        "input_zero_point": x.zero_point,
        "output_zero_point": y.zero_point,
        "mult": mult,
        "shift": shift,
    }
    return NativeOp("mean", r.tensor_name(y.index), [x.index], y.index, fields)


ADD_LEFT_SHIFT = 20


def _add(r: _Reader, op, x: Tensor, y: Tensor) -> NativeOp:
    x2 = r.activation(op.inputs[1])
    if x.shape != x2.shape or x.shape != y.shape:
        raise NativeError(f"{r.name}: ADD {r.tensor_name(y.index)!r}: broadcasting is not supported")
    twice_max = 2 * float(max(np.float32(x.scale), np.float32(x2.scale)))
    m1, s1 = quantize_multiplier(float(x.scale) / twice_max)
    m2, s2 = quantize_multiplier(float(x2.scale) / twice_max)
    mo, so = quantize_multiplier(twice_max / ((1 << ADD_LEFT_SHIFT) * float(y.scale)))
    lo, hi = activation_range(op.builtinOptions.fusedActivationFunction, y.scale, y.zero_point)
    fields = {
        "size": y.size,
        "input1_offset": -x.zero_point,
        "input2_offset": -x2.zero_point,
        "output_offset": y.zero_point,
        "left_shift": ADD_LEFT_SHIFT,
        "input1_mult": m1,
        "input1_shift": s1,
        "input2_mult": m2,
        "input2_shift": s2,
        "output_mult": mo,
        "output_shift": so,
        "act_min": lo,
        "act_max": hi,
    }
    # the SIMD path's two 256-entry int32 tables of each input's rescaled term
    return NativeOp("add", r.tensor_name(y.index), [x.index, x2.index], y.index, fields, scratch_bytes=2 * 256 * 4)


SOFTMAX_DIFF_BITS = 5  # integer bits of the scaled differences (Q5.26)


def softmax_params(beta: float, in_scale: float) -> tuple[int, int, int]:
    """(multiplier, left shift, diff_min) of an int8 SOFTMAX, as TFLite prepares them."""
    real = min(float(beta) * float(in_scale) * (1 << (31 - SOFTMAX_DIFF_BITS)), (1 << 31) - 1.0)
    mult, shift = quantize_multiplier(real)
    radius = math.floor(((1 << SOFTMAX_DIFF_BITS) - 1) * (1 << (31 - SOFTMAX_DIFF_BITS)) / (1 << shift))
    return mult, shift, -radius


def _softmax(r: _Reader, op, x: Tensor, y: Tensor) -> NativeOp:
    if y.zero_point != -128 or abs(y.scale - 1 / 256) > 1e-6 or x.shape != y.shape:
        raise NativeError(f"{r.name}: SOFTMAX {r.tensor_name(y.index)!r}: int8 output must have scale 1/256, zp -128")
    mult, shift, diff_min = softmax_params(op.builtinOptions.beta, x.scale)
    if shift < 0:
        raise NativeError(f"{r.name}: SOFTMAX {r.tensor_name(y.index)!r}: beta x input scale is too small")
    depth = x.shape[-1]
    fields = {"rows": x.size // depth, "depth": depth, "mult": mult, "left_shift": shift, "diff_min": diff_min}
    return NativeOp("softmax", r.tensor_name(y.index), [x.index], y.index, fields)


def _alias(r: _Reader, op, x: Tensor, y: Tensor) -> NativeOp:
    if x.size != y.size or (x.scale, x.zero_point) != (y.scale, y.zero_point):
        raise NativeError(f"{r.name}: {r.tensor_name(y.index)!r}: a reshape that changes size or quantization")
    return NativeOp("alias", r.tensor_name(y.index), [x.index], y.index)


_LOWER = {
    "CONV_2D": _conv,
    "DEPTHWISE_CONV_2D": _depthwise,
    "FULLY_CONNECTED": _fc,
    "MAX_POOL_2D": _pool("max_pool"),
    "AVERAGE_POOL_2D": _pool("avg_pool"),
    "PAD": _pad,
    "PADV2": _pad,
    "MEAN": _mean,
    "ADD": _add,
    "SOFTMAX": _softmax,
    **{name: _alias for name in ALIAS_OPS},
}
SUPPORTED_OPS = tuple(sorted(_LOWER))


def lower(data: bytes, name: str) -> NativeGraph:
    """The native ops of one int8 .tflite; ``name`` (e.g. "slice 2") prefixes every error."""
    r = _Reader(data, name)
    if len(r.sg.inputs) != 1:
        raise NativeError(f"{name}: {len(r.sg.inputs)} inputs; the native backend takes one")
    tensors: dict[int, Tensor] = {}
    ops = []
    for op in r.sg.operators:
        kind = r.op_name(op)
        layer = r.tensor_name(op.outputs[0]) if len(op.outputs) else "?"
        if kind not in _LOWER:
            raise NativeError(
                f"{name}: op {kind} (layer {layer}) has no native kernel (supported: {', '.join(SUPPORTED_OPS)}); "
                "build with --runtime tflm"
            )
        x, y = r.activation(op.inputs[0]), r.activation(op.outputs[0])
        native = _LOWER[kind](r, op, x, y)
        for i in [*native.inputs, native.output]:
            tensors[i] = r.activation(i)
        ops.append(native)
    graph_in = int(r.sg.inputs[0])
    tensors[graph_in] = r.activation(graph_in)
    return NativeGraph(tensors, ops, graph_in, [int(i) for i in r.sg.outputs])
