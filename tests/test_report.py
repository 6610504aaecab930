"""``report.md``: a learned policy described as what it is; estimated times under the tier that runs the slice;
the per-exit trade-off with its Pareto front."""

import json

from converter import report


def _slice(index: int, tier: str, ms: float, accuracy: float = 0.9) -> dict:
    return {
        "index": index,
        "tier": tier,
        "bytes": 1000,
        "arena_bytes": 2000,
        "macs": 10_000,
        "float_accuracy": accuracy,
        "int8_accuracy": accuracy,
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


def _energy(macs: int) -> float:
    return macs / 1e4  # 1 mJ per 10,000 MACs


def test_times_sit_in_the_running_tiers_column_and_thresholds_are_named(tmp_path):
    report.write(tmp_path, _manifest({"kind": "threshold", "thresholds": [0.9, 0.8]}), _energy)
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
    report.write(tmp_path, _manifest(policy), _energy)
    text = (tmp_path / "report.md").read_text()
    assert "Device policy: dqn (learned Q-network: int8 MLP 11-16-16-3, 2 hidden layers; trained: dqn" in text
    assert "on 99.50 % of device steps). The edge answers by confidence thresholds per exit [0.9, 0.9]." in text
    assert "dqn [0.9" not in text


def test_the_tradeoff_table_is_cumulative_and_marks_the_pareto_front(tmp_path):
    manifest = _manifest({"kind": "threshold", "thresholds": [0.9, 0.8, 0.7]})
    manifest["slices"] = [_slice(1, "device", 1.0, 0.7), _slice(2, "device", 1.0, 0.65), _slice(3, "edge", 0.1, 0.8)]
    report.write(tmp_path, manifest, _energy)
    text = (tmp_path / "report.md").read_text()
    assert "| 1 | device | 10,000 | 1.000 | 70.00 | 70.00 | yes |" in text
    assert "| 2 | device | 20,000 | 2.000 | 65.00 | 65.00 | no: an earlier exit is as accurate |" in text
    assert "| 3 | edge | 30,000 | 3.000 | 80.00 | 80.00 | yes |" in text
    assert (tmp_path / "report.png").stat().st_size > 0
