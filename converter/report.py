"""``report.md`` and its plot for a build."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _plot(manifest: dict, path: Path) -> None:
    slices = manifest["slices"]
    macs, total = [], 0
    for s in slices:
        total += s["macs"]
        macs.append(total / 1e6)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(macs, [100 * s["float_accuracy"] for s in slices], "o-", label="float (PyTorch)")
    ax.plot(macs, [100 * s["int8_accuracy"] for s in slices], "s--", label="int8 (TFLM)")
    d = manifest["device_slices"]
    if 0 < d < len(slices):
        ax.axvline((macs[d - 1] + macs[d]) / 2, color="grey", linestyle=":", label=f"device | {manifest['edge']}")
    for k, x in enumerate(macs):
        ax.annotate(f"exit {k + 1}", (x, 100 * slices[k]["int8_accuracy"]), textcoords="offset points", xytext=(4, -12))
    ax.set_xlabel("cumulative MMACs to reach the exit")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"{manifest['model']['name']} on {manifest['board']}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


def write(out: Path, manifest: dict) -> None:
    _plot(manifest, out / "report.png")
    fit = manifest["fit"]
    v = manifest["verification"]
    rows = "\n".join(
        f"| {s['index']} | {s['tier']} | {s['bytes']:,} | {s['arena_bytes']:,} | {s['macs']:,} | "
        f"{100 * s['float_accuracy']:.2f} | {100 * s['int8_accuracy']:.2f} | "
        f"{100 * s['tflm_litert_argmax_agreement']:.2f} | {s['estimated_latency_ms']} | {' '.join(s['ops'])} |"
        for s in manifest["slices"]
    )
    text = f"""# Build report: {manifest["model"]["name"]} on {manifest["board"]}

Model `{manifest["model"]["hash"][:16]}` ({manifest["model"]["arch"]}, {manifest["model"]["dataset"]}).
{manifest["device_slices"]} of {len(manifest["slices"])} slices on the device, the rest on `{manifest["edge"]}`.

| resource | needed | available to the model |
|---|---|---|
| flash (device slices) | {fit["flash_needed"]:,} B | {fit["flash_available"]:,} B |
| RAM (arena {fit["arena_bytes"]:,} B + device core buffers) | {fit["ram_needed"]:,} B | {fit["ram_available"]:,} B |

Verified on {v["samples"]} samples of `{v["dataset"]}`; TFLM and LiteRT (reference kernels)
trunk activations identical at every boundary: {all(v["trunks_identical"])}.

| slice | tier | bytes | TFLM arena | MACs | float % | int8 % | TFLM = LiteRT argmax % | est. device ms | ops |
|---|---|---|---|---|---|---|---|---|---|
{rows}

![accuracy vs MACs](report.png)

Policy embedded: {manifest["policy"]["kind"]} {manifest["policy"]["thresholds"]}.
"""
    (out / "report.md").write_text(text)
