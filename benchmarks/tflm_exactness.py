"""The firmware's TFLite Micro inference on an emulated Cortex-M4 vs the interpreter the converter verifies with.

    python benchmarks/tflm_exactness.py --tflm DIR [--samples 200] [--model cifar10 --data-dir DIR]

Builds the model for nano33 (the TFLM runtime), compiles its device slices as the board runs them
- ``eefw_run_slice`` (firmware/src/tflm_runner.cpp with tflm_mean.cpp), the generated flatbuffers
and the TFLM Arduino library in DIR (as for ``make -C firmware tflm-check``) with its CMSIS-NN
kernels, -DARDUINO, for the Cortex-M4F with its DSP instructions - into the check driver
(firmware/lib/eenative/test/een_check.c with -DEEN_CHECK_TFLM) on QEMU's mps2-an386, runs the
first --samples images of the test split through it and compares every logit and trunk byte
with TFLite Micro's Python interpreter. Writes benchmarks/results/tflm_exactness.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.native_size import CXXFLAGS, TFLM_SUPPORT, run_tool, tflm_objects  # noqa: E402
from converter import native_check, verify  # noqa: E402
from converter.build import BuildOptions, run  # noqa: E402
from earlyexit import checkpoint, data  # noqa: E402

FW = ROOT / "firmware"
FLAGS = [*native_check.ARM_ARCH, "-O2", "-ffunction-sections", "-fdata-sections", "-DARDUINO", "-DARDUINO_EXCLUDE_CODE"]
# No heap (the linker script has none): newlib's stdio, which TFLM pulls in, gets no memory from sbrk.
SUPPORT = TFLM_SUPPORT + 'extern "C" void *_sbrk(int) { return reinterpret_cast<void *>(-1); }\n'


def compile_qemu(
    build: Path,
    tflm: Path,
    work: Path,
    sources: tuple[Path, ...] = native_check.QEMU_DRIVER_SOURCES,
    defines: tuple[str, ...] = ("-DEEN_CHECK_TFLM",),
) -> Path:
    """C ``sources`` (default: the check driver) with the firmware's TFLM seam for QEMU's mps2-an386."""
    gen = build / "firmware"
    inc = [f"-I{gen}", *(f"-I{FW / d}" for d in ("src", "lib/eecore", "lib/eeproto", "qemu"))]
    c = ["arm-none-eabi-gcc", *FLAGS, "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", *defines, *inc]
    objs = []
    for src in sources:
        objs.append(work / f"{src.stem}.o")
        run_tool([*c, "-c", str(src), "-o", str(objs[-1])])
    (work / "support.cpp").write_text(SUPPORT)
    cxx = ["arm-none-eabi-g++", *FLAGS, *CXXFLAGS, "-Wall", "-Wextra", "-Werror", f"-isystem{tflm / 'src'}", *inc]
    for src in (FW / "src/tflm_runner.cpp", FW / "src/tflm_mean.cpp", gen / "ee_model_data.cc", work / "support.cpp"):
        objs.append(work / f"{src.stem}.o")
        run_tool([*cxx, "-c", str(src), "-o", str(objs[-1])])
    elf = work / "tflm_check.elf"
    lib = tflm_objects(tflm, ROOT / "build/tflm-cortex-m4")
    link = [*native_check.ARM_ARCH, *native_check.QEMU_LINK, "--specs=nosys.specs"]
    run_tool(["arm-none-eabi-g++", *map(str, objs), *map(str, lib), *link, "-o", str(elf)])
    return elf


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tflm", type=Path, required=True, help="the TFLM Arduino library folder (src/tensorflow inside)")
    p.add_argument("--samples", type=int, default=200, help="first N images of the test split")
    p.add_argument("--model", default="fashion-mnist", help="a bundled model name or checkpoint (default the default)")
    p.add_argument("--data-dir", help="the model's dataset (cifar10: a CIFAR-10 folder)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/tflm_exactness.json")
    args = p.parse_args()
    if not (args.tflm / "src" / "tensorflow").is_dir():
        sys.exit(f"error: {args.tflm} is not a TFLM Arduino library folder (no src/tensorflow)")
    ckpt = checkpoint.load(args.model)
    build = ROOT / "build" / f"tflm-exactness-{ckpt.dataset}"
    run(
        BuildOptions("nano33", model=args.model, data_dir=args.data_dir, eval_samples=200, out=build),
        say=lambda _: None,
    )
    test = data.load(ckpt.dataset, "test", args.data_dir)
    slices = native_check.device_slices(build)
    first = slices[0].input
    lut = verify.input_lut(ckpt.mean, ckpt.std, first.scale, first.zero_point)
    x = verify.quantize_images(test.x[: args.samples], lut)
    ref = verify.run_chain(slices, x, verify.tflm_runner)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        elf = compile_qemu(build, args.tflm, work)
        t0 = time.perf_counter()
        out, _ = native_check.run_qemu(elf, slices, x, work / "run", timeout=3600)
        seconds = time.perf_counter() - t0
    comparison = native_check.compare(out, ref)
    results = json.loads(args.out.read_text()) if args.out.is_file() else {}
    results[ckpt.dataset] = {
        "library": str(args.tflm.name),
        "device_slices": len(slices),
        "ops": [list(s.ops) for s in slices],
        "qemu_seconds": round(seconds, 1),
        **comparison.to_json(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"{ckpt.dataset}: {comparison.samples} samples on the emulated Cortex-M4, identical: {comparison.identical}")
    print(
        f"  per device slice, samples whose logits / trunk differ: {comparison.logits_mismatches} / "
        f"{comparison.trunk_mismatches}"
    )


if __name__ == "__main__":
    main()
