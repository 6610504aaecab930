"""``python -m host``: one-line errors without tracebacks, port discovery, clean Ctrl-C."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import tty

import pytest
from serial.tools.list_ports_common import ListPortInfo

from host import ports
from host.__main__ import main
from tests.test_host_bundle import tiny_bundle


@pytest.fixture(scope="module")
def bundle_dir(request, tmp_path_factory):
    return str(tiny_bundle(request, tmp_path_factory))


def test_the_host_commands_start_without_the_training_stack():
    """torch takes seconds to import: the bridge, simulator, cloud and demo must not need it."""
    code = (
        "import sys, host.__main__, host.bridge, host.simulator, host.cloud; "
        "print(sorted(set(sys.modules) & {'torch', 'onnx', 'tensorflow'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _usb(device: str, vid: int, pid: int) -> ListPortInfo:
    info = ListPortInfo(device, skip_link_detection=True)
    info.vid, info.pid, info.description = vid, pid, "USB serial"
    return info


def test_auto_finds_nano33_boards_and_lists_the_ports_when_there_is_none(monkeypatch):
    board, other = _usb("/dev/ttyACM0", 0x2341, 0x805A), _usb("/dev/ttyUSB0", 0x0403, 0x6001)
    monkeypatch.setattr(ports.list_ports, "comports", lambda: [other, board])
    assert ports.resolve(["auto", "loop://"]) == ["/dev/ttyACM0", "loop://"]
    monkeypatch.setattr(ports.list_ports, "comports", lambda: [other])
    with pytest.raises(
        ports.PortError, match=r"no Arduino Nano 33 BLE found .*/dev/ttyUSB0 \(USB serial, USB 0403:6001\)"
    ):
        ports.resolve(["auto"])


def test_a_missing_port_is_named_with_the_ports_present(monkeypatch):
    monkeypatch.setattr(ports.list_ports, "comports", lambda: [_usb("/dev/ttyUSB0", 0x0403, 0x6001)])
    with pytest.raises(ports.PortError) as err:
        ports.resolve(["loop://", "/dev/nonexistent"])
    assert str(err.value) == (
        "--port /dev/nonexistent: no such serial port; serial ports present: /dev/ttyUSB0 (USB serial, USB "
        "0403:6001). Pass one of them, or --port auto to find an Arduino Nano 33 BLE (plug it in with a data cable, "
        "not a charge-only one)."
    )
    assert ports.resolve(["socket://127.0.0.1:9", "loop://"]) == ["socket://127.0.0.1:9", "loop://"]


def test_only_loopback_addresses_are_accepted():
    assert ports.loopback("127.0.0.1:7878") == ("127.0.0.1", 7878)
    assert ports.loopback("localhost:0") == ("127.0.0.1", 0)
    assert ports.loopback("[::1]:9") == ("::1", 9)
    for address in ("0.0.0.0:7878", "192.168.1.5:80", "example.com:80"):
        with pytest.raises(ports.PortError, match="only loopback"):
            ports.loopback(address)
    with pytest.raises(ports.PortError, match="expected HOST:PORT"):
        ports.loopback("127.0.0.1")


def _exit_code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exit:  # argparse's own errors
        return exit.code


@pytest.mark.parametrize(
    "argv, message",
    [
        (["bridge", "--bundle", "{tmp}", "--port", "loop://"], "is not a build bundle"),
        (
            ["bridge", "--bundle", "{bundle}", "--port", "/dev/no-such-tty"],
            "--port /dev/no-such-tty: no such serial port; serial ports present: ",
        ),
        (
            ["demo", "--bundle", "{bundle}", "--samples", "2", "--port", "/dev/no-such-tty", "--json", "{tmp}/d.json"],
            "--port /dev/no-such-tty: no such serial port; serial ports present: ",
        ),
        (["bridge", "--bundle", "{bundle}", "--port", "loop://", "--cloud", "10.1.2.3:7878"], "only loopback"),
        (["bridge", "--bundle", "{bundle}", "--port", "loop://", "--edge-slices", "1"], "--edge-slices needs --cloud"),
        (
            ["bridge", "--bundle", "{bundle}", "--port", "loop://", "--cloud", "127.0.0.1:9", "--edge-slices", "2"],
            "the edge can take 0..1 of them",
        ),
        (["bridge", "--bundle", "{bundle}"], "the following arguments are required: --port"),
        (["simulate", "--bundle", "{bundle}", "--port", "nope://x"], "invalid URL"),
        (["cloud", "--bundle", "{bundle}", "--listen", "0.0.0.0:0"], "only loopback"),
        (["cloud", "--bundle", "{bundle}", "--listen", "0.0.0.0:0", "--engine", "ray"], "needs a shared token"),
        (["cloud", "--bundle", "{bundle}", "--listen", "127.0.0.1:0", "--replicas", "2"], "need --engine ray"),
        (
            ["cloud", "--bundle", "{bundle}", "--listen", "127.0.0.1:0", "--engine", "ray", "--autoscale", "3..1"],
            "expected MIN..MAX",
        ),
        (
            ["cloud", "--bundle", "{bundle}", "--listen", "::1:0", "--engine", "ray", "--token-file", "{tmp}/x"],
            "token file",
        ),
        (
            ["bridge", "--bundle", "{bundle}", "--port", "loop://", "--cloud", "http://10.1.2.3:8000/offload"],
            "needs a shared token",
        ),
        (["bridge", "--bundle", "{bundle}", "--port", "loop://", "--cloud", "ray://10.1.2.3:10001"], "HTTP proxy"),
        (["demo", "--bundle", "{bundle}", "--samples", "0", "--json", "{tmp}/d.json"], "--samples 0"),
        (["demo", "--bundle", "{bundle}", "--samples", "2", "--faults", "fire", "--json", "{tmp}/d.json"], "fire"),
        (
            ["demo", "--bundle", "{bundle}", "--samples", "2", "--bandwidth-trace", "{tmp}/none.txt", "--json", "x"],
            "--bandwidth-trace: ",
        ),
        (
            ["demo", "--bundle", "{bundle}", "--samples", "2", "--faults", "drop", "--port", "/dev/x", "--json", "x"],
            "need the simulator",
        ),
    ],
)
def test_errors_are_one_line_without_traceback(bundle_dir, tmp_path, capsys, argv, message):
    assert _exit_code([a.format(bundle=bundle_dir, tmp=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err and "Traceback" not in err


def _times(path: str, factor: float):
    """An edit of the manifest that multiplies the number at ``path`` (keys and list indices) by ``factor``."""

    def edit(manifest: dict) -> None:
        *parents, last = path
        node = manifest
        for key in parents:
            node = node[key]
        node[last] = type(node[last])(node[last] * factor)

    return edit


@pytest.mark.parametrize(
    "edit, field",
    [
        (_times(("device_slices",), 2), "edited after the build: device_slices"),
        (_times(("slices", 0, "input", "scale"), 1.5), "edited after the build: slices[0].input.scale"),
        (lambda m: m.pop("integrity"), "no integrity record"),
    ],
)
def test_an_edited_manifest_is_refused_naming_the_field(bundle_dir, tmp_path, capsys, edit, field):
    copy = tmp_path / "bundle"
    shutil.copytree(bundle_dir, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    edit(manifest)
    (copy / "manifest.json").write_text(json.dumps(manifest, indent=2))
    assert _exit_code(["bridge", "--bundle", str(copy), "--port", "loop://"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    assert field in err and "rebuild it with `python -m converter build" in err, err


def test_ctrl_c_stops_every_long_running_command_cleanly(bundle_dir, tmp_path):
    """bridge, simulate and cloud, each on its own pty or port, stopped with SIGINT once serving."""
    fds = []
    for _ in range(2):
        master, slave = os.openpty()
        tty.setraw(slave)
        fds += [master, slave]
    commands = {
        "bridge": ["bridge", "--bundle", bundle_dir, "--port", os.ttyname(fds[1])],
        "simulate": ["simulate", "--bundle", bundle_dir, "--port", os.ttyname(fds[3])],
        "cloud": ["cloud", "--bundle", bundle_dir, "--listen", "127.0.0.1:0"],
    }
    started = {}
    for name, args in commands.items():
        with open(tmp_path / f"{name}.log", "wb") as log:
            started[name] = subprocess.Popen([sys.executable, "-m", "host", *args], stdout=log, stderr=log)
    try:
        end = time.monotonic() + 300  # a bound for a loaded machine; they start in seconds
        for name, proc in started.items():
            log = tmp_path / f"{name}.log"
            while not any(word in log.read_text() for word in ("serving", "simulating", "listening on")):
                assert proc.poll() is None and time.monotonic() < end, log.read_text()
                time.sleep(0.05)
            proc.send_signal(signal.SIGINT)
        for name, proc in started.items():
            assert proc.wait(timeout=15) == 0, name
            text = (tmp_path / f"{name}.log").read_text()
            assert "Traceback" not in text and "stopped" in text, text
    finally:
        for proc in started.values():
            if proc.poll() is None:
                proc.kill()
        for fd in fds:
            os.close(fd)
