"""Accuracy against cumulative device MACs and device energy, per exit, for every model we have.

Trained points: the bundled models, with the accuracies of their eval results
(benchmarks/results/NAME-eval.json, and NAME-eval-mlperf-perf.json on the 200 lossless
MLPerf Tiny samples), refused when a result was measured on other weights. Reference point:
the MLPerf Tiny int8 ResNet-8 (.tflite), run here in LiteRT's reference kernels on the 200 lossless samples.
The family's checkpoints trained by benchmarks/train_models.sh but not bundled (runs/ARCH.pt) count
as trained points the same way; architectures without either contribute their profiled cost only.
Energy: the board profile's compute model (cycles per MAC x clock x active power).

Writes benchmarks/results/tradeoff.{json,md,png}.
Usage: python benchmarks/tradeoff.py [--mlperf-dir ../shared/data/mlperf-tiny] [--board nano33]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from contracts import boards
from earlyexit import checkpoint, data
from earlyexit.model import EarlyExitNet
from earlyexit.profile import exit_costs
from earlyexit.zoo import build_arch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
RUNS = ROOT / "runs"
ARCHS = ("resnet8", "ee-resnet-s", "ee-resnet-m")  # from runs/ when trained there, else cost only


def _accuracy(path: Path, model_hash: str) -> list[float] | None:
    if not path.is_file():
        return None
    result = json.loads(path.read_text())
    if result["model_hash"] != model_hash:
        sys.exit(f"error: {path} was measured on other weights; rerun `python -m earlyexit eval ... --json {path}`")
    return [round(100 * e["accuracy"], 2) for e in result["exits"]]


def _rows(net: EarlyExitNet, board: boards.Board, **fields: object) -> list[dict]:
    return [
        {
            **fields,
            "exit": c.exit + 1,
            "cumulative_macs": c.cumulative_macs,
            "int8_weight_kb": round(c.cumulative_int8_weight_bytes / 1024, 1),
            f"{board.name}_energy_mj": round(board.energy_mj_for(c.cumulative_macs), 4),
        }
        for c in exit_costs(net)
    ]


def _trained(name: str, ckpt: checkpoint.Checkpoint, board: boards.Board) -> list[dict]:
    h = ckpt.model_hash()
    test = _accuracy(RESULTS / f"{name}-eval.json", h)
    perf = _accuracy(RESULTS / f"{name}-eval-mlperf-perf.json", h)
    rows = _rows(ckpt.net, board, model=name, arch=ckpt.arch.name, dataset=ckpt.dataset, trained=True)
    return [
        {**r, "test_accuracy": test[r["exit"] - 1] if test else None}
        | {"mlperf_perf_accuracy": perf[r["exit"] - 1] if perf else None}
        for r in rows
    ]


def bundled(board: boards.Board) -> list[dict]:
    return [row for name in checkpoint.bundled_models() for row in _trained(name, checkpoint.load(name), board)]


def family(board: boards.Board) -> list[dict]:
    """ARCHS not bundled: trained rows from runs/NAME.pt where it exists, else their cost only."""
    out = []
    for name in (a for a in ARCHS if a not in checkpoint.bundled_models()):
        if (RUNS / f"{name}.pt").is_file():
            out += _trained(name, checkpoint.load(str(RUNS / f"{name}.pt")), board)
            continue
        rows = _rows(EarlyExitNet(build_arch(name)), board, model=f"--arch {name}", arch=name, dataset="cifar10")
        out += [{**r, "trained": False, "test_accuracy": None, "mlperf_perf_accuracy": None} for r in rows]
    return out


def reference(mlperf_dir: Path, board: boards.Board) -> list[dict]:
    """The MLPerf Tiny int8 ResNet-8 on the 200 lossless samples, in LiteRT's reference kernels.

    (Its default XNNPACK delegate rounds otherwise: 85.0 % instead of 86.5 %.)
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    ds = data.load("mlperf-perf", "test", mlperf_dir)
    interp = Interpreter(
        model_path=str(mlperf_dir / "pretrainedResnet_quant.tflite"),
        experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
    )
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    scale, zero = inp["quantization"]
    hits = 0
    for x, y in zip(ds.x, ds.y):
        q = np.clip(np.round(x.astype(np.float32) / scale + zero), -128, 127).astype(np.int8)
        interp.set_tensor(inp["index"], q[None])
        interp.invoke()
        hits += int(np.argmax(interp.get_tensor(out["index"])[0]) == y)
    (row,) = _rows(EarlyExitNet(build_arch("resnet8")), board, model="MLPerf Tiny ResNet-8 (int8 .tflite)")
    return [
        {**row, "arch": "resnet8", "dataset": "cifar10 (original)", "trained": True, "test_accuracy": None}
        | {"mlperf_perf_accuracy": round(100 * hits / len(ds), 2)}
    ]


def table(rows: list[dict], board: str) -> str:
    pct = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    lines = [
        f"| model | dataset | exit | cum. MACs | int8 KB | {board} mJ | test % | MLPerf perf % |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        name = r["model"] + ("" if r["trained"] else " (untrained)")
        lines.append(
            f"| {name} | {r['dataset']} | {r['exit']} | {r['cumulative_macs']:,} | {r['int8_weight_kb']} | "
            f"{r[f'{board}_energy_mj']} | {pct(r['test_accuracy'])} | {pct(r['mlperf_perf_accuracy'])} |"
        )
    return "\n".join(lines) + "\n"


def figure(rows: list[dict], board: str, path: Path) -> None:
    """Two panels (MACs, energy); trained exits as lines, untrained archs as ticks under the axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    for ax, key, label in ((axes[0], "cumulative_macs", "cumulative MACs (M)"), (axes[1], f"{board}_energy_mj", "")):
        scale = 1e6 if key == "cumulative_macs" else 1.0
        for model in dict.fromkeys(r["model"] for r in rows):
            mine = [r for r in rows if r["model"] == model]
            xs = [r[key] / scale for r in mine]
            for acc, style, split in (("test_accuracy", "o-", "test"), ("mlperf_perf_accuracy", "s--", "MLPerf perf")):
                ys = [r[acc] for r in mine]
                if all(y is not None for y in ys):
                    ax.plot(xs, ys, style, label=f"{model} ({mine[0]['dataset']}, {split})")
            if not mine[0]["trained"]:
                ax.plot(xs, [0] * len(xs), "|", markersize=14, label=f"{model}: exits (untrained)")
        ax.set_xlabel(label or f"device energy to the exit on {board} (mJ, board profile)")
        ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="lower right")
    fig.suptitle("accuracy per exit against its cumulative device cost")
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mlperf-dir", type=Path, default=ROOT.parent / "shared" / "data" / "mlperf-tiny")
    p.add_argument("--board", default="nano33")
    args = p.parse_args()
    board = boards.load(args.board)
    rows = bundled(board)
    if (args.mlperf_dir / "pretrainedResnet_quant.tflite").is_file():
        rows += reference(args.mlperf_dir, board)
    else:
        print(f"no {args.mlperf_dir}/pretrainedResnet_quant.tflite: the MLPerf reference point is left out")
    rows += family(board)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "tradeoff.json").write_text(json.dumps({"board": board.name, "rows": rows}, indent=1) + "\n")
    (RESULTS / "tradeoff.md").write_text(table(rows, board.name))
    figure(rows, board.name, RESULTS / "tradeoff.png")
    print(table(rows, board.name) + f"wrote {RESULTS}/tradeoff.{{json,md,png}}")


if __name__ == "__main__":
    main()
