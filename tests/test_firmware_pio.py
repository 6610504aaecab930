"""platformio.ini parses offline and names what the firmware build needs."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _pio() -> str | None:
    """pio beside this interpreter (a venv not on PATH), else on PATH."""
    beside = Path(sys.executable).parent / "pio"
    return str(beside) if beside.is_file() else shutil.which("pio")


@pytest.fixture(scope="module")
def config() -> dict[str, dict[str, object]]:
    pio = _pio()
    if pio is None:
        pytest.skip("needs PlatformIO's pio (pip install platformio)")
    result = subprocess.run(
        [pio, "project", "config", "--json-output", "-d", str(ROOT)], capture_output=True, text=True, check=True
    )
    return {section: dict(options) for section, options in json.loads(result.stdout)}


def test_board_native_and_demo_environments(config):
    assert {"env:nano33ble", "env:nano33ble_demo", "env:native"} <= set(config)
    board = config["env:nano33ble"]
    assert (board["platform"], board["board"], board["framework"]) == ("nordicnrf52", "nano33ble", ["arduino"])
    assert any(dep.startswith("spaziochirale/Chirale_TensorFLowLite") for dep in board["lib_deps"])
    assert config["env:native"]["platform"] == "native" and config["env:native"]["test_framework"] == "unity"


def test_paths_point_at_the_firmware_and_the_generated_bundle(config):
    pio = config["platformio"]
    for key in ("src_dir", "lib_dir", "test_dir"):
        assert Path(pio[key]).is_dir(), key
    assert (Path(pio["test_dir"]) / "test_core" / "test_main.c").is_file()
    bundle = config["bundle"]["dir"]
    assert f"-I{ROOT / bundle}" in config["env:nano33ble"]["build_flags"]
    wanted = {f"+<../../{bundle}/{name}>" for name in ("ee_model_data.cc", "ee_policy.c")}
    assert wanted <= set(config["env:nano33ble"]["build_src_filter"])
    assert wanted | {f"+<../../{bundle}/ee_demo_samples.c>"} <= set(config["env:nano33ble_demo"]["build_src_filter"])
    for env in ("env:nano33ble", "env:nano33ble_demo"):  # the native backend's seam needs a native bundle
        assert "-<native_runner.c>" in config[env]["build_src_filter"], env
    native = config["env:native"]
    for entry in native["build_src_filter"][1:]:
        assert (Path(pio["src_dir"]) / entry[2:-1]).is_file(), entry


def test_the_docs_say_what_the_first_pio_run_downloads(config):
    """Offline, the first `pio run` ends in a bare HTTPClientError: the docs name every download and that error."""
    text = (ROOT / "docs/firmware.md").read_text()
    section = text[text.index("### The first `pio run` needs the internet, once") :]
    section = section[: section.index("\n## ")]
    board = config["env:nano33ble"]
    wanted = [board["platform"], *board["lib_deps"], "toolchain-gccarmnoneeabi", "framework-arduino-mbed"]
    assert all(f"`{name}`" in section for name in wanted), wanted
    assert "`HTTPClientError:`" in section and "~/.platformio" in section
    ini = (ROOT / "platformio.ini").read_text()
    assert "internet needed once" in ini and "HTTPClientError" in ini
