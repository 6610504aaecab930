"""The cloud tier on Ray Serve: the bundle's upper slices as a Serve application, OFFLOAD frames over HTTP.

The bridge POSTs one OFFLOAD frame (the serial link's bytes) to ``/offload`` with the model hash
in ``X-Model-Hash`` and gets one RESULT or ERROR frame back (``host/cloud_http.py``). HTTP rather
than a Serve handle: the bridge then needs neither Ray nor a place in the cluster, and Serve's
proxy spreads the requests over the replicas. Each replica gets the bundle once (pickled with
the application, so nodes need no copy of it) and continues the OFFLOADs that arrive within
``batch_wait_ms`` of each other together, at most ``max_batch`` per call. Every request is
checked: its size (one frame at most), its token when one is set, its model hash.
"""

from __future__ import annotations

import hmac
import logging
import os
import socket
from dataclasses import dataclass

from contracts.protocol import MAX_FRAME, Error, ErrorCode, Message, Offload, ProtocolError, Tier, decode, encode
from host.bundle import Bundle
from host.tier import TierRunner

ROUTE = "/offload"
APP = "earlyexit-cloud"
HASH_HEADER = "x-model-hash"
FRAME_TYPE = "application/octet-stream"
HEALTH_CHECK_S = 2.0  # a dead replica is replaced within about this (Serve's default: 10 s)
OBJECT_STORE_BYTES = 100 * 1024**2  # Ray's minimum is 75 MiB; the frames are small


class RayUnavailable(Exception):
    """Ray is not installed; the message says how to install it."""


@dataclass(frozen=True)
class RayOptions:
    """Where Serve listens and how the replicas are laid out."""

    host: str = "127.0.0.1"
    port: int = 8000
    replicas: int = 1
    autoscale: tuple[int, int] | None = None  # (min, max) replicas instead of ``replicas``
    max_batch: int = 8
    batch_wait_ms: float = 2.0
    token: str | None = None
    replica_cpus: float = 1.0

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{ROUTE}"


def _ray():
    try:
        import ray
        from ray import serve
    except ImportError as err:
        raise RayUnavailable(
            f"the Ray engine needs Ray Serve ({err}); install it with `pip install -e '.[cloud]'`"
        ) from err
    return ray, serve


def free_port(host: str) -> int:
    """A port free on ``host`` now (Serve's proxy needs a number, not 0)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def start_ray(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Join the cluster at ``address`` (``auto``, ``ray://HOST:PORT``) or start a small local one.

    No dashboard, no usage report; workers' output stays in Ray's log files (``/tmp/ray``).
    Returns whether the cluster is a local one started here.
    """
    ray, _ = _ray()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    local = address is None
    ray.init(
        address=address or "local",  # without an address: a new local instance, never one found running
        num_cpus=num_cpus if local else None,
        object_store_memory=OBJECT_STORE_BYTES if local else None,
        include_dashboard=False if local else None,
        log_to_driver=False,
        logging_level=logging.ERROR,
    )
    logging.getLogger("ray.serve").setLevel(logging.ERROR)
    return local


def stop_ray(local: bool) -> None:
    """Leave the cluster: a ``local`` one (started by :func:`start_ray`) stops, with Serve; in a joined one
    the application is deleted."""
    ray, serve = _ray()
    if ray.is_initialized():
        try:
            if not local:
                serve.delete(APP)
        finally:
            ray.shutdown()


def deploy(bundle: Bundle, opts: RayOptions) -> str:
    """Deploy the cloud tier of ``bundle`` on the Ray cluster joined by :func:`start_ray`; returns its URL."""
    _, serve = _ray()
    deployment = _deployment(serve)
    scaling = (
        {"autoscaling_config": {"min_replicas": opts.autoscale[0], "max_replicas": opts.autoscale[1]}}
        if opts.autoscale
        else {"num_replicas": opts.replicas}
    )
    app = deployment.options(
        max_ongoing_requests=max(2 * opts.max_batch, 8),
        ray_actor_options={"num_cpus": opts.replica_cpus},
        health_check_period_s=HEALTH_CHECK_S,
        **scaling,
    ).bind(bundle, opts.token, opts.max_batch, opts.batch_wait_ms / 1e3)
    serve.start(http_options={"host": opts.host, "port": opts.port})
    serve.run(app, name=APP, route_prefix=ROUTE, blocking=False)
    return opts.url


def replica_names() -> list[tuple[str, str]]:
    """(name, namespace) of the application's live replica actors, to kill one (the benchmark does)."""
    ray, _ = _ray()
    actors = ray.util.list_named_actors(all_namespaces=True)
    return [(a["name"], a["namespace"]) for a in actors if a["name"].startswith("SERVE_REPLICA::" + APP)]


class Replica:
    """One replica: the bundle's cloud slices and the checks on every request."""

    def __init__(self, bundle: Bundle, token: str | None) -> None:
        self.bundle = bundle
        self.runner = TierRunner(bundle, bundle.device_slices + 1, len(bundle.slices), Tier.CLOUD)
        self.authorization = f"Bearer {token}".encode() if token else None

    def refusal(self, headers, body_bytes: int) -> tuple[int, str] | None:
        """(HTTP status, reason) when a request is refused before it is decoded."""
        if self.authorization and not hmac.compare_digest(
            headers.get("authorization", "").encode(), self.authorization
        ):
            return 401, "missing or wrong token: pass the cloud's token file to the bridge (--cloud-token-file)"
        if body_bytes > MAX_FRAME:
            return 413, f"request of {body_bytes} bytes: one frame of at most {MAX_FRAME} bytes"
        model = headers.get(HASH_HEADER, "")
        if model != self.bundle.model_hash:
            return 409, (
                f"this cloud serves model {self.bundle.model_hash}, not {model or '(no X-Model-Hash)'}: point the "
                "bridge at the cloud deployed from its own bundle"
            )
        return None

    def parse(self, body: bytes) -> tuple[Offload, int] | str:
        """The OFFLOAD and its request id, or why the body is not one."""
        try:
            frame = decode(body[:-1] if body.endswith(b"\x00") else body)
        except ProtocolError as err:
            return f"not a frame: {err}"
        if not isinstance(frame.message, Offload):
            return f"expected an OFFLOAD frame, got {frame.message.TYPE.name}"
        return frame.message, frame.request_id

    def continue_all(self, offloads: list[Offload]) -> list[Message]:
        """The RESULT (or ERROR) for each offload of a batch."""
        replies: list[Message] = []
        for offload in offloads:
            reason = self.runner.check(offload)
            replies.append(Error(ErrorCode.MALFORMED, reason) if reason else self.runner.run(offload).answer)
        return replies


def _deployment(serve):
    """The Serve deployment class (built here so that importing this module does not need Ray)."""
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, Response

    @serve.deployment(name="cloud")
    class CloudDeployment:
        def __init__(self, bundle: Bundle, token: str | None, max_batch: int, batch_wait_s: float) -> None:
            self.replica = Replica(bundle, token)
            self.continue_batch.set_max_batch_size(max_batch)
            self.continue_batch.set_batch_wait_timeout_s(batch_wait_s)

        @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.002)
        async def continue_batch(self, offloads: list[Offload]) -> list[Message]:
            return self.replica.continue_all(offloads)

        async def __call__(self, request: Request) -> Response:
            declared = int(request.headers.get("content-length") or 0)
            refusal = self.replica.refusal(request.headers, declared)
            if refusal is None:
                body = await request.body()
                refusal = self.replica.refusal(request.headers, len(body))
            if refusal is not None:
                return PlainTextResponse(refusal[1], status_code=refusal[0])
            parsed = self.replica.parse(body)
            if isinstance(parsed, str):
                return PlainTextResponse(parsed, status_code=400)
            offload, rid = parsed
            reply = await self.continue_batch(offload)
            return Response(encode(reply, rid), media_type=FRAME_TYPE)

    return CloudDeployment
