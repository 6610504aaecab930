"""The hand-made rules of :mod:`policy.baselines`, many evaluated over the same requests at once.

This mirrors :class:`policy.env.TraceEnv` (``reset``, ``mask``, ``_after``, ``step``), which stays
the reference: what does not depend on the rule is drawn and computed once per request and shared
by all rules (the env's bandwidth and edge-wait sequences, the answer and transfer times at the
bandwidth now, whether offloading pays); each rule then replays the requests of ``env.order`` with
plain floats, deciding through its own ``choose``. The battery couples the requests of a day, so
requests stay sequential. Every cost comes from the env's :class:`policy.costs.CostModel` and every
float operation is the env's, in its order, so the outcomes equal ``policy.evaluate.episodes`` bit
for bit (tests/test_policy_lockstep.py holds them to it). Tuning a rule evaluates a coordinate's
grid in one call, about ten times faster than one step-wise replay per grid value.

(Arrays of shape (rules,) stepped in lockstep were tried first: at the 11 values of a threshold
grid, numpy's per-call overhead made them only 3 x faster than the step-wise env.)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from policy.baselines import Policy, Rule, offload_pays
from policy.env import EXIT, FEATURE_MAX, OFFLOAD, STAY, TraceEnv
from policy.evaluate import evaluate, summarize

KEYS = ("correct", "exit", "tier", "energy_mj", "latency_s", "bytes_sent", "offloaded", "missed", "unanswered")
KEYS += ("bandwidth_bps", "edge_wait_s", "reward")  # the keys of TraceEnv's final info, in its order


def evaluate_all(env: TraceEnv, policies: Sequence[Policy]) -> list[dict]:
    """Each policy's metrics over ``env.order``, as ``evaluate`` gives them; the rules in one call."""
    return Lockstep(env).evaluate_all(env, policies)


def outcomes(env: TraceEnv, rules: Sequence[Rule]) -> list[dict[str, np.ndarray]]:
    """Per rule, the per-sample outcomes of ``episodes(env, rule)``."""
    return Lockstep(env).outcomes(rules)


class Lockstep:
    """Rules replayed over ``env``'s requests; what every rule sees alike is computed once, here, so one
    ``Lockstep`` serves all the evaluations of a tuning (the env must not change meanwhile)."""

    def __init__(self, env: TraceEnv) -> None:
        if env.order is None:
            raise ValueError("lockstep evaluation replays a fixed order: build the TraceEnv with order=")
        self.env, c = env, env.costs
        exits, tiers = range(c.num_exits), range(len(c.tiers))
        self.seconds = [[c.compute_seconds(k, t) for t in tiers] for k in exits]
        self.energy = [[c.compute_energy_mj(k, t) for t in tiers] for k in exits]
        self.price = [[c.price(k, t) for t in tiers] for k in exits]
        t = env.traces
        self.confidence = t.probs.max(axis=2).astype(float).tolist()  # float32 values, exactly
        self.correct = (t.pred == t.label[:, None]).tolist()
        self.weight = [env.cfg.class_weights[y] if env.cfg.class_weights else 1.0 for y in t.label.tolist()]
        env.restart()
        self.samples = [int(s) for s in env.order]
        self.waits, self.bandwidths = [], []
        for _ in self.samples:
            self.waits.append(env.edge.next() if env.edge is not None else 0.0)  # as TraceEnv.reset draws them
            self.bandwidths.append(env.bandwidth.next())
        env.restart()
        upper = [[c.transfer(k, t, 0.0) for t in tiers[1 : c.top_tier]] for k in exits[:-1]]  # bandwidth-free
        self.answer, self.transfer, self.pays = [], [], []
        for bw in self.bandwidths:
            self.answer.append([c.answer_seconds(t, bw) for t in tiers])
            device = [c.transfer(k, 0, bw) for k in exits[:-1]] if c.top_tier > 0 else [()] * (c.num_exits - 1)
            self.transfer.append([[device[k], *upper[k]] for k in exits[:-1]])
            self.pays.append([c.top_tier > 0 and offload_pays(c, k, bw) for k in exits[:-1]])
        self.metrics: dict[Rule, dict] = {}  # coordinate ascent meets the same rule again: evaluated once

    def evaluate_all(self, env: TraceEnv, policies: Sequence[Policy]) -> list[dict]:
        """Each policy's metrics over ``env.order`` (``env``: this one's), as ``evaluate`` gives them."""
        if env is not self.env:
            raise ValueError("a Lockstep evaluates on the env it was made for")
        new = list(dict.fromkeys(p for p in policies if isinstance(p, Rule) and p not in self.metrics))
        self.metrics.update(zip(new, (summarize(f) for f in self.outcomes(new)), strict=True))
        return [dict(self.metrics[p]) if isinstance(p, Rule) else evaluate(env, p) for p in policies]

    def outcomes(self, rules: Sequence[Rule]) -> list[dict[str, np.ndarray]]:
        """Per rule, the per-sample outcomes of ``episodes(env, rule)``: each sample of ``env.order`` once, in
        order, from the env's restart (where it leaves the env)."""
        if not all(isinstance(r, Rule) for r in rules):
            raise ValueError("lockstep evaluation takes the hand-made rules of policy.baselines (a Rule) only")
        return [self._replay(rule) for rule in rules]

    def _replay(self, rule: Rule) -> dict[str, np.ndarray]:
        """``episodes(env, rule)``'s outcomes: TraceEnv's dynamics with plain floats."""
        c, cfg = self.env.costs, self.env.cfg
        unit, last, top, device = c.energy_unit_mj, c.num_exits - 1, c.top_tier, c.device_slices
        seconds, energy_of, price = self.seconds, self.energy, self.price
        split_only = cfg.offload_at_split
        finals = []
        battery = cfg.battery_mj
        for i, sample in enumerate(self.samples):
            bw, wait, answer = self.bandwidths[i], self.waits[i], self.answer[i]
            transfer, pays = self.transfer[i], self.pays[i]
            day = i % cfg.day_requests
            if day == 0:
                battery = cfg.battery_mj
            pace = min(FEATURE_MAX, battery / ((cfg.day_requests - day) * unit))  # TraceEnv.reset
            dead = energy_of[0][0] > battery
            time, energy = (0.0, 0.0) if dead else (seconds[0][0], energy_of[0][0])
            total = -cfg.alpha * energy / unit
            limit = min(cfg.energy_budget_mj, battery)
            k = tier = sent = 0
            offloaded = False
            while True:
                stay = offload = False  # TraceEnv.mask
                if k < last and not dead:
                    if tier > 0 or k + 1 < device:
                        stay_time, stay_energy = time + seconds[k + 1][tier], energy + energy_of[k + 1][tier]
                        stay = stay_time + answer[tier] <= cfg.deadline_s and stay_energy <= limit
                    if cfg.allow_offload and tier < top and (not split_only or tier > 0 or k == device - 1):
                        duration, spent, size = transfer[k][tier]
                        up = tier + 1
                        off_time = time + duration + (wait if up == 1 else 0.0) + seconds[k + 1][up]
                        off_energy = energy + spent
                        offload = off_time + answer[up] <= cfg.deadline_s and off_energy <= limit
                confident = self.confidence[sample][k]
                action = rule.choose(k, tier, confident, pace, stay, offload, tier == 0 and offload and pays[k])
                allowed = stay if action == STAY else offload if action == OFFLOAD else True
                if not allowed or action == EXIT:  # TraceEnv.step: the answer
                    right = self.correct[sample][k]
                    reward = 0.0 if dead else cfg.beta * float(right) * self.weight[sample]
                    total += reward - (0.0 if allowed else cfg.penalty)
                    battery -= energy
                    latency = time + answer[tier]
                    outcome = (not dead and right, k + 1, tier, energy, latency, sent, offloaded, not allowed, dead)
                    finals.append((*outcome, bw, wait, total))
                    break
                if action == STAY:  # TraceEnv._after
                    new_time, new_energy = stay_time, stay_energy
                else:
                    new_time, new_energy = off_time, off_energy
                    sent += size if tier == 0 else 0
                    tier, offloaded = up, True
                k += 1
                cost = cfg.alpha * (new_energy - energy) / unit
                cost += cfg.price_weight * price[k][tier]
                total -= cost
                time, energy = new_time, new_energy
        values = np.array(finals, dtype=float).reshape(len(finals), len(KEYS))
        return {key: np.ascontiguousarray(values[:, j]) for j, key in enumerate(KEYS)}
