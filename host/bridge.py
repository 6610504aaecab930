"""The edge bridge: serves devices on serial ports, continues their offloads, reports every answer.

One thread per port. Per port the bridge handshakes (0x00, ERROR(hello required) until the
device's HELLO, HELLO_ACK after checking the model hash), sends queued INFER requests one at a time (again after
``answer_timeout`` s, up to ``max_tries`` times), answers OFFLOADs through the
:class:`~host.edge.EdgeService`, and emits one record per final RESULT. Its RESULTs report each
OFFLOAD's throughput as it arrived (:class:`~host.link.Arrival`) and the edge's expected wait
over all ports (:class:`~host.edge.EdgeLoad`). A lost port is
reopened with backoff; garbage on the line costs at most the frame it hit.
"""

from __future__ import annotations

import base64
import json
import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

import serial

from contracts.protocol import (
    VERSION,
    Drop,
    Error,
    ErrorCode,
    Frame,
    Hello,
    HelloAck,
    Infer,
    Offload,
    Ping,
    Pong,
    Result,
    Telemetry,
    Tier,
    encode,
)
from host.bundle import Bundle
from host.edge import EdgeLoad, EdgeService
from host.link import Arrival, Link, open_serial

log = logging.getLogger("host.bridge")

PING_INTERVAL_S = 1.0
MAX_TRIES = 3  # default tries per request
REOPEN_S = (0.2, 5.0)  # first and longest pause before reopening a lost port
RECENT = 256  # answered request ids remembered per port, to flag duplicates
_HELLO_REQUIRED = Error(ErrorCode.HELLO_REQUIRED, "send HELLO")


@dataclass(frozen=True)
class Request:
    """One sample to run: ``pixels`` are uint8 HWC of ``shape``; ``port`` None means the first port."""

    request_id: int
    shape: tuple[int, int, int]
    pixels: bytes
    port: str | None = None

    @classmethod
    def from_json(cls, line: str) -> Request:
        """``{"request_id": 7, "shape": [H, W, C], "pixels": "<base64>", "port": "..."}``."""
        obj = json.loads(line)
        shape = tuple(int(v) for v in obj["shape"])
        request = cls(int(obj["request_id"]), shape, base64.b64decode(obj["pixels"]), obj.get("port"))
        if len(shape) != 3 or len(request.pixels) != shape[0] * shape[1] * shape[2]:
            raise ValueError(f"request {request.request_id}: {len(request.pixels)} pixels do not fill shape {shape}")
        if not 0 <= request.request_id <= 0xFFFF:
            raise ValueError(f"request id {request.request_id} outside 0..65535")
        return request


@dataclass
class _InFlight:
    request: Request
    tries: int = 0
    first_sent: float = 0.0
    last_sent: float = float("-inf")
    wire_bytes: int = 0
    timings_ms: dict[str, float] = field(default_factory=dict)
    slices_us: dict[int, int] = field(default_factory=dict)


def mismatch_message(port: str, device_hash: bytes, bundle: Bundle) -> str:
    return (
        f"{port}: the device runs model {device_hash.hex()} but the bundle {bundle.root} is model "
        f"{bundle.model_hash}. Its offloads would be continued by the wrong slices, so the bridge refuses them and "
        "the device answers from its own exits only. Rebuild the bundle from the checkpoint the firmware was built "
        "from (`python -m converter build`), or reflash the board with the firmware of this bundle "
        f"({bundle.root / 'firmware'})."
    )


class PortWorker(threading.Thread):
    """Everything about one serial port, in one thread (the link, the handshake, the requests)."""

    def __init__(
        self,
        url: str,
        open_link: Callable[[], Link],
        bundle: Bundle,
        edge: EdgeService,
        emit: Callable[[dict], None],
        answer_timeout: float,
        max_tries: int,
        stop: threading.Event,
        load: EdgeLoad,
    ) -> None:
        super().__init__(name=f"port {url}", daemon=True)
        self.load = load
        self.url, self.open_link, self.bundle, self.edge = url, open_link, bundle, edge
        self.emit, self.answer_timeout, self.max_tries, self.stop = emit, answer_timeout, max_tries, stop
        self.link: Link | None = open_link()
        self.requests: queue.Queue[Request] = queue.Queue()
        self.current: _InFlight | None = None
        self.recent: OrderedDict[int, None] = OrderedDict()
        self.ready = False  # the device said HELLO on this connection: INFERs may go out
        self.accepted: bool | None = None  # None: no HELLO yet on this connection
        self.other_version = False  # a frame of another protocol version came on this connection
        self.received_at = 0.0  # perf_counter when the frames being handled were read
        self.served_ms: list[float] = []  # per offload answered: frame in -> RESULT written

    @property
    def idle(self) -> bool:
        """Every request submitted so far is answered or given up."""
        return self.requests.unfinished_tasks == 0

    def run(self) -> None:
        pause = REOPEN_S[0]
        while not self.stop.is_set():
            try:
                if self.link is None:
                    self.link = self.open_link()
                    log.info("%s: reopened", self.url)
                    pause = REOPEN_S[0]
                self._session()
            except (serial.SerialException, OSError) as err:
                log.warning("%s: link lost (%s); reopening in %.1f s", self.url, err, pause)
                self.close()
                self.stop.wait(pause)
                pause = min(2 * pause, REOPEN_S[1])
        self.close()
        if self.served_ms:
            ms = sorted(self.served_ms)
            log.info(
                "%s: %d offloads served, frame in -> result out p50 %.3f ms, p99 %.3f ms",
                self.url,
                len(ms),
                ms[(len(ms) - 1) // 2],
                ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))],
            )

    def close(self) -> None:
        if self.link is not None:
            try:
                self.link.close()
            except (serial.SerialException, OSError):
                pass
            self.link = None

    def _session(self) -> None:
        self.ready, self.accepted, self.other_version = False, None, False
        if self.current is not None:
            self.current.last_sent = float("-inf")  # resend once the device is back
        self.link.write(b"\x00")
        next_ping = 0.0
        dropped = self.link.reader.dropped
        while not self.stop.is_set():
            items = self.link.receive_timed()
            self.received_at = time.perf_counter()
            for frame, arrival in items:
                if isinstance(frame, Frame):
                    self._handle(frame, arrival)
                elif frame.code == Drop.VERSION and frame.request_id is not None:
                    self._other_version(frame.request_id, str(frame))
            if self.link.reader.dropped != dropped:
                lost, dropped = self.link.reader.dropped - dropped, self.link.reader.dropped
                log.info("%s: dropped %d damaged frame(s), last: %s", self.url, lost, self.link.reader.last_error)
            now = time.monotonic()
            if now >= next_ping:  # until its HELLO, ask the device for one (it may be acknowledged by our predecessor)
                self.link.send(Ping(int(now * 1e6) & 0xFFFFFFFF) if self.ready else _HELLO_REQUIRED, 0)
                next_ping = now + PING_INTERVAL_S
            self._pump(now)

    def _pump(self, now: float) -> None:
        """Resend or give up the request in flight; start the next one."""
        if not self.ready:
            return
        c = self.current
        if c is not None and now - c.last_sent > self.answer_timeout:
            if c.tries >= self.max_tries:
                rid = c.request.request_id
                log.warning("%s: request %d unanswered after %d tries, given up", self.url, rid, c.tries)
                self.emit({"request_id": rid, "port": self.url, "error": "unanswered", "tries": c.tries})
                self._finish()
            else:
                waited = now - c.last_sent
                log.info("%s: request %d unanswered after %.1f s, sent again", self.url, c.request.request_id, waited)
                self._send_infer(c, now)
        while self.current is None and not self.requests.empty():
            request = self.requests.get_nowait()
            if request.request_id in self.recent:
                log.info("%s: request %d was answered already (see its record)", self.url, request.request_id)
                self.requests.task_done()
                continue
            self.current = _InFlight(request, first_sent=now)
            self._send_infer(self.current, now)

    def _finish(self) -> None:
        self.current = None
        self.requests.task_done()

    def _send_infer(self, c: _InFlight, now: float) -> None:
        c.tries += 1
        c.last_sent = now
        c.wire_bytes += self.link.send(Infer(c.request.shape, c.request.pixels), c.request.request_id)

    def _mine(self, request_id: int) -> _InFlight | None:
        c = self.current
        return c if c is not None and c.request.request_id == request_id else None

    def _handle(self, frame: Frame, arrival: Arrival) -> None:
        message, rid = frame.message, frame.request_id
        mine = self._mine(rid)
        if mine is not None:
            mine.wire_bytes += len(encode(message, rid))
        if isinstance(message, Pong):
            pass
        elif isinstance(message, Hello):
            self.ready = True
            self._hello(message)
        elif isinstance(message, Ping):
            self.link.send(Pong(message.timestamp_us), rid)
        elif isinstance(message, Offload):
            self._offload(rid, message, mine, arrival)
        elif isinstance(message, Telemetry):
            if mine is not None:
                mine.slices_us = dict(message.slice_micros)
        elif isinstance(message, Result):
            self._answer(rid, message, mine)
        elif isinstance(message, Error):
            log.warning("%s: device error %d for request %d: %s", self.url, message.code, rid, message.message)
        else:
            log.warning("%s: ignoring %s from the device", self.url, message.TYPE.name)

    def _other_version(self, rid: int, why: str) -> None:
        """A device of another protocol version: ERROR(version), and the reason once per connection."""
        self.link.send(Error(ErrorCode.VERSION, f"this edge speaks protocol version {VERSION}"), rid)
        if not self.other_version:
            log.error(
                "%s: the device sent a frame of another protocol version (%s): flash it with firmware built by "
                "this converter (`python -m converter build`), or use the host of its release",
                self.url,
                why,
            )
        self.other_version = True

    def _hello(self, hello: Hello) -> None:
        accepted = hello.model_hash == bytes.fromhex(self.bundle.model_hash)
        reason = "" if accepted else f"model hash differs: edge has {self.bundle.model_hash[:16]}..."
        self.link.send(HelloAck(accepted, reason), 0)
        if accepted != self.accepted:
            if accepted:
                log.info(
                    "%s: %s firmware %d accepted, model %s",
                    self.url,
                    hello.board,
                    hello.fw_version,
                    hello.model_hash.hex(),
                )
            else:
                log.error("%s", mismatch_message(self.url, hello.model_hash, self.bundle))
        self.accepted = accepted

    def _offload(self, rid: int, offload: Offload, mine: _InFlight | None, arrival: Arrival) -> None:
        if self.accepted is None:
            log.info("%s: OFFLOAD %d before the device's HELLO: asking for one (the device falls back)", self.url, rid)
            self.link.send(_HELLO_REQUIRED, rid)
            return
        if self.accepted is False:
            self.link.send(Error(ErrorCode.MODEL_MISMATCH, "the edge's bundle is another model"), rid)
            return
        reason = self.edge.check(offload)
        if reason:
            log.warning("%s: request %d: cannot continue: %s", self.url, rid, reason)
            self.link.send(Error(ErrorCode.MALFORMED, reason), rid)
            return
        with self.load.serving():
            outcome = self.edge.serve(offload)
            answer = outcome.answer and replace(
                outcome.answer, link_bps=arrival.bps(), edge_wait_us=self.load.wait_us()
            )
        sent = self.link.send(answer, rid) if answer else 0
        if sent:
            self.served_ms.append(1e3 * (time.perf_counter() - self.received_at))
        if mine is not None:
            mine.wire_bytes += sent
            mine.timings_ms.update(outcome.timings_ms, device=offload.time_spent_us / 1e3)

    def _answer(self, rid: int, result: Result, mine: _InFlight | None) -> None:
        record = {
            "request_id": rid,
            "port": self.url,
            "class": result.label,
            "confidence_q15": result.confidence_q15,
            "exit": result.exit,
            "tier": Tier(result.tier).name.lower(),
            "fallback": result.fallback,
            "link_bps": result.link_bps,
            "edge_wait_us": result.edge_wait_us,
            "duplicate": mine is None and rid in self.recent,
        }
        if mine is not None:
            record.update(tries=mine.tries, bytes=mine.wire_bytes, timings_ms=self._timings(mine))
            record["slices_us"] = {str(k): v for k, v in sorted(mine.slices_us.items())}
            self._finish()
        self.recent[rid] = None
        while len(self.recent) > RECENT:
            self.recent.popitem(last=False)
        self.emit(record)

    @staticmethod
    def _timings(c: _InFlight) -> dict[str, float]:
        t = dict(c.timings_ms)
        if c.slices_us:
            t["device"] = sum(c.slices_us.values()) / 1e3
        t["total"] = 1e3 * (time.monotonic() - c.first_sent)
        t["link"] = max(t["total"] - sum(v for k, v in t.items() if k != "total"), 0.0)
        return {k: round(v, 3) for k, v in t.items()}


class Bridge:
    """Workers for several ports sharing one bundle; ``submit`` queues requests, ``emit`` gets records.

    Every port is opened here first, so a port that cannot be opened at all fails at once.
    """

    def __init__(
        self,
        bundle: Bundle,
        ports: list[str],
        edge_factory: Callable[[], EdgeService],
        emit: Callable[[dict], None],
        baud: int = 115200,
        answer_timeout: float = 5.0,
        max_tries: int = MAX_TRIES,
    ) -> None:
        self.stop_event = threading.Event()
        self.workers: dict[str, PortWorker] = {}
        load = EdgeLoad()
        try:
            for url in ports:
                self.workers[url] = PortWorker(
                    url,
                    lambda url=url: open_serial(url, baud),
                    bundle,
                    edge_factory(),
                    emit,
                    answer_timeout,
                    max_tries,
                    self.stop_event,
                    load,
                )
        except BaseException:
            self.stop()
            raise

    def start(self) -> None:
        for w in self.workers.values():
            w.start()

    def submit(self, request: Request) -> None:
        port = request.port or next(iter(self.workers))
        if port not in self.workers:
            raise ValueError(f"request {request.request_id}: port {port!r} is not served (ports: {list(self.workers)})")
        self.workers[port].requests.put(request)

    def submit_lines(self, lines: Iterable[str]) -> None:
        """Queue one request per JSON line; bad lines are reported and skipped."""
        for line in lines:
            if not line.strip():
                continue
            try:
                self.submit(Request.from_json(line))
            except (ValueError, KeyError, TypeError) as err:
                log.error("bad request line skipped (%s): %.80s", err, line.strip())

    @property
    def idle(self) -> bool:
        return all(w.idle for w in self.workers.values())

    def stop(self) -> None:
        """Stop every worker and close its port."""
        self.stop_event.set()
        for w in self.workers.values():
            if w.is_alive():
                w.join(timeout=5)
            else:
                w.close()
