"""The bridge against a scripted device on a pty (and a TCP socket for disconnects): handshake, offloads, damage."""

import logging
import os
import select
import socket
import time
import tty

import numpy as np
import pytest

from contracts.protocol import (
    MAX_FRAME,
    VERSION,
    ErrorCode,
    FrameReader,
    Hello,
    HelloAck,
    Infer,
    MsgType,
    Offload,
    Pong,
    Result,
    Telemetry,
    encode,
)
from converter import verify
from earlyexit import data
from host import bundle as bundles
from host import offline
from host.bridge import Bridge, Request
from host.edge import EdgeService
from host.tier import split_outputs
from tests.protocol_vectors import _packet, _raw_frame
from tests.test_host_bundle import tiny_bundle


@pytest.fixture(scope="module")
def bundle(request, tmp_path_factory):
    return bundles.load(tiny_bundle(request, tmp_path_factory))


class ScriptedDevice:
    """The device end of a link, driven by the test: raw bytes out, frames in."""

    def __init__(self, fd_or_sock) -> None:
        self.io = fd_or_sock
        self.reader = FrameReader()
        self.frames = []
        self.skipped = []  # frames expect() passed over

    def write(self, data: bytes) -> None:
        if isinstance(self.io, socket.socket):
            self.io.sendall(data)
        else:
            while data:
                data = data[os.write(self.io, data) :]

    def send(self, message, request_id: int = 0) -> None:
        self.write(encode(message, request_id))

    def expect(self, kind: MsgType, timeout: float = 10.0):
        """The next frame of ``kind`` from the bridge (others, such as its PINGs, are skipped)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            while self.frames:
                frame = self.frames.pop(0)
                if frame.message.TYPE == kind:
                    return frame
                self.skipped.append(frame)
            if select.select([self.io], [], [], 0.05)[0]:
                data = self.io.recv(4096) if isinstance(self.io, socket.socket) else os.read(self.io, 4096)
                self.frames += self.reader.feed(data)
        raise AssertionError(f"no {kind.name} from the bridge within {timeout} s")

    def handshake(self, model_hash: bytes) -> HelloAck:
        request = self.expect(MsgType.ERROR)  # the bridge asks for a HELLO
        assert request.message.code == ErrorCode.HELLO_REQUIRED
        self.send(Hello(1, "nano33", model_hash))
        return self.expect(MsgType.HELLO_ACK).message


@pytest.fixture
def pty_bridge(bundle):
    master, slave = os.openpty()
    tty.setraw(slave)
    records = []
    bridge = Bridge(bundle, [os.ttyname(slave)], lambda: EdgeService(bundle), records.append, answer_timeout=2.0)
    bridge.start()
    yield bridge, ScriptedDevice(master), records
    bridge.stop()
    os.close(master)
    os.close(slave)


def _sample(bundle, n=0):
    """(image, the device's OFFLOAD of it from exit 1) for the n-th synthetic test image the device offloads."""
    x = data.load("synthetic", "test").x[:64]
    policy, trunk, device = bundle.policy(1), bundle.slices[0].trunk, verify.tflm_runner(bundle.slices[0])
    found = []
    for image, q in zip(x, verify.quantize_images(x, bundle.input_lut())):
        logits, h = split_outputs(device(q[None]))
        if policy.decide(0, logits) == 2:
            found.append((image, Offload(1, h.shape, trunk.scale, trunk.zero_point, 500, 3, 10**6, h.tobytes())))
    return found[n]


def _wait(predicate, timeout=10.0):
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


def test_handshake_accepts_the_bundles_model(pty_bridge, bundle):
    _, device, _ = pty_bridge
    ack = device.handshake(bytes.fromhex(bundle.model_hash))
    assert ack == HelloAck(True, "")


def test_handshake_refuses_another_model_and_says_what_to_do(pty_bridge, bundle, caplog):
    _, device, _ = pty_bridge
    other = bytes(range(32))
    with caplog.at_level(logging.ERROR, logger="host.bridge"):
        ack = device.handshake(other)
        assert not ack.accepted and "model hash differs" in ack.reason
        _, offload = _sample(bundle)
        device.send(offload, 5)
        error = device.expect(MsgType.ERROR)
    assert error.request_id == 5 and error.message.code == ErrorCode.MODEL_MISMATCH
    (paragraph,) = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert other.hex() in paragraph and bundle.model_hash in paragraph
    assert "Rebuild the bundle" in paragraph and "reflash the board" in paragraph and "\n" not in paragraph


def test_a_device_of_the_former_protocol_version_is_refused_and_told(pty_bridge, caplog):
    _, device, _ = pty_bridge
    with caplog.at_level(logging.ERROR, logger="host.bridge"):
        for rid in (0, 1):  # a version 1 HELLO, twice: ERROR(version) each time, the reason logged once
            device.write(_raw_frame(_packet(VERSION - 1, MsgType.HELLO, rid, bytes(35))))
            error = device.expect(MsgType.ERROR)
            while error.message.code == ErrorCode.HELLO_REQUIRED:  # the bridge's own requests for a HELLO
                error = device.expect(MsgType.ERROR)
            assert (error.request_id, error.message.code) == (rid, ErrorCode.VERSION)
    (line,) = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]  # once per connection
    assert "another protocol version" in line and "converter build" in line


def test_nothing_is_served_before_the_devices_hello(pty_bridge, bundle):
    bridge, device, _ = pty_bridge
    for _ in range(2):  # asked again every PING_INTERVAL_S until the device answers
        assert device.expect(MsgType.ERROR, timeout=3).message.code == ErrorCode.HELLO_REQUIRED
    image, offload = _sample(bundle)
    bridge.submit(Request(3, bundle.input_shape, image.tobytes()))
    device.send(offload, 8)  # e.g. a request of the bridge before this one
    refusal = device.expect(MsgType.ERROR)
    assert refusal.request_id == 8 and refusal.message.code == ErrorCode.HELLO_REQUIRED
    device.send(Hello(1, "nano33", bytes.fromhex(bundle.model_hash)))
    assert device.expect(MsgType.HELLO_ACK).message.accepted
    assert MsgType.INFER not in {f.message.TYPE for f in device.skipped}
    assert device.expect(MsgType.INFER).request_id == 3  # only now
    assert device.expect(MsgType.PING, timeout=3).request_id == 0  # and PINGs instead of requests for HELLO


def test_damaged_input_is_dropped_and_the_next_offload_is_served(pty_bridge, bundle):
    bridge, device, _ = pty_bridge
    device.handshake(bytes.fromhex(bundle.model_hash))
    image, offload = _sample(bundle, 1)
    good = encode(offload, 9)
    bad_crc = bytearray(good)
    bad_crc[len(good) // 2] ^= 0x40
    device.write(bytes(np.random.default_rng(0).integers(1, 256, 700, dtype=np.uint8)) + b"\x00")  # garbage
    device.write(bytes(bad_crc))  # bad CRC
    device.write(b"\x07" * (MAX_FRAME + 100) + b"\x00")  # oversize
    device.write(good[: len(good) // 2] + b"\x00")  # truncated
    device.write(encode(Pong(1), 3)[:5])  # cut off mid-frame ...
    device.write(b"\x00" + good)  # ... so the sender flushes first, as the spec allows
    answer = device.expect(MsgType.RESULT)
    (worker,) = bridge.workers.values()
    assert worker.link.reader.dropped == 5
    expected = offline.evaluate(bundle, image[None])[0]
    assert answer.request_id == 9
    assert answer.message == Result(expected.label, expected.confidence_q15, expected.exit, expected.tier)


def test_requests_go_out_one_at_a_time_and_every_answer_is_reported(pty_bridge, bundle):
    bridge, device, records = pty_bridge
    device.handshake(bytes.fromhex(bundle.model_hash))
    image, offload = _sample(bundle)
    for rid in (21, 22):
        bridge.submit(Request(rid, bundle.input_shape, image.tobytes()))
    infer = device.expect(MsgType.INFER)
    assert infer.request_id == 21 and infer.message == Infer(bundle.input_shape, image.tobytes())
    device.send(offload, 21)
    edge_answer = device.expect(MsgType.RESULT).message
    device.send(Telemetry(((1, 700),)), 21)
    device.send(edge_answer, 21)
    assert device.expect(MsgType.INFER).request_id == 22
    device.send(Result(2, 20000, 1, 0), 22)
    device.send(Result(2, 20000, 1, 0), 22)  # a duplicate final answer is reported as one
    _wait(lambda: len(records) == 3 and bridge.idle)
    first, second, again = records
    assert first["request_id"] == 21 and first["tier"] == "edge" and first["class"] == edge_answer.label
    assert first["slices_us"] == {"1": 700} and first["timings_ms"]["device"] == 0.7
    assert first["timings_ms"]["total"] >= first["timings_ms"]["edge"] > 0 and first["bytes"] > len(image.tobytes())
    assert (second["request_id"], second["tier"], second["duplicate"]) == (22, "device", False)
    assert (again["request_id"], again["duplicate"]) == (22, True)


def test_an_unanswered_infer_is_sent_again_then_given_up(bundle):
    master, slave = os.openpty()
    tty.setraw(slave)
    records = []
    bridge = Bridge(bundle, [os.ttyname(slave)], lambda: EdgeService(bundle), records.append, answer_timeout=0.2)
    bridge.start()
    try:
        device = ScriptedDevice(master)
        device.handshake(bytes.fromhex(bundle.model_hash))
        bridge.submit(Request(4, (1, 1, 3), b"\x00\x01\x02"))
        for _ in range(3):
            assert device.expect(MsgType.INFER, timeout=2).request_id == 4
        _wait(lambda: bridge.idle)
        assert records == [{"request_id": 4, "port": os.ttyname(slave), "error": "unanswered", "tries": 3}]
    finally:
        bridge.stop()
        os.close(master)
        os.close(slave)


def test_bridge_reconnects_and_resends_the_request_in_flight(bundle):
    server = socket.create_server(("127.0.0.1", 0))
    url = f"socket://127.0.0.1:{server.getsockname()[1]}"
    records = []
    bridge = Bridge(bundle, [url], lambda: EdgeService(bundle), records.append, answer_timeout=5.0)
    bridge.start()
    try:
        conn, _ = server.accept()
        device = ScriptedDevice(conn)
        device.handshake(bytes.fromhex(bundle.model_hash))
        bridge.submit(Request(7, (1, 1, 3), b"\x01\x02\x03"))
        assert device.expect(MsgType.INFER).request_id == 7
        conn.close()  # unplugged mid-request
        server.settimeout(10)
        conn, _ = server.accept()  # the bridge reopens the port after its backoff
        device = ScriptedDevice(conn)
        device.handshake(bytes.fromhex(bundle.model_hash))  # the new connection asks for a HELLO again
        assert device.expect(MsgType.INFER).request_id == 7
        device.send(Result(1, 30000, 1, 0), 7)
        _wait(lambda: bridge.idle)
        assert records[0]["request_id"] == 7 and records[0]["tries"] == 2 and not records[0]["duplicate"]
        conn.close()
    finally:
        bridge.stop()
        server.close()
