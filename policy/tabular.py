"""Tabular Q-learning over a discretized state: top probability, exit, tier, bandwidth, time left."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from earlyexit.console import bar
from policy.env import TraceEnv


@dataclass(frozen=True)
class TabularConfig:
    episodes: int = 10_000
    confidence_bins: int = 10
    bandwidth_bins: int = 4
    time_bins: int = 4
    lr: float = 0.1
    eps_start: float = 1.0
    eps_end: float = 0.02
    seed: int = 0


class TabularPolicy:
    """Q-table indexed by :meth:`index`; greedy among the allowed actions."""

    def __init__(self, cfg: TabularConfig, num_exits: int, num_tiers: int) -> None:
        self.cfg = cfg
        self.shape = (cfg.confidence_bins, num_exits, num_tiers, cfg.bandwidth_bins, cfg.time_bins)
        self.q = np.zeros((*self.shape, 3), np.float32)

    def index(self, env: TraceEnv) -> tuple[int, ...]:
        s, c = env.state, env.cfg
        top = float(env.traces.probs[s.sample, s.exit].max())
        link = env.costs.tiers[0].links[0].bandwidth_bps
        bw = min(self.cfg.bandwidth_bins - 1, int(np.log2(max(1.0, s.bandwidth_bps / (link / 8)))))
        left = 1.0 - env.finish_time(s) / c.deadline_s
        return (
            min(self.cfg.confidence_bins - 1, int(top * self.cfg.confidence_bins)),
            s.exit,
            s.tier,
            bw,
            min(self.cfg.time_bins - 1, max(0, int(left * self.cfg.time_bins))),
        )

    def __call__(self, env: TraceEnv) -> int:
        q = self.q[self.index(env)].copy()
        q[~env.mask()] = -np.inf
        return int(q.argmax())


def train(env: TraceEnv, cfg: TabularConfig, progress: bool | None = False) -> TabularPolicy:
    """Q-learning on ``env``; ``progress`` (None: when stderr is a terminal): a bar over the episodes on stderr."""
    rng = np.random.default_rng(cfg.seed)
    env.reset(seed=cfg.seed)
    policy = TabularPolicy(cfg, env.costs.num_exits, len(env.costs.tiers))
    episodes = bar(range(cfg.episodes), progress=progress, desc=f"tabular Q (beta {env.cfg.beta:.3g})", unit="episode")
    for episode in episodes:
        eps = cfg.eps_start + min(1.0, episode / (0.6 * cfg.episodes)) * (cfg.eps_end - cfg.eps_start)
        _, info = env.reset()
        done = False
        while not done:
            idx = policy.index(env)
            action = int(rng.choice(np.flatnonzero(info["mask"]))) if rng.random() < eps else policy(env)
            _, reward, done, _, info = env.step(action)
            future = 0.0
            if not done:
                q_next = policy.q[policy.index(env)].copy()
                q_next[~info["mask"]] = -np.inf
                future = float(q_next.max())
            policy.q[idx][action] += cfg.lr * (reward + future - policy.q[idx][action])
    return policy
