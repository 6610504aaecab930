"""Reference policies: confidence threshold, adaptive threshold, fixed split, always-local, offload-first, oracle.

A policy is a callable ``(env) -> action`` deciding for ``env.state``; it only picks among
the actions ``env.mask()`` allows (an unwanted but forced choice falls back to EXIT). The
hand-made rules are frozen dataclasses carrying their parameters, so that :mod:`policy.lockstep`
can evaluate many of them at once; the tuning functions take such a many-at-once evaluator.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from policy.costs import CostModel
from policy.env import EXIT, OFFLOAD, STAY, TraceEnv

Policy = Callable[[TraceEnv], int]
EvaluateAll = Callable[[TraceEnv, Sequence[Policy]], list[dict]]  # each policy's metrics over the env's order


def _deeper(stay: bool, offload: bool) -> int:
    """The first allowed of STAY, OFFLOAD, else EXIT."""
    return STAY if stay else OFFLOAD if offload else EXIT


def _upward(stay: bool, offload: bool) -> int:
    """The first allowed of OFFLOAD, STAY, else EXIT."""
    return OFFLOAD if offload else STAY if stay else EXIT


class Rule:
    """A hand-made rule: ``choose`` decides from plain values (what :mod:`policy.lockstep` replays too);
    calling it on an env reads them from ``env.state`` and ``env.mask()``."""

    def choose(self, k: int, tier: int, confidence: float, pace: float, stay: bool, offload: bool, pays: bool) -> int:
        """The action at 0-based exit ``k`` on ``tier``: ``confidence`` (the exit's top probability), battery ``pace``,
        whether STAY and OFFLOAD are allowed, and whether offloading from the device pays (``offload_pays``)."""
        raise NotImplementedError

    def __call__(self, env: TraceEnv) -> int:
        s, mask = env.state, env.mask()
        confidence = float(env.traces.probs[s.sample, s.exit].max())
        pays = bool(s.tier == 0 and mask[OFFLOAD] and offload_pays(env.costs, s.exit, s.bandwidth_bps))
        return self.choose(s.exit, s.tier, confidence, s.pace, bool(mask[STAY]), bool(mask[OFFLOAD]), pays)


@dataclass(frozen=True)
class Threshold(Rule):
    """BranchyNet: answer when the exit's top probability reaches its threshold, otherwise go
    deeper here, otherwise offload."""

    thresholds: tuple[float, ...]

    def choose(self, k: int, tier: int, confidence: float, pace: float, stay: bool, offload: bool, pays: bool) -> int:
        return EXIT if confidence >= self.thresholds[k] else _deeper(stay, offload)


def threshold(thresholds: Sequence[float]) -> Threshold:
    """The confidence-threshold rule with per-exit ``thresholds``."""
    return Threshold(tuple(float(t) for t in thresholds))


@dataclass(frozen=True)
class FixedSplit(Rule):
    """Neurosurgeon: run slices 1..split_exit on the device, offload there, finish upstream
    at the final exit (no early exit). ``split_exit`` is 1-based."""

    split_exit: int

    def choose(self, k: int, tier: int, confidence: float, pace: float, stay: bool, offload: bool, pays: bool) -> int:
        if tier == 0 and k + 1 >= self.split_exit:
            return _upward(stay, offload)
        return _deeper(stay, offload)


def fixed_split(split_exit: int) -> FixedSplit:
    """The fixed-split rule offloading at 1-based exit ``split_exit``."""
    return FixedSplit(split_exit)


class AlwaysLocal(Rule):
    """Run every device slice, answer at the deepest device exit; never offload."""

    def choose(self, k: int, tier: int, confidence: float, pace: float, stay: bool, offload: bool, pays: bool) -> int:
        return STAY if tier == 0 and stay else EXIT


always_local = AlwaysLocal()
offload_first = FixedSplit(1)  # offload at the first exit, finish upstream at the final exit


def oracle(env: TraceEnv) -> int:
    """Knows every exit's correctness: the action of the best reachable plan (an upper bound)."""
    return _best(env, env.state)[1]


def _best(env: TraceEnv, s) -> tuple[float, int]:
    """(best achievable remaining reward, its first action) from state ``s``, by exhaustive search."""
    cfg, c = env.cfg, env.costs
    correct = env.traces.pred[s.sample, s.exit] == env.traces.label[s.sample]
    weight = cfg.class_weights[env.traces.label[s.sample]] if cfg.class_weights else 1.0
    best = (cfg.beta * float(correct) * weight, EXIT)
    mask = env.mask(s)
    for action in (STAY, OFFLOAD):
        if mask[action]:
            nxt = env._after(s, action)
            cost = cfg.alpha * (nxt.energy_mj - s.energy_mj) / c.energy_unit_mj + cfg.price_weight * c.price(
                nxt.exit, nxt.tier
            )
            value = _best(env, nxt)[0] - cost
            if value > best[0] + 1e-12:
                best = (value, action)
    return best


def tune_threshold(env: TraceEnv, evaluate_all: EvaluateAll, grid: Sequence[float]) -> list[float]:
    """Per-exit thresholds by coordinate ascent on mean reward over ``env``'s samples."""
    return _ascend(env, evaluate_all, grid, threshold)[0]


def _ascend(
    env: TraceEnv,
    evaluate_all: EvaluateAll,
    grid: Sequence[float],
    make: Callable[[list[float]], Policy],
    extra: Callable[[list[float], float], tuple[list[float], float]] | None = None,
) -> tuple[list[float], float]:
    """Coordinate ascent over per-exit thresholds (two rounds; ``extra`` may tune more after each). The trials
    of one coordinate differ only there, so they are evaluated together and then taken in grid order."""
    n = env.costs.num_exits
    best = [grid[len(grid) // 2]] * n
    score = evaluate_all(env, [make(best)])[0]["mean_reward"]
    for _ in range(2):
        for k in range(n - 1):
            trials = [best[:k] + [t] + best[k + 1 :] for t in grid]
            for trial, result in zip(trials, evaluate_all(env, [make(t) for t in trials]), strict=True):
                if result["mean_reward"] > score + 1e-12:
                    best, score = trial, result["mean_reward"]
        if extra is not None:
            best, score = extra(best, score)
    return best, score


def tune_split(env: TraceEnv, evaluate_all: EvaluateAll) -> int:
    """The single offload point (1-based exit) with the best mean reward."""
    splits = range(1, max(1, env.costs.device_slices) + 1)
    results = evaluate_all(env, [fixed_split(e) for e in splits])
    return max(zip(splits, results, strict=True), key=lambda x: x[1]["mean_reward"])[0]


@dataclass(frozen=True)
class AdaptiveThreshold(Rule):
    """Confidence thresholds, plus offload only when it pays: when the link's bandwidth now and the edge's
    wait make the deadline (the mask) and sending costs the device less energy than running its remaining
    slices would. Going deeper on the device needs the battery pace (battery left per request left, in
    all-local inferences) to reach ``reserve``; below it the device answers where it is."""

    thresholds: tuple[float, ...]
    reserve: float

    def choose(self, k: int, tier: int, confidence: float, pace: float, stay: bool, offload: bool, pays: bool) -> int:
        if confidence >= self.thresholds[k]:
            return EXIT
        if tier > 0:
            return _deeper(stay, offload)
        if offload and pays:
            return OFFLOAD
        return STAY if stay and pace >= self.reserve else EXIT


def adaptive_threshold(thresholds: Sequence[float], reserve: float) -> AdaptiveThreshold:
    """The adaptive-threshold rule with per-exit ``thresholds`` and battery ``reserve``."""
    return AdaptiveThreshold(tuple(float(t) for t in thresholds), float(reserve))


def offload_pays(c: CostModel, k: int, bandwidth_bps: float) -> bool:
    """Whether sending exit ``k``'s activation (0-based) from the device costs it less energy than its remaining
    slices."""
    sending = c.transfer(k, 0, bandwidth_bps)[1]
    local = sum(c.compute_energy_mj(j, 0) for j in range(k + 1, c.device_slices))
    return sending < local or k + 1 >= c.device_slices


def tune_adaptive(
    env: TraceEnv, evaluate_all: EvaluateAll, grid: Sequence[float], reserves: Sequence[float]
) -> tuple[list[float], float]:
    """Thresholds by coordinate ascent, then the battery reserve, on mean reward over ``env``'s samples."""
    reserve = [0.0]

    def tune_reserve(best: list[float], score: float) -> tuple[list[float], float]:
        for r, result in zip(reserves, evaluate_all(env, [adaptive_threshold(best, r) for r in reserves]), strict=True):
            if result["mean_reward"] > score + 1e-12:
                reserve[0], score = r, result["mean_reward"]
        return best, score

    best, _ = _ascend(env, evaluate_all, grid, lambda t: adaptive_threshold(t, reserve[0]), tune_reserve)
    return best, reserve[0]
