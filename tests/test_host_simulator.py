"""The simulated device against a scripted edge on a pty: the same rules as firmware/lib/eecore (test_core.c)."""

import os
import threading
import time
import tty

import pytest

from contracts import boards
from contracts.protocol import (
    VERSION,
    Error,
    ErrorCode,
    HelloAck,
    Infer,
    MsgType,
    Ping,
    Result,
    Tier,
    encode,
)
from converter import verify
from earlyexit import data
from host import bundle as bundles
from host.link import open_serial
from host.simulator import Simulator
from host.tier import split_outputs
from policy.threshold import EXIT
from tests.protocol_vectors import _packet, _raw_frame
from tests.test_host_bridge import ScriptedDevice
from tests.test_host_bundle import tiny_bundle


@pytest.fixture(scope="module")
def bundle(request, tmp_path_factory):
    return bundles.load(tiny_bundle(request, tmp_path_factory))


@pytest.fixture(scope="module")
def images(bundle):
    """(an image the device answers itself, one it offloads), as INFER messages."""
    x = data.load("synthetic", "test").x[:64]
    device, policy = verify.tflm_runner(bundle.slices[0]), bundle.policy(1)
    kinds = {}
    for image, q in zip(x, verify.quantize_images(x, bundle.input_lut())):
        logits, _ = split_outputs(device(q[None]))
        kinds.setdefault(policy.decide(0, logits) == EXIT, Infer(bundle.input_shape, image.tobytes()))
    return kinds[True], kinds[False]


def _simulate(bundle, deadline_ms):
    master, slave = os.openpty()
    tty.setraw(slave)
    link = open_serial(os.ttyname(slave), 115200)
    stop = threading.Event()
    thread = threading.Thread(target=Simulator(bundle, link, deadline_ms).run, args=(stop,), daemon=True)
    thread.start()
    edge = ScriptedDevice(master)  # the test plays the edge
    hello = edge.expect(MsgType.HELLO).message
    assert hello.model_hash == bytes.fromhex(bundle.model_hash) and hello.board == bundle.board

    def close() -> None:
        stop.set()
        thread.join(timeout=5)
        link.close()
        os.close(master)
        os.close(slave)

    return edge, close


@pytest.fixture
def edge(bundle):
    edge, close = _simulate(bundle, deadline_ms=3000)
    yield edge
    close()


def _quiet(edge, kind, seconds=0.3):
    """No frame of ``kind`` arrives within ``seconds``."""
    with pytest.raises(AssertionError, match="no "):
        edge.expect(kind, timeout=seconds)


def _final(edge, rid):
    """The TELEMETRY and RESULT that end request ``rid``."""
    telemetry = edge.expect(MsgType.TELEMETRY)
    result = edge.expect(MsgType.RESULT)
    assert telemetry.request_id == result.request_id == rid
    assert [s for s, _ in telemetry.message.slice_micros] == [1]
    return result.message


def test_ping_gets_pong_and_hello_until_acknowledged(edge):
    edge.send(Ping(5), 3)
    pong = edge.expect(MsgType.PONG)
    assert (pong.request_id, pong.message.timestamp_us) == (3, 5)
    edge.expect(MsgType.HELLO)
    edge.send(HelloAck(True))
    edge.send(Ping(6), 4)
    assert edge.expect(MsgType.PONG).message.timestamp_us == 6
    _quiet(edge, MsgType.HELLO)


def test_offload_then_the_edge_answer_is_passed_on_with_its_fallback_flag(edge, images, bundle):
    _, unsure = images
    edge.send(HelloAck(True))
    edge.send(unsure, 11)
    offload = edge.expect(MsgType.OFFLOAD)
    trunk = bundle.slices[0].trunk
    assert offload.request_id == 11 and offload.message.exit == 1 and offload.message.shape == trunk.shape
    spent = sum(bundle.device_slice_us())  # the board's clock, not this PC's
    assert offload.message.time_spent_us == spent and offload.message.deadline_left_us == 3_000_000 - spent
    power_uw = round(1e3 * boards.load(bundle.board).active_power_mw)
    assert offload.message.energy_spent_uj == spent * power_uw // 1_000_000
    edge.send(unsure, 12)  # one request at a time
    busy = edge.expect(MsgType.ERROR)
    assert busy.request_id == 12 and busy.message.code == ErrorCode.BUSY
    edge.send(Result(3, 1234, 3, Tier.EDGE, True), 11)
    assert _final(edge, 11) == Result(3, 1234, 3, Tier.EDGE, True)
    edge.send(Result(3, 1234, 3, Tier.EDGE), 11)  # late: ignored
    _quiet(edge, MsgType.RESULT)


def test_hello_required_answers_the_waiting_request_then_hellos_and_stops_offloading(edge, images):
    confident, unsure = images
    edge.send(HelloAck(True))
    edge.send(unsure, 21)
    edge.expect(MsgType.OFFLOAD)
    edge.send(Error(ErrorCode.HELLO_REQUIRED, "send HELLO"), 0)  # a restarted bridge
    answer = _final(edge, 21)
    assert answer.fallback and answer.tier == Tier.DEVICE and answer.exit == 1
    edge.expect(MsgType.HELLO)
    edge.send(unsure, 22)  # not acknowledged again: no offload, the device's own answer
    assert not _final(edge, 22).fallback
    edge.send(confident, 23)
    assert _final(edge, 23).exit == 1


def test_an_edge_error_falls_back_at_once(edge, images):
    _, unsure = images
    edge.send(HelloAck(True))
    edge.send(unsure, 31)
    edge.expect(MsgType.OFFLOAD)
    edge.send(Error(ErrorCode.MALFORMED, "no"), 31)
    assert _final(edge, 31).fallback


def test_frames_with_an_intact_crc_get_the_firmwares_errors(edge, bundle):
    edge.write(_raw_frame(_packet(VERSION - 1, MsgType.PING, 41, b"\x00" * 4)))  # an older peer
    edge.write(_raw_frame(_packet(VERSION, 0x7E, 42, b"")))
    edge.write(_raw_frame(_packet(VERSION, MsgType.RESULT, 43, b"\x01\x02\x03")))
    h, w, c = bundle.input_shape
    edge.send(Infer((h, w - 1, c), bytes(h * (w - 1) * c)), 44)  # smaller: fits the receive buffer, malformed
    codes = [edge.expect(MsgType.ERROR) for _ in range(4)]
    assert [(e.request_id, e.message.code) for e in codes] == [
        (41, ErrorCode.VERSION),
        (42, ErrorCode.UNKNOWN_TYPE),
        (43, ErrorCode.MALFORMED),
        (44, ErrorCode.MALFORMED),
    ]
    edge.write(encode(Infer((h, 2 * w, c), bytes(h * 2 * w * c)), 45))  # beyond it: dropped, as on the board
    _quiet(edge, MsgType.ERROR)


def test_no_edge_answer_falls_back_by_the_deadline(bundle, images):
    edge, close = _simulate(bundle, deadline_ms=100)
    try:
        _, unsure = images
        edge.send(HelloAck(True))
        edge.send(unsure, 51)
        edge.expect(MsgType.OFFLOAD)
        sent = time.monotonic()
        answer = _final(edge, 51)
        waited = time.monotonic() - sent
        assert answer.fallback and answer.exit == 1
        assert waited < 0.095 + 0.05, f"fell back {1e3 * waited:.0f} ms after the offload (budget 95 ms)"
    finally:
        close()
