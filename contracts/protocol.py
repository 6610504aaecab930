"""The framed serial protocol of docs/protocol.md: messages, frames and a resynchronising reader.

The C twin lives in ``firmware/lib/eeproto``; golden vectors in ``tests/data/protocol`` keep
both byte-compatible.
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar

from cobs import cobs

VERSION = 2  # 2: RESULT carries the measured link throughput and the edge's expected wait
MAX_PAYLOAD = 16_384
HEADER = struct.Struct("<BBHH")
CRC = struct.Struct("<I")
# The longest packet COBS may expand, plus the delimiter: frames beyond it are dropped early.


def frame_bytes(payload: int) -> int:
    """Wire bytes of a frame with a ``payload``-byte payload in the worst case (C: ``EEP_FRAME_BYTES``)."""
    packet = HEADER.size + payload + CRC.size
    return packet + packet // 254 + 2


MAX_FRAME = frame_bytes(MAX_PAYLOAD)


class Drop(IntEnum):
    """Why a frame was dropped; the same numbers as the C ``eep_status``."""

    COBS = -1
    SHORT = -2
    CRC = -3
    VERSION = -4
    LENGTH = -5
    TYPE = -6
    PAYLOAD = -7
    OVERFLOW = -8


class ProtocolError(ValueError):
    """A frame or payload that breaks the spec; the reader drops it and carries on.

    ``request_id`` is the frame's when its CRC held (a wrong version, length, type or payload),
    so that a receiver can answer it with an ERROR; None for garbage.
    """

    def __init__(self, message: str, code: Drop = Drop.PAYLOAD, request_id: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.request_id = request_id


class MsgType(IntEnum):
    HELLO = 0x01
    HELLO_ACK = 0x02
    INFER = 0x03
    OFFLOAD = 0x04
    RESULT = 0x05
    ERROR = 0x06
    PING = 0x07
    PONG = 0x08
    TELEMETRY = 0x09


class ErrorCode(IntEnum):
    VERSION = 2  # 2: RESULT carries the measured link throughput and the edge's expected wait
    UNKNOWN_TYPE = 2
    MALFORMED = 3
    MODEL_MISMATCH = 4
    BUSY = 5
    INTERNAL = 6
    HELLO_REQUIRED = 7


class Tier(IntEnum):
    DEVICE = 0
    EDGE = 1
    CLOUD = 2


def _short_str(text: str) -> bytes:
    raw = text.encode("ascii", "replace")[:255]
    return bytes([len(raw)]) + raw


class _Reader:
    """Bounds-checked cursor over a payload."""

    def __init__(self, payload: bytes, what: str) -> None:
        self.data, self.pos, self.what = payload, 0, what

    def take(self, fmt: str) -> tuple:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise ProtocolError(f"{self.what}: payload ends early")
        values = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return values

    def raw(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ProtocolError(f"{self.what}: payload ends early")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def short_str(self) -> str:
        (n,) = self.take("<B")
        raw = self.raw(n)
        if not raw.isascii():
            raise ProtocolError(f"{self.what}: text is not ASCII")
        return raw.decode("ascii")

    def done(self) -> None:
        if self.pos != len(self.data):
            raise ProtocolError(f"{self.what}: {len(self.data) - self.pos} stray bytes after the payload")


@dataclass(frozen=True)
class Hello:
    TYPE: ClassVar[MsgType] = MsgType.HELLO
    fw_version: int
    board: str
    model_hash: bytes  # 32 raw bytes

    def pack(self) -> bytes:
        if len(self.model_hash) != 32:
            raise ProtocolError("HELLO: model_hash must be 32 bytes")
        return struct.pack("<H", self.fw_version) + _short_str(self.board) + self.model_hash

    @classmethod
    def unpack(cls, payload: bytes) -> Hello:
        r = _Reader(payload, "HELLO")
        (fw,) = r.take("<H")
        msg = cls(fw, r.short_str(), r.raw(32))
        r.done()
        return msg


@dataclass(frozen=True)
class HelloAck:
    TYPE: ClassVar[MsgType] = MsgType.HELLO_ACK
    accepted: bool
    reason: str = ""

    def pack(self) -> bytes:
        return bytes([int(self.accepted)]) + _short_str(self.reason)

    @classmethod
    def unpack(cls, payload: bytes) -> HelloAck:
        r = _Reader(payload, "HELLO_ACK")
        (accepted,) = r.take("<B")
        if accepted > 1:
            raise ProtocolError(f"HELLO_ACK: accepted is {accepted}, not 0 or 1")
        msg = cls(bool(accepted), r.short_str())
        r.done()
        return msg


@dataclass(frozen=True)
class Infer:
    TYPE: ClassVar[MsgType] = MsgType.INFER
    shape: tuple[int, int, int]  # H, W, C
    pixels: bytes

    def pack(self) -> bytes:
        if len(self.pixels) != self.shape[0] * self.shape[1] * self.shape[2]:
            raise ProtocolError("INFER: pixel count does not match the shape")
        return struct.pack("<HHH", *self.shape) + self.pixels

    @classmethod
    def unpack(cls, payload: bytes) -> Infer:
        r = _Reader(payload, "INFER")
        shape = r.take("<HHH")
        msg = cls(shape, r.raw(shape[0] * shape[1] * shape[2]))
        r.done()
        return msg


@dataclass(frozen=True)
class Offload:
    TYPE: ClassVar[MsgType] = MsgType.OFFLOAD
    FIXED_BYTES: ClassVar[int] = struct.calcsize("<BBfbIII")  # exit, rank, scale, zero point, time, energy, deadline
    exit: int  # 1-based exit whose slice produced the tensor
    shape: tuple[int, ...]
    scale: float
    zero_point: int
    time_spent_us: int
    energy_spent_uj: int
    deadline_left_us: int
    tensor: bytes  # int8 values

    def pack(self) -> bytes:
        n = 1
        for d in self.shape:
            n *= d
        if len(self.tensor) != n or not 1 <= len(self.shape) <= 8:
            raise ProtocolError("OFFLOAD: tensor size does not match its shape (rank 1..8)")
        return (
            struct.pack("<BB", self.exit, len(self.shape))
            + struct.pack(f"<{len(self.shape)}H", *self.shape)
            + struct.pack(
                "<fbIII", self.scale, self.zero_point, self.time_spent_us, self.energy_spent_uj, self.deadline_left_us
            )
            + self.tensor
        )

    @classmethod
    def frame_bytes(cls, tensor_bytes: int, rank: int) -> int:
        """Worst-case wire bytes of an OFFLOAD carrying ``tensor_bytes`` int8 values of rank ``rank``."""
        return frame_bytes(cls.FIXED_BYTES + 2 * rank + tensor_bytes)

    @classmethod
    def unpack(cls, payload: bytes) -> Offload:
        r = _Reader(payload, "OFFLOAD")
        exit_, rank = r.take("<BB")
        if not 1 <= rank <= 8:
            raise ProtocolError(f"OFFLOAD: rank {rank} outside 1..8")
        shape = r.take(f"<{rank}H")
        scale, zp, t, e, dl = r.take("<fbIII")
        if not math.isfinite(scale):
            raise ProtocolError(f"OFFLOAD: scale {scale} is not finite")
        n = 1
        for d in shape:
            n *= d
        msg = cls(exit_, tuple(shape), scale, zp, t, e, dl, r.raw(n))
        r.done()
        return msg


@dataclass(frozen=True)
class Result:
    TYPE: ClassVar[MsgType] = MsgType.RESULT
    FORMAT: ClassVar[str] = "<HHBBBII"
    label: int
    confidence_q15: int
    exit: int
    tier: int
    fallback: bool = False
    link_bps: int = 0  # the OFFLOAD's throughput as its receiver timed it (0: not measured)
    edge_wait_us: int = 0  # the answering tier's expected wait for the next offload (0: free or unknown)

    def pack(self) -> bytes:
        return struct.pack(
            self.FORMAT,
            self.label,
            self.confidence_q15,
            self.exit,
            self.tier,
            int(self.fallback),
            self.link_bps,
            self.edge_wait_us,
        )

    @classmethod
    def unpack(cls, payload: bytes) -> Result:
        r = _Reader(payload, "RESULT")
        label, conf, exit_, tier, flags, link_bps, wait = r.take(cls.FORMAT)
        r.done()
        if tier > Tier.CLOUD:
            raise ProtocolError(f"RESULT: tier {tier} unknown")
        if flags > 1:
            raise ProtocolError(f"RESULT: reserved flag bits set (0x{flags:02x})")
        return cls(label, conf, exit_, tier, bool(flags), link_bps, wait)


RESULT_FRAME_BYTES = frame_bytes(struct.calcsize(Result.FORMAT))  # a RESULT on the wire


@dataclass(frozen=True)
class Error:
    TYPE: ClassVar[MsgType] = MsgType.ERROR
    code: int
    message: str = ""

    def pack(self) -> bytes:
        return struct.pack("<H", self.code) + _short_str(self.message)

    @classmethod
    def unpack(cls, payload: bytes) -> Error:
        r = _Reader(payload, "ERROR")
        (code,) = r.take("<H")
        msg = cls(code, r.short_str())
        r.done()
        return msg


def _timestamp(payload: bytes, what: str) -> int:
    r = _Reader(payload, what)
    (ts,) = r.take("<I")
    r.done()
    return ts


@dataclass(frozen=True)
class Ping:
    TYPE: ClassVar[MsgType] = MsgType.PING
    timestamp_us: int

    def pack(self) -> bytes:
        return struct.pack("<I", self.timestamp_us)

    @classmethod
    def unpack(cls, payload: bytes) -> Ping:
        return cls(_timestamp(payload, "PING"))


@dataclass(frozen=True)
class Pong:
    TYPE: ClassVar[MsgType] = MsgType.PONG
    timestamp_us: int  # the PING's, echoed

    def pack(self) -> bytes:
        return struct.pack("<I", self.timestamp_us)

    @classmethod
    def unpack(cls, payload: bytes) -> Pong:
        return cls(_timestamp(payload, "PONG"))


@dataclass(frozen=True)
class Telemetry:
    TYPE: ClassVar[MsgType] = MsgType.TELEMETRY
    slice_micros: tuple[tuple[int, int], ...]  # (slice index from 1, microseconds)

    def pack(self) -> bytes:
        return bytes([len(self.slice_micros)]) + b"".join(struct.pack("<BI", s, us) for s, us in self.slice_micros)

    @classmethod
    def unpack(cls, payload: bytes) -> Telemetry:
        r = _Reader(payload, "TELEMETRY")
        (count,) = r.take("<B")
        msg = cls(tuple(r.take("<BI") for _ in range(count)))
        r.done()
        return msg


Message = Hello | HelloAck | Infer | Offload | Result | Error | Ping | Pong | Telemetry
MESSAGES: dict[int, type] = {m.TYPE: m for m in (Hello, HelloAck, Infer, Offload, Result, Error, Ping, Pong, Telemetry)}


@dataclass(frozen=True)
class Frame:
    """A decoded frame: its request id and message."""

    request_id: int
    message: Message


def encode(message: Message, request_id: int) -> bytes:
    """The bytes on the wire for one message: COBS(header | payload | crc32) 0x00."""
    payload = message.pack()
    if len(payload) > MAX_PAYLOAD:
        raise ProtocolError(f"{message.TYPE.name}: payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    packet = HEADER.pack(VERSION, message.TYPE, request_id & 0xFFFF, len(payload)) + payload
    packet += CRC.pack(zlib.crc32(packet))
    return cobs.encode(packet) + b"\x00"


def decode(encoded: bytes) -> Frame:
    """One frame without its 0x00 delimiter -> :class:`Frame`; :class:`ProtocolError` otherwise."""
    try:
        packet = cobs.decode(encoded)
    except cobs.DecodeError as err:
        raise ProtocolError(f"COBS: {err}", Drop.COBS) from None
    if len(packet) < HEADER.size + CRC.size:
        raise ProtocolError(f"frame of {len(packet)} bytes is shorter than header + CRC", Drop.SHORT)
    (crc,) = CRC.unpack_from(packet, len(packet) - CRC.size)
    if zlib.crc32(packet[: -CRC.size]) != crc:
        raise ProtocolError("CRC mismatch", Drop.CRC)
    version, msg_type, request_id, length = HEADER.unpack_from(packet)
    if version != VERSION:
        raise ProtocolError(f"version {version}, expected {VERSION}", Drop.VERSION, request_id)
    if length != len(packet) - HEADER.size - CRC.size or length > MAX_PAYLOAD:
        raise ProtocolError(f"length field {length} disagrees with the frame", Drop.LENGTH, request_id)
    if msg_type not in MESSAGES:
        raise ProtocolError(f"unknown message type 0x{msg_type:02x}", Drop.TYPE, request_id)
    try:
        return Frame(request_id, MESSAGES[msg_type].unpack(packet[HEADER.size : -CRC.size]))
    except ProtocolError as err:
        raise ProtocolError(str(err), err.code, request_id) from None


class FrameReader:
    """Feed bytes as they arrive; get whole frames back. Bad frames are counted and dropped.

    ``max_frame`` bounds a frame's wire bytes (the C reader's buffer size); longer ones are
    dropped while they arrive.
    """

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._buf = bytearray()
        self._overflow = False
        self.max_frame = max_frame
        self.dropped = 0
        self.last_error: ProtocolError | None = None

    def feed(self, data: bytes) -> list[Frame]:
        """The frames ``data`` completes, in order."""
        return [f for f in self.feed_all(data) if isinstance(f, Frame)]

    def feed_all(self, data: bytes) -> list[Frame | ProtocolError]:
        """Every frame ``data`` completes, in order: decoded, or the error that dropped it."""
        out: list[Frame | ProtocolError] = []
        *complete, tail = bytes(data).split(b"\x00")
        for chunk in complete:
            out += self._finish(chunk)
        self._append(tail)
        return out

    def _append(self, chunk: bytes) -> None:
        if self._overflow:
            return
        if len(self._buf) + len(chunk) > self.max_frame:
            self._buf.clear()
            self._overflow = True
            return
        self._buf += chunk

    def _finish(self, chunk: bytes) -> list[Frame | ProtocolError]:
        self._append(chunk)
        buf, overflow = bytes(self._buf), self._overflow
        self._buf.clear()
        self._overflow = False
        if overflow:
            return [self._drop(ProtocolError(f"frame longer than {self.max_frame} bytes", Drop.OVERFLOW))]
        if not buf:
            return []  # a bare delimiter (resync)
        try:
            return [decode(buf)]
        except ProtocolError as err:
            return [self._drop(err)]

    def _drop(self, err: ProtocolError) -> ProtocolError:
        self.dropped += 1
        self.last_error = err
        return err
