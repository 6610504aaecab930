"""The lockstep evaluation of the hand-made rules against the step-wise environment, its reference."""

import numpy as np
import pytest

from policy import baselines, costs, lockstep
from policy.bandwidth import Bandwidth
from policy.edgeload import EdgeLoad
from policy.env import EnvConfig, TraceEnv
from policy.evaluate import episodes, evaluate
from tests.test_policy import _traces

GRID = (0.0, 0.5, 0.8, 0.9, 0.98)


def _random_traces(n: int, exits: int = 4, classes: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet([0.4] * classes, size=(n, exits)).astype(np.float32)
    # some top probabilities exactly at grid values: the comparison with a threshold must agree at equality
    at = rng.random((n, exits)) < 0.1
    top = np.float32(rng.choice(GRID[1:], size=(n, exits)))
    probs[at] = np.stack([top[at], *(((1 - top[at]) / (classes - 1)),) * (classes - 1)], -1)
    return _traces(probs, rng.integers(0, classes, n))


def _env(traces, **cfg) -> TraceEnv:
    macs = [3_000_000, 4_000_000, 5_000_000, 2_000_000]
    model = costs.from_slices(macs, (4000, 2000, 1000, 0), 3, "nano33", with_cloud=True, link="ble")
    all_local = sum(model.compute_seconds(k, 0) for k in range(model.device_slices))
    config = {"beta": 4.0, "deadline_s": 1.5 * all_local, "price_weight": 0.1, "penalty": 2.0, "day_requests": 50}
    config["battery_mj"] = 0.8 * 50 * model.energy_unit_mj  # runs out within a day unless the rules save
    config["class_weights"] = (1.0, 1.5, 0.5)
    n = len(traces.label)
    edge = EdgeLoad(40, 0.04, seed=3)
    bandwidth = Bandwidth("gilbert", model.tiers[0].links[0].bandwidth_bps, seed=5)
    return TraceEnv(traces, model, EnvConfig(**{**config, **cfg}), bandwidth, order=np.arange(n)[::-1], edge=edge)


RULES = [
    baselines.threshold([0.9, 0.8, 0.5, 0.0]),
    baselines.threshold([0.98, 0.98, 0.98, 0.98]),
    baselines.threshold([0.0] * 4),
    baselines.adaptive_threshold([0.9, 0.8, 0.5, 0.0], 0.0),
    baselines.adaptive_threshold([0.98, 0.9, 0.9, 0.9], 1.0),
    baselines.adaptive_threshold([0.5, 0.9, 0.8, 0.9], 0.5),
    baselines.fixed_split(1),
    baselines.fixed_split(2),
    baselines.fixed_split(3),
    baselines.always_local,
    baselines.offload_first,
]


@pytest.mark.parametrize(
    "cfg",
    [{}, {"offload_at_split": True}, {"allow_offload": False}, {"energy_budget_mj": 3.0, "battery_mj": float("inf")}],
    ids=["battery-edge-outages", "offload-at-split", "device-only", "energy-budget"],
)
def test_lockstep_outcomes_equal_the_step_wise_environment(cfg):
    env = _env(_random_traces(300), **cfg)
    found = lockstep.outcomes(env, RULES)
    for rule, got in zip(RULES, found, strict=True):
        want = episodes(env, rule)
        assert got.keys() == want.keys()
        for key in want:
            assert np.array_equal(got[key], want[key]), f"{rule}: {key}"
        assert lockstep.evaluate_all(env, [rule]) == [evaluate(env, rule)]
    # (the rules stay on the edge when they may, so they hardly ever take the hop to the cloud: not checked here)
    if not cfg:  # the setting exercises what it claims to: outages, a loaded edge, an empty battery, the edge
        first = episodes(env, baselines.offload_first)
        assert (first["bandwidth_bps"] == 0).any() and (first["edge_wait_s"] > 0.5).any()
        assert first["unanswered"].any() and (first["tier"] == 1).any() and not first["offloaded"].all()
        adaptive = episodes(env, RULES[3])
        assert adaptive["offloaded"].any() and not adaptive["offloaded"].all() and (adaptive["exit"] > 1).any()


def test_tuning_through_lockstep_equals_tuning_step_wise():
    env = _env(_random_traces(120, seed=1))

    def step_wise(e, policies):
        return [evaluate(e, p) for p in policies]

    assert baselines.tune_threshold(env, lockstep.evaluate_all, GRID) == baselines.tune_threshold(env, step_wise, GRID)
    assert baselines.tune_split(env, lockstep.evaluate_all) == baselines.tune_split(env, step_wise)
    reserves = (0.0, 0.5, 1.0)
    tuned = baselines.tune_adaptive(env, lockstep.evaluate_all, GRID, reserves)
    assert tuned == baselines.tune_adaptive(env, step_wise, GRID, reserves)


def test_lockstep_takes_only_rules_on_a_fixed_order():
    env = _env(_random_traces(10))
    with pytest.raises(ValueError, match="hand-made rules"):
        lockstep.outcomes(env, [baselines.oracle])
    mixed = lockstep.evaluate_all(env, [baselines.oracle, RULES[0]])  # others go step-wise
    assert mixed == [evaluate(env, baselines.oracle), evaluate(env, RULES[0])]
    with pytest.raises(ValueError, match="the env it was made for"):
        lockstep.Lockstep(env).evaluate_all(_env(_random_traces(10)), RULES[:1])
    env.order = None
    with pytest.raises(ValueError, match="order="):
        lockstep.outcomes(env, RULES[:1])
