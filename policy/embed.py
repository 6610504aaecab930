"""``converter build --policy dqn|tabular|FILE``: the learned device policy to embed in a build.

``FILE`` (written by ``policy train --out``) is exported as it is. ``dqn`` or ``tabular``
without a file learns one first, as ``policy train`` would with ``--offload-at-split``: on the
traces of the model's training hold-out (cached under the build cache), 10,000 episodes
(``--policy-episodes``), seed 0, the build's own placement and board costs, a random-walk
bandwidth around the link's nominal figure, a deadline of 1.5 x the all-local device time, and
``beta`` (default: the calibrated beta between the last two device exits, seed eq. 4.1).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from earlyexit import checkpoint
from policy import commands, dqn, export, tabular
from policy.bandwidth import Bandwidth
from policy.costs import from_slices
from policy.env import EnvConfig, TraceEnv
from policy.intpolicy import LearnedPolicy

EPISODES = 10_000
AGREEMENT_SAMPLES = 5000


@dataclass(frozen=True)
class Placed:
    """A build's chain as placed: MACs and trunk activation bytes per slice (0 for the last), device slices, board
    (a profile's name or path) and its link to the edge (None: the profile's first)."""

    macs: tuple[int, ...]
    trunk_bytes: tuple[int, ...]
    device_slices: int
    board: str
    link: str | None = None


@dataclass(frozen=True)
class Embedded:
    policy: LearnedPolicy
    summary: dict  # for the manifest


def default_beta(calibration: list[tuple[int, int, float]], device_slices: int) -> float:
    """The calibrated beta between the last two device exits, else the first calibrated one."""
    if not calibration:
        raise ValueError(
            "the hold-out traces give no calibrated beta (no exit improves on the one before); pass --policy-beta"
        )
    return next((b for i, j, b in calibration if j == device_slices), calibration[0][2])


def learned(
    choice: str,
    ckpt: checkpoint.Checkpoint,
    placed: Placed,
    scales: list[float],
    data_dir: str | None,
    cache: Path,
    beta: float | None,
    episodes: int = EPISODES,
    class_weights: tuple[float, ...] = (),
    progress: bool | None = False,
) -> Embedded:
    """Export ``choice`` (a policy file) or learn a ``dqn`` / ``tabular`` policy for this build and export it.

    The one entry point of ``converter build --policy``: the build's placed chain gives the cost model.
    ``class_weights``: the reward weight of a correct answer per class (learning only); ``progress``: bars on stderr.
    """
    costs = from_slices(list(placed.macs), placed.trunk_bytes, placed.device_slices, placed.board, link=placed.link)
    classes = ckpt.arch.num_classes
    if choice not in ("dqn", "tabular"):
        path = Path(choice)
        if not path.is_file():
            raise ValueError(
                f"--policy {choice}: no such file; choose threshold, dqn, tabular or a file written by "
                "`python -m converter policy train ... --out FILE`"
            )
        return Embedded(export.export_file(path, costs, scales, classes), {"source": str(path)})
    fit = commands.traces_for(ckpt, commands.LEARN_SPLIT, data_dir, cache, progress)
    beta = beta if beta is not None else default_beta(commands.calibrated_betas(fit), costs.device_slices)
    cfg = EnvConfig(
        beta=beta, deadline_s=commands.default_deadline_s(costs), offload_at_split=True, class_weights=class_weights
    )
    nominal = costs.tiers[0].links[0].bandwidth_bps
    env = TraceEnv(fit, costs, cfg, Bandwidth("walk", nominal, seed=0), seed=0)
    if choice == "dqn":
        policy = dqn.train(env, dqn.DQNConfig(episodes=episodes), progress=progress)[0]
    else:
        policy = tabular.train(env, tabular.TabularConfig(episodes=episodes), progress=progress)
    exported = export.export_learned(policy, env, scales, classes)
    check = TraceEnv(
        fit, costs, cfg, Bandwidth("walk", nominal, seed=1), order=np.arange(min(len(fit.label), AGREEMENT_SAMPLES))
    )
    same, steps, _ = export.agreement(check, policy, exported, scales)
    summary = {
        "source": f"trained: {choice}, beta {beta:.6g}, {episodes} episodes on {fit.dataset}/{fit.split}",
        "beta": beta,
        "agreement": round(same / steps, 6),
        **({"class_weights": list(class_weights)} if class_weights else {}),
    }
    return Embedded(exported, summary)
