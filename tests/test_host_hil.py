"""Hardware in the loop: the SIL end-to-end run against a flashed board.

``pytest -m hil --port /dev/ttyACM0`` (or ``--port auto``); the board must run the firmware
of the bundle in ``$HIL_BUNDLE`` (default ``build/nano33``).
"""

import os
from pathlib import Path

import pytest
import serial

from contracts.protocol import MAX_FRAME, Ping, encode
from host import bundle as bundles
from host import demo
from host.ports import resolve

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = 100


@pytest.fixture(scope="module")
def board(request):
    port = resolve([request.config.getoption("--port")])[0]
    return port, bundles.load(os.environ.get("HIL_BUNDLE", ROOT / "build" / "nano33"))


def _exactly_like_offline(summary, samples):
    assert summary["answered"] == samples and summary["duplicates"] == 0
    assert summary["decisions_match"] is True and summary["accuracy"] == summary["offline_accuracy"]


@pytest.mark.hil
def test_board_answers_every_sample_exactly_like_offline(board):
    port, bundle = board
    summary = demo.run(bundle, demo.DemoOptions(samples=SAMPLES, port=port))
    _exactly_like_offline(summary, SAMPLES)


@pytest.mark.hil
def test_board_shrugs_off_garbage_then_answers(board):
    port, bundle = board
    with serial.serial_for_url(port, baudrate=115200, timeout=0.5) as link:
        link.write(bytes(range(1, 256)) * 4 + b"\x00")  # garbage
        bad = bytearray(encode(Ping(1), 1))
        bad[3] ^= 0x10
        link.write(bytes(bad))  # bad CRC
        link.write(b"\x05" * (MAX_FRAME + 10) + b"\x00")  # oversize
        link.write(encode(Ping(2), 2)[:4] + b"\x00")  # truncated
        link.flush()
    summary = demo.run(bundle, demo.DemoOptions(samples=10, port=port))
    _exactly_like_offline(summary, 10)
