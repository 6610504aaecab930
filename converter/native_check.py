"""The native C of a build against TFLite Micro: compile the check driver, run both, compare.

The driver (firmware/lib/eenative/test/een_check.c) chains the device slices through
``eefw_native_run_slice`` exactly as the firmware does and writes every logit and trunk byte;
the reference is TFLite Micro's Python interpreter on the same int8 slices and inputs.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from converter import codegen, flatbuf, native, verify
from converter.flatbuf import TensorInfo
from converter.slicing import IntSlice
from policy.threshold import ThresholdPolicy

FIRMWARE = Path(__file__).resolve().parent.parent / "firmware"
CFLAGS = ("-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-pedantic")
NATIVE_SOURCES = ("lib/eenative/eenative.c", "src/native_runner.c")
INCLUDES = ("lib/eenative", "src", "lib/eecore", "lib/eeproto")
BUILD_SOURCES = ("ee_native.c", "ee_model_data.c")


@dataclass
class Comparison:
    """Per device slice: samples whose logits / trunk differ, and the total compared."""

    samples: int
    logits_mismatches: list[int]
    trunk_mismatches: list[int]

    @property
    def identical(self) -> bool:
        return not any(self.logits_mismatches) and not any(self.trunk_mismatches)

    def to_json(self) -> dict:
        return {
            "samples": self.samples,
            "logits_mismatches": self.logits_mismatches,
            "trunk_mismatches": self.trunk_mismatches,
            "identical": self.identical,
        }


def _info(name: str, t: dict) -> TensorInfo:
    return TensorInfo(name, tuple(t["shape"]), t["scale"], t["zero_point"])


def device_slices(build_dir: Path) -> list[IntSlice]:
    """The device slices of a build folder (manifest.json + device/sliceK.tflite)."""
    manifest = json.loads((build_dir / "manifest.json").read_text())
    out = []
    for s in manifest["slices"][: manifest["device_slices"]]:
        trunk = s["outputs"].get("trunk")
        out.append(
            IntSlice(
                s["index"] - 1,
                (build_dir / "device" / f"slice{s['index']}.tflite").read_bytes(),
                tuple(s["ops"]),
                _info("input", s["input"]),
                _info("logits", s["outputs"]["logits"]),
                _info("trunk", trunk) if trunk else None,
            )
        )
    return out


def _json(t: TensorInfo) -> dict:
    return {"shape": list(t.shape), "scale": t.scale, "zero_point": t.zero_point}


def standalone_build(tflite: bytes, name: str, out: Path, runtime: str = "native") -> Path:
    """A one-slice build folder for any int8 classifier .tflite (input NHWC, output (1, classes)), laid out
    like a converter build (manifest.json, device/slice1.tflite, firmware/) for the check and bench drivers:
    ``runtime`` "native" (ee_native.c) or "tflm" (the flatbuffer in ee_model_data.cc, TFLM's arena)."""
    inp, logits = flatbuf.inputs(tflite)[0], flatbuf.outputs(tflite)[0]
    s = IntSlice(0, tflite, tuple(op for op, _ in flatbuf.ops(tflite)), inp, logits, None)
    channels = inp.shape[-1]
    lut = verify.input_lut((0.0,) * channels, (1.0,) * channels, inp.scale, inp.zero_point)
    policy = ThresholdPolicy.build([logits.scale], [0.9], 1)
    arena = verify.arena_bytes(tflite)[1] if runtime == "tflm" else 0
    digest = hashlib.sha256(tflite).hexdigest()
    model = codegen.FirmwareModel(name, digest, [s], 1, logits.shape[1], lut, arena, policy)
    (out / "device").mkdir(parents=True, exist_ok=True)
    (out / "device" / "slice1.tflite").write_bytes(tflite)
    codegen.write(model, out / "firmware")
    summary = (
        {"kind": "tflm"}
        if runtime == "tflm"
        else {"kind": "native", "native": native.write(model, out / "firmware").to_json()}
    )
    t = {
        k: {"shape": list(v.shape), "scale": v.scale, "zero_point": v.zero_point}
        for k, v in (("i", inp), ("o", logits))
    }
    entry = {"index": 1, "ops": list(s.ops), "input": t["i"], "outputs": {"logits": t["o"]}}
    manifest = {"model": {"name": name}, "device_slices": 1, "slices": [entry]}
    manifest["runtime"] = summary
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return out


def sources(build_dir: Path) -> tuple[list[str], list[str]]:
    """(C sources, -I flags) of the native slices of ``build_dir`` and the driver-independent runtime."""
    fw = build_dir / "firmware"
    srcs = [str(fw / f) for f in BUILD_SOURCES] + [str(FIRMWARE / f) for f in NATIVE_SOURCES]
    return srcs, [f"-I{fw}", *(f"-I{FIRMWARE / i}" for i in INCLUDES)]


def compile_host(build_dir: Path, exe: Path, cc: str = "gcc") -> Path:
    """Build the check driver for this machine with the project's warning flags."""
    srcs, incs = sources(build_dir)
    test = FIRMWARE / "lib/eenative/test"
    cmd = [cc, *CFLAGS, *incs, *srcs, str(test / "een_check.c"), str(test / "een_io_host.c"), "-o", str(exe)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return exe


def split_outputs(raw: bytes, slices: list[IntSlice], n: int) -> verify.ChainOutputs:
    """The driver's byte stream as per-slice logits (N, classes) and trunks (N, H, W, C)."""
    sizes = [(int(np.prod(s.logits.shape)), int(np.prod(s.trunk.shape)) if s.trunk else 0) for s in slices]
    per_sample = sum(a + b for a, b in sizes)
    if len(raw) != n * per_sample:
        raise RuntimeError(f"the native driver wrote {len(raw)} bytes, expected {n} x {per_sample}")
    rows = np.frombuffer(raw, np.int8).reshape(n, per_sample)
    logits, trunks, at = [], [], 0
    for s, (a, b) in zip(slices, sizes):
        logits.append(rows[:, at : at + a].reshape(n, *s.logits.shape[1:]))
        if s.trunk is not None:
            trunks.append(rows[:, at + a : at + a + b].reshape(n, *s.trunk.shape[1:]))
        at += a + b
    return verify.ChainOutputs(logits, trunks)


def run_host(exe: Path, slices: list[IntSlice], x_int8: np.ndarray) -> verify.ChainOutputs:
    """Run the compiled driver on (N, H, W, C) int8 inputs."""
    done = subprocess.run([str(exe)], input=np.ascontiguousarray(x_int8).tobytes(), capture_output=True, check=True)
    return split_outputs(done.stdout, slices, len(x_int8))


def compare(native: verify.ChainOutputs, ref: verify.ChainOutputs) -> Comparison:
    """Count, per slice, the samples whose native logits or trunk differ from the reference's."""

    def mismatches(a: np.ndarray, b: np.ndarray) -> int:
        return int(np.any(a.reshape(len(a), -1) != b.reshape(len(b), -1), axis=1).sum())

    return Comparison(
        len(native.logits[0]),
        [mismatches(a, b) for a, b in zip(native.logits, ref.logits)],
        [mismatches(a, b) for a, b in zip(native.trunks, ref.trunks)],
    )


ARM_CC = "arm-none-eabi-gcc"
ARM_ARCH = ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16")
QEMU = "qemu-system-arm"


# The check driver on QEMU's mps2-an386: its sources (with firmware/qemu's startup code) and link flags.
QEMU_DRIVER_SOURCES = tuple(
    FIRMWARE / f
    for f in ("lib/eenative/test/een_check.c", "lib/eenative/test/een_io_qemu.c", "qemu/startup.c", "qemu/board.c")
)
QEMU_LINK = ("-nostartfiles", "--specs=nano.specs", "-Wl,--gc-sections", f"-T{FIRMWARE / 'qemu' / 'mps2_an386.ld'}")


def compile_qemu(build_dir: Path, elf: Path, simd: bool, profile: bool = False) -> Path:
    """Build the check driver for QEMU's mps2-an386 (Cortex-M4F) with firmware/qemu's startup code."""
    srcs, incs = sources(build_dir)
    flags = [*ARM_ARCH, *CFLAGS, "-ffunction-sections", "-fdata-sections", f"-I{FIRMWARE / 'qemu'}"]
    flags += ["-DEENATIVE_SIMD"] if simd else []
    flags += ["-DEEN_PROFILE", "-include", str(FIRMWARE / "lib/eenative/test/een_profile.h")] if profile else []
    files = [*srcs, *map(str, QEMU_DRIVER_SOURCES)]
    cmd = [ARM_CC, *flags, *incs, *files, *QEMU_LINK, "-o", str(elf)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return elf


def _qemu_cmd(elf: Path) -> list[str]:
    cmd = [QEMU, "-M", "mps2-an386", "-cpu", "cortex-m4", "-kernel", str(elf.resolve()), "-display", "none"]
    return cmd + [
        "-monitor",
        "none",
        "-serial",
        "none",
        "-semihosting-config",
        "enable=on,target=native",
        "-icount",
        "shift=0",
    ]


def run_qemu_program(
    sources: list[Path], data: bytes, workdir: Path, defines: list[str], timeout: float = 600
) -> bytes:
    """Compile a semihosting stream program (een_io_qemu.c's een_in.bin -> een_out.bin) with firmware/qemu's
    startup code, run it under QEMU on ``data`` and return what it wrote."""
    workdir.mkdir(parents=True, exist_ok=True)
    elf = workdir / "program.elf"
    flags = [*ARM_ARCH, *CFLAGS, *defines, *(f"-I{FIRMWARE / i}" for i in (*INCLUDES, "qemu"))]
    files = [*map(str, sources), *(str(FIRMWARE / "qemu" / f) for f in ("startup.c", "board.c"))]
    subprocess.run([ARM_CC, *flags, *files, *QEMU_LINK, "-o", str(elf)], check=True, capture_output=True, text=True)
    (workdir / "een_in.bin").write_bytes(data)
    subprocess.run(_qemu_cmd(elf), cwd=workdir, check=True, capture_output=True, timeout=timeout)
    return (workdir / "een_out.bin").read_bytes()


def run_qemu(
    elf: Path, slices: list[IntSlice], x_int8: np.ndarray, workdir: Path, timeout: float = 600
) -> tuple[verify.ChainOutputs, dict[tuple[int, int], int]]:
    """Run the QEMU driver on (N, H, W, C) int8 inputs: its outputs and SysTick ticks per (slice, op)."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "een_in.bin").write_bytes(np.ascontiguousarray(x_int8).tobytes())
    for name in ("een_out.bin", "een_prof.txt"):
        (workdir / name).unlink(missing_ok=True)
    subprocess.run(_qemu_cmd(elf), cwd=workdir, check=True, capture_output=True, timeout=timeout)
    outputs = split_outputs((workdir / "een_out.bin").read_bytes(), slices, len(x_int8))
    prof = workdir / "een_prof.txt"
    ticks = {}
    for line in prof.read_text().split("\n") if prof.is_file() else []:
        if line:
            s, op, t = (int(v) for v in line.split())
            ticks[(s, op)] = t
    return outputs, ticks
