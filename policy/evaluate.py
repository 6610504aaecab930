"""Run a policy over every sample of a trace environment and summarise it."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from policy.env import TraceEnv


def episodes(env: TraceEnv, policy: Callable[[TraceEnv], int]) -> dict[str, np.ndarray]:
    """Per-sample outcomes over ``env.order`` (each sample once, in order) from ``env``'s restart."""
    env.restart()
    finals = []
    for _ in range(len(env.order)):
        env.reset()
        while True:
            _, _, done, _, info = env.step(policy(env))
            if done:
                finals.append(info["final"])
                break
    return {key: np.array([x[key] for x in finals], dtype=float) for key in finals[0]}


def summarize(f: dict[str, np.ndarray]) -> dict:
    """The metrics of ``episodes``' outcomes."""
    return {
        "mean_reward": float(f["reward"].mean()),
        "accuracy": float(f["correct"].mean()),
        "device_energy_mj": float(f["energy_mj"].mean()),
        "latency_ms": float(1e3 * f["latency_s"].mean()),
        "deadline_misses": int(f["missed"].sum()),
        "unanswered": int(f["unanswered"].sum()),
        "offload_rate": float(f["offloaded"].mean()),
        "bytes_sent": float(f["bytes_sent"].mean()),
        "mean_exit_depth": float(f["exit"].mean()),
    }


def evaluate(env: TraceEnv, policy: Callable[[TraceEnv], int]) -> dict:
    """Metrics over ``env.order`` (each sample once, in order) from ``env``'s restart."""
    return summarize(episodes(env, policy))
