"""Cloud tier scaling: simulated edges (processes, loopback) offloading to the TCP server and to Ray Serve.

    python benchmarks/cloud_scale.py [--bundle build/bench-offload] [--edges 8] [--seconds 8]
                                     [--rates 0 150 300] [--deadline-ms 100]

The bundle is the default model with one slice on the device (the cloud continues slices 2..3
from the 14x14x16 activation); make it with

    python -m converter build --board nano33 --device-slices 1 --out build/bench-offload

Each edge is a process with the bridge's own client (``host.cloud.CloudClient`` over TCP,
``host.cloud_http.HttpCloudClient`` over HTTP) and, like a bridge port, one offload in flight:
closed loop (rate 0: the cloud's capacity) or Poisson arrivals at ``rate`` offloads/s over all
edges (seeded). Every answer is checked against the offline chain (LiteRT reference kernels).
Engines, back to back in one run so that their ratios depend less on what else the machine
runs: the TCP server (``python -m host cloud``, a process), then per Serve ingress (its Python
HTTP proxy; HAProxy) one local Ray instance (2 CPUs, no dashboard) with 1 replica unbatched,
1 replica batched, 2 replicas batched. Last on each, a replica is killed mid-run at a fixed
rate: every offload must come back, answered or refused, within its deadline (the bridge then
answers from its own exits), and Serve starts a new replica.
Writes benchmarks/results/cloud_scale.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import os
import platform
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from bridge_throughput import BUILD, offloads  # noqa: E402

from contracts.protocol import Tier  # noqa: E402
from host import bundle as bundles  # noqa: E402
from host import cloud_ray  # noqa: E402
from host.cloud_http import connect  # noqa: E402

LATE_SLACK_S = 0.05  # an answer or refusal later than the deadline plus this counts as late


def edge(url: str, model_hash: str, chain: tuple, n: int, rate: float, pipe) -> None:
    """One simulated edge: says it is ready, gets its window (wall clock: start, measure from, end), offloads."""
    logging.basicConfig(level=logging.ERROR)  # refusals are counted, not logged
    messages, expected = chain
    client = connect(url, model_hash)
    rng = np.random.default_rng(n)
    interval = 1.0 / rate if rate else 0.0
    deadline_s = messages[0].deadline_left_us / 1e6
    pipe.send("ready")
    start, measure, end = pipe.recv()
    time.sleep(max(start - time.time(), 0))
    due, i, trips, timeline = time.time(), n, [], []
    counts = {"answered": 0, "wrong": 0, "fallback": 0, "late": 0}
    while (now := time.time()) < end:
        if rate:
            if now < due:
                time.sleep(due - now)
            due = max(due + rng.exponential(interval), time.time() - interval)
        k = i % len(messages)
        sent = time.time()
        t0 = time.perf_counter()
        answer = client.offload(messages[k])
        dt = time.perf_counter() - t0
        i += 1
        timeline.append((round(sent, 4), answer is not None))
        if sent < measure:
            continue
        counts["late"] += dt > deadline_s + LATE_SLACK_S
        if answer is None:
            counts["fallback"] += 1
            continue
        e = expected[k]
        counts["answered"] += 1
        counts["wrong"] += (answer.label, answer.exit, answer.confidence_q15, answer.tier) != (
            e.label,
            e.exit,
            e.confidence_q15,
            Tier.CLOUD,
        )
        trips.append(dt * 1e3)
    pipe.send({"counts": counts, "trips": trips, "timeline": timeline})


def _receive(pipe, proc, until: float):
    while not pipe.poll(0.2):
        if proc.exitcode not in (None, 0) or time.time() > until:
            raise SystemExit("error: an edge process failed or hung (its traceback, if any, is above)")
    return pipe.recv()


def load(url: str, model_hash: str, chain: tuple, args, rate: float, seconds: float, on_start=None) -> dict:
    """Run ``args.edges`` edges at ``rate`` in all for ``seconds`` after a warm-up; their merged results."""
    ctx = mp.get_context("spawn")
    pipes = [ctx.Pipe() for _ in range(args.edges)]
    procs = [
        ctx.Process(target=edge, args=(url, model_hash, chain, n, rate / args.edges, child), daemon=True)
        for n, (_, child) in enumerate(pipes)
    ]
    for p in procs:
        p.start()
    for (pipe, _), p in zip(pipes, procs):
        _receive(pipe, p, time.time() + 120)
    start = time.time() + 0.2
    window = (start, start + args.warmup, start + args.warmup + seconds)
    for pipe, _ in pipes:
        pipe.send(window)
    if on_start is not None:
        on_start(window)
    results = [_receive(pipe, p, window[2] + 60) for (pipe, _), p in zip(pipes, procs)]
    for p in procs:
        p.join(timeout=30)
    counts = {k: sum(r["counts"][k] for r in results) for k in results[0]["counts"]}
    trips = np.array([t for r in results for t in r["trips"]])
    summary = {
        "offered_per_s": rate or "closed loop",
        "offloads_per_s": round(counts["answered"] / seconds, 1),
        "p50_ms": round(float(np.percentile(trips, 50)), 3) if len(trips) else None,
        "p99_ms": round(float(np.percentile(trips, 99)), 3) if len(trips) else None,
        **counts,
    }
    print(f"  {summary}", flush=True)
    return {**summary, "timeline": sorted(t for r in results for t in r["timeline"])}


def _tcp_server(bundle_dir: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "host", "cloud", "--bundle", bundle_dir, "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    line = proc.stdout.readline()
    if not line.startswith("listening on "):
        proc.kill()
        raise SystemExit(f"error: the TCP cloud did not start ({line!r})")
    return proc, line.split()[-1]


def _strip(run: dict) -> dict:
    return {k: v for k, v in run.items() if k != "timeline"}


def kill_run(url: str, model_hash: str, chain: tuple, args) -> dict:
    """A fixed rate; one replica killed a third of the way into the measured window."""
    import ray

    killed = {}

    def kill_later(window):
        time.sleep(max(window[1] + args.seconds / 3 - time.time(), 0))
        name, namespace = cloud_ray.replica_names()[0]
        ray.kill(ray.get_actor(name, namespace=namespace), no_restart=True)
        killed["at"] = time.time()

    run = load(url, model_hash, chain, args, args.kill_rate, args.seconds * 2, kill_later)
    after = [(t - killed["at"], ok) for t, ok in run["timeline"] if t >= killed["at"]]
    first_fallback = next((t for t, ok in after if not ok), None)
    back = next((t for t, ok in after if ok and first_fallback is not None and t > first_fallback), None)
    per_s = {}
    for t, ok in after:
        per_s.setdefault(int(t), [0, 0])[0 if ok else 1] += 1
    return {
        **_strip(run),
        "sent_after_kill": len(after),
        "fallbacks_after_kill": sum(not ok for _, ok in after),
        "cloud_answers_again_after_s": round(back, 2) if back is not None else None,
        "after_kill_per_second_answered_fallback": [per_s.get(k, [0, 0]) for k in range(max(per_s, default=-1) + 1)],
    }


def ray_runs(bundle, chain: tuple, args, ingress: str) -> tuple[list[dict], dict]:
    """The Ray configurations and the replica-kill run on one local Ray instance with ``ingress``."""
    if ingress == "haproxy":
        os.environ["RAY_SERVE_ENABLE_HA_PROXY"] = "1"  # read by Serve's controller when it starts
    configs = [(1, 1, 0.0), (1, args.max_batch, args.batch_wait_ms), (2, args.max_batch, args.batch_wait_ms)]
    runs = []
    local = cloud_ray.start_ray(num_cpus=2)
    try:
        port = cloud_ray.free_port("127.0.0.1")
        for replicas, batch, wait_ms in configs:
            print(f"engine ray ({ingress}): {replicas} replica(s), max batch {batch}, wait {wait_ms} ms", flush=True)
            url = cloud_ray.deploy(
                bundle, cloud_ray.RayOptions(port=port, replicas=replicas, max_batch=batch, batch_wait_ms=wait_ms)
            )
            config = {"engine": "ray", "ingress": ingress, "replicas": replicas, "max_batch": batch, "wait_ms": wait_ms}
            for rate in args.rates:
                runs.append({**config, **_strip(load(url, bundle.model_hash, chain, args, rate, args.seconds))})
        print(f"engine ray ({ingress}): 1 replica killed mid-run at {args.kill_rate}/s", flush=True)
        url = cloud_ray.deploy(
            bundle, cloud_ray.RayOptions(port=port, max_batch=args.max_batch, batch_wait_ms=args.batch_wait_ms)
        )
        kill = {"engine": "ray", "ingress": ingress, "replicas": 1, "max_batch": args.max_batch}
        kill.update(kill_run(url, bundle.model_hash, chain, args))
    finally:
        cloud_ray.stop_ray(local)
        os.environ.pop("RAY_SERVE_ENABLE_HA_PROXY", None)
    return runs, kill


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", default="build/bench-offload", help=f"default %(default)s, made by: {BUILD}")
    p.add_argument("--edges", type=int, default=8, help="edge processes (default 8)")
    p.add_argument("--seconds", type=float, default=8.0, help="measured time per run (default 8)")
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--rates", type=float, nargs="+", default=[0, 150, 300], help="offloads/s in all; 0: closed loop")
    p.add_argument("--deadline-ms", type=float, default=100.0, help="each offload's deadline_left (default 100)")
    p.add_argument("--kill-rate", type=float, default=100.0, help="offered rate of the replica-kill run")
    p.add_argument("--max-batch", type=int, default=8)
    p.add_argument("--batch-wait-ms", type=float, default=2.0)
    p.add_argument(
        "--ingress",
        nargs="+",
        choices=("proxy", "haproxy"),
        default=["proxy", "haproxy"],
        help="Serve's HTTP ingress: its Python proxy (the default) or HAProxy (RAY_SERVE_ENABLE_HA_PROXY=1)",
    )
    p.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "cloud_scale.json"))
    args = p.parse_args()
    if not (Path(args.bundle) / "manifest.json").is_file():
        sys.exit(f"error: {args.bundle} is not a build bundle; make it with {BUILD}")
    if not 1 <= args.edges <= 32 or not 0 < args.seconds <= 60:
        sys.exit("error: --edges 1..32 and --seconds up to 60 (a bounded benchmark)")
    load_start = round(os.getloadavg()[0], 2)  # the machine is shared: what else ran
    bundle = bundles.load(args.bundle)
    messages, expected = offloads(bundle, 64)
    chain = ([replace(m, deadline_left_us=round(args.deadline_ms * 1000)) for m in messages], expected)
    runs = []
    print("engine tcp (python -m host cloud)", flush=True)
    proc, address = _tcp_server(args.bundle)
    try:
        for rate in args.rates:
            runs.append({"engine": "tcp", **_strip(load(address, bundle.model_hash, chain, args, rate, args.seconds))})
    finally:
        proc.terminate()
        proc.wait()
    kills = []
    for ingress in args.ingress:
        more, kill = ray_runs(bundle, chain, args, ingress)
        runs += more
        kills.append(kill)
    result = {
        "runs": runs,
        "replica_killed": kills,
        "edges": args.edges,
        "deadline_ms": args.deadline_ms,
        "cpus": os.cpu_count(),
        "load_average_1min_at_start_and_end": [load_start, round(os.getloadavg()[0], 2)],
        "python": platform.python_version(),
        "command": "python benchmarks/cloud_scale.py " + " ".join(sys.argv[1:]),
    }
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
