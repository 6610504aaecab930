"""One slice: PyTorch -> ONNX -> TensorFlow SavedModel (onnx2tf) -> full-int8 TFLite.

Conversions are cached under ``cache_dir`` by a content hash of the slice's ONNX graph
and its calibration data, so an unchanged rebuild converts nothing.
"""

from __future__ import annotations

import hashlib
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import numpy as np
import torch

from converter.errors import ConvertError
from converter.quiet import silenced
from earlyexit.model import Slice

# The builtin ops our firmware registers, and the MicroMutableOpResolver method of each;
# a slice using any other op fails the build.
TFLM_OPS = {
    "ADD": "AddAdd",
    "AVERAGE_POOL_2D": "AddAveragePool2D",
    "CONCATENATION": "AddConcatenation",
    "CONV_2D": "AddConv2D",
    "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D",
    "DEQUANTIZE": "AddDequantize",
    "FULLY_CONNECTED": "AddFullyConnected",
    "MAX_POOL_2D": "AddMaxPool2D",
    "MEAN": "AddMean",
    "MUL": "AddMul",
    "PAD": "AddPad",
    "QUANTIZE": "AddQuantize",
    "RELU": "AddRelu",
    "RELU6": "AddRelu6",
    "RESHAPE": "AddReshape",
    "SOFTMAX": "AddSoftmax",
    "SQUEEZE": "AddSqueeze",
}


# Part of every cache key: change it whenever the conversion itself changes.
CONVERSION_SETTINGS = "int8; per-channel conv; per-tensor fully-connected"


def export_onnx(slice_module: Slice, input_shape: tuple[int, ...], path: Path) -> None:
    """Export one slice (NCHW, batch 1) with the TorchScript exporter at opset 13.

    Eval mode folds batch norm into the convolutions.
    """
    names = ["logits"] if slice_module.last else ["logits", "trunk"]
    with torch.no_grad(), silenced(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # we choose the TorchScript exporter on purpose
        torch.onnx.export(
            slice_module.eval(),
            torch.zeros(1, *input_shape),
            str(path),
            dynamo=False,
            opset_version=13,
            input_names=["input"],
            output_names=names,
        )


def file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def onnx_to_int8(onnx_path: Path, calibration: np.ndarray, cache_dir: Path) -> bytes:
    """Full-int8 TFLite bytes for ``onnx_path`` calibrated on NHWC float ``calibration``.

    Cached by the hash of the ONNX file and of the calibration array.
    """
    h = hashlib.sha256(CONVERSION_SETTINGS.encode())
    h.update(onnx_path.read_bytes())
    h.update(np.ascontiguousarray(calibration, dtype=np.float32).tobytes())
    cached = cache_dir / f"{h.hexdigest()[:32]}.tflite"
    if cached.is_file():
        return cached.read_bytes()
    with silenced():
        import onnx2tf
        import onnx2tf.onnx2tf
        import tensorflow as tf

    with tempfile.TemporaryDirectory() as tmp:
        saved = Path(tmp) / "saved_model"
        # onnx2tf downloads sample images to self-check any 3-channel input; hand it ours (offline).
        samples = np.ascontiguousarray(calibration[:20], dtype=np.float32)
        with silenced(), mock.patch.object(onnx2tf.onnx2tf, "download_test_image_data", lambda: samples):
            onnx2tf.convert(
                input_onnx_file_path=str(onnx_path),
                output_folder_path=str(saved),
                non_verbose=True,
                not_use_onnxsim=True,
                output_signaturedefs=True,
                batch_size=1,
            )
        conv = tf.lite.TFLiteConverter.from_saved_model(str(saved))

        def representative() -> Iterator[list[np.ndarray]]:
            for sample in calibration:
                yield [sample[None].astype(np.float32)]

        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
        # TFLM's Arduino library (Chirale 2.0.0) applies one multiplier to every output of a
        # FULLY_CONNECTED: per-channel dense weights would give wrong logits on the board.
        conv._experimental_disable_per_channel_quantization_for_dense_layers = True
        try:
            with silenced():
                data = conv.convert()
        except Exception as err:  # the converter reports unsupported ops as generic errors
            raise ConvertError(
                f"{onnx_path.name}: TensorFlow Lite cannot convert this slice to full int8 "
                f"({str(err).splitlines()[0][:300]}). Use only conv/pool/linear/ReLU layers, which TFLite Micro runs"
                " (--verbose shows TensorFlow's log)."
            ) from None
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp_file = cached.with_suffix(".tmp")
    tmp_file.write_bytes(data)
    tmp_file.replace(cached)
    return data
