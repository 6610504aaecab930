"""The protocol in Python and C against the same golden vectors, plus property-based fuzzing."""

import math
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts import protocol as p
from earlyexit.model import EarlyExitNet
from earlyexit.profile import exit_costs
from earlyexit.zoo import build_arch
from tests import protocol_vectors

ROOT = Path(__file__).resolve().parents[1]
FUZZ = settings(max_examples=5000, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_golden_vectors_are_up_to_date():
    assert protocol_vectors.VECTORS.read_text().splitlines() == protocol_vectors.lines()


def test_python_agrees_with_every_golden_vector():
    for line in protocol_vectors.VECTORS.read_text().splitlines():
        hex_frame, expected = line.split("\t")
        wire = bytes.fromhex(hex_frame)
        reader = p.FrameReader()
        frames = reader.feed(wire)
        if expected.startswith("drop"):
            assert frames == [] and reader.dropped == 1
            assert f"drop {int(reader.last_error.code)}" == expected
        else:
            assert len(frames) == 1 and protocol_vectors.canonical(frames[0]) == expected
            assert p.encode(frames[0].message, frames[0].request_id) == wire


@pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("make") is None, reason="needs gcc and make")
def test_c_implementation_agrees_with_every_golden_vector(tmp_path):
    result = subprocess.run(
        ["make", "-s", "-C", str(ROOT / "firmware"), "test", f"BUILD={tmp_path}"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(protocol_vectors.lines())} passed, 0 failed" in result.stdout


def test_offload_overhead_is_below_2_percent_for_the_default_models_largest_tensor():
    net = EarlyExitNet(build_arch("mcu-fmnist"))
    shapes = [c.stage.output_shape for c in exit_costs(net)[:-1]]
    c, h, w = max(shapes, key=math.prod)
    tensor = bytes(1 + i % 255 for i in range(c * h * w))  # no zero byte: COBS's worst case
    wire = p.encode(p.Offload(1, (1, h, w, c), 0.02, -128, 10**6, 10**4, 10**6, tensor), 1)
    assert (len(wire) - len(tensor)) / len(tensor) <= 0.02


messages = st.one_of(
    st.builds(p.Hello, st.integers(0, 65535), st.text("abc019-_", max_size=40), st.binary(min_size=32, max_size=32)),
    st.builds(p.HelloAck, st.booleans(), st.text("abc xyz", max_size=60)),
    st.integers(1, 8).flatmap(
        lambda c: st.builds(p.Infer, st.just((2, 3, c)), st.binary(min_size=6 * c, max_size=6 * c))
    ),
    st.lists(st.integers(1, 6), min_size=1, max_size=4).flatmap(
        lambda dims: st.builds(
            p.Offload,
            st.integers(0, 255),
            st.just(tuple(dims)),
            st.floats(width=32, allow_nan=False, allow_infinity=False),
            st.integers(-128, 127),
            st.integers(0, 2**32 - 1),
            st.integers(0, 2**32 - 1),
            st.integers(0, 2**32 - 1),
            st.binary(min_size=math.prod(dims), max_size=math.prod(dims)),
        )
    ),
    st.builds(
        p.Result,
        st.integers(0, 65535),
        st.integers(0, 65535),
        st.integers(0, 255),
        st.integers(0, 2),
        st.booleans(),
        st.integers(0, 2**32 - 1),
        st.integers(0, 2**32 - 1),
    ),
    st.builds(p.Error, st.integers(0, 65535), st.text("abc ", max_size=40)),
    st.builds(p.Ping, st.integers(0, 2**32 - 1)),
    st.builds(p.Pong, st.integers(0, 2**32 - 1)),
    st.builds(p.Telemetry, st.lists(st.tuples(st.integers(0, 255), st.integers(0, 2**32 - 1)), max_size=8).map(tuple)),
)


@FUZZ
@given(messages, st.integers(0, 65535), st.lists(st.integers(1, 40), max_size=6))
def test_any_message_round_trips_whatever_the_chunking(message, request_id, cuts):
    wire = p.encode(message, request_id)
    assert b"\x00" not in wire[:-1]
    reader, frames, start = p.FrameReader(), [], 0
    for cut in cuts + [len(wire)]:
        frames += reader.feed(wire[start : start + cut])
        start += cut
    frames += reader.feed(wire[start:])
    assert frames == [p.Frame(request_id, message)] and reader.dropped == 0


@FUZZ
@given(
    messages,
    st.lists(
        st.tuples(st.sampled_from(["flip", "insert", "delete"]), st.integers(0, 10**6), st.integers(1, 255)),
        min_size=1,
        max_size=4,
    ),
    st.binary(max_size=30),
)
def test_corrupted_frames_are_dropped_and_the_next_frame_still_arrives(message, edits, garbage):
    wire = bytearray(p.encode(message, 7))
    for kind, pos, value in edits:
        i = pos % len(wire)
        if kind == "flip":
            wire[i] ^= value
        elif kind == "insert":
            wire.insert(i, value)
        elif len(wire) > 1:
            del wire[i]
    follow = p.encode(p.Ping(99), 8)
    reader = p.FrameReader()
    frames = reader.feed(bytes(garbage) + bytes(wire) + b"\x00" + follow)
    assert frames[-1] == p.Frame(8, p.Ping(99))
    corrupted = bytes(wire) != p.encode(message, 7)
    for frame in frames[:-1]:  # nothing from the damaged bytes is accepted as a different frame
        assert not corrupted or frame == p.Frame(7, message) or frame.message == p.Ping(99)


def test_oversize_and_empty_frames():
    reader = p.FrameReader()
    assert reader.feed(b"\x01" * (p.MAX_FRAME + 10) + b"\x00") == []
    assert reader.dropped == 1 and reader.last_error.code == p.Drop.OVERFLOW
    assert reader.feed(b"\x00\x00" + p.encode(p.Ping(1), 2)) == [p.Frame(2, p.Ping(1))]
    with pytest.raises(p.ProtocolError, match="exceeds"):
        p.encode(p.Infer((128, 128, 2), bytes(128 * 128 * 2)), 1)
