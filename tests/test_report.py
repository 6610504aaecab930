"""``report.md``: a learned policy described as what it is; estimated times under the tier that runs the slice."""

import json

from converter import report


def _slice(index: int, tier: str, ms: float) -> dict:
    return {
        "index": index,
        "tier": tier,
        "bytes": 1000,
        "arena_bytes": 2000,
        "macs": 10_000,
        "float_accuracy": 0.9,
        "int8_accuracy": 0.9,
        "tflm_litert_argmax_agreement": 1.0,
        "estimated_latency_ms": ms,
        "ops": ["CONV_2D"],
    }


def _manifest(policy: dict) -> dict:
    return {
        "model": {"name": "toy", "hash": "ab" * 32, "arch": "tiny", "dataset": "synthetic"},
        "board": "nano33",
        "edge": "edge-pc",
        "device_slices": 1,
        "fit": {"flash_needed": 1, "flash_available": 2, "ram_needed": 1, "ram_available": 2, "arena_bytes": 2000},
        "verification": {"samples": 10, "dataset": "synthetic/test", "trunks_identical": [True]},
        "policy": policy,
        "slices": [_slice(1, "device", 12.5), _slice(2, "edge", 0.04)],
    }


def test_times_sit_in_the_running_tiers_column_and_thresholds_are_named(tmp_path):
    report.write(tmp_path, _manifest({"kind": "threshold", "thresholds": [0.9, 0.8]}))
    text = (tmp_path / "report.md").read_text()
    assert "| est. ms on nano33 | est. ms on edge-pc | ops |" in text
    assert "| 12.5 | - | CONV_2D |" in text and "| - | 0.04 | CONV_2D |" in text
    assert "Policy embedded: confidence thresholds per exit [0.9, 0.8] (device and edge)." in text


def test_a_learned_policy_is_not_described_as_thresholds(tmp_path):
    layers = [{"weights": [[0] * 11] * 16}, {"weights": [[0] * 16] * 16}, {"weights": [[0] * 16] * 3}]
    (tmp_path / "device").mkdir()
    (tmp_path / "device" / "policy.json").write_text(json.dumps({"kind": "dqn", "layers": layers}))
    policy = {
        "kind": "dqn",
        "thresholds": [0.9, 0.9],
        "device": "device/policy.json",
        "source": "trained: dqn, beta 2, 100 episodes on toy/val",
        "agreement": 0.995,
    }
    report.write(tmp_path, _manifest(policy))
    text = (tmp_path / "report.md").read_text()
    assert "Device policy: dqn (learned Q-network: int8 MLP 11-16-16-3, 2 hidden layers; trained: dqn" in text
    assert "on 99.50 % of device steps). The edge answers by confidence thresholds per exit [0.9, 0.9]." in text
    assert "dqn [0.9" not in text
