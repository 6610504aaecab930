"""``report.md`` and its plot for a build."""

from __future__ import annotations

import json
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


def _policy_text(out: Path, policy: dict) -> str:
    """What decides where: the device's policy (a learned one described as what it is) and the upper tiers'."""
    thresholds = f"confidence thresholds per exit {policy['thresholds']}"
    if policy["kind"] == "threshold":
        return f"Policy embedded: {thresholds} (device and edge)."
    device = json.loads((out / policy["device"]).read_text())
    if policy["kind"] == "dqn":
        sizes = [len(device["layers"][0]["weights"][0])] + [len(ly["weights"]) for ly in device["layers"]]
        what = f"learned Q-network: int8 MLP {'-'.join(map(str, sizes))}, {len(sizes) - 2} hidden layers"
    else:
        what = (
            f"learned Q-table: int16 over {len(device['table'])} confidence bins x device exit x bandwidth x time left"
        )
    learned = f"{policy['kind']} ({what}; {policy['source']}"
    if "agreement" in policy:
        learned += f"; decides like the float policy on {100 * policy['agreement']:.2f} % of device steps"
    return f"Device policy: {learned}). The edge answers by {thresholds}."


def write(out: Path, manifest: dict) -> None:
    _plot(manifest, out / "report.png")
    fit = manifest["fit"]
    v = manifest["verification"]
    edge = manifest["edge"] or "edge"

    def ms(s: dict, tier: str) -> str:
        return str(s["estimated_latency_ms"]) if s["tier"] == tier and s["estimated_latency_ms"] is not None else "-"

    header = (
        "| slice | tier | bytes | TFLM arena | MACs | float % | int8 % | TFLM = LiteRT argmax % | "
        f"est. ms on {manifest['board']} | est. ms on {edge} | ops |"
    )
    rows = "\n".join(
        f"| {s['index']} | {s['tier']} | {s['bytes']:,} | {s['arena_bytes']:,} | {s['macs']:,} | "
        f"{100 * s['float_accuracy']:.2f} | {100 * s['int8_accuracy']:.2f} | "
        f"{100 * s['tflm_litert_argmax_agreement']:.2f} | {ms(s, 'device')} | {ms(s, 'edge')} | {' '.join(s['ops'])} |"
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

{header}
|---|---|---|---|---|---|---|---|---|---|---|
{rows}

![accuracy vs MACs](report.png)

{_policy_text(out, manifest["policy"])}
"""
    (out / "report.md").write_text(text)
