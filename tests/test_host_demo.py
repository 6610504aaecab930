"""Software in the loop: simulator, bridge and cloud as processes over pseudo-terminals, against offline."""

import json
from dataclasses import replace

import numpy as np
import pytest

from contracts.protocol import Tier
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
        "answers_by_tier", "offload_rate", "bytes_sent", "latency_ms", "faults", "differences", "link",
    }  # fmt: skip
    assert summary["link"]["throttled"] is False
    _exactly_once(summary)
    assert summary["decisions_match"] is True and summary["accuracy"] == summary["offline_accuracy"]
    assert 0 < summary["offload_rate"] < 1 and summary["bytes_sent"] > SAMPLES * 16 * 16 * 3
    assert 0 < summary["latency_ms"]["p50"] <= summary["latency_ms"]["p99"]
    assert summary["faults"] == {"kinds": [], "frames_damaged": 0, "bridge_restarts": 0, "fallback_answers": 0}
    assert summary["differences"] == {"counts": {}, "requests": []}
    assert "decisions match: True, answers by tier" in capsys.readouterr().out


def test_the_demo_lists_the_requests_that_differ_and_why(bundle, tmp_path, capsys):
    """A budget 10 us past slice 1 on the board's clock: no edge answer can come back in time over the ptys
    (a round trip through the bridge process takes hundreds of microseconds)."""
    deadline_ms = (bundle.device_slice_us()[0] + MARGIN_US + 10) / 1e3
    argv = ["demo", "--bundle", str(bundle.root), "--samples", str(SAMPLES), "--deadline-ms", str(deadline_ms)]
    assert main([*argv, "--json", str(tmp_path / "d.json")]) == 0
    summary = json.loads((tmp_path / "d.json").read_text())
    reference = offline.evaluate(bundle, data.load("synthetic", "test").x[:SAMPLES], deadline_ms=deadline_ms)
    offloaded = [i + 1 for i, d in enumerate(reference) if d.tier != 0]
    assert 0 < len(offloaded) < SAMPLES and not summary["decisions_match"]
    assert summary["differences"]["counts"] == {"fallback": len(offloaded)}
    assert [d["request_id"] for d in summary["differences"]["requests"]] == offloaded
    lines = capsys.readouterr().out.splitlines()
    assert f"decisions match: False ({len(offloaded)} differ: {len(offloaded)} fallback), answers by tier" in lines[0]
    first = summary["differences"]["requests"][0]
    assert lines[1] == f"  request {offloaded[0]}: fallback: {first['detail']}"
    assert first["detail"].startswith(
        f"the device offloaded after exit 1 and answered itself from there with the fallback flag (no edge answer "
        f"within its {(bundle.device_slice_us()[0] + 10) / 1e3:g} ms budget); the reference, on a perfect link, "
        "answered at exit"
    )


def test_demo_with_a_cloud_tier_matches_offline(bundle):
    summary = demo.run(bundle, demo.DemoOptions(samples=SAMPLES, cloud=True, edge_slices=1, deadline_ms=3000))
    _exactly_once(summary)
    assert summary["decisions_match"] is True
    reference = offline.evaluate(bundle, data.load("synthetic", "test").x[:SAMPLES], edge_slices=1)
    assert {d.tier for d in reference} == {0, 1, 2}, "every tier answers some samples"


@pytest.fixture(scope="module")
def learned(bundle, tmp_path_factory):
    """The tiny model with two device slices and a tabular device policy."""
    work = tmp_path_factory.mktemp("tabular")
    opts = BuildOptions(
        board="nano33",
        model=str(bundle.root.parent / "tiny.pt"),
        out=work / "bundle",
        cache_dir=work / "cache",
        device_slices=2,
        policy="tabular",
        policy_beta=20.0,  # accuracy worth enough that exit 2 pays for some samples
    )
    build(opts, say=lambda _: None)
    return bundles.load(opts.out)


def test_demo_with_a_learned_device_policy_matches_offline(learned):
    """The simulator decides on the board's clock, so a policy that reads time and energy decides as offline."""
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


def test_a_bandwidth_drop_the_edge_measures_changes_the_devices_decisions_as_offline(learned, monkeypatch):
    """A device policy that offloads whenever its mask lets it (the send must fit the deadline at the
    measured bandwidth), over a link that drops from 40 to 2 kbit/s: the first offloads at 2 kbit/s come too
    late (fallback), and once the edge's measurements have pulled the estimate down the device stops
    offloading. A device that ignored the measurements would keep offloading and falling back."""
    tabular = learned.device_policy()
    prefer = np.array([2, 1, 3], np.int16)  # STAY, EXIT, OFFLOAD: on to the last device exit, then offload
    offloader = replace(tabular, table=np.broadcast_to(prefer, tabular.table.shape).copy())
    monkeypatch.setattr(type(learned), "device_policy", lambda self: offloader)
    high, low = 6, SAMPLES - 6
    trace = (40_000.0,) * high + (2_000.0,) * low
    deadline_ms = 200.0  # the OFFLOAD (about 170 bytes) takes 34 ms at 40 kbit/s, 0.68 s at 2 kbit/s
    images = data.load("synthetic", "test").x[:SAMPLES]
    want = offline.evaluate(learned, images, deadline_ms=deadline_ms, bandwidth=trace)
    assert [d.tier for d in want[:high]] == [Tier.EDGE] * high
    late, local = want[high : high + 3], want[high + 3 :]  # the estimate falls below the mask's in 3 steps
    assert all(d.tier == Tier.DEVICE and d.exit == 2 and d.fallback for d in late)
    assert all(d.tier == Tier.DEVICE and d.exit == 2 and not d.fallback for d in local)
    ignored = offline.evaluate(learned, images, deadline_ms=deadline_ms)  # what a nominal link would get
    assert all(d.tier == Tier.EDGE for d in ignored)

    summary = demo.run(learned, demo.DemoOptions(samples=SAMPLES, deadline_ms=deadline_ms, bandwidth=trace))
    _exactly_once(summary)
    assert summary["decisions_match"] is True, summary["differences"]
    link = summary["link"]
    assert link["throttled"] and link["measured_offloads"] == high
    assert link["median_relative_error"] < 0.1
