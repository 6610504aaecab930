"""A stand-in for the microcontroller: the device slices in TFLite Micro, the firmware's policy, the protocol.

It behaves as docs/bridge.md describes the device: HELLO at boot and after every PING
until the edge acknowledges the model; INFER requests run one at a time (a few queue up);
an OFFLOAD waits at most the request's remaining deadline for the edge's RESULT, else the
device answers from its deepest exit with the fallback flag. Every INFER gets exactly one
final RESULT; an INFER repeated for an answered request gets that answer again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from dataclasses import replace

import numpy as np

from converter import verify
from converter.threshold import EXIT, OFFLOAD
from host.bundle import Bundle
from host.edge import split_outputs
from host.link import Link
from host.protocol import (
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
)

log = logging.getLogger("host.simulator")

FW_VERSION = 1
QUEUE = 4  # INFER requests waiting behind the one running; more are refused as busy
ANSWERS = 16  # final answers kept to repeat for a re-sent INFER


class Simulator:
    """Runs slices 1..device_slices of ``bundle`` for INFER requests arriving on ``link``."""

    def __init__(self, bundle: Bundle, link: Link, deadline_ms: float) -> None:
        self.bundle, self.link = bundle, link
        self.deadline_us = int(deadline_ms * 1e3)
        d = bundle.device_slices
        self.runners = [verify.tflm_runner(s) for s in bundle.slices[:d]]
        self.policy = bundle.policy(d)
        self.lut = bundle.input_lut()
        self.energy_uj = [1e3 * (s["estimated_energy_mj"] or 0.0) for s in bundle.manifest["slices"][:d]]
        self.hash = bytes.fromhex(bundle.model_hash)
        self.acknowledged = False
        self.waiting: deque[tuple[int, Infer]] = deque()
        self.answers: OrderedDict[int, Result] = OrderedDict()
        self.running: int | None = None

    def run(self, stop: threading.Event) -> None:
        """Serve until ``stop`` is set (link errors propagate)."""
        self.link.write(b"\x00")
        self._hello()
        while not stop.is_set():
            for frame in self.link.receive():
                self._handle(frame)
            if self.waiting:
                self._infer(*self.waiting.popleft())

    def _hello(self) -> None:
        self.link.send(Hello(FW_VERSION, self.bundle.board, self.hash), 0)

    def _handle(self, frame: Frame) -> Result | None:
        """Act on one frame; returns the edge's RESULT when it answers the running request."""
        message, rid = frame.message, frame.request_id
        if isinstance(message, Ping):
            self.link.send(Pong(message.timestamp_us), rid)
            if not self.acknowledged:
                self._hello()
        elif isinstance(message, HelloAck):
            self.acknowledged = message.accepted
            if not message.accepted:
                log.warning("the edge refused this model (%s): answering from the device's exits only", message.reason)
        elif isinstance(message, Infer):
            self._queue(rid, message)
        elif isinstance(message, Result):
            if rid == self.running:
                return message
            log.info("late or unknown edge RESULT for request %d dropped", rid)
        elif isinstance(message, Error):
            log.warning("edge error %d for request %d: %s", message.code, rid, message.message)
        elif not isinstance(message, Pong):
            log.warning("ignoring %s from the edge", message.TYPE.name)
        return None

    def _queue(self, rid: int, infer: Infer) -> None:
        if rid in self.answers:
            self.link.send(self.answers[rid], rid)
        elif rid == self.running or any(rid == r for r, _ in self.waiting):
            log.info("request %d is already being served", rid)
        elif len(self.waiting) >= QUEUE:
            self.link.send(Error(ErrorCode.BUSY, f"{QUEUE} requests already waiting"), rid)
        else:
            self.waiting.append((rid, infer))

    def _infer(self, rid: int, infer: Infer) -> None:
        if tuple(infer.shape) != self.bundle.input_shape:
            self.link.send(Error(ErrorCode.MALFORMED, f"image {infer.shape}, expected {self.bundle.input_shape}"), rid)
            return
        started = time.monotonic()
        self.running = rid
        pixels = np.frombuffer(infer.pixels, np.uint8).reshape(1, *infer.shape)
        h = verify.quantize_images(pixels, self.lut)
        micros: list[tuple[int, int]] = []
        for k, run in enumerate(self.runners):
            t0 = time.perf_counter_ns()
            logits, trunk = split_outputs(run(h))
            micros.append((k + 1, (time.perf_counter_ns() - t0) // 1000))
            answer = Result(int(np.argmax(logits)), self.policy.confidence_q15(k, logits), k + 1, Tier.DEVICE)
            action = self.policy.decide(k, logits)
            if action == EXIT:
                break
            if action == OFFLOAD:
                answer = self._offload(rid, k, trunk, micros, answer, started)
                break
            h = trunk
        self.link.send(Telemetry(tuple(micros)), rid)
        self.link.send(answer, rid)
        self.running = None
        self.answers[rid] = answer
        while len(self.answers) > ANSWERS:
            self.answers.popitem(last=False)

    def _offload(
        self, rid: int, k: int, trunk: np.ndarray, micros: list[tuple[int, int]], local: Result, started: float
    ) -> Result:
        """The edge's answer if it comes in time, else ``local`` flagged as a fallback."""
        left_us = self.deadline_us - int(1e6 * (time.monotonic() - started))
        fallback = replace(local, fallback=True)
        if not self.acknowledged or left_us <= 0:
            return fallback
        info = self.bundle.slices[k].trunk
        spent_us = sum(us for _, us in micros)
        energy_uj = int(sum(self.energy_uj[: k + 1]))
        self.link.send(
            Offload(k + 1, trunk.shape, info.scale, info.zero_point, spent_us, energy_uj, left_us, trunk.tobytes()), rid
        )
        end = time.monotonic() + left_us / 1e6
        while time.monotonic() < end:
            edge = [r for r in map(self._handle, self.link.receive()) if r is not None]
            if edge:
                return edge[0]
        log.info("request %d: no edge answer within %d us, answering from exit %d", rid, left_us, k + 1)
        return fallback
