"""Frames over a byte stream (serial port, pty, pyserial URL or TCP socket) behind one small class."""

from __future__ import annotations

import select
import socket
import threading
import time
from dataclasses import dataclass
from typing import Protocol

import serial

from contracts.protocol import Frame, FrameReader, Message, ProtocolError, encode

READ_TIMEOUT_S = 0.02
WRITE_TIMEOUT_S = 2.0
# A frame is timed only when it came in at least this many reads over at least this long: faster
# ones (a pty without throttling, a small frame) are below what a PC's reads can time.
MIN_TIMED_READS = 4
MIN_TIMED_S = 0.002


@dataclass(frozen=True)
class Arrival:
    """How a frame's bytes came in: how many reads, the bytes after the first read, and the time between
    the first read and the last."""

    reads: int
    later_bytes: int
    span_s: float

    def bps(self) -> int:
        """The throughput: the bytes after the first read over the time to the last (0: too quick to time)."""
        if self.reads < MIN_TIMED_READS or self.span_s < MIN_TIMED_S:
            return 0
        return min(round(8 * self.later_bytes / self.span_s), 0xFFFFFFFF)


class Stream(Protocol):
    def read_some(self, timeout: float) -> bytes: ...
    def write(self, data: bytes) -> None: ...
    def close(self) -> None: ...


class SerialStream:
    """A pyserial port: waits up to ``timeout`` for the first byte, then takes what has arrived with it."""

    def __init__(self, port: serial.SerialBase) -> None:
        self.port = port

    def read_some(self, timeout: float) -> bytes:
        if self.port.timeout != timeout:
            self.port.timeout = timeout
        data = self.port.read(self.port.in_waiting or 1)
        if data and self.port.in_waiting:  # the rest of what came with the byte it waited for
            data += self.port.read(self.port.in_waiting)
        return data

    def write(self, data: bytes) -> None:
        self.port.write(data)

    def close(self) -> None:
        self.port.close()


class SocketStream:
    """A connected TCP socket; the peer closing it raises ConnectionError."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def read_some(self, timeout: float) -> bytes:
        if not select.select([self.sock], [], [], timeout)[0]:
            return b""
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("connection closed by the peer")
        return data

    def write(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        self.sock.close()


class Link:
    """Send messages and receive whole frames; counts bytes both ways. ``send`` is thread-safe."""

    def __init__(self, stream: Stream, name: str) -> None:
        self.stream, self.name = stream, name
        self.reader = FrameReader()
        self.bytes_sent = self.bytes_received = 0
        self._lock = threading.Lock()
        self._partial: tuple[float, int, int] | None = None  # frame coming in: first read's time, reads, later bytes

    def write(self, data: bytes) -> None:
        with self._lock:
            self.stream.write(data)
            self.bytes_sent += len(data)

    def send(self, message: Message, request_id: int) -> int:
        """Encode and send one message; returns its size on the wire."""
        wire = encode(message, request_id)
        self.write(wire)
        return len(wire)

    def receive(self, timeout: float = READ_TIMEOUT_S) -> list[Frame]:
        """The frames completed by what arrived within about ``timeout`` seconds (bad ones are dropped)."""
        return [f for f in self.receive_all(timeout) if isinstance(f, Frame)]

    def receive_all(self, timeout: float = READ_TIMEOUT_S) -> list[Frame | ProtocolError]:
        """Every frame completed within about ``timeout`` seconds, in order: decoded, or why it was dropped."""
        return [item for item, _ in self.receive_timed(timeout)]

    def receive_timed(self, timeout: float = READ_TIMEOUT_S) -> list[tuple[Frame | ProtocolError, Arrival]]:
        """As :meth:`receive_all`, each frame with how its bytes came in."""
        data = self.stream.read_some(timeout)
        if not data:
            return []
        now = time.perf_counter()
        self.bytes_received += len(data)
        *complete, tail = data.split(b"\x00")
        arrivals = []
        for chunk in complete:
            if self._partial is None and not chunk:
                continue  # a bare delimiter: no frame
            first, reads, later = self._partial or (now, 0, -len(chunk) - 1)
            arrivals.append(Arrival(reads + 1, later + len(chunk) + 1, now - first))
            self._partial = None
        if tail:
            first, reads, later = self._partial or (now, 0, -len(tail))
            self._partial = (first, reads + 1, later + len(tail))
        items = self.reader.feed_all(data)
        return list(zip(items, arrivals, strict=True))

    def close(self) -> None:
        self.stream.close()


def open_serial(url: str, baud: int) -> Link:
    """A serial port, pty path or pyserial URL (``loop://``, ``socket://``, ...)."""
    port = serial.serial_for_url(url, baudrate=baud, timeout=READ_TIMEOUT_S, write_timeout=WRITE_TIMEOUT_S)
    return Link(SerialStream(port), url)


def connect_tcp(host: str, port: int, timeout: float) -> Link:
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.settimeout(WRITE_TIMEOUT_S)
    return Link(SocketStream(sock), f"{host}:{port}")
