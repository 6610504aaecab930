"""Reference policies: confidence threshold, fixed split, always-local, offload-first, oracle.

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
    n = env.costs.num_exits
    best = [grid[len(grid) // 2]] * n
    score = evaluate(env, threshold(best))["mean_reward"]
    for _ in range(2):
        for k in range(n - 1):
            for t in grid:
                trial = best[:k] + [t] + best[k + 1 :]
                value = evaluate(env, threshold(trial))["mean_reward"]
                if value > score + 1e-12:
                    best, score = trial, value
    return best


def tune_split(env: TraceEnv, evaluate: Callable[[TraceEnv, Policy], dict]) -> int:
    """The single offload point (1-based exit) with the best mean reward."""
    d = max(1, env.costs.device_slices)
    return max(range(1, d + 1), key=lambda e: evaluate(env, fixed_split(e))["mean_reward"])
