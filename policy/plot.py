"""``policy compare``'s figures: device energy against accuracy, mean reward per beta, decisions along the link."""

from __future__ import annotations

from pathlib import Path

import numpy as np

MARKERS = "osD^v<>ph*"
SHOWN = 400  # requests of the decisions plot


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    plt = _pyplot()
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


def pareto_figure(rows: list[dict], title: str):
    """Device energy vs accuracy, one marker per policy, each place labelled with the betas that land there.

    Markers are hollow and shrink policy by policy, so policies that coincide show as nested shapes.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 5))
    names = list(dict.fromkeys(r["name"] for r in rows))
    at: dict[tuple[float, float], list[float]] = {}
    for n, name in enumerate(names):
        pts = [(r["device_energy_mj"], 100 * r["accuracy"]) for r in rows if r["name"] == name]
        size = 30 + 22 * (len(names) - 1 - n)
        marker = MARKERS[n % len(MARKERS)]
        ax.scatter(*zip(*pts), s=size, marker=marker, facecolors="none", edgecolors=f"C{n}", linewidths=1.4, label=name)
    for r in rows:
        betas = at.setdefault((round(r["device_energy_mj"], 9), round(100 * r["accuracy"], 6)), [])
        betas += [] if r["beta"] in betas else [r["beta"]]
    for n, ((x, y), betas) in enumerate(sorted(at.items())):  # neighbours in x: labels above, then below
        text = "β " + ", ".join(f"{b:.3g}" for b in sorted(betas))
        ax.annotate(text, (x, y), textcoords="offset points", xytext=(9, 5 - 16 * (n % 2)), fontsize=7, color="0.3")
    ax.set_xlabel("device energy per sample (mJ)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, title="policy (labels: beta)", title_fontsize=8)
    fig.tight_layout()
    return fig


def pareto(rows: list[dict], title: str, path: Path) -> None:
    """:func:`pareto_figure` as a PNG."""
    _save(pareto_figure(rows, title), path)


def reward_vs_beta(rows: list[dict], path: Path) -> None:
    """Mean reward divided by beta (so that betas share one axis) per policy against beta."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for name in dict.fromkeys(r["name"] for r in rows):
        pts = sorted((r["beta"], r["mean_reward"] / r["beta"]) for r in rows if r["name"] == name)
        ax.plot(*zip(*pts), marker="o", label=name)
    ax.set(xscale="log", xlabel="beta", ylabel="mean reward / beta")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)


def decisions(outcomes: dict[str, dict[str, np.ndarray]], beta: float, path: Path) -> None:
    """The first requests of the test sequence: bandwidth and edge wait, and where each policy answered."""
    plt = _pyplot()
    first = next(iter(outcomes.values()))
    t = np.arange(min(SHOWN, len(first["exit"])))
    fig, axes = plt.subplots(len(outcomes) + 1, 1, figsize=(9, 2 + 1.6 * len(outcomes)), sharex=True)
    axes[0].plot(t, first["bandwidth_bps"][t] / 1e3, lw=0.8, label="bandwidth (kbit/s)")
    axes[0].plot(t, 1e3 * first["edge_wait_s"][t], lw=0.8, label="edge wait (ms)")
    axes[0].set_yscale("symlog", linthresh=10)
    axes[0].legend(fontsize=7, loc="upper right")
    for ax, (name, f) in zip(axes[1:], outcomes.items()):
        off = f["offloaded"][t] > 0
        ax.scatter(t[~off], f["exit"][t][~off], s=5, label="answered on the device")
        ax.scatter(t[off], f["exit"][t][off], s=5, label="offloaded")
        gone = f["unanswered"][t] > 0
        ax.scatter(t[gone], np.zeros(gone.sum()), s=5, c="k", label="battery empty")
        ax.set_ylabel(f"{name}\nexit")
        ax.legend(fontsize=7, loc="upper right")
    axes[-1].set_xlabel(f"request (one per second), beta {beta:.3g}")
    _save(fig, path)
