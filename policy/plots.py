"""``policy compare``'s figures: mean reward per policy and beta; decisions along the link's bandwidth."""

from __future__ import annotations

from pathlib import Path

import numpy as np

SHOWN = 400  # requests of the decisions plot


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


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
    _save(plt, fig, path)


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
    _save(plt, fig, path)
