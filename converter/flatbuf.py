"""Read and patch TFLite flatbuffers: op lists, I/O tensors and their quantization."""

from __future__ import annotations

from dataclasses import dataclass

import flatbuffers
import numpy as np
from tflite_micro.python.tflite_micro import runtime

_fb = runtime.schema_fb
_OP_NAMES = {v: k for k, v in vars(_fb.BuiltinOperator).items() if not k.startswith("_")}


@dataclass(frozen=True)
class TensorInfo:
    """An int8 I/O tensor: its name, NHWC shape and affine quantization."""

    name: str
    shape: tuple[int, ...]
    scale: float
    zero_point: int


def _model(data: bytes) -> _fb.ModelT:
    return runtime.convert_bytearray_to_object(bytearray(data))


def _name(tensor: _fb.TensorT) -> str:
    return tensor.name.decode() if isinstance(tensor.name, bytes) else str(tensor.name)


def ops(data: bytes) -> list[tuple[str, str]]:
    """(builtin op name, name of its first output tensor = the layer) in execution order."""
    model = _model(data)
    sg = model.subgraphs[0]
    return [
        (
            _OP_NAMES.get(runtime.get_builtin_code_from_operator_code(model.operatorCodes[op.opcodeIndex]), "CUSTOM"),
            _name(sg.tensors[op.outputs[0]]) if len(op.outputs) else "?",
        )
        for op in sg.operators
    ]


def _info(tensor: _fb.TensorT) -> TensorInfo:
    q = tensor.quantization
    if q is None or q.scale is None or len(q.scale) != 1:
        raise ValueError(f"tensor {tensor.name!r} is not per-tensor quantized")
    return TensorInfo(_name(tensor), tuple(int(d) for d in tensor.shape), float(q.scale[0]), int(q.zeroPoint[0]))


def inputs(data: bytes) -> list[TensorInfo]:
    sg = _model(data).subgraphs[0]
    return [_info(sg.tensors[i]) for i in sg.inputs]


def outputs(data: bytes) -> list[TensorInfo]:
    sg = _model(data).subgraphs[0]
    return [_info(sg.tensors[i]) for i in sg.outputs]


def num_tensors(data: bytes) -> int:
    return len(_model(data).subgraphs[0].tensors)


def with_input_quantization(data: bytes, scale: float, zero_point: int) -> bytes:
    """The model with its (single) input tensor's quantization replaced."""
    model = _model(data)
    sg = model.subgraphs[0]
    q = sg.tensors[sg.inputs[0]].quantization
    q.scale = [float(scale)]
    q.zeroPoint = [int(zero_point)]
    builder = flatbuffers.Builder(len(data) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def fully_connected_weight_scales(data: bytes) -> list[int]:
    """How many quantization scales each FULLY_CONNECTED op's weight tensor carries."""
    model = _model(data)
    sg = model.subgraphs[0]
    fc = [
        op
        for op in sg.operators
        if _OP_NAMES.get(runtime.get_builtin_code_from_operator_code(model.operatorCodes[op.opcodeIndex]))
        == "FULLY_CONNECTED"
    ]
    return [len(sg.tensors[op.inputs[1]].quantization.scale) for op in fc]


def without_output_transposes(data: bytes) -> bytes:
    """The model without NHWC -> NCHW TRANSPOSE ops that only feed a graph output.

    onnx2tf hands some 4-d outputs (a residual add's) back in ONNX's NCHW layout; the slice
    hand-off and the firmware expect NHWC, and TFLM's op resolver has no TRANSPOSE. The
    output becomes the transpose's input: same values and quantization, NHWC order.
    """
    model = _model(data)
    sg = model.subgraphs[0]
    consumed = {i for op in sg.operators for i in op.inputs}
    keep, swaps = [], {}
    for op in sg.operators:
        code = runtime.get_builtin_code_from_operator_code(model.operatorCodes[op.opcodeIndex])
        out = op.outputs[0] if len(op.outputs) == 1 else -1
        if _OP_NAMES.get(code) == "TRANSPOSE" and out in list(sg.outputs) and out not in consumed:
            perm = model.buffers[sg.tensors[op.inputs[1]].buffer].data
            if perm is not None and np.frombuffer(bytes(perm), dtype="<i4").tolist() == [0, 3, 1, 2]:
                swaps[out] = op.inputs[0]
                continue
        keep.append(op)
    if not swaps:
        return data
    sg.operators = keep
    sg.outputs = [swaps.get(int(i), int(i)) for i in sg.outputs]
    for sig in model.signatureDefs or []:
        for t in sig.outputs:
            t.tensorIndex = swaps.get(t.tensorIndex, t.tensorIndex)
    builder = flatbuffers.Builder(len(data) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())
