"""Native C vs TFLite Micro: every logit and trunk byte over a test split, on the host and on a Cortex-M4.

    python benchmarks/native_exactness.py [--qemu-samples 200] [--cifar-samples 2000]

Builds the default model (and, with --cifar-samples, the bundled cifar10 model) with
``--runtime native``, runs its device slices compiled by the host gcc over the whole test
split and compares every output with TFLite Micro's Python interpreter; then compiles them for
QEMU's mps2-an386 (plain C and -DEENATIVE_SIMD) and compares the first --qemu-samples again,
counting instructions per kernel (-icount shift=0: one SysTick tick per 40 instructions).
--resnet8 adds the MLPerf Tiny ResNet-8 (../shared/data/mlperf-tiny) on its 200 samples. Updates
the entries it measured in benchmarks/results/native_exactness.json. Hold the CPU lock: it runs minutes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from converter import native_check, verify  # noqa: E402
from converter.build import BuildOptions, run  # noqa: E402
from converter.native_graph import lower  # noqa: E402
from earlyexit import checkpoint, data  # noqa: E402

INSNS_PER_TICK = 40


def _head(out: verify.ChainOutputs, n: int) -> verify.ChainOutputs:
    return verify.ChainOutputs([a[:n] for a in out.logits], [a[:n] for a in out.trunks])


def _qemu(build: Path, slices, x: np.ndarray, ref: verify.ChainOutputs, work: Path) -> dict:
    kinds = [[(op.kind, op.layer) for op in lower(s.tflite, f"slice {s.index + 1}").ops] for s in slices]
    runs = {}
    for simd in (False, True):
        name = "simd" if simd else "plain"
        elf = native_check.compile_qemu(build, work / f"{name}.elf", simd, profile=True)
        t0 = time.perf_counter()
        out, ticks = native_check.run_qemu(elf, slices, x, work / name, timeout=3600)
        ops = [
            {
                "slice": s + 1,
                "op": j,
                "kind": kinds[s][j][0],
                "layer": kinds[s][j][1],
                "instructions_per_inference": t * INSNS_PER_TICK / len(x),
            }
            for (s, j), t in sorted(ticks.items())
        ]
        runs[name] = {
            "comparison": native_check.compare(out, ref).to_json(),
            "seconds": round(time.perf_counter() - t0, 1),
            "ops": ops,
        }
    conv = {k: sum(o["instructions_per_inference"] for o in runs[k]["ops"] if o["kind"] == "conv") for k in runs}
    total = {k: sum(o["instructions_per_inference"] for o in runs[k]["ops"]) for k in runs}
    return {
        "samples": len(x),
        "runs": runs,
        "conv_instructions_per_inference": conv,
        "total_instructions_per_inference": total,
        "conv_simd_speedup": round(conv["plain"] / conv["simd"], 3),
        "per_conv_layer_speedup": [
            round(p["instructions_per_inference"] / s["instructions_per_inference"], 3)
            for p, s in zip(runs["plain"]["ops"], runs["simd"]["ops"])
            if p["kind"] == "conv"
        ],
    }


def evaluate(build: Path, x: np.ndarray, qemu_samples: int) -> dict:
    """Host comparison over all of ``x``; QEMU plain/SIMD over its first ``qemu_samples``."""
    slices = native_check.device_slices(build)
    t0 = time.perf_counter()
    ref = verify.run_chain(slices, x, verify.tflm_runner)
    tflm_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        native = native_check.run_host(native_check.compile_host(build, work / "check"), slices, x)
        host_s = time.perf_counter() - t0
        result = {
            "samples": len(x),
            "host": native_check.compare(native, ref).to_json(),
            "seconds": {"tflm_python": round(tflm_s, 1), "native_host": round(host_s, 1)},
            "manifest_runtime": json.loads((build / "manifest.json").read_text())["runtime"],
        }
        tools = all(shutil.which(t) for t in (native_check.ARM_CC, native_check.QEMU))
        if qemu_samples and tools:
            n = min(qemu_samples, len(x))
            result["qemu"] = _qemu(build, slices, x[:n], _head(ref, n), work)
        elif qemu_samples:
            result["qemu"] = "skipped: arm-none-eabi-gcc or qemu-system-arm missing"
    return result


def _inputs(build: Path, model: str, test: data.Dataset) -> np.ndarray:
    ckpt = checkpoint.load(model)
    first = native_check.device_slices(build)[0].input
    return verify.quantize_images(test.x, verify.input_lut(ckpt.mean, ckpt.std, first.scale, first.zero_point))


def resnet8(mlperf_dir: Path, out: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """The MLPerf Tiny ResNet-8 as a one-slice native build, its 200 performance samples as int8
    (pixel - 128, as the benchmark feeds it) and their labels."""
    build = native_check.standalone_build((mlperf_dir / "pretrainedResnet_quant.tflite").read_bytes(), "resnet8", out)
    samples = mlperf_dir / "ic01_perf_samples"
    rows = [line.split(",") for line in (samples / "labels.csv").read_text().split()]
    x = np.stack([np.fromfile(samples / f, np.uint8).reshape(32, 32, 3) for f, *_ in rows])
    return build, (x.astype(np.int16) - 128).astype(np.int8), np.array([int(r[2]) for r in rows])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--samples", type=int, help="first N images of fashion-mnist's test split (default: all)")
    p.add_argument("--qemu-samples", type=int, default=200, help="samples per QEMU run (0: skip QEMU)")
    p.add_argument("--cifar-samples", type=int, default=0, help="also check cifar10's device slices on N samples")
    p.add_argument("--cifar-dir", default=str(ROOT.parent / "shared/data/cifar10-jpeg"))
    p.add_argument("--resnet8", action="store_true", help="also the MLPerf Tiny ResNet-8 reference model")
    p.add_argument("--mlperf-dir", type=Path, default=ROOT.parent / "shared/data/mlperf-tiny")
    p.add_argument("--skip-fmnist", action="store_true", help="leave the default model out")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/native_exactness.json")
    args = p.parse_args()
    results = json.loads(args.out.read_text()) if args.out.is_file() else {}
    if not args.skip_fmnist:
        fm = ROOT / "build/native-fashion-mnist"
        run(BuildOptions(board="nano33", runtime="native", out=fm))
        test = data.load("fashion-mnist", "test")
        test = data.Dataset(test.name, test.split, test.x[: args.samples], test.y[: args.samples], test.classes)
        results["fashion-mnist"] = evaluate(fm, _inputs(fm, "fashion-mnist", test), args.qemu_samples)
    if args.resnet8:
        build, x, y = resnet8(args.mlperf_dir, ROOT / "build/native-resnet8")
        results["mlperf-resnet8"] = evaluate(build, x, args.qemu_samples)
        ref = verify.run_chain(native_check.device_slices(build), x, verify.tflm_runner)
        results["mlperf-resnet8"]["tflm_accuracy"] = float((ref.logits[0].argmax(1) == y).mean())
    if args.cifar_samples:
        cf = ROOT / "build/cifar10-nano33"
        run(
            BuildOptions("nano33", model="cifar10", data_dir=args.cifar_dir, eval_samples=200, runtime="native", out=cf)
        )
        test = data.load("cifar10", "test", args.cifar_dir)
        keep = np.sort(np.random.default_rng(2).choice(len(test), min(args.cifar_samples, len(test)), replace=False))
        subset = data.Dataset(test.name, test.split, test.x[keep], test.y[keep], test.classes)
        results["cifar10"] = evaluate(cf, _inputs(cf, "cifar10", subset), args.qemu_samples)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    for model, r in results.items():
        print(f"{model}: {r['samples']} samples, host identical: {r['host']['identical']}", end="")
        if isinstance(r.get("qemu"), dict):
            q = r["qemu"]
            same = all(q["runs"][k]["comparison"]["identical"] for k in q["runs"])
            speedup = q["conv_simd_speedup"]
            print(f"; QEMU {q['samples']} samples identical: {same}, conv SIMD speed-up {speedup}x", end="")
        print()


if __name__ == "__main__":
    main()
