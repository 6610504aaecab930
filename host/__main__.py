"""``python -m host bridge|simulate|cloud|demo``: the host side of the serial offload system."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from pathlib import Path

from earlyexit.data import DataError
from host import bundle as bundles
from host import cloud_ray, demo
from host.bridge import Bridge
from host.bundle import BundleError
from host.cloud import CloudServer
from host.cloud_http import connect, read_token, require_token
from host.edge import EdgeService
from host.link import open_serial
from host.ports import PortError, host_port, loopback, resolve
from host.simulator import DEFAULT_DEADLINE_MS, Simulator

log = logging.getLogger("host")
SHOWN_DIFFERENCES = 10  # requests whose answer differs from the reference, listed on the console


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def _edge_slices(b: bundles.Bundle, cloud: bool, edge_slices: int | None) -> int:
    """The slices the edge runs before the cloud's (0 without a cloud), checked against the bundle."""
    if not cloud:
        if edge_slices is not None:
            raise ValueError("--edge-slices needs --cloud; without one the edge runs every slice above the device's")
        return 0
    above = len(b.slices) - b.device_slices
    n = 0 if edge_slices is None else edge_slices
    if not 0 <= n < above:
        raise ValueError(
            f"--edge-slices {n}: {above} slice(s) run above the device; the edge can take 0..{above - 1} of them "
            "and leave the rest to the cloud"
        )
    return n


def _printer():
    lock = threading.Lock()

    def emit(record: dict) -> None:
        with lock:
            print(json.dumps(record), flush=True)

    return emit


def cmd_bridge(args: argparse.Namespace) -> None:
    if args.max_tries < 1:
        raise ValueError(f"--max-tries {args.max_tries}: a request needs at least 1 try")
    b = bundles.load(args.bundle)
    token = read_token(args.token_file)
    if args.cloud:
        connect(args.cloud, b.model_hash, token)  # a bad address fails here, before any port is opened
    edge_slices = _edge_slices(b, args.cloud is not None, args.edge_slices)
    ports = resolve(args.port)
    requests = (sys.stdin if args.requests == "-" else open(args.requests)) if args.requests else None
    bridge = Bridge(
        b,
        ports,
        lambda: EdgeService(
            b,
            connect(args.cloud, b.model_hash, token) if args.cloud else None,
            edge_slices,
            args.edge_kernels == "optimized",
        ),
        _printer(),
        args.baud,
        args.answer_timeout,
        args.max_tries,
    )
    bridge.start()
    log.info("bridge serving %s with model %s (device slices 1..%d)", ", ".join(ports), b.model_hash, b.device_slices)
    requests_done = threading.Event()
    if requests is not None:

        def read() -> None:
            with requests:
                bridge.submit_lines(requests)
            requests_done.set()

        threading.Thread(target=read, name="requests", daemon=True).start()
    try:
        while not (requests_done.is_set() and bridge.idle):
            time.sleep(0.05)
    finally:
        bridge.stop()


def cmd_simulate(args: argparse.Namespace) -> None:
    b = bundles.load(args.bundle)
    link = open_serial(args.port, args.baud)
    try:
        simulator = Simulator(b, link, args.deadline_ms)
        log.info("simulating %s (slices 1..%d of %s) on %s", b.board, b.device_slices, b.model_hash, args.port)
        simulator.run(threading.Event())
    finally:
        link.close()


def cmd_cloud(args: argparse.Namespace) -> None:
    if args.engine == "ray":
        _cloud_ray(args)
        return
    ray_only = [o for o, v in _RAY_OPTIONS.items() if getattr(args, v) is not None]
    if ray_only:
        raise ValueError(f"{', '.join(ray_only)} need --engine ray (the TCP engine is one loopback process)")
    address = loopback(args.listen)
    server = CloudServer(bundles.load(args.bundle), address)
    host, port = server.server_address[:2]
    print(f"listening on {host}:{port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.close()


_RAY_OPTIONS = {
    "--address": "address",
    "--replicas": "replicas",
    "--autoscale": "autoscale",
    "--max-batch": "max_batch",
    "--batch-wait-ms": "batch_wait_ms",
    "--token-file": "token_file",
}


def _autoscale(text: str) -> tuple[int, int]:
    low, sep, high = text.partition("..")
    if not (sep and low.isdigit() and high.isdigit() and 1 <= int(low) <= int(high)):
        raise ValueError(f"--autoscale {text!r}: expected MIN..MAX replicas, 1 <= MIN <= MAX (e.g. 1..4)")
    return int(low), int(high)


def _cloud_ray(args: argparse.Namespace) -> None:
    host, port = host_port(args.listen)
    token = read_token(args.token_file)
    require_token(host, token, "--listen")
    if args.replicas is not None and args.autoscale is not None:
        raise ValueError("--replicas and --autoscale both size the deployment: drop one")
    replicas = 1 if args.replicas is None else args.replicas
    autoscale = _autoscale(args.autoscale) if args.autoscale else None
    max_batch = 8 if args.max_batch is None else args.max_batch
    wait_ms = 2.0 if args.batch_wait_ms is None else args.batch_wait_ms
    if replicas < 1 or max_batch < 1 or wait_ms < 0:
        raise ValueError("--replicas and --max-batch take 1 or more, --batch-wait-ms 0 or more")
    b = bundles.load(args.bundle)
    opts = cloud_ray.RayOptions(host, port or cloud_ray.free_port(host), replicas, autoscale, max_batch, wait_ms, token)
    local = cloud_ray.start_ray(args.address, num_cpus=autoscale[1] if autoscale else replicas)
    try:
        log.info("deploying %s on Ray Serve (%s)", b.root, args.address or "a local Ray instance")
        print(f"serving on {cloud_ray.deploy(b, opts)}", flush=True)
        threading.Event().wait()
    finally:
        cloud_ray.stop_ray(local)


def cmd_demo(args: argparse.Namespace) -> None:
    b = bundles.load(args.bundle)
    edge_slices = _edge_slices(b, args.cloud, args.edge_slices)
    faults = frozenset(f.strip() for f in args.faults.split(",") if f.strip()) if args.faults else frozenset()
    opts = demo.DemoOptions(
        samples=args.samples,
        data_dir=args.data_dir,
        faults=faults,
        cloud=args.cloud,
        cloud_engine=args.cloud_engine,
        edge_slices=edge_slices,
        deadline_ms=args.deadline_ms,
        port=args.port,
        baud=args.baud,
        target=args.target,
        bandwidth=demo.read_trace(args.bandwidth_trace) if args.bandwidth_trace else None,
    )
    summary = demo.run(b, opts)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")
    differ = summary["differences"]["requests"]
    why = ", ".join(f"{n} {reason}" for reason, n in summary["differences"]["counts"].items())
    print(
        f"{summary['answered']}/{summary['samples']} answered, {summary['duplicates']} duplicates, accuracy "
        f"{summary['accuracy']:.4f} (offline {summary['offline_accuracy']:.4f}), decisions match: "
        f"{summary['decisions_match']}{f' ({len(differ)} differ: {why})' if differ else ''}, answers by tier "
        f"{summary['answers_by_tier']}, offload rate {summary['offload_rate']:.3f}, p50 "
        f"{summary['latency_ms']['p50']} ms; wrote {args.json}"
    )
    for d in differ[:SHOWN_DIFFERENCES]:
        print(f"  request {d['request_id']}: {d['reason']}: {d['detail']}")
    if len(differ) > SHOWN_DIFFERENCES:
        print(f"  ... and {len(differ) - SHOWN_DIFFERENCES} more in {args.json} (differences.requests)")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m host", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    bundle_help = "build bundle written by `python -m converter build` (e.g. build/nano33)"

    b = sub.add_parser("bridge", help="serve devices on serial ports: handshake, offloads, one JSON line per answer")
    b.add_argument("--bundle", required=True, help=bundle_help)
    b.add_argument("--port", action="append", required=True, help="serial port, pty, pyserial URL or auto (repeatable)")
    b.add_argument("--baud", type=int, default=115200, help="default %(default)s")
    b.add_argument(
        "--cloud",
        metavar="URL",
        help="cloud tier to offload to: HOST:PORT or tcp://HOST:PORT (the TCP engine, loopback only) or "
        "http://HOST:PORT/offload (the Ray engine)",
    )
    b.add_argument("--token-file", help="the Ray cloud's shared token (needed for a non-loopback --cloud)")
    b.add_argument("--edge-slices", type=int, help="with --cloud: slices the edge runs before offloading (default 0)")
    b.add_argument("--requests", metavar="FILE|-", help="JSON lines of INFER requests; exit once all are answered")
    b.add_argument("--answer-timeout", type=float, default=5.0, help="seconds before resending an INFER (default 5)")
    b.add_argument("--max-tries", type=int, default=3, help="INFERs per request before giving up (default 3)")
    b.add_argument(
        "--edge-kernels",
        choices=("reference", "optimized"),
        default="reference",
        help="LiteRT kernels: reference (bit-exact with the device's TFLM, default) or optimized (faster, may differ "
        "in the last bit)",
    )
    b.set_defaults(func=cmd_bridge)

    s = sub.add_parser("simulate", help="stand in for the microcontroller on a pty or pyserial URL")
    s.add_argument("--bundle", required=True, help=bundle_help)
    s.add_argument("--port", required=True, help="pty path or pyserial URL the bridge is connected to")
    s.add_argument("--baud", type=int, default=115200, help="default %(default)s")
    s.add_argument(
        "--deadline-ms", type=float, default=DEFAULT_DEADLINE_MS, help="budget per request (default %(default)g)"
    )
    s.set_defaults(func=cmd_simulate)

    c = sub.add_parser("cloud", help="serve OFFLOAD requests: over TCP on a loopback address, or on Ray Serve")
    c.add_argument("--bundle", required=True, help=bundle_help)
    c.add_argument(
        "--listen",
        required=True,
        metavar="HOST:PORT",
        help="address to serve on (port 0: any free port); tcp: loopback only; ray: any, with --token-file unless "
        "loopback",
    )
    c.add_argument("--engine", choices=("tcp", "ray"), default="tcp", help="tcp: this process (default); ray: Serve")
    c.add_argument("--address", help="ray: the cluster to join (auto, ray://HOST:PORT; default: start a local one)")
    c.add_argument("--replicas", type=int, help="ray: replicas (default 1)")
    c.add_argument("--autoscale", metavar="MIN..MAX", help="ray: autoscale between MIN and MAX replicas")
    c.add_argument("--max-batch", type=int, help="ray: offloads continued together at most (default 8; 1: none)")
    c.add_argument("--batch-wait-ms", type=float, help="ray: how long a batch waits to fill (default 2)")
    c.add_argument("--token-file", help="ray: shared token the bridges must send (needed off loopback)")
    c.set_defaults(func=cmd_cloud)

    d = sub.add_parser("demo", help="simulator + bridge (+ cloud) over pseudo-terminals, compared with offline")
    d.add_argument("--bundle", required=True, help=bundle_help)
    d.add_argument("--samples", type=int, required=True, help="how many test samples to send")
    d.add_argument("--data-dir", help="the model's dataset (default: bundled Fashion-MNIST samples)")
    d.add_argument("--faults", help=f"comma-separated: {', '.join(demo.FAULTS)}")
    d.add_argument("--cloud", action="store_true", help="also start a cloud tier")
    d.add_argument("--edge-slices", type=int, help="with --cloud: slices the edge runs (default 0)")
    d.add_argument(
        "--cloud-engine", choices=("tcp", "ray"), default="tcp", help="with --cloud: the cloud's engine (default tcp)"
    )
    d.add_argument(
        "--deadline-ms",
        type=float,
        default=DEFAULT_DEADLINE_MS,
        help="the simulated device's budget (default %(default)g)",
    )
    d.add_argument("--port", help="run against a flashed board on this port instead of the simulator")
    d.add_argument(
        "--target",
        choices=("sil", "qemu"),
        default="sil",
        help="sil: the simulator (default); qemu: the firmware on an emulated Cortex-M4 (docs/qemu.md)",
    )
    d.add_argument("--baud", type=int, default=115200, help="default %(default)s")
    d.add_argument(
        "--bandwidth-trace",
        metavar="FILE",
        help="throttle the simulator's link by this throughput trace, one value per request (docs/bridge.md)",
    )
    d.add_argument("--json", required=True, help="summary file to write")
    d.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if threading.current_thread() is threading.main_thread():
        # Ctrl-C / SIGINT stops cleanly even when started as a background job, which inherits SIGINT ignored.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        args.func(args)
    except KeyboardInterrupt:
        log.info("stopped")
    except (BundleError, PortError, demo.DemoError, DataError, cloud_ray.RayUnavailable, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
