"""The QEMU target's firmware: instructions per slice and per inference, image flash and RAM, plain C vs SIMD.

    python benchmarks/qemu_instructions.py [--samples 8] [--mlperf-dir DIR] [--out FILE]

For the default model (``build/qemu-m4``: ``converter build --board qemu-m4 --runtime native``)
and the MLPerf Tiny ResNet-8 up to its logits (its SOFTMAX has no native kernel; the one-slice
build of benchmarks/native_exactness.py), in plain C and with -DEENATIVE_SIMD:
- the bench image (firmware/qemu/bench.c) runs every device slice on --samples test images under
  ``qemu-system-arm -icount shift=0`` and reads TIMER0 (one tick = 40 instructions) around every
  slice and kernel; its logits and trunks are checked against TFLite Micro (Python), and a second
  run must give the same counts;
- the protocol image (firmware/qemu/main.c, what ``host demo --target qemu`` boots) is sized with
  arm-none-eabi-size (flash = text + data, RAM = data + bss with the 8 KB stack reservation).
Writes benchmarks/results/qemu_instructions.json and prints the Markdown table of docs/qemu.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from converter import native_check, verify  # noqa: E402
from converter.build import BuildOptions, run  # noqa: E402
from host import bundle as bundles  # noqa: E402
from host import qemu  # noqa: E402

CONV = "conv"  # native_graph's kind of CONV_2D


def _demo_samples(root: Path, images: np.ndarray, name: str) -> None:
    """ee_demo_samples.{h,c} for a build without a dataset manifest (firmware/tools/demo_samples.py's layout)."""
    tool = qemu.demo_samples_tool()
    model = {"name": name, "hash": "0" * 64, "dataset": name, "classes": [str(c) for c in range(10)]}
    header, source = tool.render({"model": model}, images, np.zeros(len(images), np.int64))
    (root / "firmware" / "ee_demo_samples.h").write_text(header)
    (root / "firmware" / "ee_demo_samples.c").write_text(source)


def _bench(root: Path, simd: bool, slices: list, x_int8: np.ndarray, defines: tuple[str, ...]) -> qemu.BenchReport:
    elf = qemu.build_image(root, bench=True, simd=simd, defines=defines)
    reports = []
    for _ in range(2):
        code, text = qemu.run_to_exit(elf, timeout_s=600)
        if code != 0:
            raise SystemExit(f"{elf} exited with {code}:\n{text[-2000:]}")
        reports.append(qemu.parse_bench(text))
    if reports[0].runs != reports[1].runs:
        raise SystemExit(f"{elf}: two runs gave different instruction counts or outputs")
    wrong = qemu.bench_mismatches(reports[0], slices, x_int8)
    if wrong:
        raise SystemExit(f"{elf} differs from TFLite Micro:\n" + "\n".join(wrong[:10]))
    return reports[0]


def _stats(values: list[int]) -> dict[str, int]:
    return {"mean": round(float(np.mean(values))), "min": int(min(values)), "max": int(max(values))}


def _summarize(report: qemu.BenchReport, slices: list) -> dict:
    per_slice = {k: [r.instructions for r in report.runs if r.slice == k] for k in range(report.slices)}
    per_sample = [sum(r.instructions for r in report.runs if r.sample == s) for s in range(report.samples)]
    return {
        "per_slice": {str(k + 1): _stats(v) for k, v in per_slice.items()},
        "per_inference_all_slices": _stats(per_sample),
        "per_kernel_kind_mean": qemu.instructions_by_kind(report, slices),
        "stack_bytes_used": report.stack_bytes,
    }


def measure(root: Path, slices: list, x_int8: np.ndarray, defines: tuple[str, ...] = ()) -> dict:
    """Bench (plain, SIMD) and protocol image sizes for the build in ``root`` (``defines``: the bench's -D flags)."""
    result: dict = {"samples": len(x_int8), "device_slices": len(slices), "bit_exact_with_tflm": True}
    for simd in (False, True):
        name = "simd" if simd else "plain"
        result[name] = _summarize(_bench(root, simd, slices, x_int8, defines), slices)
        try:
            result[name]["image"] = qemu.image_size(qemu.build_image(root, simd=simd))
        except qemu.QemuError as err:  # reported in the table, not hidden
            lines = str(err).splitlines()
            result[name]["image"] = {"error": next((x.strip() for x in lines if "error:" in x), lines[-1])}
    plain, simd = (result[k]["per_kernel_kind_mean"] for k in ("plain", "simd"))
    result["conv_simd_speedup"] = round(plain[CONV] / simd[CONV], 2)
    total = (result[k]["per_inference_all_slices"]["mean"] for k in ("plain", "simd"))
    result["inference_simd_speedup"] = round(next(total) / next(total), 2)
    result["native_arena_bytes"] = json.loads((root / "manifest.json").read_text())["runtime"]["native"]["arena_bytes"]
    return result


def default_model(samples: int) -> dict:
    root = ROOT / "build" / "qemu-m4"
    run(BuildOptions(board="qemu-m4", runtime="native", out=root), say=lambda m: print(" ", m))
    b = bundles.load(root)
    images = qemu.bench_samples(root, samples)
    slices = b.slices[: b.device_slices]
    result = measure(root, slices, verify.quantize_images(images, b.input_lut()))
    result["model"] = "fashion-mnist (bundled), qemu-m4, all 3 slices on the device"
    return result


def resnet8(mlperf_dir: Path, samples: int) -> dict:
    """The reference model as a one-slice native build, fed its int8 inputs (pixel - 128) as they are."""
    tflite = (mlperf_dir / "pretrainedResnet_quant.tflite").read_bytes()
    root = native_check.standalone_build(tflite, "mlperf-resnet8", ROOT / "build" / "qemu-resnet8")
    perf = sorted((mlperf_dir / "ic01_perf_samples").glob("*.bin"))[:samples]
    x_int8 = np.stack(
        [(np.fromfile(f, np.uint8).reshape(32, 32, 3).astype(np.int16) - 128).astype(np.int8) for f in perf]
    )
    _demo_samples(root, x_int8.view(np.uint8), "mlperf-resnet8")
    slices = native_check.device_slices(root)
    result = measure(root, slices, x_int8, defines=("-DEEQ_BENCH_INT8_INPUT",))
    result["model"] = "MLPerf Tiny ResNet-8 (pretrainedResnet_quant.tflite), one slice"
    return result


def _num(v: int | None) -> str:
    return "not built" if v is None else f"{v:,}"


def table(results: dict) -> str:
    rows = [
        "| model | build | instructions / inference (all device slices) | conv instructions | flash B | RAM B |",
        "|---|---|---|---|---|---|",
    ]
    for r in results.values():
        for name in ("plain", "simd"):
            m = r[name]
            inf = m["per_inference_all_slices"]["mean"]
            rows.append(
                f"| {r['model'].split(',')[0]} | {name} | {inf:,} | {m['per_kernel_kind_mean'].get(CONV, 0):,} | "
                f"{_num(m['image'].get('flash'))} | {_num(m['image'].get('ram'))} |"
            )
    return "\n".join(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--samples", type=int, default=8, help="test images per bench run (default 8)")
    p.add_argument("--mlperf-dir", type=Path, default=ROOT.parent / "shared/data/mlperf-tiny")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/qemu_instructions.json")
    args = p.parse_args()
    if qemu.missing_tools():
        raise SystemExit(f"needs {', '.join(qemu.missing_tools())}: {qemu.INSTALL_HINT}")
    results = {"fashion-mnist": default_model(args.samples)}
    if (args.mlperf_dir / "pretrainedResnet_quant.tflite").is_file():
        results["mlperf-resnet8"] = resnet8(args.mlperf_dir, args.samples)
    else:
        print(f"no MLPerf Tiny model in {args.mlperf_dir}: ResNet-8 left out")
    results["method"] = {
        "emulator": "qemu-system-arm -M mps2-an386 -icount shift=0 (1 ns of virtual time per instruction)",
        "clock": f"TIMER0 at 25 MHz: one tick = {qemu.INSNS_PER_TICK} instructions",
        "compiler": "arm-none-eabi-gcc -mcpu=cortex-m4 -mfloat-abi=hard -O2, newlib-nano, --gc-sections",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(table({k: v for k, v in results.items() if k != "method"}))
    for k, r in results.items():
        if k != "method":
            print(f"{k}: conv SIMD speed-up {r['conv_simd_speedup']}x, whole inference {r['inference_simd_speedup']}x")


if __name__ == "__main__":
    main()
