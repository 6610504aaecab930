"""A byte relay between the device's and the edge's pseudo-terminals that can damage frames in transit.

Bytes are passed on frame by frame (at each 0x00). With faults on, the relay drops a run
of bytes from the middle of a frame (``drop``) or flips a few of its bytes (``corrupt``):
the receiver then sees a truncated or corrupted frame and drops it. Which frames are hit
is decided per frame identity (direction, message type, how many of that type came
before) from a seeded generator, so a run is reproducible whatever the timing.

With a bandwidth trace (bit/s, one value per request) the relay also throttles the device's
uplink as a link of that throughput would: each frame from the device goes out in
``CHUNK``-byte pieces paced at the value of its request (request ``n`` takes value ``n - 1``,
cyclically; frames of request 0, such as HELLO, the first), one frame after another, and never
slower than ``MAX_FRAME_S`` seconds a frame. The edge's downlink is not throttled.
"""

from __future__ import annotations

import os
import random
import select
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence

from contracts.protocol import MAX_FRAME, MsgType, ProtocolError, decode

UP, DOWN = "device->edge", "edge->device"
DAMAGE = ("drop", "corrupt")
# Probability that a frame of this kind is hit: mostly the offload exchange, sometimes the request and its answer.
RATES = {(UP, MsgType.OFFLOAD): 0.3, (DOWN, MsgType.RESULT): 0.3, (DOWN, MsgType.INFER): 0.1, (UP, MsgType.RESULT): 0.1}
CHUNK = 32  # bytes the throttled uplink writes at a time
MAX_FRAME_S = 5.0  # the longest a throttled frame takes, whatever the trace says (an outage of 0 bit/s included)


class Relay(threading.Thread):
    """Copies ``device_fd`` <-> ``edge_fd`` (pty masters); ``on_frame(direction, type, ordinal)`` sees every frame."""

    def __init__(
        self,
        device_fd: int,
        edge_fd: int,
        damage: set[str],
        seed: int = 0,
        on_frame: Callable[[str, MsgType, int], None] | None = None,
        bandwidth: Sequence[float] | None = None,
    ) -> None:
        super().__init__(name="relay", daemon=True)
        self.ends = {device_fd: (UP, edge_fd), edge_fd: (DOWN, device_fd)}
        self.outbox = {device_fd: bytearray(), edge_fd: bytearray()}  # what is still to be written to each end
        self.damage = sorted(set(damage) & set(DAMAGE))
        self.seed, self.on_frame = seed, on_frame
        self.pending = {UP: bytearray(), DOWN: bytearray()}
        self.seen: Counter = Counter()
        self.injected = 0
        self.stopped = threading.Event()
        self.bandwidth = bandwidth
        self.device_fd, self.edge_fd = device_fd, edge_fd
        self.paced: deque[tuple[float, bytes]] = deque()  # (when, bytes) still to go up, in order
        self.uplink_free = 0.0  # perf_counter when the throttled uplink has sent what it has

    def run(self) -> None:
        """Never blocks on a write: a blocked end must not stop the other direction."""
        for fd in self.ends:
            os.set_blocking(fd, False)
        while not self.stopped.is_set():
            now = time.perf_counter()
            while self.paced and self.paced[0][0] <= now:
                self.outbox[self.edge_fd] += self.paced.popleft()[1]
            wait = min(0.05, max(self.paced[0][0] - now, 0.0)) if self.paced else 0.05
            pending = [fd for fd, out in self.outbox.items() if out]
            readable, writable, _ = select.select(list(self.ends), pending, [], wait)
            for fd in writable:
                try:
                    del self.outbox[fd][: os.write(fd, self.outbox[fd])]
                except BlockingIOError:
                    pass
            for fd in readable:
                try:
                    data = os.read(fd, 65536)
                except (BlockingIOError, OSError):  # OSError: nobody has the other side of this pty open
                    continue
                direction, out = self.ends[fd]
                for frame in self._frames(direction, data):
                    if direction == UP and self.bandwidth is not None:
                        self._pace(frame)
                    else:
                        self.outbox[out] += frame

    def _pace(self, wire: bytes) -> None:
        """Queue a device frame to go up at its request's throughput: piece i leaves when the bytes after the
        first piece, up to its end, would have been sent, so the edge times exactly that throughput."""
        try:
            rid = decode(wire[:-1]).request_id
        except ProtocolError:
            rid = 0
        bps = max(float(self.bandwidth[max(rid - 1, 0) % len(self.bandwidth)]), 8 * len(wire) / MAX_FRAME_S)
        start = max(time.perf_counter(), self.uplink_free)
        first = min(CHUNK, len(wire))
        for at in range(0, len(wire), CHUNK):
            end = min(at + CHUNK, len(wire))
            self.paced.append((start + 8 * (end - first) / bps, wire[at:end]))
        self.uplink_free = start + 8 * len(wire) / bps

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=2)

    def _frames(self, direction: str, data: bytes) -> list[bytes]:
        buf = self.pending[direction]
        buf += data
        *complete, tail = bytes(buf).split(b"\x00")
        buf[:] = tail[-MAX_FRAME:]
        return [self._maybe_damage(direction, chunk + b"\x00") for chunk in complete]

    def _maybe_damage(self, direction: str, wire: bytes) -> bytes:
        try:
            kind = decode(wire[:-1]).message.TYPE
        except ProtocolError:
            return wire  # a flush byte or garbage: passed on as it is
        ordinal = self.seen[direction, kind]
        self.seen[direction, kind] += 1
        if self.on_frame is not None:
            self.on_frame(direction, kind, ordinal)
        rng = random.Random(f"{self.seed}/{direction}/{int(kind)}/{ordinal}")
        if not self.damage or rng.random() >= RATES.get((direction, kind), 0.0):
            return wire
        self.injected += 1
        body = bytearray(wire[:-1])
        if rng.choice(self.damage) == "drop":
            del body[len(body) // 3 : max(len(body) // 3 + 1, 2 * len(body) // 3)]
        else:
            for _ in range(rng.randint(1, 3)):
                body[rng.randrange(len(body))] ^= rng.randrange(1, 256)
        return bytes(body) + b"\x00"
