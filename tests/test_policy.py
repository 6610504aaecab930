"""The decision process and the policies on hand-made traces."""

import json
import re
from dataclasses import replace

import numpy as np
import pytest

from contracts import boards
from converter.__main__ import main
from earlyexit import checkpoint, traces
from earlyexit.traces import Traces
from policy import baselines, dqn, tabular
from policy.bandwidth import Bandwidth
from policy.commands import LEARN_SPLIT, traces_for
from policy.costs import CostModel, offload_frame_bytes
from policy.env import EXIT, OFFLOAD, STAY, EnvConfig, TraceEnv
from policy.evaluate import evaluate
from policy.plot import pareto_figure


def _traces(probs: np.ndarray, labels: np.ndarray) -> Traces:
    pred = probs.argmax(-1).astype(np.int16)
    return Traces(
        probs.astype(np.float32),
        np.zeros(pred.shape, np.float32),
        pred,
        labels.astype(np.int16),
        np.arange(1, probs.shape[1] + 1),
        "hash",
        "toy",
        "test",
    )


def _costs(device_slices=2, exits=3) -> CostModel:
    return CostModel(
        macs=(1_000_000,) * exits,
        trunk_bytes=(1000,) * (exits - 1) + (0,),
        device_slices=device_slices,
        tiers=(boards.load("nano33"), boards.load("edge-pc")),
    )


def _env(traces, costs, **cfg) -> TraceEnv:
    config = EnvConfig(**{"beta": 3.0, "deadline_s": 2.0, **cfg})
    return TraceEnv(traces, costs, config, Bandwidth("constant", 1e6), order=np.arange(len(traces.label)))


def _one_sample(correct_at=(False, True, True)) -> Traces:
    probs = np.zeros((1, 3, 2))
    for k, ok in enumerate(correct_at):
        probs[0, k] = [0.2, 0.8] if ok else [0.6, 0.4]
    return _traces(probs, np.array([1]))


def test_costs_add_up_along_stay_and_offload():
    c = _costs()
    env = _env(_one_sample(), c)
    env.reset()
    t0, e0 = c.compute_seconds(0, 0), c.compute_energy_mj(0, 0)
    assert (env.state.time_s, env.state.energy_mj) == (t0, e0)
    _, reward, done, _, _ = env.step(STAY)
    assert not done and env.state.exit == 1
    assert env.state.time_s == pytest.approx(2 * t0) and env.state.energy_mj == pytest.approx(2 * e0)
    assert reward == pytest.approx(-e0 / c.energy_unit_mj)
    _, reward, done, _, _ = env.step(OFFLOAD)
    size = offload_frame_bytes(1000)
    link = c.tiers[0].links[0]
    assert env.state.tier == 1 and env.state.bytes_sent == size
    assert env.state.time_s == pytest.approx(2 * t0 + link.latency_ms / 1e3 + 8 * size / 1e6 + c.compute_seconds(2, 1))
    energy = (size * link.energy_per_byte_uj + link.energy_per_message_uj) / 1e3
    assert reward == pytest.approx(-energy / c.energy_unit_mj)
    _, reward, done, _, info = env.step(EXIT)
    assert done and reward == 3.0 and info["final"]["exit"] == 3 and info["final"]["tier"] == 1


def test_masks_follow_placement_tiers_and_the_last_exit():
    env = _env(_one_sample(), _costs(device_slices=1))
    env.reset()
    assert env.mask().tolist() == [False, True, True]  # the device may not run slice 2
    env.step(OFFLOAD)
    assert env.mask().tolist() == [True, True, False]  # top tier: no offload
    env.step(STAY)
    assert env.mask().tolist() == [False, True, False]  # last exit: answer only


def test_deadline_masks_and_forces_the_answer_with_a_penalty():
    c = _costs()
    env = _env(_one_sample(), c, deadline_s=c.compute_seconds(0, 0) * 1.05, penalty=5.0)
    env.reset()
    assert env.mask().tolist() == [False, True, False]
    _, reward, done, _, info = env.step(STAY)
    assert done and info["final"]["missed"] and reward == pytest.approx(-5.0)  # exit 1 is wrong: 0 - penalty
    assert evaluate(env, baselines.always_local)["deadline_misses"] == 0


def test_baselines_decide_as_designed():
    env = _env(_one_sample(), _costs())
    env.reset()
    assert baselines.threshold([0.9, 0.9, 0.9])(env) == STAY
    assert baselines.threshold([0.55, 0.9, 0.9])(env) == EXIT
    assert baselines.always_local(env) == STAY and baselines.offload_first(env) == OFFLOAD
    assert baselines.fixed_split(2)(env) == STAY
    assert baselines.oracle(env) == OFFLOAD  # exit 2 is right, and sending costs less than computing
    env.step(STAY)
    assert baselines.fixed_split(2)(env) == OFFLOAD and baselines.always_local(env) == EXIT
    never_right = _env(_one_sample((False, False, False)), _costs())
    never_right.reset()
    assert baselines.oracle(never_right) == EXIT  # nothing to gain: save the energy


def test_oracle_bounds_every_policy():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet([1, 1], size=(300, 3))
    traces = _traces(probs, rng.integers(0, 2, 300))
    env = _env(traces, _costs())
    best = evaluate(env, baselines.oracle)["mean_reward"]
    for policy in (baselines.always_local, baselines.offload_first, baselines.threshold([0.7] * 3)):
        assert evaluate(env, policy)["mean_reward"] <= best + 1e-9


def _toy(n=1000):
    """Exit 1 is right exactly when it is confident; exit 2 is always right."""
    rng = np.random.default_rng(0)
    confident, labels = rng.random(n) < 0.5, rng.integers(0, 2, n)
    probs = np.zeros((n, 2, 2))
    for i in range(n):
        first = labels[i] if confident[i] else 1 - labels[i]
        probs[i, 0, first], probs[i, 0, 1 - first] = (0.95, 0.05) if confident[i] else (0.55, 0.45)
        probs[i, 1, labels[i]], probs[i, 1, 1 - labels[i]] = 0.99, 0.01
    return _traces(probs, labels)


@pytest.mark.parametrize(
    "learn",
    [
        lambda env: dqn.train(env, dqn.DQNConfig(episodes=1500))[0],
        lambda env: tabular.train(env, tabular.TabularConfig(episodes=3000)),
    ],
)
def test_learners_find_the_obvious_policy(learn):
    traces, costs = _toy(), CostModel((1_000_000,) * 2, (1000, 0), 2, (boards.load("nano33"), boards.load("edge-pc")))
    train_env = TraceEnv(traces, costs, EnvConfig(beta=3.0, allow_offload=False), Bandwidth("constant", 1e6))
    test_env = _env(traces, costs, allow_offload=False)
    learned = evaluate(test_env, learn(train_env))
    oracle = evaluate(test_env, baselines.oracle)
    assert learned["mean_reward"] == pytest.approx(oracle["mean_reward"])
    assert learned["accuracy"] == 1.0 and 1.4 < learned["mean_exit_depth"] < 1.6


def test_dqn_warm_start_imitates_the_teacher_and_keeps_the_clone_when_it_scores_best():
    traces, costs = _toy(), CostModel((1_000_000,) * 2, (1000, 0), 2, (boards.load("nano33"), boards.load("edge-pc")))
    train_env = TraceEnv(traces, costs, EnvConfig(beta=3.0, allow_offload=False), Bandwidth("constant", 1e6))
    select, test_env = (_env(traces, costs, allow_offload=False) for _ in range(2))
    teacher = baselines.always_local  # never answers at exit 1: gives up 0.5 of reward on the confident half
    warm = dqn.DQNConfig(episodes=0, demo_episodes=300, pretrain_steps=1000)
    clone = dqn.train(train_env, warm, teacher=teacher)[0]
    assert evaluate(test_env, clone) == evaluate(test_env, teacher)
    assert evaluate(test_env, dqn.train(train_env, warm)[0])["mean_exit_depth"] < 2.0  # no teacher: no clone
    # the margin loss keeps ranking the teacher's action first while it explores; the clone's snapshot is kept
    learned = dqn.train(train_env, replace(warm, episodes=300, select_every=100), select=select, teacher=teacher)[0]
    assert evaluate(select, learned)["mean_reward"] >= evaluate(select, clone)["mean_reward"]


def test_bandwidth_processes(tmp_path):
    walk = Bandwidth("walk", 1e6, seed=1)
    values = [walk.next() for _ in range(200)]
    assert min(values) >= 1e5 and max(values) <= 2e6 and len(set(values)) > 100
    walk.restart()
    assert [walk.next() for _ in range(200)] == values
    recorded = Bandwidth("trace", 1e6, trace=np.array([1000.0, 2000.0]))
    assert [recorded.next() for _ in range(3)] == [1000, 2000, 1000]
    with pytest.raises(ValueError, match="--bandwidth-trace DIR"):
        Bandwidth("trace", 1e6)


def test_compare_writes_every_policy_target_and_calibration(tmp_path, capsys):
    out, alone = tmp_path / "compare.json", tmp_path / "alone.json"
    args = ["policy", "compare", "--model", "fashion-mnist", "--board", "nano33", "--episodes", "300"]
    args += ["--cache-dir", str(tmp_path / "cache")]
    assert main([*args, "--jobs", "1", "--progress", "--json", str(alone)]) == 0
    bars = capsys.readouterr().err
    assert main([*args, "--jobs", "2", "--json", str(out)]) == 0  # stderr is no terminal here: lines, no bars
    result = json.loads(out.read_text())
    assert result == json.loads(alone.read_text())  # two worker processes, the same results
    betas = [c["beta"] for c in result["calibration"]]
    assert betas and {r["beta"] for r in result["policies"]} == set(betas)
    names = {"threshold", "adaptive-threshold", "fixed-split", "always-local", "offload-first", "dqn", "tabular"}
    names.add("oracle")
    for beta in betas:
        rows = {r["name"]: r for r in result["policies"] if r["beta"] == beta}
        assert set(rows) == names
        assert all(r["mean_reward"] <= rows["oracle"]["mean_reward"] + 1e-9 for r in rows.values())
    for t in result["targets"]:
        lo, hi = t["dqn_minus_best_baseline_ci95"]
        assert lo <= t["dqn_minus_best_baseline"] <= hi
    assert all(1.0 <= c["dqn_mean_exit_depth"] <= 4.0 for c in result["calibration"])
    printed = capsys.readouterr()
    assert out.with_suffix(".png").stat().st_size > 0 and "gap closed" in printed.out
    for beta in betas:  # progress on stderr: every beta x policy, the DQN's episodes
        assert f"compare: beta {beta:.3g}, tabular" in bars and f"DQN (beta {beta:.3g})" in bars
        line = rf"^compare: beta {beta:.3g}, tabular done \(\d+ of {9 * len(betas)}, \d+ s\)$"
        assert re.search(line, printed.err, re.M)
    assert "\r" not in printed.err


def test_compare_plot_names_betas_and_keeps_coinciding_policies_visible():
    import matplotlib.pyplot as plt

    same = {"device_energy_mj": 1.0, "accuracy": 0.9}
    rows = [{"name": n, "beta": b, **same} for b in (2.0, 5.0) for n in ("fixed-split", "offload-first", "dqn")]
    rows += [{"name": "oracle", "beta": b, "device_energy_mj": 0.5, "accuracy": 0.95} for b in (2.0, 5.0)]
    fig = pareto_figure(rows, "fashion-mnist: nano33 / edge-pc")
    ax = fig.axes[0]
    assert ax.get_title() == "fashion-mnist: nano33 / edge-pc"
    assert sorted(t.get_text() for t in ax.texts) == ["β 2, 5", "β 2, 5"]
    shown = ax.collections
    assert [c.get_label() for c in shown] == ["fixed-split", "offload-first", "dqn", "oracle"]
    # hollow markers of decreasing size: policies on the same point nest, none hides another
    assert len({c.get_sizes()[0] for c in shown}) == 4 and all(len(c.get_facecolor()) == 0 for c in shown)
    plt.close(fig)


def _train(tmp_path, capsys, *extra: str) -> tuple[int, str, str]:
    argv = ["policy", "train", "--model", "fashion-mnist", "--learner", "tabular", "--episodes", "300", "--beta", "3"]
    code = main([*argv, "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "p.npz"), *extra])
    printed = capsys.readouterr()
    found = re.search(r"test: (\{.*\})", printed.out)
    return code, json.loads(found.group(1)) if found else None, printed.err


def test_class_weights_change_the_rewards_and_are_checked(tmp_path, capsys):
    code, plain, _ = _train(tmp_path, capsys)
    assert code == 0
    code, weighted, _ = _train(tmp_path, capsys, "--class-weights", ",".join(["2"] * 10))
    assert code == 0 and weighted["mean_reward"] > plain["mean_reward"] + 1.0
    (tmp_path / "w.txt").write_text("1 1 1 1 1\n1 1 1 1 1\n")
    assert _train(tmp_path, capsys, "--class-weights", str(tmp_path / "w.txt"))[1] == plain
    for bad, message in (
        ("1,2", "2 weights given; the model has 10 classes"),
        ("x", "numbers"),
        ("-1" + ",1" * 9, "non-negative"),
    ):
        code, _, err = _train(tmp_path, capsys, f"--class-weights={bad}")
        assert code == 2 and err.startswith("error: --class-weights") and message in err and err.count("\n") == 1


def test_build_checks_policy_class_weights_before_converting(capsys):
    assert main(["build", "--board", "nano33", "--policy-class-weights", ",".join(["1"] * 10)]) == 2
    assert "add --policy dqn|tabular" in capsys.readouterr().err
    assert main(["build", "--board", "nano33", "--policy", "dqn", "--policy-class-weights", "1,1"]) == 2
    assert "error: --policy-class-weights 1,1: 2 weights given" in capsys.readouterr().err


def test_policy_learns_from_a_traces_file_of_the_hold_out(tmp_path, capsys):
    code, computed, _ = _train(tmp_path, capsys)
    ckpt = checkpoint.load("fashion-mnist")
    hold_out = traces_for(ckpt, LEARN_SPLIT, None, tmp_path / "cache")
    traces.save(hold_out, tmp_path / "val.npz")
    code, read, _ = _train(tmp_path, capsys, "--traces", str(tmp_path / "val.npz"))
    assert code == 0 and read == computed
    traces.save(replace(hold_out, split="train"), tmp_path / "train.npz")
    traces.save(replace(hold_out, model_hash="0" * 64), tmp_path / "other.npz")
    for name, message in (("train.npz", "traces of the train split"), ("other.npz", "traces of model 000000000000")):
        code, _, err = _train(tmp_path, capsys, "--traces", str(tmp_path / name))
        assert code == 2 and message in err and "earlyexit traces --model fashion-mnist --split val" in err
