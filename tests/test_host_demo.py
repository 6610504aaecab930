"""Software in the loop: simulator, bridge and cloud as processes over pseudo-terminals, against offline."""

import json

import pytest

from converter.build import BuildOptions
from converter.build import run as build
from earlyexit import data
from host import bundle as bundles
from host import demo, offline
from host.__main__ import main
from host.simulator import MARGIN_US
from tests.test_host_bundle import tiny_bundle

SAMPLES = 16


@pytest.fixture(scope="module")
def bundle(request, tmp_path_factory):
    return bundles.load(tiny_bundle(request, tmp_path_factory))


def _exactly_once(summary):
    assert summary["samples"] == summary["answered"] == SAMPLES and summary["duplicates"] == 0


def test_demo_without_faults_answers_exactly_like_offline(bundle, tmp_path, capsys):
    out = tmp_path / "demo.json"
    argv = ["demo", "--bundle", str(bundle.root), "--samples", str(SAMPLES), "--deadline-ms", "3000"]
    assert main([*argv, "--json", str(out)]) == 0  # a generous deadline: no timeout even on a loaded machine
    summary = json.loads(out.read_text())
    assert set(summary) == {
        "samples", "answered", "duplicates", "accuracy", "offline_accuracy", "decisions_match",
        "offload_rate", "bytes_sent", "latency_ms", "faults", "differences",
    }  # fmt: skip
    _exactly_once(summary)
    assert summary["decisions_match"] is True and summary["accuracy"] == summary["offline_accuracy"]
    assert 0 < summary["offload_rate"] < 1 and summary["bytes_sent"] > SAMPLES * 16 * 16 * 3
    assert 0 < summary["latency_ms"]["p50"] <= summary["latency_ms"]["p99"]
    assert summary["faults"] == {"kinds": [], "frames_damaged": 0, "bridge_restarts": 0, "fallback_answers": 0}
    assert summary["differences"] == {"counts": {}, "requests": []}
    assert "decisions match: True, offload rate" in capsys.readouterr().out


def test_the_demo_lists_the_requests_that_differ_and_why(bundle, tmp_path, capsys):
    """A budget 0.5 ms past slice 1 on the board's clock: no edge answer comes back in time over the ptys."""
    deadline_ms = (bundle.device_slice_us()[0] + MARGIN_US + 500) / 1e3
    argv = ["demo", "--bundle", str(bundle.root), "--samples", str(SAMPLES), "--deadline-ms", str(deadline_ms)]
    assert main([*argv, "--json", str(tmp_path / "d.json")]) == 0
    summary = json.loads((tmp_path / "d.json").read_text())
    reference = offline.evaluate(bundle, data.load("synthetic", "test").x[:SAMPLES], deadline_ms=deadline_ms)
    offloaded = [i + 1 for i, d in enumerate(reference) if d.tier != 0]
    assert 0 < len(offloaded) < SAMPLES and not summary["decisions_match"]
    assert summary["differences"]["counts"] == {"fallback": len(offloaded)}
    assert [d["request_id"] for d in summary["differences"]["requests"]] == offloaded
    lines = capsys.readouterr().out.splitlines()
    assert f"decisions match: False ({len(offloaded)} differ: {len(offloaded)} fallback), offload rate" in lines[0]
    first = summary["differences"]["requests"][0]
    assert lines[1] == f"  request {offloaded[0]}: fallback: {first['detail']}"
    assert first["detail"].startswith(
        f"the device offloaded after exit 1 and answered itself from there with the fallback flag (no edge answer "
        f"within its {(bundle.device_slice_us()[0] + 500) / 1e3:g} ms budget); the reference, on a perfect link, "
        "answered at exit"
    )


def test_demo_with_a_cloud_tier_matches_offline(bundle):
    summary = demo.run(bundle, demo.DemoOptions(samples=SAMPLES, cloud=True, edge_slices=1, deadline_ms=3000))
    _exactly_once(summary)
    assert summary["decisions_match"] is True
    reference = offline.evaluate(bundle, data.load("synthetic", "test").x[:SAMPLES], edge_slices=1)
    assert {d.tier for d in reference} == {0, 1, 2}, "every tier answers some samples"


def test_demo_with_a_learned_device_policy_matches_offline(bundle, tmp_path):
    """The simulator decides on the board's clock, so a policy that reads time and energy decides as offline."""
    out = tmp_path / "tabular"
    opts = BuildOptions(
        board="nano33",
        model=str(bundle.root.parent / "tiny.pt"),
        out=out,
        cache_dir=tmp_path / "cache",
        device_slices=2,
        policy="tabular",
        policy_beta=20.0,  # accuracy worth enough that exit 2 pays for some samples
    )
    build(opts, say=lambda _: None)
    learned = bundles.load(out)
    assert learned.manifest["policy"]["kind"] == "tabular"
    # the deadline the policy was trained for: its time-left feature spans its whole range
    deadline_ms = (learned.device_policy().features.deadline_us + MARGIN_US) / 1e3
    summary = demo.run(learned, demo.DemoOptions(samples=SAMPLES, deadline_ms=deadline_ms))
    _exactly_once(summary)
    assert summary["decisions_match"] is True
    images = data.load("synthetic", "test").x[:SAMPLES]
    assert {d.exit for d in offline.evaluate(learned, images, deadline_ms=deadline_ms)} == {1, 2}
    # the budget counts on the board's clock: one too short for slice 2 answers every sample at exit 1
    short = (learned.device_slice_us()[0] + MARGIN_US + 1) / 1e3
    assert {d.exit for d in offline.evaluate(learned, images, deadline_ms=short)} == {1}


@pytest.mark.parametrize("fault", ["drop", "corrupt", "kill-edge"])
def test_every_request_is_answered_exactly_once_despite(bundle, fault):
    summary = demo.run(bundle, demo.DemoOptions(samples=SAMPLES, faults=frozenset({fault}), deadline_ms=300))
    _exactly_once(summary)
    faults = summary["faults"]
    if fault == "kill-edge":  # the request in flight is answered by the device's fallback or sent again
        assert faults["bridge_restarts"] == 1 and faults["frames_damaged"] == 0
    else:
        assert faults["frames_damaged"] > 0 and faults["bridge_restarts"] == 0
        assert faults["fallback_answers"] > 0, "lost offloads were answered by the device's fallback"
    # every answer that differs from the reference is such a fallback, and says so
    assert summary["differences"]["counts"] == (
        {"fallback": faults["fallback_answers"]} if faults["fallback_answers"] else {}
    )
