"""The Stay / Exit / Offload decision process, replaying per-sample exit traces (Gymnasium API).

One episode is one sample. Slice 1 runs on the device, then at every exit the tier holding
the computation chooses: STAY (run the next slice here), EXIT (answer now) or OFFLOAD (send
the activation up one tier, which runs the next slice). The request sees the link's bandwidth now
and the shared edge's queueing wait now; with a battery budget, requests form days of
``day_requests`` that share ``battery_mj`` (a request the battery can no longer start goes
unanswered). Reward per step:
``-alpha * device_energy / energy_unit - price_weight * price``, plus ``beta * correct`` (times an
optional per-class weight) when answering. Actions that cannot finish within the deadline or
the energy budget, or that the placement forbids, are masked; taking one anyway forces the
answer and costs ``penalty`` (a miss).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np

from earlyexit.traces import Traces
from policy.bandwidth import Bandwidth
from policy.costs import CostModel
from policy.edgeload import EdgeLoad

STAY, EXIT, OFFLOAD = 0, 1, 2
ACTIONS = ("stay", "exit", "offload")
SUMMARY = 3  # max probability, margin, normalized entropy
# Policy files record it; raised whenever a feature of the observation changes meaning
# (2: energy counted in all-local inferences, no longer in slices per exit; 3: edge wait and battery pace added).
OBSERVATION_VERSION = 3
FEATURE_MAX = (8 * 4096 - 1) / 4096  # the device clamps its Q12 features here; the pace of no battery budget


@dataclass(frozen=True)
class EnvConfig:
    beta: float
    alpha: float = 1.0
    deadline_s: float = 1.0
    energy_budget_mj: float = float("inf")
    penalty: float = 1.0
    price_weight: float = 0.0
    features: str = "summary"  # or "full" (the whole softmax vector)
    allow_offload: bool = True
    offload_at_split: bool = False  # the device offloads only at its last exit, as the firmware does
    class_weights: tuple[float, ...] = field(default=())
    battery_mj: float = float("inf")  # device energy for one day of requests
    day_requests: int = 1000  # requests per day (one per second; the battery is full at each day's start)


def prediction_features(probs: np.ndarray, kind: str) -> np.ndarray:
    """Features of softmax vectors (last axis): summary (max, margin, entropy / log C) or the full vector."""
    if kind == "full":
        return probs.astype(np.float32)
    top2 = np.sort(probs, axis=-1)[..., -2:]
    entropy = -np.sum(probs * np.log(np.clip(probs, 1e-12, 1.0)), axis=-1) / np.log(probs.shape[-1])
    return np.stack([top2[..., 1], top2[..., 1] - top2[..., 0], entropy], axis=-1).astype(np.float32)


@dataclass
class State:
    sample: int
    exit: int  # 0-based exit just computed
    tier: int
    time_s: float
    energy_mj: float
    bandwidth_bps: float
    bytes_sent: int = 0
    offloaded: bool = False
    edge_wait_s: float = 0.0  # the shared edge's queueing wait for this request
    battery_mj: float = float("inf")  # battery left at the request's start
    pace: float = FEATURE_MAX  # battery left per request left in the day, in energy units (clipped)
    unanswered: bool = False  # the battery could not start it


def _replace(s: State, **changes) -> State:
    """A new state: ``s`` with ``changes`` (``dataclasses.replace`` without its per-call field checks)."""
    new = object.__new__(State)
    new.__dict__.update(s.__dict__, **changes)
    return new


class TraceEnv(gym.Env):
    """Replays ``traces`` under ``costs``; ``order`` fixes the sample sequence (evaluation)."""

    metadata = {"render_modes": []}

    def __init__(
        self,
        traces: Traces,
        costs: CostModel,
        config: EnvConfig,
        bandwidth: Bandwidth,
        order: np.ndarray | None = None,
        seed: int = 0,
        edge: EdgeLoad | None = None,
    ) -> None:
        self.traces, self.costs, self.cfg, self.bandwidth, self.edge = traces, costs, config, bandwidth, edge
        self.order = order
        self.rng = np.random.default_rng(seed)
        n_classes = traces.probs.shape[2]
        pred = n_classes if config.features == "full" else SUMMARY
        self.obs_size = pred + 1 + len(costs.tiers) + 6
        self.features = prediction_features(traces.probs, config.features)  # per sample and exit
        self.restart()
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (self.obs_size,), np.float32)
        self.action_space = gym.spaces.Discrete(3)
        self.state: State | None = None
        self._masked: tuple[State | None, np.ndarray] = (None, np.ones(3, bool))

    # -- transitions ----------------------------------------------------------------------
    def _after(self, s: State, action: int) -> State:
        """The state after a STAY or OFFLOAD (deterministic given the bandwidth now)."""
        c = self.costs
        k = s.exit + 1
        if action == STAY:
            return _replace(
                s,
                exit=k,
                time_s=s.time_s + c.compute_seconds(k, s.tier),
                energy_mj=s.energy_mj + c.compute_energy_mj(k, s.tier),
            )
        seconds, energy, size = c.transfer(s.exit, s.tier, s.bandwidth_bps)
        tier = s.tier + 1
        wait = s.edge_wait_s if tier == 1 else 0.0
        return _replace(
            s,
            exit=k,
            tier=tier,
            time_s=s.time_s + seconds + wait + c.compute_seconds(k, tier),
            energy_mj=s.energy_mj + energy,
            bytes_sent=s.bytes_sent + (size if s.tier == 0 else 0),
            offloaded=True,
        )

    def finish_time(self, s: State) -> float:
        """Time at which the device holds the answer if the tier answers now."""
        return s.time_s + self.costs.answer_seconds(s.tier, s.bandwidth_bps)

    def mask(self, s: State | None = None) -> np.ndarray:
        """Which of STAY, EXIT, OFFLOAD are allowed and can still meet the constraints (a copy)."""
        s = s or self.state
        if s is self._masked[0]:  # states are replaced, never changed: the last one's mask holds
            return self._masked[1].copy()
        c, cfg = self.costs, self.cfg
        last = s.exit >= c.num_exits - 1
        ok = np.array([False, True, False])
        if not last and not s.unanswered:
            if s.tier > 0 or s.exit + 1 < c.device_slices:
                ok[STAY] = self._within(self._after(s, STAY))
            split = not cfg.offload_at_split or s.tier > 0 or s.exit == c.device_slices - 1
            if cfg.allow_offload and s.tier < c.top_tier and split:
                ok[OFFLOAD] = self._within(self._after(s, OFFLOAD))
        self._masked = (s, ok)
        return ok.copy()

    def _within(self, s: State) -> bool:
        return self.finish_time(s) <= self.cfg.deadline_s and s.energy_mj <= min(
            self.cfg.energy_budget_mj, s.battery_mj
        )

    # -- gym API --------------------------------------------------------------------------
    def observe(self, s: State | None = None) -> np.ndarray:
        s = s or self.state
        c, cfg = self.costs, self.cfg
        tier = np.zeros(len(c.tiers), np.float32)
        tier[s.tier] = 1.0
        rest = [
            s.energy_mj / c.energy_unit_mj,
            s.time_s / cfg.deadline_s,
            s.bandwidth_bps / c.tiers[0].links[0].bandwidth_bps,
            1.0 - self.finish_time(s) / cfg.deadline_s,
            min(FEATURE_MAX, s.edge_wait_s / cfg.deadline_s),
            s.pace,
        ]
        feats = self.features[s.sample, s.exit]
        return np.concatenate([feats, [s.exit / max(1, c.num_exits - 1)], tier, rest]).astype(np.float32)

    def restart(self) -> None:
        """Back to the first sample of ``order``, the first bandwidth and edge wait, a full battery."""
        self.cursor = self.served = 0
        self.battery_mj = self.cfg.battery_mj
        self.bandwidth.restart()
        if self.edge is not None:
            self.edge.restart()

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        if self.order is not None:
            sample = int(self.order[self.cursor % len(self.order)])
            self.cursor += 1
        else:
            sample = int(self.rng.integers(len(self.traces.label)))
        c, cfg = self.costs, self.cfg
        day = self.served % cfg.day_requests
        if day == 0:
            self.battery_mj = cfg.battery_mj
        self.served += 1
        pace = min(FEATURE_MAX, self.battery_mj / ((cfg.day_requests - day) * c.energy_unit_mj))
        wait = self.edge.next() if self.edge is not None else 0.0
        time_s, energy = c.compute_seconds(0, 0), c.compute_energy_mj(0, 0)
        dead = energy > self.battery_mj
        self.state = State(
            sample,
            0,
            0,
            0.0 if dead else time_s,
            0.0 if dead else energy,
            self.bandwidth.next(),
            edge_wait_s=wait,
            battery_mj=self.battery_mj,
            pace=pace,
            unanswered=dead,
        )
        self.total_reward = -cfg.alpha * self.state.energy_mj / c.energy_unit_mj  # slice 1 always runs
        return self.observe(), {"mask": self.mask()}

    def _answer_reward(self, s: State) -> float:
        if s.unanswered:
            return 0.0
        correct = float(self.traces.pred[s.sample, s.exit] == self.traces.label[s.sample])
        weight = self.cfg.class_weights[self.traces.label[s.sample]] if self.cfg.class_weights else 1.0
        return self.cfg.beta * correct * weight

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        s, cfg, c = self.state, self.cfg, self.costs
        allowed = self.mask()
        if not allowed[action] or action == EXIT:
            reward = self._answer_reward(s) - (0.0 if allowed[action] else cfg.penalty)
            self.total_reward += reward
            self.battery_mj -= s.energy_mj
            return self.observe(), reward, True, False, self._info(s, missed=not allowed[action])
        nxt = self._after(s, action)
        cost = cfg.alpha * (nxt.energy_mj - s.energy_mj) / c.energy_unit_mj
        cost += cfg.price_weight * c.price(nxt.exit, nxt.tier)
        self.state = nxt
        self.total_reward -= cost
        return self.observe(), -cost, False, False, {"mask": self.mask()}

    def _info(self, s: State, missed: bool) -> dict:
        return {
            "mask": np.array([False, True, False]),
            "final": {
                "correct": not s.unanswered and bool(self.traces.pred[s.sample, s.exit] == self.traces.label[s.sample]),
                "exit": s.exit + 1,
                "tier": s.tier,
                "energy_mj": s.energy_mj,
                "latency_s": self.finish_time(s),
                "bytes_sent": s.bytes_sent,
                "offloaded": s.offloaded,
                "missed": missed,
                "unanswered": s.unanswered,
                "bandwidth_bps": s.bandwidth_bps,
                "edge_wait_s": s.edge_wait_s,
                "reward": self.total_reward,
            },
        }
