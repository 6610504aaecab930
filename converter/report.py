"""``report.md`` and its plot for a build."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _cumulative_macs(manifest: dict) -> list[int]:
    return [int(m) for m in np.cumsum([s["macs"] for s in manifest["slices"]])]


def _pareto(accuracies: list[float]) -> list[bool]:
    """Exit k is on the front when no cheaper exit (an earlier one) is at least as accurate."""
    return [all(a > b for b in accuracies[:k]) for k, a in enumerate(accuracies)]


def _plot(manifest: dict, energy_mj: Callable[[int], float], path: Path) -> None:
    """Accuracy per exit against cumulative MACs and against the energy they cost on the board."""
    slices, d = manifest["slices"], manifest["device_slices"]
    macs = _cumulative_macs(manifest)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, xs, label in (
        (axes[0], [m / 1e6 for m in macs], "cumulative MMACs to reach the exit"),
        (axes[1], [energy_mj(m) for m in macs], f"energy to the exit if run on the {manifest['board']} (mJ)"),
    ):
        int8 = [100 * s["int8_accuracy"] for s in slices]
        ax.plot(xs, [100 * s["float_accuracy"] for s in slices], "o-", label="float (PyTorch)")
        ax.plot(xs, int8, "s--", label="int8 (TFLM)")
        front = [(x, a) for x, a, on in zip(xs, int8, _pareto(int8)) if on]
        ax.plot(*zip(*front), "k*", markersize=11, label="Pareto front (int8)")
        if 0 < d < len(slices):
            ax.axvline((xs[d - 1] + xs[d]) / 2, color="grey", linestyle=":", label=f"device | {manifest['edge']}")
        for k, x in enumerate(xs):
            ax.annotate(f"exit {k + 1}", (x, int8[k]), textcoords="offset points", xytext=(4, -12))
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy (%)")
    axes[0].legend()
    fig.suptitle(f"{manifest['model']['name']} on {manifest['board']}: accuracy against cost per exit")
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


def _tradeoff(manifest: dict, energy_mj: Callable[[int], float]) -> str:
    """The per-exit trade-off table: cumulative cost, accuracy, and whether the exit is on the Pareto front."""
    slices = manifest["slices"]
    int8 = [s["int8_accuracy"] for s in slices]
    rows = [
        f"| {s['index']} | {s['tier']} | {m:,} | {energy_mj(m):.3f} | {100 * s['float_accuracy']:.2f} | "
        f"{100 * s['int8_accuracy']:.2f} | {'yes' if on else 'no: an earlier exit is as accurate'} |"
        for s, m, on in zip(slices, _cumulative_macs(manifest), _pareto(int8))
    ]
    return (
        f"| exit | tier | cum. MACs | energy if run on the {manifest['board']} (mJ) | float % | int8 % | Pareto |\n"
        "|---|---|---|---|---|---|---|\n" + "\n".join(rows)
    )


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


def write(out: Path, manifest: dict, energy_mj: Callable[[int], float]) -> None:
    """``report.md`` and ``report.png`` in ``out``; ``energy_mj(macs)``: the board profile's energy for MACs."""
    _plot(manifest, energy_mj, out / "report.png")
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

## Trade-off per exit
Cumulative along the runtime path (every slice and exit head up to the exit); energy by the board
profile's compute model, as if the device ran every slice up to the exit.

{_tradeoff(manifest, energy_mj)}

![accuracy against MACs and energy per exit](report.png)

{_policy_text(out, manifest["policy"])}
"""
    (out / "report.md").write_text(text)
