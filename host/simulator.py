"""A stand-in for the microcontroller: the device slices in TFLite Micro, the firmware's policy and protocol.

It behaves as the firmware's portable core (firmware/lib/eecore; docs/bridge.md lists the
rules and the differences that remain): HELLO at boot, after a PING while unacknowledged and
on ERROR(hello required); one request at a time (an INFER meanwhile gets ERROR busy); after
each slice EXIT answers, a passed budget (deadline less margin, from the INFER's arrival)
answers with the fallback flag, and the last device exit offloads when acknowledged (else
answers, no fallback); while it waits, the edge's RESULT is passed on with its fallback flag,
an ERROR from the edge or the budget running out answers from the deepest exit with the
fallback flag. TELEMETRY precedes every final RESULT; late RESULTs are ignored; frames whose
CRC holds but whose version, type or payload is wrong are answered with the matching ERROR.

Every RESULT from the edge (a late one too) tells it the OFFLOAD's throughput as the edge timed it
and the edge's expected wait: :class:`EdgeView` keeps them as eecore's ``observe_edge`` does (the
same integer smoothing), and the policy sees them.

Its clock is the board's, not the PC's: each slice advances it by the slice's time on the board
by its profile's MAC rate (``Bundle.device_slice_us``, the cost model the policy was trained
with), so the policy sees the time and energy the board would spend; while it waits for the
edge, real time runs on from there.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace

import numpy as np

from contracts.placement import DEFAULT_DEADLINE_US, FALLBACK_MARGIN_US
from contracts.protocol import (
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
    ProtocolError,
    Result,
    Telemetry,
    Tier,
    frame_bytes,
)
from converter import verify
from host.bundle import Bundle
from host.link import READ_TIMEOUT_S, Link
from host.tier import split_outputs
from policy.threshold import EXIT, DeviceState

log = logging.getLogger("host.simulator")

FW_VERSION = 1  # the firmware's EEC_FW_VERSION
DEFAULT_DEADLINE_MS = DEFAULT_DEADLINE_US / 1e3  # the firmware's default EEFW_DEADLINE_US
LINK_SHIFT = 1  # eecore's EEC_LINK_SHIFT: the estimate moves by 1/2^LINK_SHIFT of each measurement's difference
MARGIN_US = FALLBACK_MARGIN_US  # the firmware's EEFW_MARGIN_US: stop waiting for the edge this long before the deadline
# The ERROR a frame dropped after its CRC held gets, as eecore's answer_dropped.
DROP_ANSWERS = {
    Drop.VERSION: (ErrorCode.VERSION, "version"),
    Drop.TYPE: (ErrorCode.UNKNOWN_TYPE, "unknown type"),
    Drop.LENGTH: (ErrorCode.MALFORMED, "malformed"),
    Drop.PAYLOAD: (ErrorCode.MALFORMED, "malformed"),
}


@dataclass
class _Request:
    request_id: int
    started: float  # monotonic seconds at the INFER's arrival on the device's clock
    micros: list[tuple[int, int]]  # (slice from 1, microseconds measured here) per slice run
    local: Result | None = None  # the deepest exit's answer so far
    spent_us: int = 0  # the board's time for the slices run so far


@dataclass(frozen=True)
class DeviceClock:
    """The board's time and energy for one request: each device slice's time by the profile's MAC
    rate, the board's active power and the budget (the deadline less the firmware's margin)."""

    slice_us: tuple[int, ...]
    power_uw: int
    budget_us: int

    @classmethod
    def of(cls, bundle: Bundle, deadline_ms: float) -> DeviceClock:
        power_uw = round(1e3 * bundle.board_profile().active_power_mw)
        return cls(bundle.device_slice_us(), power_uw, max(round(deadline_ms * 1e3) - MARGIN_US, 0))

    def energy_uj(self, spent_us: int) -> int:
        """Device energy for ``spent_us`` of activity, as eecore.c computes it."""
        return spent_us * self.power_uw // 1_000_000

    def state(self, k: int, logits: np.ndarray, spent_us: int, can_offload: bool, edge: EdgeView) -> DeviceState:
        """What the firmware's core hands its policy at device exit ``k`` (eecore.c ``decide``)."""
        left = max(self.budget_us - spent_us, 0)
        energy = self.energy_uj(spent_us)
        return DeviceState(k, logits, spent_us, energy, left, edge.link_bps, can_offload, edge.edge_wait_us)


@dataclass
class EdgeView:
    """The link and the edge as the edge's RESULTs report them (eecore.c ``observe_edge``)."""

    link_bps: int = 0  # smoothed throughput; 0: none measured yet (the policy's nominal figure)
    edge_wait_us: int = 0  # the latest expected wait

    def observe(self, link_bps: int, edge_wait_us: int) -> None:
        """The first throughput sets the estimate, later ones move it by 1/2^LINK_SHIFT; 0 is no measurement."""
        if link_bps:
            old = self.link_bps
            self.link_bps = link_bps if old == 0 else (old * ((1 << LINK_SHIFT) - 1) + link_bps) >> LINK_SHIFT
        self.edge_wait_us = edge_wait_us


class Simulator:
    """Runs slices 1..device_slices of ``bundle`` for the INFER requests arriving on ``link``."""

    def __init__(self, bundle: Bundle, link: Link, deadline_ms: float) -> None:
        self.bundle, self.link = bundle, link
        self.clock = DeviceClock.of(bundle, deadline_ms)
        self.budget_s = self.clock.budget_us / 1e6
        self.deadline_us = int(deadline_ms * 1e3)
        self.runners = [verify.tflm_runner(s) for s in bundle.slices[: bundle.device_slices]]
        self.policy = bundle.device_policy()
        self.lut = bundle.input_lut()
        h, w, c = bundle.input_shape
        link.reader.max_frame = frame_bytes(max(6 + h * w * c, 258))  # eecore's receive buffer: INFER or ERROR
        self.acknowledged = False
        self.waiting: _Request | None = None  # offloaded, waiting for the edge
        self.edge = EdgeView()

    def run(self, stop: threading.Event) -> None:
        """Serve until ``stop`` is set (link errors propagate)."""
        self.link.write(b"\x00")
        self._hello()
        while not stop.is_set():
            items = self.link.receive_all(self._read_timeout())
            self._expire()  # first, as eec_poll checks its timer: an answer read after the budget is late
            for item in items:
                if isinstance(item, Frame):
                    self._handle(item)
                else:
                    self._answer_dropped(item)
            self._expire()

    def _expire(self) -> None:
        """Answer the request waiting for the edge from its own exit once its budget has passed."""
        late = self.waiting
        if late is not None and time.monotonic() - late.started >= self.budget_s:
            log.info("request %d: no edge answer in time, answering from exit %d", late.request_id, late.local.exit)
            self._finish(late, replace(late.local, fallback=True))

    def _read_timeout(self) -> float:
        """Wake up for the budget of the request waiting for the edge, as the firmware's eec_poll would."""
        if self.waiting is None:
            return READ_TIMEOUT_S
        left = self.waiting.started + self.budget_s - time.monotonic()
        return min(READ_TIMEOUT_S, max(left, 0.0))

    def _hello(self) -> None:
        self.link.send(Hello(FW_VERSION, self.bundle.board, bytes.fromhex(self.bundle.model_hash)), 0)

    def _answer_dropped(self, err: ProtocolError) -> None:
        if err.request_id is not None and err.code in DROP_ANSWERS:
            self.link.send(Error(*DROP_ANSWERS[err.code]), err.request_id)

    def _handle(self, frame: Frame) -> None:
        message, rid = frame.message, frame.request_id
        waited = self.waiting if self.waiting is not None and self.waiting.request_id == rid else None
        if isinstance(message, Ping):
            self.link.send(Pong(message.timestamp_us), rid)
            if not self.acknowledged:
                self._hello()
        elif isinstance(message, HelloAck):
            self.acknowledged = message.accepted
            if not message.accepted:
                log.warning("the edge refused this model (%s): answering from the device's exits only", message.reason)
        elif isinstance(message, Infer):
            self._infer(rid, message)
        elif isinstance(message, Result):
            self.edge.observe(message.link_bps, message.edge_wait_us)  # a late answer measured the link too
            if waited is not None:
                self._finish(waited, message)  # the edge's answer, its fallback flag and reports included
        elif isinstance(message, Error) and message.code == ErrorCode.HELLO_REQUIRED:
            if self.waiting is not None:
                log.info("request %d: a new edge does not know it: answering on the device", self.waiting.request_id)
                self._finish(self.waiting, replace(self.waiting.local, fallback=True))
            self.acknowledged = False
            self._hello()
        elif isinstance(message, Error) and waited is not None:
            log.info("request %d: the edge cannot continue it (%s): answering on the device", rid, message.message)
            self._finish(waited, replace(waited.local, fallback=True))
        else:
            log.debug("ignoring %s %d", message.TYPE.name, rid)

    def _infer(self, rid: int, infer: Infer) -> None:
        if self.waiting is not None:
            self.link.send(Error(ErrorCode.BUSY, "busy"), rid)
            return
        if tuple(infer.shape) != self.bundle.input_shape:
            self.link.send(Error(ErrorCode.MALFORMED, "input shape"), rid)
            return
        request = _Request(rid, time.monotonic(), [])
        pixels = np.frombuffer(infer.pixels, np.uint8).reshape(1, *infer.shape)
        h = verify.quantize_images(pixels, self.lut)
        last, fallback = len(self.runners) - 1, False
        for k, run in enumerate(self.runners):
            t0 = time.perf_counter_ns()
            try:
                logits, trunk = split_outputs(run(h))
            except RuntimeError as err:
                log.error("request %d: slice %d failed (%s)", rid, k + 1, err)
                self.link.send(Error(ErrorCode.INTERNAL, "slice failed"), rid)
                return
            request.micros.append((k + 1, (time.perf_counter_ns() - t0) // 1000))
            request.spent_us += self.clock.slice_us[k]
            request.local = Result(int(np.argmax(logits)), self.policy.confidence_q15(k, logits), k + 1, Tier.DEVICE)
            can_offload = self.acknowledged and self.bundle.device_slices < len(self.bundle.slices)
            if self.policy.decide_device(self.clock.state(k, logits, request.spent_us, can_offload, self.edge)) == EXIT:
                break
            if request.spent_us >= self.clock.budget_us:
                fallback = True
                break
            if k == last:
                if self.acknowledged and trunk is not None:
                    self._offload(request, k, trunk)
                    return
                break  # not acknowledged: the device's own answer
            h = trunk
        self._finish(request, replace(request.local, fallback=fallback))

    def _offload(self, request: _Request, k: int, trunk: np.ndarray) -> None:
        spent_us = request.spent_us
        request.started = time.monotonic() - spent_us / 1e6  # from here on the device's clock is real time
        info = self.bundle.slices[k].trunk
        self.link.send(
            Offload(
                k + 1,
                trunk.shape,
                info.scale,
                info.zero_point,
                spent_us,
                self.clock.energy_uj(spent_us),
                max(self.deadline_us - spent_us, 0),
                trunk.tobytes(),
            ),
            request.request_id,
        )
        self.waiting = request

    def _finish(self, request: _Request, answer: Result) -> None:
        """TELEMETRY, then the request's one final RESULT."""
        self.link.send(Telemetry(tuple(request.micros)), request.request_id)
        self.link.send(answer, request.request_id)
        self.waiting = None
