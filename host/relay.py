"""A byte relay between the device's and the edge's pseudo-terminals that can damage frames in transit.

Bytes are passed on frame by frame (at each 0x00). With faults on, the relay drops a run
of bytes from the middle of a frame (``drop``) or flips a few of its bytes (``corrupt``):
the receiver then sees a truncated or corrupted frame and drops it. Which frames are hit
is decided per frame identity (direction, message type, how many of that type came
before) from a seeded generator, so a run is reproducible whatever the timing.
"""

from __future__ import annotations

import os
import random
import select
import threading
from collections import Counter
from collections.abc import Callable

from contracts.protocol import MAX_FRAME, MsgType, ProtocolError, decode

UP, DOWN = "device->edge", "edge->device"
DAMAGE = ("drop", "corrupt")
# Probability that a frame of this kind is hit: mostly the offload exchange, sometimes the request and its answer.
RATES = {(UP, MsgType.OFFLOAD): 0.3, (DOWN, MsgType.RESULT): 0.3, (DOWN, MsgType.INFER): 0.1, (UP, MsgType.RESULT): 0.1}


class Relay(threading.Thread):
    """Copies ``device_fd`` <-> ``edge_fd`` (pty masters); ``on_frame(direction, type, ordinal)`` sees every frame."""

    def __init__(
        self,
        device_fd: int,
        edge_fd: int,
        damage: set[str],
        seed: int = 0,
        on_frame: Callable[[str, MsgType, int], None] | None = None,
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

    def run(self) -> None:
        """Never blocks on a write: a blocked end must not stop the other direction."""
        for fd in self.ends:
            os.set_blocking(fd, False)
        while not self.stopped.is_set():
            pending = [fd for fd, out in self.outbox.items() if out]
            readable, writable, _ = select.select(list(self.ends), pending, [], 0.05)
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
                    self.outbox[out] += frame

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
