"""The realistic setting: ble link, throughput traces, outages, a shared edge, a day's battery, the adaptive rule."""

import json

import numpy as np
import pytest

from contracts import boards
from contracts.manifest import VERSION, write_manifest
from converter.__main__ import main
from policy import baselines, costs, linktraces
from policy.bandwidth import P_OUTAGE, P_RECOVER, Bandwidth
from policy.costs import CostModel
from policy.edgeload import MAX_WAIT_S, EdgeLoad
from policy.env import EXIT, OFFLOAD, STAY, EnvConfig, TraceEnv
from tests.test_policy import _one_sample, _traces


def test_ble_link_is_chosen_by_name():
    ble = boards.load("nano33", "ble")
    assert ble.links[0].name == "ble" and ble.links[0].to == "edge-pc"
    assert 0 < ble.links[0].bandwidth_bps < ble.links[0].bandwidth_max_bps
    assert boards.load("nano33").links[0].name == "usb-serial"  # the profile's first stays the default
    with pytest.raises(boards.BoardError, match=r"nano33 has no link 'wifi'; its links: usb-serial, ble"):
        boards.load("nano33", "wifi")


def test_cli_names_an_unknown_link(capsys):
    assert main(["policy", "compare", "--board", "nano33", "--link", "wifi", "--json", "/dev/null"]) == 2
    err = capsys.readouterr().err
    assert "no link 'wifi'" in err and "Traceback" not in err


def _write_traces(folder, n=5):
    """Generated traces in the three published layouts (not measurements)."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        kb = rng.integers(1, 400, 30) * 1000
        kb[5:8], kb[10] = 0, 10**8  # an outage and a burst beyond the link's ceiling
        if i % 3 == 0:  # HSDPA / LTE logs: time, ms, lat, lon, bytes, elapsed ms
            rows = [f"{1289406399 + s} {1000 * s} 59.85 10.78 {b} 1000" for s, b in enumerate(kb)]
        elif i % 3 == 1:  # Pensieve cooked: seconds, Mbit/s
            rows = [f"{s:.1f} {8 * b / 1e6:.4f}" for s, b in enumerate(kb)]
        else:  # one bit/s value per second
            rows = [str(8 * b) for b in kb]
        (folder / f"trace{i}.log").write_text("\n".join(rows) + "\n")


def test_trace_formats_read_alike(tmp_path):
    _write_traces(tmp_path / "t", 3)
    values = [linktraces.read(tmp_path / "t" / f"trace{i}.log") for i in range(3)]
    for v in values:
        assert len(v) == 30 and v.min() >= 0
    (tmp_path / "bad.log").write_text("1 2 3\n")
    with pytest.raises(ValueError, match=r"bad.log: 3 columns per line"):
        linktraces.read(tmp_path / "bad.log")
    (tmp_path / "words.log").write_text("fast\n")
    with pytest.raises(ValueError, match=r"words.log: not a throughput trace"):
        linktraces.read(tmp_path / "words.log")


def test_trace_folder_splits_files_and_scales_to_the_link(tmp_path):
    _write_traces(tmp_path / "t", 5)
    link = boards.load("nano33", "ble").links[0]
    ts = linktraces.load_dir(tmp_path / "t", link)
    assert ts.eval == ("trace3.log",) and set(ts.train).isdisjoint(ts.eval) and len(ts.train) == 4
    assert np.median(ts.train_bps) == pytest.approx(link.bandwidth_bps)
    assert ts.train_bps.max() == link.bandwidth_max_bps and (ts.train_bps == 0).sum() == 12  # outages stay outages
    with pytest.raises(ValueError, match="at least 2 trace files"):
        linktraces.load_dir(tmp_path / "missing", link)


def test_gilbert_elliott_has_outages_at_the_stationary_rate():
    g = Bandwidth("gilbert", 4e5, seed=3)
    values = np.array([g.next() for _ in range(20_000)])
    assert (values == 0).mean() == pytest.approx(P_OUTAGE / (P_OUTAGE + P_RECOVER), abs=0.02)
    assert values.max() <= 8e5
    g.restart()
    assert [g.next() for _ in range(100)] == values[:100].tolist()


def test_edge_wait_grows_with_devices_and_is_capped():
    waits = {}
    for n in (0, 100, 400):
        e = EdgeLoad(n, 0.005, seed=1)
        waits[n] = np.array([e.next() for _ in range(3000)])
    assert waits[0].max() == 0 and waits[100].mean() < waits[400].mean()
    assert waits[400].max() == pytest.approx(MAX_WAIT_S)
    with pytest.raises(ValueError, match="devices"):
        EdgeLoad(-1, 0.01)


def _costs() -> CostModel:
    tiers = (boards.load("nano33", "ble"), boards.load("edge-pc"))
    return CostModel((1_000_000,) * 3, (1000, 1000, 0), 2, tiers)


class _Fixed:
    """A bandwidth or edge process that returns the given values in turn."""

    def __init__(self, values):
        self.values, self.i = list(values), 0

    def restart(self):
        self.i = 0

    def next(self):
        self.i += 1
        return self.values[(self.i - 1) % len(self.values)]


def test_edge_wait_delays_offloads_and_can_mask_them():
    c = _costs()
    env = TraceEnv(_one_sample(), c, EnvConfig(beta=3.0, deadline_s=1.0), _Fixed([4e5]), edge=_Fixed([0.0, 0.5, 5.0]))
    times = []
    for _ in range(2):
        env.reset()
        env.step(STAY)
        env.step(OFFLOAD)
        times.append(env.state.time_s)
    assert times[1] - times[0] == pytest.approx(0.5)
    env.reset()
    env.step(STAY)
    assert not env.mask()[OFFLOAD]  # a 5 s queue misses the deadline
    assert env.observe()[-2] == pytest.approx(5.0)  # the wait, in deadlines


def test_battery_runs_out_then_refills_at_the_next_day():
    c = _costs()
    cfg = EnvConfig(beta=3.0, deadline_s=2.0, battery_mj=2.5 * c.compute_energy_mj(0, 0), day_requests=4)
    env = TraceEnv(_one_sample(), c, cfg, _Fixed([4e5]), order=np.zeros(1, int))
    outcomes = []
    for _ in range(5):
        env.reset()
        outcomes.append(env.state.unanswered)
        if not env.state.unanswered:
            assert env.observe()[-1] == pytest.approx(
                env.state.battery_mj / ((4 - (len(outcomes) - 1) % 4) * c.energy_unit_mj)
            )
        _, reward, _, _, info = env.step(EXIT)
    assert outcomes == [False, False, True, True, False]  # two slice-1 answers fit; a new day refills
    env.reset()
    assert not env.mask()[STAY]  # 1.5 slices' energy left: slice 2 would overdraw it


def test_adaptive_threshold_offloads_only_when_the_link_makes_it():
    c = _costs()
    probs = np.array([[[0.6, 0.4], [0.6, 0.4], [0.2, 0.8]]] * 2)
    traces = _traces(probs, np.array([1, 1]))
    env = TraceEnv(traces, c, EnvConfig(beta=3.0, deadline_s=1.0), _Fixed([4e5, 0.0]), order=np.arange(2))
    policy = baselines.adaptive_threshold([0.9, 0.9, 0.9], reserve=0.0)
    env.reset()
    assert policy(env) == OFFLOAD  # sending 1 KB costs less than the device's next slice
    env.reset()
    assert policy(env) == STAY  # an outage: go on locally
    starved = baselines.adaptive_threshold([0.9, 0.9, 0.9], reserve=100.0)
    assert starved(env) == EXIT  # the battery pace is below the reserve: answer here


def test_compare_on_trace_files_reports_the_link_and_the_files(tmp_path):
    _write_traces(tmp_path / "t", 4)
    out = tmp_path / "compare.json"
    args = ["policy", "compare", "--board", "nano33", "--link", "ble", "--episodes", "200", "--betas", "3"]
    args += ["--bandwidth", "trace", "--bandwidth-trace", str(tmp_path / "t"), "--edge-devices", "300"]
    args += ["--battery-mj", "3000", "--day-requests", "100", "--cache-dir", str(tmp_path / "cache")]
    assert main([*args, "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    link = result["link"]
    assert link["name"] == "ble" and link["traces"]["eval"] == ["trace3.log"] and len(link["traces"]["train"]) == 3
    assert all((tmp_path / f"compare{suffix}.png").is_file() for suffix in ("", "_reward", "_decisions"))
    rows = {r["name"]: r for r in result["policies"]}
    assert "adaptive-threshold" in rows and all(
        r["mean_reward"] <= rows["oracle"]["mean_reward"] + 1e-9 for r in rows.values()
    )


def test_build_takes_the_link_and_costs_read_it_back(tmp_path, capsys):
    assert main(["build", "--board", "nano33", "--link", "wifi"]) == 2
    assert "nano33 has no link 'wifi'" in capsys.readouterr().err
    slices = [{"macs": 1000, "outputs": {"trunk": {"shape": [1, 4, 4, 2]}}}, {"macs": 1000, "outputs": {}}]
    manifest = {"manifest_version": VERSION, "board": "nano33", "link": "ble", "device_slices": 1, "slices": slices}
    write_manifest(tmp_path, manifest)
    assert costs.from_manifest(tmp_path / "manifest.json").tiers[0].links[0].name == "ble"
    del manifest["link"]  # a build from before links could be chosen: the profile's first
    write_manifest(tmp_path, manifest)
    assert costs.from_manifest(tmp_path / "manifest.json").tiers[0].links[0].name == "usb-serial"
