"""The native backend: generated C compiled with the host gcc, bit-exact with TFLite Micro."""

import json
import shutil
import subprocess
from pathlib import Path

import flatbuffers
import numpy as np
import pytest
from tflite_micro.python.tflite_micro import runtime

from converter import native_check, verify
from converter.build import CALIBRATION_SAMPLES, BuildOptions, run
from converter.native_graph import NativeError, lower, mean_multiplier, quantize_multiplier, round_half_away
from converter.native_plan import plan
from earlyexit import checkpoint, data
from tests.conftest import shared_path

SAMPLES = 48

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc: apt-get install gcc")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("native") / "nano33"
    run(BuildOptions(board="nano33", runtime="native", out=out), say=lambda _: None)
    return out


@pytest.fixture(scope="module")
def inputs(built) -> np.ndarray:
    """Bundled test images the build did not calibrate on, quantized as the firmware does."""
    ckpt = checkpoint.load("fashion-mnist")
    images = data.load("fashion-mnist-samples", "test").x[CALIBRATION_SAMPLES : CALIBRATION_SAMPLES + SAMPLES]
    first = native_check.device_slices(built)[0].input
    return verify.quantize_images(images, verify.input_lut(ckpt.mean, ckpt.std, first.scale, first.zero_point))


def _native_vs_tflm(build: Path, exe: Path, x: np.ndarray) -> native_check.Comparison:
    slices = native_check.device_slices(build)
    native = native_check.run_host(native_check.compile_host(build, exe), slices, x)
    return native_check.compare(native, verify.run_chain(slices, x, verify.tflm_runner))


def test_every_activation_and_logit_equals_tflm(built, inputs, tmp_path):
    result = _native_vs_tflm(built, tmp_path / "check", inputs)
    assert result.samples == SAMPLES
    assert result.logits_mismatches == [0, 0, 0]
    assert result.trunk_mismatches == [0, 0]


def test_a_wrong_multiplier_is_caught(built, inputs, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(built, broken)
    src = broken / "firmware" / "ee_native.c"
    text = src.read_text()
    head, tail = text.split("ee_s1_op0_mult[16] = {\n  ", 1)
    first, rest = tail.split(",", 1)
    src.write_text(f"{head}ee_s1_op0_mult[16] = {{\n  {int(first) * 3 // 4},{rest}")
    result = _native_vs_tflm(broken, tmp_path / "check", inputs)
    assert result.trunk_mismatches[0] > 0


def test_build_records_the_runtime(built):
    manifest = json.loads((built / "manifest.json").read_text())
    runtime = manifest["runtime"]
    assert runtime["kind"] == "native"
    assert 0 < runtime["native"]["arena_bytes"] < manifest["fit"]["arena_bytes"]
    assert runtime["native"]["arena_bytes"] == max(runtime["native"]["arena_per_slice"])
    fw = built / "firmware"
    assert not (fw / "ee_model_data.cc").exists()
    assert f"#define EE_NATIVE_ARENA_BYTES {runtime['native']['arena_bytes']}\n" in (fw / "ee_native.h").read_text()


def test_memory_plan_never_overlaps_live_buffers(built):
    for s in native_check.device_slices(built):
        graph = lower(s.tflite, f"slice {s.index + 1}")
        external = {graph.input: "input", **{t: f"out{t}" for t in graph.outputs}}
        p = plan(graph, external)
        spans = []  # (first op, last op, start, end) of every arena buffer
        for k, op in enumerate(graph.ops):
            loc = p.tensors[op.output]
            if loc.base == "arena" and op.kind != "alias":
                last = max([j for j, o in enumerate(graph.ops) if op.output in o.inputs], default=k)
                spans.append((k, last, loc.offset, loc.offset + graph.tensors[op.output].size))
            if k in p.scratch:
                spans.append((k, k, p.scratch[k].offset, p.scratch[k].offset + op.scratch_bytes))
        for i, a in enumerate(spans):
            assert a[3] <= p.arena_bytes
            for b in spans[i + 1 :]:
                if a[0] <= b[1] and b[0] <= a[1]:
                    assert a[3] <= b[2] or b[3] <= a[2], (a, b)


def test_quantize_multiplier_matches_tflite_rules():
    assert quantize_multiplier(0.0) == (0, 0)
    assert quantize_multiplier(0.5) == (1 << 30, 0)
    assert quantize_multiplier(1.0) == (1 << 30, 1)
    assert quantize_multiplier(0.75) == (3 << 29, 0)
    assert quantize_multiplier(2.0**-40) == (0, 0)  # flushed to zero below 2^-31
    assert quantize_multiplier(1.0 - 2.0**-33) == (1 << 30, 1)  # rounds up to 2^31: renormalised
    assert [round_half_away(v) for v in (0.5, -0.5, 1.49, -2.5)] == [1, -1, 1, -3]


def test_mean_folds_the_count_into_the_multiplier():
    mult, shift = quantize_multiplier(0.3)
    folded, folded_shift = mean_multiplier(0.3, 1.0, 49)
    assert folded_shift == shift - 5  # floor(log2(49))
    assert folded == (mult << 5) // 49


def _tflite_requantize(x: np.ndarray, mult: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """TFLite's MultiplyByQuantizedMultiplier as written there: SaturatingRoundingDoublingHighMul (a nudge of
    2^30 or 1 - 2^30, a division truncating toward zero), then RoundingDivideByPOT. int64 numpy, no overflow."""
    left, right = np.maximum(shift, 0), np.maximum(-shift, 0)
    a = ((x << left) + 2**31) % 2**32 - 2**31  # the int32 left shift, wrapping
    ab = a * mult
    q = ab + np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    high = np.where(q >= 0, q // 2**31, -(-q // 2**31))
    high = np.where((a == -(2**31)) & (mult == -(2**31)), 2**31 - 1, high)
    mask = (1 << right) - 1
    threshold = (mask >> 1) + (high < 0)
    return (high >> right) + ((high & mask) > threshold)


def _requant_cases() -> np.ndarray:
    """(x, mult, shift) triples: random over the int32 range and the multipliers QuantizeMultiplier makes,
    every rounding tie of both steps, and the edge values; a multiple of the driver's 256-triple block."""
    rng = np.random.default_rng(7)
    n = 1 << 17
    edges = np.array([0, 1, -1, 2, -2, 2**31 - 1, -(2**31), 2**30, -(2**30), 12345, -12345], np.int64)
    x = np.concatenate([rng.integers(-(2**31), 2**31, n), rng.integers(-(2**20), 2**20, n), np.tile(edges, 256)])
    mult = np.concatenate([rng.integers(1 << 30, 1 << 31, 2 * n), rng.choice(edges[edges >= 0], 256 * len(edges))])
    shift = np.concatenate([rng.integers(-31, 1, n), rng.integers(-12, 8, n), rng.integers(-31, 8, 256 * len(edges))])
    # ties: mult = 2^30 halves x exactly (odd x: a tie of the high multiply), x = k 2^e +- 2^(e-1) for the shift
    e = rng.integers(1, 20, 4096)
    k = rng.integers(-1000, 1000, 4096)
    tie_x = np.concatenate(
        [rng.integers(-(2**20), 2**20, 4096) * 2 + 1, (k << (e + 1)) + np.where(k % 2, 1, -1) * (1 << e)]
    )
    tie_shift = np.concatenate([rng.integers(-20, 1, 4096), -e])
    x = np.concatenate([x, tie_x])
    mult = np.concatenate([mult, np.full(8192, 1 << 30)])
    shift = np.concatenate([shift, tie_shift])
    return np.stack([x, mult, shift], 1).astype(np.int32)


@pytest.mark.parametrize("target", ["host", pytest.param("qemu", marks=pytest.mark.qemu)])
def test_requantization_equals_tflite_arithmetic(target, tmp_path):
    """een_requantize (CMSIS-NN's (a b + 2^30) >> 31 form) gives TFLite's bits on every case."""
    cases = _requant_cases()
    fw = native_check.FIRMWARE
    srcs = [fw / "lib/eenative/eenative.c", fw / "lib/eenative/test/een_requant.c"]
    if target == "host":
        exe = tmp_path / "requant"
        io = [str(fw / "lib/eenative/test/een_io_host.c")]
        subprocess.run(
            ["gcc", *native_check.CFLAGS, f"-I{fw / 'lib/eenative'}", *map(str, srcs), *io, "-o", str(exe)], check=True
        )
        raw = subprocess.run([str(exe)], input=cases.tobytes(), capture_output=True, check=True).stdout
    else:
        _arm_tools()
        raw = native_check.run_qemu_program(
            [*srcs, fw / "lib/eenative/test/een_io_qemu.c"], cases.tobytes(), tmp_path, ["-DEENATIVE_SIMD"]
        )
    got = np.frombuffer(raw, np.int32)
    want = _tflite_requantize(*(cases[:, i].astype(np.int64) for i in range(3)))
    assert len(got) == len(cases)
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, f"{bad.size} differ, first: {cases[bad[0]].tolist()} -> {got[bad[0]]}, TFLite {want[bad[0]]}"


@pytest.fixture(scope="module")
def resnet8() -> bytes:
    return shared_path("mlperf-tiny", "pretrainedResnet_quant.tflite").read_bytes()


def test_mlperf_resnet8_equals_tflm(resnet8, tmp_path):
    """ADD, AVERAGE_POOL_2D, RESHAPE, 1x1 convolutions and SOFTMAX, which the bundled models lack."""
    build = native_check.standalone_build(resnet8, "resnet8", tmp_path / "resnet8")
    x = np.random.default_rng(0).integers(-128, 128, (24, 32, 32, 3), dtype=np.int8)
    result = _native_vs_tflm(build, tmp_path / "check", x)
    assert result.logits_mismatches == [0]


def _with_op_renamed(tflite: bytes, old: str, new: str) -> bytes:
    """The model with every ``old`` builtin op relabelled ``new`` (for error paths only)."""
    model = runtime.convert_bytearray_to_object(bytearray(tflite))
    codes = vars(runtime.schema_fb.BuiltinOperator)
    for oc in model.operatorCodes:
        if runtime.get_builtin_code_from_operator_code(oc) == codes[old]:
            oc.builtinCode = oc.deprecatedBuiltinCode = codes[new]
    builder = flatbuffers.Builder(len(tflite) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def test_an_op_without_kernel_names_it(resnet8):
    with pytest.raises(NativeError, match="op LOGISTIC .* has no native kernel.*--runtime tflm"):
        lower(_with_op_renamed(resnet8, "SOFTMAX", "LOGISTIC"), "resnet8")


def _arm_tools() -> None:
    missing = [t for t in (native_check.ARM_CC, native_check.QEMU) if shutil.which(t) is None]
    if missing:
        pytest.skip(
            f"{', '.join(missing)} missing: apt-get install --no-install-recommends gcc-arm-none-eabi "
            "libnewlib-arm-none-eabi qemu-system-arm"
        )


@pytest.mark.qemu
@pytest.mark.parametrize("simd", [False, True], ids=["plain", "simd"])
def test_cortex_m4_equals_tflm(built, inputs, tmp_path, simd):
    """The Cortex-M4 build (SIMD or plain C) under QEMU is identical to TFLM; every kernel was timed."""
    _arm_tools()
    slices = native_check.device_slices(built)
    x = inputs[:8]
    elf = native_check.compile_qemu(built, tmp_path / "check.elf", simd, profile=True)
    native, ticks = native_check.run_qemu(elf, slices, x, tmp_path / "run")
    result = native_check.compare(native, verify.run_chain(slices, x, verify.tflm_runner))
    assert result.identical, result.to_json()
    assert ticks and all(t > 0 for t in ticks.values())


@pytest.mark.qemu
def test_mlperf_resnet8_simd_on_cortex_m4_equals_tflm(resnet8, tmp_path):
    """The SIMD kernels the default model lacks (3-channel staged patches, 1x1 stride 2, ADD's term tables)."""
    _arm_tools()
    build = native_check.standalone_build(resnet8, "resnet8", tmp_path / "resnet8")
    slices = native_check.device_slices(build)
    x = np.random.default_rng(1).integers(-128, 128, (4, 32, 32, 3), dtype=np.int8)
    elf = native_check.compile_qemu(build, tmp_path / "check.elf", simd=True)
    native, _ = native_check.run_qemu(elf, slices, x, tmp_path / "run")
    result = native_check.compare(native, verify.run_chain(slices, x, verify.tflm_runner))
    assert result.identical, result.to_json()


def test_cli_selects_the_runtime():
    from converter.__main__ import _parser

    assert _parser().parse_args(["build", "--board", "nano33"]).runtime == "tflm"
    assert _parser().parse_args(["build", "--board", "nano33", "--runtime", "native"]).runtime == "native"
    with pytest.raises(SystemExit):
        _parser().parse_args(["build", "--board", "nano33", "--runtime", "cmsis"])
