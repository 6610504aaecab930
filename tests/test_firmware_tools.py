"""firmware/tools: the demo samples writer, and the TFLM glue check when TFLite Micro sources are at hand."""

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
FIRMWARE = ROOT / "firmware"
FIXTURE = FIRMWARE / "test" / "fixture"


def _demo_samples():
    spec = importlib.util.spec_from_file_location("demo_samples", FIRMWARE / "tools" / "demo_samples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pick_takes_one_image_per_class_before_any_second_one():
    labels = np.array([2, 2, 0, 1, 1, 0, 2])
    assert _demo_samples().pick(labels, 4) == [0, 2, 3, 5]
    assert _demo_samples().pick(labels, 99) == list(range(7))


HARNESS = r"""
#include <stdio.h>
#include "ee_demo_samples.h"
int main(void) {
  int s, i;
  for (s = 0; s < EE_DEMO_SAMPLES; ++s) {
    unsigned long sum = 0;
    for (i = 0; i < EE_INPUT_H * EE_INPUT_W * EE_INPUT_C; ++i) sum = sum * 31u + ee_demo_pixels[s][i];
    printf("%lu %u %s\n", sum % 1000003ul, (unsigned)ee_demo_labels[s], ee_demo_classes[ee_demo_labels[s]]);
  }
  return 0;
}
"""


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_rendered_samples_compile_warning_free_and_hold_the_images(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    labels = np.array([3, 0, 1])
    classes = ["zero", 'a "quoted" one', "two", "back\\slash"]
    manifest = {"model": {"name": "m", "hash": "ab" * 32, "dataset": "synthetic", "classes": classes}}
    header, source = _demo_samples().render(manifest, images, labels)
    (tmp_path / "ee_demo_samples.h").write_text(header)
    (tmp_path / "ee_demo_samples.c").write_text(source)
    (tmp_path / "main.c").write_text(HARNESS)
    shutil.copy(FIXTURE / "ee_model.h", tmp_path)  # 16 x 16 x 3 images, 4 classes
    flags = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", f"-I{tmp_path}"]
    files = [str(tmp_path / "main.c"), str(tmp_path / "ee_demo_samples.c")]
    subprocess.run(["gcc", *flags, *files, "-o", str(tmp_path / "run")], check=True, capture_output=True)
    out = subprocess.run([str(tmp_path / "run")], check=True, capture_output=True, text=True).stdout

    def digest(image):
        total = 0
        for v in image.ravel():
            total = (total * 31 + int(v)) % 2**64
        return total % 1000003

    assert out.splitlines() == [f"{digest(x)} {y} {classes[y]}" for x, y in zip(images, labels)]


def _tflm_dir() -> Path | None:
    """TFLite Micro Arduino library sources: $EEFW_TFLM, or what `pio run -e nano33ble` downloaded."""
    candidates = [os.environ.get("EEFW_TFLM"), ROOT / "build/pio/libdeps/nano33ble/Chirale_TensorFLowLite"]
    return next((Path(c) for c in candidates if c and (Path(c) / "src" / "tensorflow").is_dir()), None)


@pytest.mark.slow
@pytest.mark.skipif(_tflm_dir() is None, reason="needs TFLite Micro sources: set EEFW_TFLM or run pio run -e nano33ble")
@pytest.mark.skipif(sys.platform == "win32" or shutil.which("make") is None, reason="needs make, gcc and g++")
def test_tflm_glue_matches_the_python_interpreter():
    build = ROOT / "build" / "tflm-check"  # kept between runs: TFLite Micro takes minutes to compile
    result = subprocess.run(
        ["make", "-s", "-C", str(FIRMWARE), "tflm-check", f"BUILD={build}", f"TFLM={_tflm_dir()}"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.splitlines()[-1].endswith(" passed, 0 failed")
