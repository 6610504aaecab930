"""Instructions per inference on an emulated Cortex-M4: the native backend vs TFLite Micro with CMSIS-NN.

    python benchmarks/tflm_vs_native.py --tflm DIR [--samples 4] [--cifar-dir DIR] [--mlperf-dir DIR]

For each model, both runtimes run the same device slices on the same int8 inputs in the bench image
(firmware/qemu/bench.c) under ``qemu-system-arm -icount shift=0`` (TIMER0: one tick = 40 instructions):
- native: ``--runtime native`` with -DEENATIVE_SIMD (Makefile target qemu-bench);
- TFLM: the firmware's TFLite Micro seam (src/tflm_runner.cpp, tflm_mean.cpp) with the TFLM Arduino
  library in DIR (as for benchmarks/tflm_exactness.py: its CMSIS-NN kernels, -DARDUINO, Cortex-M4 DSP),
  bench.c built with -DEEQ_BENCH_TFLM: a slice's count includes whatever eefw_run_slice does per call.
Both outputs are checked against TFLite Micro's Python interpreter (every logit and trunk byte).
TFLM's figures are the mean over the samples after the first, whose calls also build the interpreters.
Models: the MLPerf Tiny ResNet-8 (one slice, ../shared/data/mlperf-tiny), the default fashion-mnist
model and the bundled cifar10 model (their nano33 device slices; cifar10 needs --cifar-dir), and any
CIFAR-10 checkpoint given with --model (e.g. runs/ee-resnet-s.pt from benchmarks/train_models.sh).
Writes benchmarks/results/tflm_vs_native.json and prints the Markdown table of docs/native.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.qemu_instructions import _demo_samples  # noqa: E402
from benchmarks.tflm_exactness import compile_qemu  # noqa: E402
from converter import native_check, verify  # noqa: E402
from converter.build import BuildOptions, run  # noqa: E402
from converter.native_graph import lower  # noqa: E402
from earlyexit import checkpoint  # noqa: E402
from host import bundle as bundles  # noqa: E402
from host import qemu  # noqa: E402

FW = ROOT / "firmware"
BENCH_SOURCES = tuple(FW / "qemu" / f for f in ("bench.c", "board.c", "startup.c"))


def _checked(elf: Path, slices: list, x_int8: np.ndarray) -> qemu.BenchReport:
    code, text = qemu.run_to_exit(elf, timeout_s=1200)
    if code != 0:
        raise SystemExit(f"{elf} exited with {code}:\n{text[-2000:]}")
    report = qemu.parse_bench(text)
    wrong = qemu.bench_mismatches(report, slices, x_int8)
    if wrong:
        raise SystemExit(f"{elf} differs from TFLite Micro (Python):\n" + "\n".join(wrong[:10]))
    return report


def _per_slice(report: qemu.BenchReport, samples: range) -> list[int]:
    """Mean instructions of each slice over ``samples``."""
    return [
        round(float(np.mean([r.instructions for r in report.runs if r.slice == k and r.sample in samples])))
        for k in range(report.slices)
    ]


def _native_ops(report: qemu.BenchReport, slices: list) -> list[dict]:
    """Mean instructions of every kernel call: slice, op index, kind, layer."""
    ops = [lower(s.tflite, f"slice {s.index + 1}").ops for s in slices]
    total: dict[tuple[int, int], int] = {}
    for r in report.runs:
        for op, n in r.op_instructions:
            total[(r.slice, op)] = total.get((r.slice, op), 0) + n
    return [
        {"slice": k + 1, "op": j, "kind": ops[k][j].kind, "layer": ops[k][j].layer, "instructions": v // report.samples}
        for (k, j), v in sorted(total.items())
    ]


def compare(native_root: Path, tflm_root: Path, tflm: Path, x_int8: np.ndarray, int8_input: bool) -> dict:
    """Both bench images on the samples already written into both bundles (ee_demo_samples)."""
    slices = native_check.device_slices(native_root)
    defines = ("-DEEQ_BENCH_INT8_INPUT",) if int8_input else ()
    native = _checked(qemu.build_image(native_root, bench=True, simd=True, defines=defines), slices, x_int8)
    with tempfile.TemporaryDirectory() as tmp:
        sources = (*BENCH_SOURCES, tflm_root / "firmware" / "ee_demo_samples.c")
        elf = compile_qemu(tflm_root, tflm, Path(tmp), sources, ("-DEEQ_BENCH_TFLM", *defines))
        tflm_report = _checked(elf, native_check.device_slices(tflm_root), x_int8)
    # TFLM builds each slice's interpreter on its first call (tflm_runner.cpp): sample 0 pays for that
    n, t = _per_slice(native, range(len(x_int8))), _per_slice(tflm_report, range(1, len(x_int8)))
    return {
        "samples": len(x_int8),
        "bit_exact_with_tflm_python": True,
        "native_per_slice": n,
        "tflm_per_slice": t,
        "tflm_first_call_per_slice": _per_slice(tflm_report, range(1)),
        "native_total": sum(n),
        "tflm_total": sum(t),
        "tflm_over_native": round(sum(t) / sum(n), 3),
        "native_arena_bytes": native.arena_bytes,
        "tflm_arena_bytes": tflm_report.arena_bytes,
        "native_stack_bytes": native.stack_bytes,
        "tflm_stack_bytes": tflm_report.stack_bytes,
        "native_ops": _native_ops(native, slices),
    }


def resnet8(mlperf_dir: Path, tflm: Path, samples: int) -> dict:
    tflite = (mlperf_dir / "pretrainedResnet_quant.tflite").read_bytes()
    roots = {
        rt: native_check.standalone_build(tflite, "mlperf-resnet8", ROOT / "build" / f"bench-resnet8-{rt}", rt)
        for rt in ("native", "tflm")
    }
    perf = sorted((mlperf_dir / "ic01_perf_samples").glob("*.bin"))[:samples]
    x = np.stack([(np.fromfile(f, np.uint8).reshape(32, 32, 3).astype(np.int16) - 128).astype(np.int8) for f in perf])
    for root in roots.values():
        _demo_samples(root, x.view(np.uint8), "mlperf-resnet8")
    result = compare(roots["native"], roots["tflm"], tflm, x, int8_input=True)
    result["model"] = "MLPerf Tiny ResNet-8 (pretrainedResnet_quant.tflite), whole model as one slice"
    return result


def bundled(model: str, data_dir: str | None, tflm: Path, samples: int) -> dict:
    """A bundled model (or checkpoint file) built for nano33 with both runtimes; the first test images
    (demo_samples' pick)."""
    tool = qemu.demo_samples_tool()
    roots = {}
    for rt in ("native", "tflm"):
        roots[rt] = ROOT / "build" / f"bench-{Path(model).stem}-{rt}"
        opts = BuildOptions("nano33", model=model, data_dir=data_dir, eval_samples=200, runtime=rt, out=roots[rt])
        run(opts, say=lambda m, rt=rt: print(f"  {model} {rt}: {m}", flush=True))
        tool.write(roots[rt], samples, data_dir)
    manifest = json.loads((roots["native"] / "manifest.json").read_text())
    images = tool.load_samples(manifest, samples, data_dir)[0]
    b = bundles.load(roots["native"])
    x = verify.quantize_images(images, b.input_lut())
    result = compare(roots["native"], roots["tflm"], tflm, x, int8_input=False)
    kind = "bundled" if model in checkpoint.bundled_models() else "checkpoint"
    result["model"] = f"{Path(model).stem} ({kind}), nano33, its {b.device_slices} device slices"
    return result


def table(results: dict) -> str:
    rows = [
        "| model | TFLM + CMSIS-NN | native SIMD | TFLM / native | arena TFLM / native B |",
        "|---|---|---|---|---|",
    ]
    for r in results.values():
        rows.append(
            f"| {r['model'].split(' (')[0]} | {r['tflm_total']:,} | {r['native_total']:,} | "
            f"**{r['tflm_over_native']}x** | {r['tflm_arena_bytes']:,} / {r['native_arena_bytes']:,} |"
        )
    return "\n".join(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tflm", type=Path, required=True, help="the TFLM Arduino library folder (src/tensorflow inside)")
    p.add_argument("--samples", type=int, default=4, help="inputs per model (default 4, at least 2)")
    p.add_argument("--mlperf-dir", type=Path, default=ROOT.parent / "shared/data/mlperf-tiny")
    p.add_argument("--cifar-dir", help="a CIFAR-10 folder: also the bundled cifar10 model")
    p.add_argument("--model", action="append", default=[], help="also this CIFAR-10 checkpoint (needs --cifar-dir)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/tflm_vs_native.json")
    args = p.parse_args()
    if not (args.tflm / "src" / "tensorflow").is_dir():
        sys.exit(f"error: {args.tflm} is not a TFLM Arduino library folder (no src/tensorflow)")
    if args.model and not args.cifar_dir:
        sys.exit("error: --model needs --cifar-dir (its device slices run on CIFAR-10 test images)")
    if args.samples < 2:
        sys.exit("error: --samples must be at least 2 (TFLM's first call also builds its interpreters)")
    if qemu.missing_tools():
        sys.exit(f"error: needs {', '.join(qemu.missing_tools())}: {qemu.INSTALL_HINT}")
    results = {}
    if (args.mlperf_dir / "pretrainedResnet_quant.tflite").is_file():
        print("mlperf-resnet8", flush=True)
        results["mlperf-resnet8"] = resnet8(args.mlperf_dir, args.tflm, args.samples)
    else:
        print(f"no MLPerf Tiny model in {args.mlperf_dir}: ResNet-8 left out")
    print("fashion-mnist", flush=True)
    results["fashion-mnist"] = bundled("fashion-mnist", None, args.tflm, args.samples)
    if args.cifar_dir:
        print("cifar10", flush=True)
        results["cifar10"] = bundled("cifar10", args.cifar_dir, args.tflm, args.samples)
    for model in args.model:
        print(model, flush=True)
        results[Path(model).stem] = bundled(model, args.cifar_dir, args.tflm, args.samples)
    out = {
        **results,
        "method": {
            "emulator": "qemu-system-arm -M mps2-an386 -icount shift=0, TIMER0: one tick = 40 instructions",
            "compiler": "arm-none-eabi-gcc -mcpu=cortex-m4 -mfloat-abi=hard -O2, newlib-nano, --gc-sections",
            "tflm_library": args.tflm.name,
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(table(results))


if __name__ == "__main__":
    main()
