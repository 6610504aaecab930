"""Golden vectors for the protocol: the canonical text form of a frame, and the vector set.

``python -m tests.protocol_vectors`` rewrites tests/data/protocol/vectors.txt: one line per
frame, ``<wire bytes as hex>\\t<canonical form>`` (``drop <code>`` for frames a receiver
must drop). The C harness firmware/test/eeproto_vectors.c checks the same file.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from cobs import cobs

from contracts import protocol as p

VECTORS = Path(__file__).parent / "data" / "protocol" / "vectors.txt"
V = p.VERSION


def canonical(frame: p.Frame) -> str:
    """A one-line text form that the C harness prints identically."""
    m = frame.message
    head = f"type={int(m.TYPE)} id={frame.request_id}"
    if isinstance(m, p.Hello):
        body = f"fw={m.fw_version} board={m.board} hash={m.model_hash.hex()}"
    elif isinstance(m, p.HelloAck):
        body = f"accepted={int(m.accepted)} reason={m.reason}"
    elif isinstance(m, p.Infer):
        body = f"shape={m.shape[0]}x{m.shape[1]}x{m.shape[2]} crc={zlib.crc32(m.pixels):08x}"
    elif isinstance(m, p.Offload):
        (bits,) = struct.unpack("<I", struct.pack("<f", m.scale))
        dims = "x".join(str(d) for d in m.shape)
        body = (
            f"exit={m.exit} shape={dims} scale={bits:08x} zp={m.zero_point} time={m.time_spent_us} "
            f"energy={m.energy_spent_uj} deadline={m.deadline_left_us} crc={zlib.crc32(m.tensor):08x}"
        )
    elif isinstance(m, p.Result):
        body = (
            f"class={m.label} conf={m.confidence_q15} exit={m.exit} tier={m.tier} fallback={int(m.fallback)} "
            f"bps={m.link_bps} wait={m.edge_wait_us}"
        )
    elif isinstance(m, p.Error):
        body = f"code={m.code} message={m.message}"
    elif isinstance(m, (p.Ping, p.Pong)):
        body = f"ts={m.timestamp_us}"
    else:
        body = "slices=" + ",".join(f"{s}:{us}" for s, us in m.slice_micros)
    return f"{head} {body}"


def _valid() -> list[tuple[p.Message, int]]:
    tensor = bytes((i * 37 + 11) % 256 for i in range(1 * 14 * 14 * 16))
    return [
        (p.Hello(3, "nano33", bytes(range(32))), 0),
        (p.HelloAck(True), 1),
        (p.HelloAck(False, "model hash mismatch"), 2),
        (p.Infer((28, 28, 1), bytes(i % 256 for i in range(784))), 65535),
        (p.Infer((1, 1, 3), b"\x00\x00\x00"), 4),
        (p.Offload(1, (1, 14, 14, 16), 0.0123, -128, 1500, 42, 20000, tensor), 513),
        (p.Offload(2, (1, 248), 1.0, 0, 0, 0, 0, b"\x01" * 248), 6),  # packet of exactly 254 + 31 bytes
        (p.Offload(3, (2,), -0.5, 127, 2**32 - 1, 2**32 - 1, 2**32 - 1, b"\x00\x00"), 7),
        (p.Result(9, 32767, 1, p.Tier.DEVICE, False), 8),
        (p.Result(3, 1, 4, p.Tier.CLOUD, True), 9),
        (p.Result(5, 20000, 3, p.Tier.EDGE, False, 412_345, 7_000), 15),
        (p.Result(0, 0, 2, p.Tier.EDGE, True, 2**32 - 1, 2**32 - 1), 16),
        (p.Error(p.ErrorCode.MODEL_MISMATCH, "edge runs another model"), 10),
        (p.Error(p.ErrorCode.HELLO_REQUIRED, "send HELLO"), 0),
        (p.Ping(123456), 11),
        (p.Pong(2**32 - 1), 12),
        (p.Telemetry(((1, 51234), (2, 80000))), 13),
        (p.Telemetry(()), 14),
    ]


def _raw_frame(packet: bytes) -> bytes:
    return cobs.encode(packet) + b"\x00"


def _packet(version: int, msg_type: int, request_id: int, payload: bytes, length: int | None = None) -> bytes:
    head = struct.pack("<BBHH", version, msg_type, request_id, len(payload) if length is None else length)
    return head + payload + struct.pack("<I", zlib.crc32(head + payload))


def _offload_head(scale_bits: int) -> bytes:
    """An OFFLOAD payload of one int8 value up to its tensor, with the scale given as raw float bits."""
    return struct.pack("<BBHIbIII", 1, 1, 1, scale_bits, 0, 0, 0, 0)


def _invalid() -> list[tuple[bytes, p.Drop]]:
    good = p.encode(p.Result(1, 2, 3, 1), 5)
    flipped = bytearray(good)
    flipped[3] ^= 0x40
    return [
        (bytes(flipped), p.Drop.CRC),
        (_raw_frame(_packet(1, p.MsgType.PING, 1, b"\x00\x00\x00\x00")), p.Drop.VERSION),  # a version 1 peer
        (_raw_frame(_packet(3, p.MsgType.PING, 1, b"\x00\x00\x00\x00")), p.Drop.VERSION),
        (_raw_frame(_packet(V, p.MsgType.PING, 1, b"\x00\x00\x00\x00", length=9)), p.Drop.LENGTH),
        (_raw_frame(_packet(V, 0x7E, 1, b"")), p.Drop.TYPE),
        (_raw_frame(_packet(V, p.MsgType.RESULT, 1, struct.pack("<HHBBBII", 1, 2, 3, 7, 0, 0, 0))), p.Drop.PAYLOAD),
        (_raw_frame(_packet(V, p.MsgType.PING, 1, b"\x01\x02\x03\x04\x05")), p.Drop.PAYLOAD),
        (_raw_frame(_packet(V, p.MsgType.OFFLOAD, 1, b"\x01\x00" + bytes(20))), p.Drop.PAYLOAD),
        (_raw_frame(_packet(V, p.MsgType.RESULT, 1, struct.pack("<HHBBBII", 1, 2, 3, 1, 2, 0, 0))), p.Drop.PAYLOAD),
        (_raw_frame(_packet(V, p.MsgType.HELLO_ACK, 1, b"\x02\x00")), p.Drop.PAYLOAD),
        (_raw_frame(_packet(V, p.MsgType.ERROR, 1, b"\x01\x00\x02o\xc3")), p.Drop.PAYLOAD),
        (_raw_frame(_packet(V, p.MsgType.OFFLOAD, 1, _offload_head(0x7FC00000) + b"\x05")), p.Drop.PAYLOAD),
        (_raw_frame(_packet(V, p.MsgType.OFFLOAD, 1, _offload_head(0xFF800000) + b"\x05")), p.Drop.PAYLOAD),
        (_raw_frame(_packet(V, p.MsgType.RESULT, 1, struct.pack("<HHBBB", 1, 2, 3, 1, 0))), p.Drop.PAYLOAD),  # v1
        (_raw_frame(b"\x01\x02\x03"), p.Drop.SHORT),
        (b"\x05\x01\x02\x00", p.Drop.COBS),
        (good[:-3] + b"\x00", p.Drop.COBS),
    ]


def lines() -> list[str]:
    out = [f"{p.encode(m, rid).hex()}\t{canonical(p.Frame(rid, m))}" for m, rid in _valid()]
    out += [f"{frame.hex()}\tdrop {int(code)}" for frame, code in _invalid()]
    return out


if __name__ == "__main__":
    VECTORS.parent.mkdir(parents=True, exist_ok=True)
    VECTORS.write_text("\n".join(lines()) + "\n")
    print(f"wrote {len(lines())} vectors to {VECTORS}")
