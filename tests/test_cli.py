"""The ``python -m earlyexit`` commands on a tiny synthetic model."""

import json

import numpy as np
import pytest

from earlyexit import checkpoint, traces
from earlyexit.__main__ import main
from tests.conftest import shared_path


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    out = tmp_path_factory.mktemp("m") / "tiny.pt"
    assert (
        main(
            [
                "train",
                "--arch",
                "mcu-fmnist",
                "--dataset",
                "synthetic",
                "--out",
                str(out),
                "--epochs",
                "2",
                "--val-size",
                "64",
                "--quiet",
            ]
        )
        == 0
    )
    return out


def test_eval_json_schema(model, tmp_path):
    out = tmp_path / "eval.json"
    assert main(["eval", "--model", str(model), "--json", str(out), "--quiet"]) == 0
    result = json.loads(out.read_text())
    assert result["dataset"] == "synthetic" and result["split"] == "test" and result["samples"] == 256
    assert [e["exit"] for e in result["exits"]] == [1, 2, 3]
    for e in result["exits"]:
        assert set(e) == {"exit", "accuracy", "loss", "macs", "params"}
        assert 0 <= e["accuracy"] <= 1 and e["loss"] > 0
    macs = [e["macs"] for e in result["exits"]]
    assert macs == sorted(macs) and macs[0] > 0


def test_traces_recompute_eval_accuracy(model, tmp_path):
    assert main(["eval", "--model", str(model), "--json", str(tmp_path / "e.json"), "--quiet"]) == 0
    assert main(["traces", "--model", str(model), "--split", "test", "--out", str(tmp_path / "t.npz"), "--quiet"]) == 0
    tr = traces.load(tmp_path / "t.npz")
    evaluated = json.loads((tmp_path / "e.json").read_text())["exits"]
    assert tr.probs.shape == (256, 3, 4)
    np.testing.assert_allclose(tr.probs.sum(-1), 1.0, rtol=1e-5)
    assert np.array_equal(tr.pred, tr.probs.argmax(-1))
    for k, row in enumerate(evaluated):
        assert round(float(tr.correct[:, k].mean()), 6) == row["accuracy"]
        assert abs(float(tr.loss[:, k].mean()) - row["loss"]) < 1e-5
    assert tr.model_hash == checkpoint.load(model).model_hash()
    with np.load(tmp_path / "t.npz") as raw:
        assert np.array_equal(raw["correct"], tr.correct)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["eval", "--model", "nope"], "bundled"),
        (
            ["train", "--arch", "mcu-cifar", "--dataset", "cifar10", "--data-dir", "/nonexistent", "--out", "x.pt"],
            "/nonexistent",
        ),
        (["train", "--arch", "vgg99", "--dataset", "synthetic", "--out", "x.pt"], "known"),
    ],
)
def test_errors_are_one_line_without_traceback(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_bad_trace_file(tmp_path):
    (tmp_path / "x.npz").write_bytes(b"nope")
    with pytest.raises(ValueError, match="x.npz"):
        traces.load(tmp_path / "x.npz")
    np.savez(tmp_path / "y.npz", probs=np.zeros((1, 1, 2)))
    with pytest.raises(ValueError, match="lacks .*label"):
        traces.load(tmp_path / "y.npz")


def test_a_dataset_the_model_cannot_take_is_one_line(capsys):
    assert main(["eval", "--model", "fashion-mnist", "--dataset", "synthetic", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "error: --dataset synthetic does not fit model fashion-mnist: its images are 16x16x3 in 4 classes, the model "
        "(mcu-fmnist, trained on fashion-mnist) takes 28x28x1 in 10; drop --dataset to use the model's own, or pass "
        "a model trained on synthetic\n"
    )


def test_profile_numbers_blocks_and_exits_from_one(capsys):
    assert main(["profile", "mcu-fmnist"]) == 0
    out = capsys.readouterr().out
    blocks, exits = out.split("\n\n")
    numbered = [int(line.split()[0]) for line in blocks.splitlines()[2:]]
    after = [int(line.split()[1]) for line in exits.splitlines()[1:]]
    assert numbered == [1, 2, 3] and after == [1, 2, 3]  # mcu-fmnist: an exit after every block


def test_eval_bundled_cifar10_on_the_mlperf_perf_samples(tmp_path, capsys):
    root = shared_path("mlperf-tiny")
    out = tmp_path / "perf.json"
    argv = ["eval", "--model", "cifar10", "--dataset", "mlperf-perf", "--data-dir", str(root), "--quiet"]
    assert main([*argv, "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["dataset"] == "mlperf-perf" and result["samples"] == 200
    assert [round(100 * e["accuracy"], 1) for e in result["exits"]] == [65.5, 81.0, 84.0, 84.5]
