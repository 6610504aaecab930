"""Float vs int8 per exit on the full test split for the bundled models, TFLM vs LiteRT
agreement, placement on nano33; and the MLPerf Tiny ResNet-8 reference side by side.

Usage: python benchmarks/converter_accuracy.py [--cifar-dir DIR] [--fmnist-dir DIR] [--mlperf-dir DIR]
Writes benchmarks/results/converter_accuracy.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from converter import verify
from converter.build import BuildOptions, run
from earlyexit import data

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def build(model: str, data_dir: str, samples: int | None) -> dict:
    out = ROOT / "build" / f"bench-{model}"
    opts = BuildOptions(board="nano33", model=model, data_dir=data_dir, out=out, eval_samples=samples)
    return run(opts, say=lambda m: print(" ", m))


def _litert_accuracy(tflite: bytes, x_int8: np.ndarray, labels: np.ndarray) -> float:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interp = Interpreter(model_content=tflite, experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    interp.allocate_tensors()
    inp, outp = interp.get_input_details()[0]["index"], interp.get_output_details()[0]["index"]
    hits = 0
    for sample, label in zip(x_int8, labels):
        interp.set_tensor(inp, sample[None])
        interp.invoke()
        hits += int(interp.get_tensor(outp)[0].argmax() == label)
    return hits / len(labels)


def mlperf(mlperf_dir: Path, cifar_dir: str) -> dict:
    """The reference ResNet-8: bytes, TFLM arena, accuracy (input int8 = pixel - 128)."""
    tflite = (mlperf_dir / "pretrainedResnet_quant.tflite").read_bytes()
    used = verify.arena_bytes(tflite)[0]
    samples = mlperf_dir / "ic01_perf_samples"
    rows = [line.split(",") for line in (samples / "labels.csv").read_text().split()]
    perf_x = np.stack([np.fromfile(samples / f, np.uint8).reshape(32, 32, 3) for f, *_ in rows])
    perf_y = np.array([int(r[2]) for r in rows])
    test = data.load("cifar10", "test", cifar_dir)

    def as_int8(x: np.ndarray) -> np.ndarray:
        return (x.astype(np.int16) - 128).astype(np.int8)

    return {
        "bytes": len(tflite),
        "arena_used_bytes": used,
        "accuracy_lossless_200": _litert_accuracy(tflite, as_int8(perf_x), perf_y),
        "accuracy_jpeg_test": _litert_accuracy(tflite, as_int8(test.x), test.y),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--cifar-dir", default=str(SHARED / "cifar10-jpeg"))
    p.add_argument("--fmnist-dir", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--mlperf-dir", default=str(SHARED / "mlperf-tiny"))
    p.add_argument("--cifar-samples", type=int, help="verify cifar10 on N random test images only")
    args = p.parse_args()
    results = {
        "fashion-mnist": build("fashion-mnist", args.fmnist_dir, None),
        "cifar10": build("cifar10", args.cifar_dir, args.cifar_samples),
        "mlperf_resnet8": mlperf(Path(args.mlperf_dir), args.cifar_dir),
    }
    out = ROOT / "benchmarks" / "results" / "converter_accuracy.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    for model in ("fashion-mnist", "cifar10"):
        m = results[model]
        print(f"\n{model} on nano33 ({m['device_slices']} device slices), {m['verification']['samples']} test samples")
        print("| exit | tier | bytes | TFLM arena | float % | int8 % | TFLM=LiteRT argmax % |")
        print("|---|---|---|---|---|---|---|")
        for s in m["slices"]:
            accuracies = [s["float_accuracy"], s["int8_accuracy"], s["tflm_litert_argmax_agreement"]]
            cells = [s["index"], s["tier"], f"{s['bytes']:,}", f"{s['arena_bytes']:,}"]
            print("| " + " | ".join(str(c) for c in cells + [f"{100 * a:.2f}" for a in accuracies]) + " |")
    print("\nMLPerf Tiny ResNet-8:", json.dumps(results["mlperf_resnet8"]))


if __name__ == "__main__":
    main()
