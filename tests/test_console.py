"""The console carries our own lines: step lines on stdout, progress bars on stderr by choice, no library noise."""

import os
import re
import subprocess
import sys

import pytest

from converter import quiet

NOISE = ("cuda", "cudnn", "mlir", "absl", "onednn", "warning: all log messages", "fully_quantize", "tensorflow")
BAR = re.compile(r"^(\x1b\[A)*[^|]*\d+%\|.*\|.*\]\s*(\x1b\[A)*$|^\s*$")


def _build(tmp_path, *extra: str) -> subprocess.CompletedProcess:
    argv = ["build", "--board", "nano33", "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")]
    return subprocess.run(
        [sys.executable, "-m", "converter", *argv, *extra], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )


def test_default_build_prints_our_lines_and_progress_only(tmp_path):
    first = _build(tmp_path, "--progress")  # an empty cache: TensorFlow converts every slice
    assert first.returncode == 0, first.stderr[-2000:]
    assert all(re.match(r"\[\d/6\] ", line) for line in first.stdout.splitlines()), first.stdout
    segments = re.split(r"[\r\n]", first.stderr)
    assert [s for s in segments if not BAR.match(s)] == []
    for step in ("convert slice 1/3", "convert slice 3/3", "verify slice 1/3 in TFLM", "verify slice 3/3 in LiteRT"):
        assert step in first.stderr
    console = (first.stdout + first.stderr).lower()
    assert [word for word in NOISE if word in console] == []
    again = _build(tmp_path)  # stderr is not a terminal: no bars unless --progress
    assert again.returncode == 0 and again.stderr == ""


@pytest.mark.parametrize("verbose", [False, True])
def test_silenced_drops_c_level_output_unless_verbose(verbose, capfd):
    quiet.set_verbose(verbose)
    try:
        with quiet.silenced():
            os.write(1, b"from C on stdout\n")
            os.write(2, b"from C on stderr\n")
            print("from Python", file=sys.stderr)
    finally:
        quiet.set_verbose(False)
    out, err = capfd.readouterr()
    assert ("from C on stdout" in out) == verbose and ("from C on stderr" in err) == verbose
    assert ("from Python" in err) == verbose
