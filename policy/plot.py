"""``policy compare``'s plot: device energy against accuracy per policy and beta."""

from __future__ import annotations

from pathlib import Path

MARKERS = "osD^v<>ph*"


def pareto_figure(rows: list[dict], title: str):
    """Device energy vs accuracy, one marker per policy, each place labelled with the betas that land there.

    Markers are hollow and shrink policy by policy, so policies that coincide show as nested shapes.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    import matplotlib.pyplot as plt

    fig = pareto_figure(rows, title)
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
