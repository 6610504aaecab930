"""Reference policies: confidence threshold, adaptive threshold, fixed split, always-local, offload-first, oracle.

A policy is a callable ``(env) -> action`` deciding for ``env.state``; it only picks among
the actions ``env.mask()`` allows (an unwanted but forced choice falls back to EXIT).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from policy.env import EXIT, OFFLOAD, STAY, TraceEnv

Policy = Callable[[TraceEnv], int]


def _first_allowed(mask: np.ndarray, *preferred: int) -> int:
    return next((a for a in preferred if mask[a]), EXIT)


def threshold(thresholds: Sequence[float]) -> Policy:
    """BranchyNet: answer when the exit's top probability reaches its threshold, otherwise go
    deeper here, otherwise offload."""

    def act(env: TraceEnv) -> int:
        s = env.state
        if env.traces.probs[s.sample, s.exit].max() >= thresholds[s.exit]:
            return EXIT
        return _first_allowed(env.mask(), STAY, OFFLOAD)

    return act


def fixed_split(split_exit: int) -> Policy:
    """Neurosurgeon: run slices 1..split_exit on the device, offload there, finish upstream
    at the final exit (no early exit). ``split_exit`` is 1-based."""

    def act(env: TraceEnv) -> int:
        s, mask = env.state, env.mask()
        if s.tier == 0 and s.exit + 1 >= split_exit:
            return _first_allowed(mask, OFFLOAD, STAY)
        return _first_allowed(mask, STAY, OFFLOAD)

    return act


def always_local(env: TraceEnv) -> int:
    """Run every device slice, answer at the deepest device exit; never offload."""
    return STAY if env.state.tier == 0 and env.mask()[STAY] else EXIT


def offload_first(env: TraceEnv) -> int:
    """Offload at the first exit, finish upstream at the final exit."""
    return fixed_split(1)(env)


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


def tune_threshold(env: TraceEnv, evaluate: Callable[[TraceEnv, Policy], dict], grid: Sequence[float]) -> list[float]:
    """Per-exit thresholds by coordinate ascent on mean reward over ``env``'s samples."""
    return _ascend(env, evaluate, grid, threshold)[0]


def _ascend(
    env: TraceEnv,
    evaluate: Callable[[TraceEnv, Policy], dict],
    grid: Sequence[float],
    make: Callable[[list[float]], Policy],
    extra: Callable[[list[float], float], tuple[list[float], float]] | None = None,
) -> tuple[list[float], float]:
    """Coordinate ascent over per-exit thresholds (two rounds; ``extra`` may tune more after each)."""
    n = env.costs.num_exits
    best = [grid[len(grid) // 2]] * n
    score = evaluate(env, make(best))["mean_reward"]
    for _ in range(2):
        for k in range(n - 1):
            for t in grid:
                trial = best[:k] + [t] + best[k + 1 :]
                value = evaluate(env, make(trial))["mean_reward"]
                if value > score + 1e-12:
                    best, score = trial, value
        if extra is not None:
            best, score = extra(best, score)
    return best, score


def tune_split(env: TraceEnv, evaluate: Callable[[TraceEnv, Policy], dict]) -> int:
    """The single offload point (1-based exit) with the best mean reward."""
    d = max(1, env.costs.device_slices)
    return max(range(1, d + 1), key=lambda e: evaluate(env, fixed_split(e))["mean_reward"])


def adaptive_threshold(thresholds: Sequence[float], reserve: float) -> Policy:
    """Confidence thresholds, plus offload only when it pays: when the link's bandwidth now and the edge's
    wait make the deadline (the mask) and sending costs the device less energy than running its remaining
    slices would. Going deeper on the device needs the battery pace (battery left per request left, in
    all-local inferences) to reach ``reserve``; below it the device answers where it is."""

    def act(env: TraceEnv) -> int:
        s, mask = env.state, env.mask()
        if env.traces.probs[s.sample, s.exit].max() >= thresholds[s.exit]:
            return EXIT
        if s.tier > 0:
            return _first_allowed(mask, STAY, OFFLOAD)
        if mask[OFFLOAD] and _offload_pays(env, s):
            return OFFLOAD
        if mask[STAY] and s.pace >= reserve:
            return STAY
        return EXIT

    return act


def _offload_pays(env: TraceEnv, s) -> bool:
    c = env.costs
    sending = c.transfer(s.exit, 0, s.bandwidth_bps)[1]
    local = sum(c.compute_energy_mj(k, 0) for k in range(s.exit + 1, c.device_slices))
    return sending < local or s.exit + 1 >= c.device_slices


def tune_adaptive(
    env: TraceEnv, evaluate: Callable[[TraceEnv, Policy], dict], grid: Sequence[float], reserves: Sequence[float]
) -> tuple[list[float], float]:
    """Thresholds by coordinate ascent, then the battery reserve, on mean reward over ``env``'s samples."""
    reserve = [0.0]

    def tune_reserve(best: list[float], score: float) -> tuple[list[float], float]:
        for r in reserves:
            value = evaluate(env, adaptive_threshold(best, r))["mean_reward"]
            if value > score + 1e-12:
                reserve[0], score = r, value
        return best, score

    best, _ = _ascend(env, evaluate, grid, lambda t: adaptive_threshold(t, reserve[0]), tune_reserve)
    return best, reserve[0]
