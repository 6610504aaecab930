import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from contracts import boards
from contracts.placement import (
    DEFAULT_DEADLINE_US,
    FALLBACK_MARGIN_US,
    PlacementError,
    SliceNeeds,
    core_ram_bytes,
    empty_device,
    fit,
    over_deadline,
    place,
    shared_arena_bytes,
)
from host.simulator import DEFAULT_DEADLINE_MS, MARGIN_US
from policy.threshold import EXIT, OFFLOAD, STAY, ThresholdPolicy

ROOT = Path(__file__).resolve().parents[1]


def test_every_profile_loads_with_sources_cited():
    names = boards.available()
    assert {"nano33", "qemu-m4", "pico", "edge-pc", "cloud"} <= set(names)
    for name in names:
        board = boards.load(name)
        assert board.name == name
        if board.tier == "device":
            assert 0 < board.model_flash_bytes < board.flash_bytes and 0 < board.model_ram_bytes < board.ram_bytes
            assert board.links and boards.load(board.links[0].to).tier == "edge"
    text = (boards.BOARDS_DIR / "nano33.toml").read_text()
    assert "Product Specification" in text


def test_unknown_board_lists_the_available_ones():
    with pytest.raises(boards.BoardError, match="available: .*nano33"):
        boards.load("uno")


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t: t.replace("clock_hz = 64_000_000", 'clock_hz = "fast"'), "clock_hz must be int"),
        (lambda t: t.replace("cycles_per_mac = 2.5", ""), "compute.cycles_per_mac is missing"),
        (lambda t: t.replace('tier = "device"', 'tier = "fog"'), "tier must be one of"),
        (
            lambda t: t.replace("bandwidth_bps = 1_000_000", "bandwidth_bps = -1"),
            r"link\[0\].bandwidth_bps must be >= 0",
        ),
        (lambda t: t + "\n[[[", "not a readable TOML"),
    ],
)
def test_malformed_profiles_name_file_and_field(tmp_path, edit, message):
    path = tmp_path / "nano33.toml"
    path.write_text(edit((boards.BOARDS_DIR / "nano33.toml").read_text()))
    with pytest.raises(boards.BoardError, match=message) as err:
        boards.load_file(path)
    assert str(path) in str(err.value)


NEEDS = [
    SliceNeeds(100_000, 40_000, 3072, 8192, 10),
    SliceNeeds(300_000, 30_000, 8192, 4096, 10),
    SliceNeeds(500_000, 20_000, 4096, 2048, 10),
    SliceNeeds(900_000, 10_000, 2048, 0, 10),
]


def test_fit_adds_flash_and_takes_the_largest_arena():
    f = fit(NEEDS, boards.load("nano33"), 2)
    assert f.flash_needed == 400_000
    assert f.ram_needed == 40_000 + core_ram_bytes(3072, 8192, 10, 2)


def test_kept_interpreters_stack_their_persistent_tails():
    """tflm_runner.cpp keeps every slice's interpreter: their tails add up, their heads share the largest."""
    needs = [SliceNeeds(1, 40_000, 1, 1, 10, 3_000), SliceNeeds(1, 30_000, 1, 0, 10, 2_000)]
    assert shared_arena_bytes(needs) == 37_000 + 3_000 + 2_000
    assert shared_arena_bytes(NEEDS[:2]) == 40_000  # no tail known: the largest arena
    assert fit(needs, boards.load("nano33"), 2).ram_needed == 42_000 + core_ram_bytes(1, 1, 10, 2)


def test_core_ram_matches_the_compiled_device_core(tmp_path):
    """The placement's RAM figure for the core is sizeof(eec_ctx), compiled against the firmware fixture."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc not found: install a C compiler to compare with the compiled eec_ctx")
    fw = ROOT / "firmware"
    src = tmp_path / "size.c"
    main = 'int main(void) { printf("%zu", sizeof(eec_ctx)); return 0; }'
    src.write_text(f'#include <stdio.h>\n#include "eecore.h"\n{main}\n')
    exe = tmp_path / "size"
    incs = [f"-I{fw / d}" for d in ("lib/eecore", "lib/eeproto", "test/fixture")]
    subprocess.run([gcc, "-std=c99", *incs, str(src), "-o", str(exe)], check=True)
    compiled = int(subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout)
    header = (fw / "test/fixture/ee_model.h").read_text()
    value = {m[0]: int(m[1]) for m in re.findall(r"#define (EE_\w+) (\d+)", header)}
    inputs = value["EE_INPUT_H"] * value["EE_INPUT_W"] * value["EE_INPUT_C"]
    estimate = core_ram_bytes(inputs, value["EE_MAX_TRUNK_BYTES"], value["EE_NUM_CLASSES"], value["EE_DEVICE_SLICES"])
    assert compiled <= estimate <= compiled + 64


def test_place_takes_the_longest_prefix_that_fits():
    board = boards.load("nano33")  # 778,240 B of flash left for slices
    assert place(NEEDS, board).device_slices == 2
    assert place(NEEDS, boards.load("pico")).device_slices == 4  # 1.9 MB of flash holds all
    assert place(NEEDS, board, forced=1).device_slices == 1


def test_forced_placement_that_does_not_fit_says_by_how_much_and_where():
    with pytest.raises(PlacementError) as err:
        place(NEEDS, boards.load("nano33"), forced=3)
    message = str(err.value)
    assert "flash short by 121,760 bytes" in message and "Slice 3 is the first" in message
    assert "RAM" not in message
    with pytest.raises(PlacementError, match="0..4"):
        place(NEEDS, boards.load("nano33"), forced=7)
    with pytest.raises(PlacementError, match="device board"):
        place(NEEDS, boards.load("edge-pc"))


def _softmax_top(logits, scale):
    z = np.exp(scale * (logits - logits.max()))
    return z.max() / z.sum()


def test_threshold_policy_matches_the_float_softmax_away_from_the_boundary():
    scales = [0.1, 0.05, 0.2]
    policy = ThresholdPolicy.build(scales, [0.8, 0.8, 0.8], device_exits=2)
    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(2000):
        k = int(rng.integers(0, 2))
        logits = rng.integers(-128, 128, 10).astype(np.int8)
        top = _softmax_top(logits.astype(np.float64), scales[k])
        if abs(top - 0.8) < 1e-3:
            continue
        checked += 1
        expected = EXIT if top >= 0.8 else (OFFLOAD if k == 1 else STAY)
        assert policy.decide(k, logits) == expected
    assert checked > 1900
    assert policy.decide(2, np.zeros(10, np.int8)) == EXIT  # the last exit always answers


def test_threshold_policy_rejects_bad_thresholds():
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        ThresholdPolicy.build([0.1], [1.5], 1)


def test_a_profile_by_path_may_have_any_file_name_and_bad_fields_name_file_and_field(tmp_path):
    text = (boards.BOARDS_DIR / "nano33.toml").read_text().replace('name = "nano33"', 'name = "my-nano"')
    path = tmp_path / "profiles" / "custom.toml"
    path.parent.mkdir()
    path.write_text(text)
    board = boards.load(str(path))
    assert (board.name, board.clock_hz, board.path) == ("my-nano", 64_000_000, path)
    path.write_text(text.replace("ram_bytes = 262_144", "ram_bytes = 256.5"))
    with pytest.raises(boards.BoardError, match=rf"^{re.escape(str(path))}: field ram_bytes must be int, got 256.5$"):
        boards.load(str(path))
    with pytest.raises(boards.BoardError, match="--board .*missing.toml: no such file"):
        boards.load(str(tmp_path / "missing.toml"))
    with pytest.raises(boards.BoardError, match="or a path to your own profile ending in .toml"):
        boards.load(str(tmp_path / "custom"))  # a path must end in .toml


def test_nothing_on_the_device_says_by_how_many_bytes_and_what_to_do():
    board = boards.load("nano33")
    huge = [SliceNeeds(800_000, 10_000, 3072, 8192, 10), *NEEDS[1:]]
    assert place(huge, board).device_slices == 0
    message = empty_device(huge, board, None)
    assert message.startswith("no slice fits nano33: slice 1 alone has flash short by 21,760 bytes (needs 800,000")
    assert "--allow-empty-device" in message and "\n" not in message
    assert "--device-slices 1 or more" in empty_device(NEEDS, board, 0)


def test_a_device_part_over_the_default_deadline_says_by_how_many_ms_and_what_to_change():
    board = boards.load("nano33")
    assert over_deadline([100_000, 200_000, 194_999], board) is None  # the budget: 500 ms less the 5 ms margin
    late = over_deadline([100_000, 200_000, 195_000], board)
    assert late.startswith("the device part (slices 1-3) takes an estimated 495 ms on nano33, 0 ms over")
    assert "past exit 2 overruns it in slice 3" in late and "--device-slices 2 (300 ms)" in late
    cifar = over_deadline([250_000, 1_140_000], board)  # cifar10 on nano33: 1.39 s
    assert "1,390 ms on nano33, 895 ms over the firmware's default deadline of 500 ms" in cifar
    assert "--device-slices 1 (250 ms)" in cifar and "-DEEFW_DEADLINE_US=1400000u" in cifar
    assert "every request overruns it in slice 1" in over_deadline([600_000], board)


def test_the_default_deadline_is_the_firmwares():
    """placement.py mirrors eecore.h; the firmwares and the simulator take their defaults from there."""
    header = (ROOT / "firmware/lib/eecore/eecore.h").read_text()
    value = {m[0]: int(m[1]) for m in re.findall(r"#define (EEC_DEFAULT_\w+) (\d+)u", header)}
    assert value == {"EEC_DEFAULT_DEADLINE_US": DEFAULT_DEADLINE_US, "EEC_DEFAULT_MARGIN_US": FALLBACK_MARGIN_US}
    for main in ("src/main.cpp", "qemu/main.c"):
        text = (ROOT / "firmware" / main).read_text()
        assert (
            "#define EEFW_DEADLINE_US EEC_DEFAULT_DEADLINE_US" in text
            and "EEFW_MARGIN_US EEC_DEFAULT_MARGIN_US" in text
        )
    assert (DEFAULT_DEADLINE_MS, MARGIN_US) == (DEFAULT_DEADLINE_US / 1e3, FALLBACK_MARGIN_US)
