"""Learned device policies exported to C: integer twin vs C, vs the float policy, sizes, files, the build flag."""

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from contracts import boards
from converter.__main__ import main
from converter.build import BuildOptions, run
from earlyexit.traces import Traces
from host import bundle as host_bundle
from policy import dqn, export, export_c, intpolicy, tabular
from policy.bandwidth import Bandwidth
from policy.costs import CostModel
from policy.edgeload import EdgeLoad
from policy.env import EnvConfig, TraceEnv
from policy.threshold import EXIT, OFFLOAD, STAY, DeviceState, ThresholdPolicy
from tests.test_build import cache, tiny_arch, tiny_model  # noqa: F401 (fixtures)

SCALES = [0.11, 0.09, 0.07]
HARNESS = r"""
#include <stdint.h>
#include <stdio.h>
#include "ee_policy.h"
int main(void) {
  int i, v, c;
  int8_t logits[64];
  ee_policy_state s;
  unsigned long t, e, left, bw, wait, pace;
  while (scanf("%d %d", &s.exit_index, &s.num_classes) == 2) {
    for (i = 0; i < s.num_classes; ++i) {
      if (scanf("%d", &v) != 1) return 1;
      logits[i] = (int8_t)v;
    }
    if (scanf("%lu %lu %lu %lu %d %lu %lu", &t, &e, &left, &bw, &c, &wait, &pace) != 7) return 1;
    s.logits = logits;
    s.time_spent_us = (uint32_t)t;
    s.energy_spent_uj = (uint32_t)e;
    s.deadline_left_us = (uint32_t)left;
    s.bandwidth_bps = (uint32_t)bw;
    s.can_offload = (uint8_t)c;
    s.edge_wait_us = (uint32_t)wait;
    s.battery_pace_uj = (uint32_t)pace;
    printf("%d %u\n", ee_policy_decide(&s), (unsigned)ee_policy_confidence_q15(s.exit_index, logits, s.num_classes));
  }
  return 0;
}
"""
WARNINGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]


def _toy(n=400, seed=0) -> Traces:
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet([0.4] * 4, size=(n, 3))
    labels = np.where(rng.random(n) < 0.7, probs[:, 2].argmax(-1), rng.integers(0, 4, n))
    pred = probs.argmax(-1).astype(np.int16)
    return Traces(
        probs.astype(np.float32), np.zeros(pred.shape, np.float32), pred, labels, np.arange(1, 4), "h", "t", "x"
    )


def _costs() -> CostModel:
    return CostModel((1_000_000,) * 3, (1000, 1000, 0), 2, (boards.load("nano33"), boards.load("edge-pc")))


def _env(traces, seed=0, order=True, battery=True) -> TraceEnv:
    """Outages, a shared edge whose wait varies around the deadline and (``battery``) a day's battery that binds."""
    costs = _costs()
    battery_mj = 40 * 1.2 * costs.energy_unit_mj if battery else float("inf")
    deadline = 3 * costs.compute_seconds(0, 0)
    cfg = EnvConfig(beta=3.0, deadline_s=deadline, offload_at_split=True, battery_mj=battery_mj, day_requests=40)
    bw = Bandwidth("gilbert", costs.tiers[0].links[0].bandwidth_bps, seed=seed)
    edge = EdgeLoad(60, deadline / 4, seed)
    order = np.arange(len(traces.label)) if order else None
    return TraceEnv(traces, costs, cfg, bw, order=order, seed=seed, edge=edge)


@pytest.fixture(scope="module")
def learned():
    """(name, float policy, exported policy, device states of the test traces, agreement) per learner."""
    train_env, test_env = _env(_toy(), order=False), _env(_toy(seed=1), seed=2)
    policies = {
        "dqn": dqn.train(train_env, dqn.DQNConfig(episodes=300))[0],
        "tabular": tabular.train(train_env, tabular.TabularConfig(episodes=2000)),
    }
    out = {}
    for name, policy in policies.items():
        exported = export.export_learned(policy, train_env, SCALES, 4)
        same, steps, states = export.agreement(test_env, policy, exported, SCALES)
        out[name] = (policy, exported, states, same / steps)
    return out, train_env


def _random_states(n=400, seed=3) -> list[DeviceState]:
    rng = np.random.default_rng(seed)
    return [
        DeviceState(
            int(rng.integers(0, 2)),
            rng.integers(-128, 128, 4).astype(np.int8),
            int(rng.integers(0, 200_000)),
            int(rng.integers(0, 5000)),
            int(rng.choice([0, 1000, 50_000, 200_000, 0xFFFFFFFF])),
            int(rng.choice([0, 1, 9600, 1_000_000, 4_000_000_000])),
            bool(rng.integers(0, 2)),
            int(rng.choice([0, 1000, 100_000, 0xFFFFFFFF])),
            int(rng.choice([0, 500, 5000, 0xFFFFFFFF])),
        )
        for _ in range(n)
    ]


def _run_c(policy_c: str, states: list[DeviceState], tmp: Path) -> list[str]:
    (tmp / "ee_policy.h").write_text(export_c.header("/* test */\n"))
    (tmp / "ee_policy.c").write_text(policy_c)
    (tmp / "harness.c").write_text(HARNESS)
    build = subprocess.run(
        ["gcc", *WARNINGS, "-O2", f"-I{tmp}", "harness.c", "ee_policy.c", "-o", "harness"],
        cwd=tmp,
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr
    lines = "".join(
        f"{s.exit} {len(s.logits)} {' '.join(str(int(v)) for v in s.logits)} {s.time_spent_us} {s.energy_spent_uj}"
        f" {s.deadline_left_us} {s.bandwidth_bps} {int(s.can_offload)} {s.edge_wait_us} {s.battery_pace_uj}\n"
        for s in states
    )
    return subprocess.run([str(tmp / "harness")], input=lines, capture_output=True, text=True, check=True).stdout.split(
        "\n"
    )[:-1]


@pytest.mark.parametrize("name", ["dqn", "tabular"])
def test_c_and_python_twin_decide_identically_on_every_step(learned, name, tmp_path):
    policy, exported, states, agreement = learned[0][name]
    states = states + _random_states()
    c = _run_c(export_c.source("/* test */\n", exported), states, tmp_path)
    python = [f"{exported.decide_device(s)} {exported.confidence_q15(s.exit, s.logits)}" for s in states]
    assert c == python
    decisions = {int(line.split()[0]) for line in c}
    assert len(decisions) >= 2 and EXIT in decisions
    assert agreement >= 0.95  # the integer policy follows the float one it came from


def test_integer_features_follow_the_float_observation(learned):
    _, train_env = learned
    feats = export.features_for(train_env.costs, train_env.cfg, SCALES, 4)
    env = _env(_toy(seed=1), seed=2)
    env.reset()
    for _ in range(200):
        env.reset()
        state = export.device_state(env, env.state, SCALES)
        ints = np.array(intpolicy.observation(feats, intpolicy.exp_tables(SCALES)[state.exit], state))
        expected = env.observe()
        # top probability, margin, entropy: int8 rounding of the logits; the rest: integer rounding only
        assert np.abs(ints[:3] / 4096 - expected[:3]).max() < 0.06
        assert np.abs(ints[3:] / 4096 - expected[3:]).max() < 2e-3


def test_exported_mask_is_the_environments(learned):
    env = _env(_toy(seed=1), seed=2, battery=False)  # the device's mask has no battery limit (its pace is a feature)
    exported = learned[0]["dqn"][1]
    for _ in range(100):
        env.reset()
        while env.state.tier == 0:
            mask = env.mask()
            assert exported.allowed(export.device_state(env, env.state, SCALES)) == mask.tolist()
            if not mask[STAY]:
                break
            env.step(STAY)


def test_policy_files_round_trip(learned, tmp_path):
    models, train_env = learned
    states = _random_states(200)
    for name, (policy, exported, _, _) in models.items():
        intpolicy.save(exported, tmp_path / f"{name}.json")
        again = intpolicy.load(tmp_path / f"{name}.json")
        assert [again.decide_device(s) for s in states] == [exported.decide_device(s) for s in states]
        export.save_learned(policy, train_env, tmp_path / f"{name}.policy")
        from_file = export.export_file(tmp_path / f"{name}.policy", train_env.costs, SCALES, 4)
        assert [from_file.decide_device(s) for s in states] == [exported.decide_device(s) for s in states]
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="bad.json: not an exported device policy"):
        intpolicy.load(tmp_path / "bad.json")
    (tmp_path / "bad.policy").write_text("nonsense")
    with pytest.raises(ValueError, match="bad.policy: not a policy file"):
        export.export_file(tmp_path / "bad.policy", train_env.costs, SCALES, 4)
    with np.load(tmp_path / "tabular.policy") as f:
        old = {k: f[k] for k in f.files}
    settings = json.loads(str(old["settings"]))
    del settings["observation"]  # as written before the observation had a version
    with (tmp_path / "old.policy").open("wb") as f:
        np.savez(f, **{**old, "settings": json.dumps(settings)})
    with pytest.raises(ValueError, match=r"old.policy: learned on observations of another version \(1, .* retrain"):
        export.export_file(tmp_path / "old.policy", train_env.costs, SCALES, 4)


def _sizes(source: str, tmp: Path, name: str) -> tuple[int, int, int]:
    """(text, data + bss, summed stack of every function) of ``source`` for the Cortex-M4F (or the host)."""
    cc = ["arm-none-eabi-gcc", "-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"]
    if shutil.which(cc[0]) is None:
        cc = ["gcc"]
    (tmp / "ee_policy.h").write_text(export_c.header("/* test */\n"))
    (tmp / f"{name}.c").write_text(source)
    subprocess.run([*cc, *WARNINGS, "-Os", "-fstack-usage", "-c", f"{name}.c"], cwd=tmp, check=True)
    size = "arm-none-eabi-size" if cc[0].startswith("arm") else "size"
    text, data, bss = (
        subprocess.run([size, f"{name}.o"], cwd=tmp, capture_output=True, text=True).stdout.split("\n")[1].split()[:3]
    )
    stack = sum(int(line.split("\t")[1]) for line in (tmp / f"{name}.su").read_text().splitlines())
    return int(text), int(data) + int(bss), stack


def test_dqn_fits_two_kilobytes_of_flash_and_one_of_ram(learned, tmp_path):
    exported = learned[0]["dqn"][1]
    base = ThresholdPolicy.build(SCALES, [0.9] * 3, 2)
    text, ram, stack = _sizes(export_c.source("/* */\n", exported), tmp_path, "dqn")
    base_text, _, _ = _sizes(export_c.source("/* */\n", base), tmp_path, "threshold")
    # beyond the exp tables every policy shares (confidence): MLP, features and mask
    assert text - base_text <= 2048
    assert ram == 0 and stack <= 1024


def test_offload_at_split_masks_earlier_offloads():
    env = _env(_toy())
    env.reset()
    assert env.mask().tolist() == [True, True, False]  # exit 1 of 2 device exits: no offload yet
    env.step(STAY)
    assert env.mask()[OFFLOAD]


def test_build_embeds_a_learned_policy(tiny_model, cache, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "tab"
    manifest = run(
        BuildOptions(
            board="nano33",
            model=str(tiny_model),
            cache_dir=cache,
            out=out,
            policy="tabular",
            device_slices=2,
            policy_episodes=1000,
        ),
        say=lambda _: None,
        progress=True,
    )
    assert manifest["policy"]["kind"] == "tabular" and manifest["policy"]["agreement"] > 0.9
    assert "tabular Q (beta" in capsys.readouterr().err  # learning shows its progress
    device = host_bundle.load(out).device_policy()
    assert isinstance(device, intpolicy.LearnedPolicy) and device.kind == "tabular"
    fw = out / "firmware"
    states = [
        DeviceState(k, z, t, t // 100, left, 0, c)
        for k, z, t, left, c in zip(
            np.arange(60) % 2,
            np.random.default_rng(0).integers(-128, 128, (60, 4)).astype(np.int8),
            range(0, 60_000, 1000),
            range(60_000, 0, -1000),
            np.arange(60) % 3 > 0,
        )
    ]
    c = _run_c((fw / "ee_policy.c").read_text(), states, tmp_path)
    assert c == [f"{device.decide_device(s)} {device.confidence_q15(s.exit, s.logits)}" for s in states]
    # a policy file: exported as it is
    env = TraceEnv(
        _toy(), _costs(), EnvConfig(beta=3.0, deadline_s=0.05, offload_at_split=True), Bandwidth("constant", 1e6)
    )
    export.save_learned(dqn.train(env, dqn.DQNConfig(episodes=50))[0], env, tmp_path / "p.pt")
    manifest = run(
        BuildOptions(board="nano33", model=str(tiny_model), cache_dir=cache, out=out, policy=str(tmp_path / "p.pt")),
        say=lambda _: None,
    )
    assert manifest["policy"]["kind"] == "dqn" and manifest["policy"]["source"].endswith("p.pt")
    assert json.loads((out / "device" / "policy.json").read_text())["kind"] == "dqn"
    subprocess.run(["gcc", *WARNINGS, "-c", "ee_policy.c", "-o", str(tmp_path / "p.o")], cwd=fw, check=True)


def test_build_names_a_missing_policy_file(capsys):
    assert main(["build", "--board", "nano33", "--policy", "no-such.pt"]) == 2
    err = capsys.readouterr().err
    assert "--policy no-such.pt" in err and "Traceback" not in err
