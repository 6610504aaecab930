"""Software in the loop: the simulator and the bridge linked by pseudo-terminals, compared with offline.

::

    simulator on ptyA  <->  ptyA master  <- relay (faults) ->  ptyB master  <->  bridge --port ptyB (a process)

The simulator (and the cloud tier, when asked: a TCP server thread, or a local Ray Serve
deployment with ``cloud_engine="ray"``) run in this process; the bridge
is a ``python -m host bridge`` process (so that it can be killed), fed the samples as JSON
request lines; its answer records are compared with the offline evaluation of the same
samples. With a bandwidth trace the relay throttles the device's uplink by it and the offline
evaluation sees the same trace (``host/relay.py``, ``host/offline.py``). With a ``port`` the same
runs against a flashed board (no simulator, no relay); with target ``qemu`` against the firmware
on an emulated Cortex-M4 (``host/qemu.py``, no relay).
"""

from __future__ import annotations

import base64
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import tty
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contracts.protocol import MsgType, Tier
from earlyexit import data
from host import differences, offline, ports, qemu
from host.bundle import Bundle
from host.cloud import CloudServer
from host.link import open_serial
from host.relay import DAMAGE, UP, Relay
from host.simulator import DEFAULT_DEADLINE_MS, DeviceClock, Simulator
from policy import linktraces

FAULTS = (*DAMAGE, "kill-edge")
KILL_AT_OFFLOAD = 1  # kill-edge: the bridge dies when the device sends its second OFFLOAD
# The bridge's tries per request: the faults spoil about one try in five (its INFER or its final
# RESULT), so 3 tries lost 2 of 200 requests; with 10 a request is lost about once in 10^7.
TRIES = 10
START_TIMEOUT_S = 60.0


class DemoError(Exception):
    """The demo could not run to the end; the message says why."""


@dataclass(frozen=True)
class DemoOptions:
    samples: int
    data_dir: str | None = None
    faults: frozenset[str] = frozenset()
    cloud: bool = False
    cloud_engine: str = "tcp"  # "tcp": the in-process server; "ray": a local Ray Serve deployment (host/cloud_ray.py)
    edge_slices: int = 0
    deadline_ms: float = DEFAULT_DEADLINE_MS
    port: str | None = None  # a real board instead of the simulator
    target: str = "sil"  # "sil": the simulator; "qemu": the firmware under QEMU (host/qemu.py)
    baud: int = 115200
    seed: int = 0
    bandwidth: tuple[float, ...] | None = None  # bit/s per request: the relay throttles the device's uplink by it


def read_trace(path: str) -> tuple[float, ...]:
    """A throughput trace file (the formats of ``policy/linktraces.py``) as bit/s, one value per request."""
    try:
        return tuple(float(v) for v in linktraces.read(Path(path)))
    except ValueError as err:
        raise DemoError(f"--bandwidth-trace: {err}") from None


def load_samples(bundle: Bundle, count: int, data_dir: str | None) -> data.Dataset:
    """The first ``count`` test samples of the bundle's dataset (bundled ones for Fashion-MNIST)."""
    name = "fashion-mnist-samples" if bundle.dataset == "fashion-mnist" and data_dir is None else bundle.dataset
    ds = data.load(name, "test", data_dir)
    if not 1 <= count <= min(len(ds), 0xFFFF):
        raise DemoError(f"--samples {count}: {name} has {len(ds)} test samples (at most 65535 per run)")
    if ds.x.shape[1:] != bundle.input_shape:
        raise DemoError(f"{name} images are {ds.x.shape[1:]}, the model takes {bundle.input_shape}")
    return data.Dataset(ds.name, ds.split, ds.x[:count], ds.y[:count], ds.classes)


class _Bridge:
    """A ``python -m host bridge`` process: its stdout lines go to ``lines``, its log to our stderr."""

    def __init__(self, args: list[str], lines: queue.Queue) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "host", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.lines = lines
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)

    def feed(self, lines: list[str]) -> None:
        """Write ``lines`` to its stdin from a thread, then close it (a dead child just stops taking them)."""

        def write() -> None:
            try:
                for line in lines:
                    self.proc.stdin.write(line + "\n")
                self.proc.stdin.close()
            except (BrokenPipeError, ValueError, OSError):
                pass

        threading.Thread(target=write, daemon=True).start()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(timeout=5)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()


def _pty() -> tuple[int, int, str]:
    master, slave = os.openpty()
    tty.setraw(slave)
    return master, slave, os.ttyname(slave)


def _request_line(request_id: int, image: np.ndarray) -> str:
    return json.dumps(
        {"request_id": request_id, "shape": list(image.shape), "pixels": base64.b64encode(image.tobytes()).decode()}
    )


class _Run:
    """One demo run: the bridge process(es), the simulator and cloud threads, the relay, the records."""

    def __init__(self, bundle: Bundle, opts: DemoOptions, images: np.ndarray, image: Path | None = None) -> None:
        self.bundle, self.opts, self.image = bundle, opts, image  # image: the firmware ELF for target qemu
        self.answer_timeout = round(2 * opts.deadline_ms / 1e3 + 1.0, 3)  # the device's deadline, and then some
        self.requests = {i + 1: _request_line(i + 1, image) for i, image in enumerate(images)}
        self.records: dict[int, dict] = {}
        self.duplicates = 0
        self.lines: queue.Queue = queue.Queue()
        self.bridges: list[_Bridge] = []
        self.bridge: _Bridge | None = None  # the one running
        self.restarts = 0
        self.finished = False
        self.killed = threading.Event()
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        self.failure: Exception | None = None
        self.cloud: CloudServer | None = None
        self.ray_local: bool | None = None  # the Ray engine runs: whether its cluster is ours to stop
        self.relay: Relay | None = None
        self.fds: list[int] = []
        self.emulator: qemu.Emulator | None = None

    def start(self) -> None:
        opts = self.opts
        self.bridge_args = ["bridge", "--bundle", str(self.bundle.root), "--requests", "-", "--baud", str(opts.baud)]
        self.bridge_args += ["--answer-timeout", str(self.answer_timeout), "--max-tries", str(TRIES)]
        if opts.cloud:
            self.bridge_args += ["--cloud", self._start_cloud(), "--edge-slices", str(opts.edge_slices)]
        if opts.port is not None:
            self.bridge_args += ["--port", opts.port]
        elif opts.target == "qemu":
            self.emulator = qemu.Emulator(self.image)
            self.bridge_args += ["--port", self.emulator.url]
        else:
            dev_master, dev_slave, dev_path = _pty()
            edge_master, edge_slave, edge_path = _pty()
            self.fds = [dev_master, dev_slave, edge_master, edge_slave]
            self.relay = Relay(dev_master, edge_master, set(opts.faults), opts.seed, self._on_frame, opts.bandwidth)
            self.relay.start()
            self._thread(self._simulate, dev_path)
            self.bridge_args += ["--port", edge_path]
        self._start_bridge(list(self.requests))

    def _start_cloud(self) -> str:
        """The cloud tier of the chosen engine, started; returns the bridge's ``--cloud``."""
        if self.opts.cloud_engine == "ray":
            from host import cloud_ray

            self.ray_local = cloud_ray.start_ray(num_cpus=1)
            return cloud_ray.deploy(self.bundle, cloud_ray.RayOptions(port=cloud_ray.free_port("127.0.0.1")))
        self.cloud = CloudServer(self.bundle, ("127.0.0.1", 0))
        self._thread(self.cloud.serve_forever, poll_interval=0.05)
        host, port = self.cloud.server_address[:2]
        return f"{host}:{port}"

    def _thread(self, target, *args, **kwargs) -> None:
        def run() -> None:
            try:
                target(*args, **kwargs)
            except Exception as err:  # reported by collect()
                self.failure = err

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self.threads.append(thread)

    def _simulate(self, path: str) -> None:
        link = open_serial(path, self.opts.baud)
        try:
            Simulator(self.bundle, link, self.opts.deadline_ms).run(self.stop)
        finally:
            link.close()

    def _start_bridge(self, ids: list[int]) -> None:
        self.bridge = _Bridge(self.bridge_args, self.lines)
        self.bridges.append(self.bridge)
        self.bridge.feed([self.requests[i] for i in ids])

    def _on_frame(self, direction: str, kind: MsgType, ordinal: int) -> None:
        """kill-edge: the bridge dies the moment the device offloads (the relay calls this first)."""
        if "kill-edge" in self.opts.faults and (direction, kind, ordinal) == (UP, MsgType.OFFLOAD, KILL_AT_OFFLOAD):
            self.killed.set()
            self.bridge.kill()

    def collect(self, stall_s: float) -> None:
        """Read records until every request is answered, restarting a killed bridge with what is left.

        Gives up when no record came for ``stall_s`` seconds (START_TIMEOUT_S before the first).
        """
        last = time.monotonic() + START_TIMEOUT_S
        while len(self.records) < len(self.requests) and not self.finished:
            if time.monotonic() > last + stall_s:
                raise DemoError(
                    f"stalled with {len(self.records)} of {len(self.requests)} requests answered (logs above)"
                )
            if self.failure is not None:
                raise DemoError(f"the simulator or cloud thread failed: {self.failure}")
            stopped = self.emulator.failure() if self.emulator is not None else None
            if stopped:
                raise DemoError(f"the firmware under QEMU stopped: {stopped}")
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                self._check_bridge()
                continue
            self._record(json.loads(line))
            last = time.monotonic()

    def _record(self, record: dict) -> None:
        rid = record["request_id"]
        if "error" in record or rid not in self.requests:
            return
        if rid in self.records:
            self.duplicates += 1
        else:
            self.records[rid] = record

    def _check_bridge(self) -> None:
        code = self.bridge.proc.poll()
        if code is None:
            return
        self.bridge.reader.join(timeout=5)
        while not self.lines.empty():
            self._record(json.loads(self.lines.get()))
        if self.killed.is_set() and code == -signal.SIGKILL:
            self.killed.clear()
            self.restarts += 1
            self._start_bridge([i for i in self.requests if i not in self.records])
        elif code == 0:
            self.finished = True  # it gave up on what is still missing
        else:
            raise DemoError(f"the bridge exited with code {code} (its log is above)")

    def close(self) -> None:
        for bridge in self.bridges:
            bridge.stop()
        if self.emulator is not None:
            self.emulator.close()
        self.stop.set()
        if self.cloud is not None:
            self.cloud.shutdown()
            self.cloud.close()
        if self.ray_local is not None:
            from host import cloud_ray

            cloud_ray.stop_ray(self.ray_local)
        for thread in self.threads:
            thread.join(timeout=5)
        if self.relay is not None:
            self.relay.stop()
        for fd in self.fds:
            os.close(fd)


def run(bundle: Bundle, opts: DemoOptions) -> dict:
    """Run the demo; returns the summary that ``--json`` writes."""
    if (opts.port is not None or opts.target == "qemu") and opts.bandwidth is not None:
        raise DemoError("--bandwidth-trace needs the simulator (the relay throttles its link); drop --port/--target")
    if opts.bandwidth is not None and not opts.bandwidth:
        raise DemoError("--bandwidth-trace: the trace has no values")
    if (opts.port is not None or opts.target == "qemu") and opts.faults:
        raise DemoError(
            "--faults need the simulator (they are injected between it and the bridge); drop --port/--target"
        )
    if opts.port is not None and opts.target == "qemu":
        raise DemoError("--port and --target qemu both name the device: drop one")
    if opts.cloud_engine not in ("tcp", "ray"):
        raise DemoError(f"cloud engine {opts.cloud_engine!r}: choose tcp or ray")
    unknown = set(opts.faults) - set(FAULTS)
    if unknown:
        raise DemoError(f"unknown fault(s) {', '.join(sorted(unknown))}; choose from {', '.join(FAULTS)}")
    if opts.port is not None:
        ports.resolve([opts.port])  # a missing port is named here with the ports present, not by the bridge process
    try:
        image = (
            qemu.build_image(bundle.root, defines=(f"-DEEFW_DEADLINE_US={round(opts.deadline_ms * 1e3)}u",))
            if opts.target == "qemu"
            else None
        )
    except qemu.QemuError as err:
        raise DemoError(str(err)) from err
    ds = load_samples(bundle, opts.samples, opts.data_dir)
    reference = offline.evaluate(
        bundle, ds.x, opts.edge_slices if opts.cloud else None, opts.deadline_ms, opts.bandwidth
    )
    demo = _Run(bundle, opts, ds.x, image)
    try:
        demo.start()
        demo.collect(TRIES * demo.answer_timeout + START_TIMEOUT_S)
    finally:
        demo.close()
    summary = _summary(demo, ds.y, reference)
    if opts.target == "qemu":
        summary.update(_instructions([r for r in demo.records.values() if r.get("slices_us")]))
    return summary


def _instructions(records: list[dict]) -> dict:
    """Mean instructions on the device per inference and per slice run, from TELEMETRY's microseconds.

    Under ``-icount shift=0`` a virtual microsecond is 1,000 instructions; each slice's count is exact
    to its clock's resolution (one microsecond).
    """
    per_slice: dict[str, list[int]] = {}
    for r in records:
        for k, us in r["slices_us"].items():
            per_slice.setdefault(k, []).append(us * qemu.INSNS_PER_US)
    totals = [sum(r["slices_us"].values()) * qemu.INSNS_PER_US for r in records]
    return {
        "instructions_per_inference": round(float(np.mean(totals))) if totals else None,
        "instructions_per_slice": {k: round(float(np.mean(v))) for k, v in sorted(per_slice.items())},
    }


def _summary(demo: _Run, labels: np.ndarray, reference: list[offline.Decision]) -> dict:
    records = [demo.records.get(i + 1) for i in range(len(labels))]
    answered = [r for r in records if r is not None]
    clock = DeviceClock.of(demo.bundle, demo.opts.deadline_ms)
    own_clock = demo.opts.port is not None or demo.opts.target == "qemu"  # TELEMETRY times are the device's clock
    found = [differences.explain(i + 1, r, d, clock, own_clock) for i, (r, d) in enumerate(zip(records, reference))]
    differ = [x for x in found if x is not None]
    totals = [r["timings_ms"]["total"] for r in answered if "timings_ms" in r]
    return {
        "samples": len(labels),
        "answered": len(answered),
        "duplicates": demo.duplicates,
        "accuracy": float(np.mean([r is not None and r["class"] == y for r, y in zip(records, labels)])),
        "offline_accuracy": float(np.mean([d.label == y for d, y in zip(reference, labels)])),
        "decisions_match": not differ,
        "differences": {"counts": differences.counts(differ), "requests": [x.to_json() for x in differ]},
        "answers_by_tier": {t.name.lower(): sum(r["tier"] == t.name.lower() for r in answered) for t in Tier},
        "offload_rate": float(np.mean([r["tier"] != "device" or r["fallback"] for r in answered])) if answered else 0.0,
        "bytes_sent": int(sum(r.get("bytes", 0) for r in answered)),
        "latency_ms": {
            "p50": round(float(np.percentile(totals, 50)), 3) if totals else None,
            "p99": round(float(np.percentile(totals, 99)), 3) if totals else None,
        },
        "link": _link(demo.opts.bandwidth, answered),
        "faults": {
            "kinds": sorted(demo.opts.faults),
            "frames_damaged": demo.relay.injected if demo.relay else 0,
            "bridge_restarts": demo.restarts,
            "fallback_answers": sum(r["fallback"] for r in answered),
        },
    }


def _link(trace: tuple[float, ...] | None, answered: list[dict]) -> dict:
    """The edge's measured throughput of the offloads it answered, against the trace's value for each."""
    measured = [(r["request_id"], r["link_bps"]) for r in answered if r.get("link_bps")]
    out: dict = {"throttled": trace is not None, "measured_offloads": len(measured)}
    if trace is not None and measured:
        want = [(bps, trace[(rid - 1) % len(trace)]) for rid, bps in measured]
        errors = [abs(bps / bw - 1) for bps, bw in want if bw]
        out["median_relative_error"] = round(float(np.median(errors)), 4) if errors else None
    return out
