"""The firmware on QEMU's emulated Cortex-M4 (docs/qemu.md): image bounds, bit-exactness, end-to-end demo.

Needs qemu-system-arm and arm-none-eabi-gcc (skipped with what to install otherwise). One bundle
for the module: the default Fashion-MNIST model for ``qemu-m4`` with the native runtime and 2 of its
3 slices on the device, so that the firmware's OFFLOAD path runs too; and the default build itself,
run at the default deadline.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from converter import verify
from host import bundle as bundles
from host import qemu

pytestmark = pytest.mark.qemu

SAMPLES = 200  # the end-to-end demo's test samples
BENCH_SAMPLES = 4
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bundle_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    missing = qemu.missing_tools()
    if missing:
        pytest.skip(f"the QEMU target needs {', '.join(missing)}: {qemu.INSTALL_HINT}")
    out = tmp_path_factory.mktemp("qemu") / "qemu-m4"
    cmd = [sys.executable, "-m", "converter", "build", "--board", "qemu-m4", "--runtime", "native"]
    subprocess.run([*cmd, "--device-slices", "2", "--out", str(out)], cwd=ROOT, check=True, capture_output=True)
    return out


# The device's time counts on the profile's clock (the emulator's instructions) and the edge's round trip in
# real time: a deadline no loaded machine reaches keeps the offloads' decisions comparable.
DEADLINE_MS = "3000"


def _demo(root: Path, out: Path, *extra: str) -> dict:
    cmd = [sys.executable, "-m", "host", "demo", "--bundle", str(root), "--samples", str(SAMPLES), "--json", str(out)]
    cmd += ["--deadline-ms", DEADLINE_MS]
    proc = subprocess.run([*cmd, *extra], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


def test_image_fits_the_board_and_the_linker_enforces_it(bundle_root: Path) -> None:
    size = qemu.image_size(qemu.build_image(bundle_root))
    assert 0 < size["flash"] <= 983_040 and 0 < size["ram"] <= 262_144
    # A stack reservation that leaves no room in 256 KB of RAM must fail the link, not the board.
    cmd = ["make", "-s", "-C", str(qemu.FIRMWARE_DIR), "qemu", f"BUNDLE={bundle_root}"]
    proc = subprocess.run([*cmd, f"QEMU_OUT={bundle_root}/too-big", "STACK=262144"], capture_output=True, text=True)
    assert proc.returncode != 0 and "region `RAM' overflowed" in proc.stderr


def test_bench_is_bit_exact_with_tflm_deterministic_and_simd_is_faster(bundle_root: Path) -> None:
    images = qemu.bench_samples(bundle_root, BENCH_SAMPLES)
    b = bundles.load(bundle_root)
    slices, x_int8 = b.slices[: b.device_slices], verify.quantize_images(images, b.input_lut())
    reports, elves = {}, {}
    for simd in (True, False):
        elves[simd] = qemu.build_image(bundle_root, bench=True, simd=simd)
        code, text = qemu.run_to_exit(elves[simd], timeout_s=300)
        assert code == 0, text
        reports[simd] = qemu.parse_bench(text)
        assert reports[simd].simd is simd
        assert qemu.bench_mismatches(reports[simd], slices, x_int8) == []
    _, again = qemu.run_to_exit(elves[True], timeout_s=300)
    assert qemu.parse_bench(again).runs == reports[True].runs  # instruction counts are deterministic
    conv = {simd: qemu.instructions_by_kind(report, slices)["conv"] for simd, report in reports.items()}
    assert conv[False] >= 1.6 * conv[True]


def test_demo_on_qemu_answers_as_the_simulator(bundle_root: Path, tmp_path: Path) -> None:
    sil = _demo(bundle_root, tmp_path / "sil.json")
    emulated = _demo(bundle_root, tmp_path / "qemu.json", "--target", "qemu")
    assert sil["decisions_match"] and emulated["decisions_match"]  # each answer equals the offline chain's
    for key in ("samples", "answered", "accuracy", "offline_accuracy", "offload_rate"):
        assert emulated[key] == sil[key], key
    assert emulated["answered"] == SAMPLES and emulated["duplicates"] == 0
    assert 0 < emulated["offload_rate"] < 1  # both the device's exits and the edge answered
    per_slice = emulated["instructions_per_slice"]
    assert set(per_slice) == {"1", "2"} and emulated["instructions_per_inference"] >= per_slice["1"] > 0


def test_the_default_bundle_decides_as_offline_at_the_default_deadline(tmp_path: Path) -> None:
    """``converter build --board qemu-m4 --runtime native`` and ``host demo`` at their defaults: the profile's
    clock is the emulator's, so the simulator, the firmware under QEMU and the offline reference agree."""
    missing = qemu.missing_tools()
    if missing:
        pytest.skip(f"the QEMU target needs {', '.join(missing)}: {qemu.INSTALL_HINT}")
    root = tmp_path / "qemu-m4"
    build = [
        sys.executable,
        "-m",
        "converter",
        "build",
        "--board",
        "qemu-m4",
        "--runtime",
        "native",
        "--out",
        str(root),
    ]
    proc = subprocess.run(build, cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0 and "warning" not in proc.stderr, proc.stderr[-3000:]
    for target in ("sil", "qemu"):
        demo = [sys.executable, "-m", "host", "demo", "--bundle", str(root), "--samples", "50", "--target", target]
        proc = subprocess.run(
            [*demo, "--json", str(tmp_path / f"{target}.json")], cwd=ROOT, capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "50/50 answered" in proc.stdout and "decisions match: True, offload rate" in proc.stdout, proc.stdout
