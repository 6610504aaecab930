"""Bridge throughput and edge-side latency: 8 simulated devices offloading to one ``python -m host bridge``.

    python benchmarks/bridge_throughput.py [--bundle build/bench-offload] [--devices 8] [--seconds 20]
                                           [--edge-kernels reference optimized] [--arrivals poisson aligned]

The bundle is the default model with one slice on the device, so that every request is an
offload of its largest activation (14x14x16 int8):

    python -m converter build --board nano33 --device-slices 1 --out build/bench-offload

Each simulated device owns a pseudo-terminal and keeps one OFFLOAD in flight at most, like the
firmware: HELLO when asked, then OFFLOAD, wait for the RESULT, next OFFLOAD, either at once
(closed loop: the bridge's capacity) or on a schedule of ``--rate`` offloads/s over all devices
(open loop: the latency at that load; a late answer delays the next send). The open-loop
schedule is ``poisson`` (independent devices: exponential gaps, seeded) or ``aligned`` (every
device sends at the same instants, a burst of ``--devices`` offloads at a time: the worst case). The offloads
are the device slice's real activations of the bundled Fashion-MNIST samples; every RESULT is
checked against the offline chain (LiteRT reference kernels). Measured, per kind of edge
kernels and load: sustained offloads/s over ``--seconds`` (after a warm-up), the round trip as a device
sees it, and the bridge's own frame in -> RESULT written latency (logged by each port at
shutdown). Writes benchmarks/results/bridge_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import select
import signal
import subprocess
import sys
import time
import tty
from pathlib import Path

import numpy as np

from contracts.protocol import ErrorCode, FrameReader, Hello, HelloAck, Offload, Ping, Pong, Result, encode
from converter import verify
from earlyexit import data
from host import bundle as bundles
from policy.threshold import EXIT

ROOT = Path(__file__).resolve().parents[1]
BUILD = "python -m converter build --board nano33 --device-slices 1 --out build/bench-offload"
SERVED = re.compile(r"(\d+) offloads served, frame in -> result out p50 ([\d.]+) ms, p99 ([\d.]+) ms")


def offloads(bundle: bundles.Bundle, count: int) -> tuple[list[Offload], list[Result]]:
    """The device's OFFLOAD of each of the first ``count`` bundled samples, and the edge's expected answer."""
    if bundle.device_slices == len(bundle.slices):
        sys.exit(f"error: {bundle.root} runs every slice on the device: nothing to offload; build it with {BUILD}")
    x = data.load("fashion-mnist-samples" if bundle.dataset == "fashion-mnist" else bundle.dataset, "test").x[:count]
    d = bundle.device_slices
    chain = verify.run_chain(list(bundle.slices[:d]), verify.quantize_images(x, bundle.input_lut()), verify.tflm_runner)
    trunk = bundle.slices[d - 1].trunk
    messages = [
        Offload(d, trunk.shape, trunk.scale, trunk.zero_point, 1000, 10, 10**6, t[None].tobytes())
        for t in chain.trunks[d - 1]
    ]
    # What the edge answers for an offload: the offline decision of the tiers above the device.
    logits = verify.run_chain(list(bundle.slices[d:]), chain.trunks[d - 1], verify.litert_runner).logits
    policy = bundle.policy(len(bundle.slices))
    expected = []
    for n in range(len(x)):
        for k in range(d, len(bundle.slices)):
            z = logits[k - d][n]
            if k == len(bundle.slices) - 1 or policy.decide(k, z) == EXIT:
                expected.append(Result(int(np.argmax(z)), policy.confidence_q15(k, z), k + 1, 1))
                break
    return messages, expected


class Device:
    """One simulated device on a pty master: handshake, then one OFFLOAD in flight at a time."""

    def __init__(
        self,
        fd: int,
        model_hash: bytes,
        messages: list[Offload],
        expected: list[Result],
        interval: float,
        rng: np.random.Generator | None,
    ) -> None:
        self.fd, self.model_hash, self.messages, self.expected = fd, model_hash, messages, expected
        self.interval = interval  # mean seconds between sends; 0: closed loop
        self.rng = rng  # exponential gaps (Poisson arrivals); None: every ``interval``
        self.due = 0.0  # when the next OFFLOAD may go (open loop)
        self.in_flight = False
        self.reader = FrameReader()
        self.ready = False
        self.next = 0  # requests sent
        self.sent_at = 0.0
        self.round_trips: list[float] = []  # (seconds) for answers completed while measuring
        self.done = self.other_decision = self.other_confidence = 0

    def write(self, wire: bytes) -> None:
        while wire:
            wire = wire[os.write(self.fd, wire) :]

    def offload(self) -> None:
        self.in_flight = True
        self.sent_at = time.perf_counter()
        gap = self.rng.exponential(self.interval) if self.rng is not None else self.interval
        self.due = max(self.due + gap, self.sent_at - self.interval)  # no burst to catch up
        self.write(encode(self.messages[self.next % len(self.messages)], self.next & 0xFFFF))
        self.next += 1

    def on_readable(self, measuring: bool) -> None:
        for frame in self.reader.feed(os.read(self.fd, 65536)):
            m, rid = frame.message, frame.request_id
            if isinstance(m, Ping):
                self.write(encode(Pong(m.timestamp_us), rid))
            elif getattr(m, "code", None) == ErrorCode.HELLO_REQUIRED:
                self.write(encode(Hello(1, "nano33", self.model_hash), 0))
            elif isinstance(m, HelloAck) and m.accepted and not self.ready:
                self.ready = True
                self.due = time.perf_counter() + (self.rng.exponential(self.interval) if self.rng is not None else 0.0)
                self.poll()
            elif isinstance(m, Result) and rid == (self.next - 1) & 0xFFFF:
                n = (self.next - 1) % len(self.messages)
                e = self.expected[n]
                self.other_decision += (m.label, m.exit, m.tier, m.fallback) != (e.label, e.exit, e.tier, e.fallback)
                self.other_confidence += m.confidence_q15 != e.confidence_q15
                if measuring:
                    self.round_trips.append(time.perf_counter() - self.sent_at)
                    self.done += 1
                self.in_flight = False
                self.poll()

    def poll(self) -> None:
        """Send the next OFFLOAD when none is in flight and it is due."""
        if self.ready and not self.in_flight and time.perf_counter() >= self.due:
            self.offload()


def _stop(bridge: subprocess.Popen, fds: list[int]) -> None:
    """Ctrl-C the bridge, reading (and dropping) what it still writes so that no port blocks it."""
    bridge.send_signal(signal.SIGINT)
    end = time.monotonic() + 30
    while bridge.poll() is None and time.monotonic() < end:
        for fd in select.select(fds, [], [], 0.05)[0]:
            os.read(fd, 65536)
    if bridge.poll() is None:
        bridge.kill()
        bridge.wait()
        raise SystemExit("error: the bridge did not stop within 30 s of SIGINT")


def _pty() -> tuple[int, int]:
    master, slave = os.openpty()
    tty.setraw(slave)
    os.set_blocking(master, False)
    return master, slave


def run(bundle_dir: str, devices: int, seconds: float, warmup: float, kernels: str, rate: float, arrivals: str) -> dict:
    bundle = bundles.load(bundle_dir)
    messages, expected = offloads(bundle, 64)
    fds = [_pty() for _ in range(devices)]
    log = ROOT / "build" / "bridge_throughput.log"
    log.parent.mkdir(exist_ok=True)
    argv = [sys.executable, "-m", "host", "bridge", "--bundle", str(bundle.root), "--edge-kernels", kernels]
    for _, slave in fds:
        argv += ["--port", os.ttyname(slave)]
    interval = devices / rate if rate else 0.0
    model_hash = bytes.fromhex(bundle.model_hash)
    rngs = [np.random.default_rng(n) if arrivals == "poisson" else None for n in range(devices)]
    sims = [Device(master, model_hash, messages, expected, interval, rng) for (master, _), rng in zip(fds, rngs)]
    by_fd = {s.fd: s for s in sims}
    with open(log, "w") as err:
        bridge = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)
        try:
            t0 = time.perf_counter()
            measuring, start, end = False, None, None
            while True:
                now = time.perf_counter()
                if not measuring and all(s.ready for s in sims) and start is None:
                    start = now + warmup
                if start is not None and not measuring and now >= start:
                    measuring, end = True, now + seconds
                if measuring and now >= end:
                    break
                if now - t0 > 120 + warmup + seconds:
                    raise SystemExit(f"error: the bridge did not serve every device (log: {log})")
                if bridge.poll() is not None:
                    raise SystemExit(f"error: the bridge exited with code {bridge.returncode} (log: {log})")
                idle = [s.due - now for s in sims if s.ready and not s.in_flight]
                for fd in select.select(list(by_fd), [], [], min(max(min(idle, default=0.05), 0.0), 0.05))[0]:
                    by_fd[fd].on_readable(measuring)
                for sim in sims:
                    sim.poll()
            elapsed = time.perf_counter() - start
        finally:
            _stop(bridge, list(by_fd))
            for master, slave in fds:
                os.close(master)
                os.close(slave)
    served = [tuple(map(float, m.groups())) for m in SERVED.finditer(log.read_text())]
    trips = np.array([t for s in sims for t in s.round_trips]) * 1e3
    done = sum(s.done for s in sims)
    return {
        "bundle": str(bundle_dir),
        "model": bundle.manifest["model"]["name"],
        "offloaded_tensor": list(messages[0].shape),
        "offload_frame_bytes": len(encode(messages[0], 0)),
        "edge_kernels": kernels,
        "offered_rate_per_s": rate or "closed loop",
        "arrivals": arrivals if rate else None,
        "devices": devices,
        "seconds": round(elapsed, 2),
        "offloads": done,
        "offloads_per_s": round(done / elapsed, 1),
        "answers": {
            "other_class_exit_or_tier_than_offline": sum(s.other_decision for s in sims),
            "other_confidence_than_offline": sum(s.other_confidence for s in sims),
        },
        "device_round_trip_ms": {
            "p50": round(float(np.percentile(trips, 50)), 3),
            "p99": round(float(np.percentile(trips, 99)), 3),
        },
        "bridge_frame_in_to_result_out_ms": {
            "ports": len(served),
            "p50_max": max(p50 for _, p50, _ in served) if served else None,
            "p99_max": max(p99 for _, _, p99 in served) if served else None,
        },
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", default="build/bench-offload", help=f"default %(default)s, made by: {BUILD}")
    p.add_argument("--devices", type=int, default=8)
    p.add_argument("--seconds", type=float, default=20.0, help="measured time after the warm-up")
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--edge-kernels", nargs="+", choices=("reference", "optimized"), default=["reference", "optimized"])
    p.add_argument("--rates", type=float, nargs="+", default=[0, 300], help="offloads/s in all; 0: closed loop")
    p.add_argument("--arrivals", nargs="+", choices=("poisson", "aligned"), default=["poisson", "aligned"])
    p.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "bridge_throughput.json"))
    args = p.parse_args()
    if not (Path(args.bundle) / "manifest.json").is_file():
        sys.exit(f"error: {args.bundle} is not a build bundle; make it with {BUILD}")
    result = {
        "runs": [
            run(args.bundle, args.devices, args.seconds, args.warmup, kernels, rate, arrivals)
            for rate in args.rates
            for arrivals in (args.arrivals if rate else ["-"])
            for kernels in args.edge_kernels
        ],
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "command": "python benchmarks/bridge_throughput.py " + " ".join(sys.argv[1:]),
    }
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
