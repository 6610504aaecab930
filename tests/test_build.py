"""One real build of a tiny synthetic model (conversions cached per session), then checks."""

import hashlib
import json
import subprocess

import numpy as np
import pytest

from contracts import boards
from converter import verify
from converter.__main__ import main
from converter.build import BuildOptions, run
from converter.slicing import convert
from earlyexit import checkpoint, data
from earlyexit.model import EarlyExitNet
from earlyexit.train import config_for, train
from host import bundle as bundles
from policy.threshold import ThresholdPolicy

SLICE_KEYS = {
    "index",
    "tier",
    "file",
    "sha256",
    "bytes",
    "arena_bytes",
    "arena_used_bytes",
    "macs",
    "ops",
    "input",
    "outputs",
    "float_accuracy",
    "int8_accuracy",
    "litert_int8_accuracy",
    "tflm_litert_argmax_agreement",
    "estimated_latency_ms",
    "estimated_energy_mj",
}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, request):
    arch = request.getfixturevalue("tiny_arch")
    out = tmp_path_factory.mktemp("model") / "tiny.pt"
    cfg = config_for("fast", "synthetic", epochs=3, batch_size=64, lr=0.05)
    train(EarlyExitNet(arch), data.load("synthetic", "train"), None, cfg, out, progress=False)
    return out


@pytest.fixture(scope="module")
def tiny_arch():
    from earlyexit.arch import ArchConfig, BlockSpec, HeadSpec

    return ArchConfig(
        "tiny",
        3,
        16,
        4,
        blocks=(BlockSpec((4,)), BlockSpec((8, 8)), BlockSpec((8,), pool=False)),
        exits=(0, 1, 2),
        heads=(HeadSpec("conv", 8), HeadSpec(), HeadSpec()),
    )


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def built(tiny_model, cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("build") / "nano33"
    manifest = run(
        BuildOptions(board="nano33", model=str(tiny_model), data_dir=None, out=out, cache_dir=cache), say=lambda _: None
    )
    return out, manifest


def test_manifest_schema_and_files(built):
    out, manifest = built
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk == json.loads(json.dumps(manifest))
    assert on_disk["manifest_version"] == 1 and on_disk["board"] == "nano33" and on_disk["edge"] == "edge-pc"
    assert len(on_disk["model"]["hash"]) == 64
    assert [s["index"] for s in on_disk["slices"]] == [1, 2, 3]
    for s in on_disk["slices"]:
        assert set(s) == SLICE_KEYS
        assert s["tier"] in ("device", "edge") and s["bytes"] > 0 and s["arena_bytes"] >= s["arena_used_bytes"] > 0
        assert set(s["ops"]) <= {"CONV_2D", "MAX_POOL_2D", "PAD", "MEAN", "FULLY_CONNECTED"}
    tiers = [s["tier"] for s in on_disk["slices"]]
    assert tiers == sorted(tiers, key=["device", "edge"].index)
    for s in on_disk["slices"]:
        assert s["file"] == f"{s['tier']}/slice{s['index']}.tflite"
        assert hashlib.sha256((out / s["file"]).read_bytes()).hexdigest() == s["sha256"]
    assert (out / "report.md").read_text().startswith("# Build report") and (out / "report.png").stat().st_size > 0


def test_fully_connected_weights_are_per_tensor(built):
    from converter import flatbuf

    out, manifest = built
    for s in manifest["slices"]:
        assert flatbuf.fully_connected_weight_scales((out / s["file"]).read_bytes()) == [1]


def test_handoff_quantization_is_exact(built):
    slices = built[1]["slices"]
    for a, b in zip(slices, slices[1:]):
        assert a["outputs"]["trunk"]["scale"] == b["input"]["scale"]
        assert a["outputs"]["trunk"]["zero_point"] == b["input"]["zero_point"]
        assert a["outputs"]["trunk"]["shape"] == b["input"]["shape"]


def test_tflm_and_litert_agree(built):
    m = built[1]
    assert all(m["verification"]["trunks_identical"])
    for s in m["slices"]:
        assert s["tflm_litert_argmax_agreement"] >= 0.99
        assert abs(s["int8_accuracy"] - s["float_accuracy"]) <= 0.05


def _compile(cmd, cwd):
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result


def test_generated_c_compiles_with_warnings_as_errors(built, tmp_path):
    fw = built[0] / "firmware"
    _compile(
        [
            "gcc",
            "-std=c99",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-pedantic",
            "-c",
            "ee_policy.c",
            "-o",
            str(tmp_path / "p.o"),
        ],
        fw,
    )
    _compile(
        ["g++", "-std=c++11", "-Wall", "-Wextra", "-Werror", "-c", "ee_model_data.cc", "-o", str(tmp_path / "m.o")], fw
    )
    header = (fw / "ee_model.h").read_text()
    assert "#ifndef EE_MODEL_H" in header and built[1]["model"]["hash"] in header
    assert "EE_REGISTER_OPS(resolver)" in header and "AddConv2D" in header


HARNESS = r"""
#include <stdio.h>
#include "ee_policy.h"
int main(void) {
  int k, n, i, v;
  signed char logits[64];
  while (scanf("%d %d", &k, &n) == 2) {
    for (i = 0; i < n; ++i) { if (scanf("%d", &v) != 1) return 1; logits[i] = (signed char)v; }
    ee_policy_state s = {0, 0, 0, 0, 0, 0, 0, 1, 0, 0xFFFFFFFFu};
    s.exit_index = k;
    s.logits = (const signed char *)logits;
    s.num_classes = n;
    printf("%d %u\n", ee_policy_decide(&s),
           (unsigned)ee_policy_confidence_q15(k, (const signed char *)logits, n));
  }
  return 0;
}
"""


def test_c_policy_decides_like_python_on_every_step(built, tiny_model, cache, tmp_path):
    out, manifest = built
    fw = out / "firmware"
    (tmp_path / "harness.c").write_text(
        HARNESS.replace("signed char", "int8_t").replace(
            "#include <stdio.h>", "#include <stdio.h>\n#include <stdint.h>"
        )
    )
    _compile(
        [
            "gcc",
            "-std=c99",
            "-Wall",
            "-Werror",
            f"-I{fw}",
            str(tmp_path / "harness.c"),
            str(fw / "ee_policy.c"),
            "-o",
            str(tmp_path / "harness"),
        ],
        tmp_path,
    )
    ckpt = checkpoint.load(tiny_model)
    test = data.load("synthetic", "test")
    slices = convert(ckpt, data.load("synthetic", "train").x[:200], cache)
    lut = verify.input_lut(ckpt.mean, ckpt.std, slices[0].input.scale, slices[0].input.zero_point)
    logits = verify.run_chain(slices, verify.quantize_images(test.x, lut), verify.tflm_runner).logits
    rng = np.random.default_rng(1)
    steps = [(k, z) for k in range(len(logits)) for z in logits[k]]
    steps += [(int(rng.integers(0, 3)), rng.integers(-128, 128, 4).astype(np.int8)) for _ in range(500)]
    stdin = "".join(f"{k} {len(z)} {' '.join(str(int(v)) for v in z)}\n" for k, z in steps)
    c = subprocess.run([str(tmp_path / "harness")], input=stdin, capture_output=True, text=True, check=True)
    policy = ThresholdPolicy.build(
        [s["outputs"]["logits"]["scale"] for s in manifest["slices"]],
        manifest["policy"]["thresholds"],
        manifest["device_slices"],
    )
    expected = [f"{policy.decide(k, z)} {policy.confidence_q15(k, z)}" for k, z in steps]
    assert c.stdout.splitlines() == expected


def test_unchanged_rebuild_converts_nothing_and_writes_the_same(built, tiny_model, cache, tmp_path, monkeypatch):
    import onnx2tf

    from converter import verify as verify_module

    def no_conversion(**_):
        raise AssertionError("onnx2tf called although every slice is cached")

    def no_verification(*_args, **_kwargs):
        raise AssertionError("the chain was verified again although nothing changed")

    monkeypatch.setattr(onnx2tf, "convert", no_conversion)
    monkeypatch.setattr(verify_module, "run_chain", no_verification)
    again = run(
        BuildOptions(board="nano33", model=str(tiny_model), out=tmp_path / "again", cache_dir=cache), say=lambda _: None
    )
    assert json.dumps(again, sort_keys=True) == json.dumps(built[1], sort_keys=True)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--board", "uno"], "available: "),
        (["--board", "nano33", "--device-slices", "9"], "has 3 slices"),
        (["--board", "nano33", "--model", "missing.pt"], "bundled"),
        (["--board", "edge-pc"], "device board"),
    ],
)
def test_build_errors_are_one_paragraph(tiny_model, cache, tmp_path, capsys, extra, message):
    argv = ["build", "--model", str(tiny_model), "--out", str(tmp_path / "o"), "--cache-dir", str(cache)] + extra
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_corrupt_checkpoint_and_missing_calibration_data(tiny_model, tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"junk")
    assert main(["build", "--board", "nano33", "--model", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "bad.pt" in capsys.readouterr().err
    ckpt = checkpoint.load(tiny_model)
    ckpt.dataset = "cifar10"
    checkpoint.save(ckpt, tmp_path / "needs-data.pt")
    assert (
        main(
            [
                "build",
                "--board",
                "nano33",
                "--model",
                str(tmp_path / "needs-data.pt"),
                "--data-dir",
                str(tmp_path / "nowhere"),
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    assert "calibration data is missing" in capsys.readouterr().err


def test_an_op_tflm_cannot_run_is_named_with_its_layer(built, monkeypatch):
    from converter import slicing
    from converter.errors import ConvertError

    out, manifest = built
    last = manifest["slices"][-1]
    tflite = (out / last["file"]).read_bytes()
    assert slicing._check_ops(tflite, "slice 3") == tuple(last["ops"])
    monkeypatch.setattr(slicing, "TFLM_OPS", {k: v for k, v in slicing.TFLM_OPS.items() if k != "MEAN"})
    with pytest.raises(ConvertError, match=r"slice 3: MEAN \(layer .*reduce_mean.*\) cannot run in TFLite Micro"):
        slicing._check_ops(tflite, "slice 3")


def _profile(tmp_path, file: str, **edits: str):
    """nano33's profile under another file name, with ``old=new`` text edits (a user's own board)."""
    text = (boards.BOARDS_DIR / "nano33.toml").read_text()
    for old, new in edits.values():
        assert old in text
        text = text.replace(old, new)
    (tmp_path / file).write_text(text)
    return str(tmp_path / file)


def test_no_slice_on_the_device_stops_with_the_shortfall_unless_allowed(tiny_model, cache, tmp_path, capsys):
    board = _profile(tmp_path, "tiny.toml", name=('"nano33"', '"tiny-mcu"'), flash=("983_040", "205_000"))
    argv = ["build", "--board", board, "--model", str(tiny_model), "--cache-dir", str(cache)]
    assert main([*argv, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no slice fits tiny-mcu: slice 1 alone has flash short by ") and err.count("\n") == 1
    assert "--allow-empty-device" in err and not (tmp_path / "o").exists()
    assert main([*argv, "--out", str(tmp_path / "edge-only"), "--allow-empty-device"]) == 0
    assert json.loads((tmp_path / "edge-only" / "manifest.json").read_text())["device_slices"] == 0
    assert main([*argv, "--out", str(tmp_path / "o"), "--device-slices", "0"]) == 2
    assert "--device-slices 0 leaves tiny-mcu with nothing to run" in capsys.readouterr().err


def test_a_device_part_slower_than_the_firmware_deadline_warns_by_how_much(tiny_model, cache, tmp_path, capsys):
    # slices of 32,288 / 55,328 / 9,248 MACs at 2.5 cycles each and 400 kHz: 202 + 346 + 58 ms
    board = _profile(tmp_path, "slow.toml", name=('"nano33"', '"slow-mcu"'), clock=("64_000_000", "400_000"))
    out = tmp_path / "slow"
    argv = ["build", "--board", board, "--model", str(tiny_model), "--cache-dir", str(cache), "--out", str(out)]
    assert main(argv) == 0
    err = capsys.readouterr().err.strip()
    assert err == (
        "warning: the device part (slices 1-3) takes an estimated 605 ms on slow-mcu, 110 ms over the firmware's "
        "default deadline of 500 ms (less its 5 ms margin): a request that goes past exit 1 overruns it in slice 2 "
        "and answers from there with the fallback flag. Use --device-slices 1 (202 ms), a faster board, or a longer "
        "deadline (-DEEFW_DEADLINE_US=620000u in the firmware, --deadline-ms 620 for `python -m host`)."
    )
    # the host reads the profile the bundle was built for, whatever its name
    bundle = bundles.load(out)
    assert bundle.board == "slow-mcu" and bundle.device_slice_us() == (201800, 345800, 57800)
    assert main([*argv[:-1], str(tmp_path / "fast"), "--device-slices", "1"]) == 0
    assert capsys.readouterr().err == ""
