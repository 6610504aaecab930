import pytest
import torch

import earlyexit.train as train_module
from earlyexit import checkpoint, data
from earlyexit.model import EarlyExitNet
from earlyexit.train import config_for, joint_loss, train


def _run(arch, out, epochs):
    cfg = config_for("fast", "synthetic", epochs=epochs, batch_size=64, lr=0.05)
    torch.manual_seed(0)
    return train(
        EarlyExitNet(arch), data.load("synthetic", "train"), data.load("synthetic", "val"), cfg, out, progress=False
    )


def test_training_learns_and_is_deterministic(tiny_arch, tmp_path):
    a = _run(tiny_arch, tmp_path / "a.pt", 4)
    b = _run(tiny_arch, tmp_path / "b.pt", 4)
    assert a.model_hash() == b.model_hash()
    history = a.metrics["history"]
    val_final = [r for r in history if r["split"] == "val" and r["exit"] == 3]
    assert val_final[-1]["accuracy"] >= 0.9
    assert (tmp_path / "a.metrics.csv").read_text().startswith("epoch,split,exit,loss,accuracy")
    assert a.training["epochs_done"] == 4


def test_same_seed_gives_the_same_checkpoint_bytes(tiny_arch, tmp_path):
    """Bytes, not only weights: torch's archive names its records after the file, so both are m.pt."""
    _run(tiny_arch, tmp_path / "a" / "m.pt", 2)
    _run(tiny_arch, tmp_path / "b" / "m.pt", 2)
    assert (tmp_path / "a" / "m.pt").read_bytes() == (tmp_path / "b" / "m.pt").read_bytes()
    assert "seconds" in (tmp_path / "a" / "m.metrics.csv").read_text().splitlines()[0]  # wall time lives in the log


def test_resume_continues_exactly(tiny_arch, tmp_path, monkeypatch):
    straight = _run(tiny_arch, tmp_path / "s.pt", 3)
    saves = []

    def crash_after_two_epochs(ckpt, path):
        real_save(ckpt, path)
        saves.append(path)
        if len(saves) == 2:
            raise KeyboardInterrupt

    real_save = train_module.save
    monkeypatch.setattr(train_module, "save", crash_after_two_epochs)
    with pytest.raises(KeyboardInterrupt):
        _run(tiny_arch, tmp_path / "r.pt", 3)
    monkeypatch.undo()
    assert (tmp_path / "r.pt.resume").is_file()
    resumed = _run(tiny_arch, tmp_path / "r.pt", 3)
    assert resumed.model_hash() == straight.model_hash()
    assert not (tmp_path / "r.pt.resume").exists()
    assert checkpoint.load(tmp_path / "r.pt").training["epochs_done"] == 3


def test_joint_loss_weights_each_exit():
    logits = [torch.zeros(2, 3, requires_grad=True), torch.zeros(2, 3, requires_grad=True)]
    y = torch.tensor([0, 1])
    total, parts = joint_loss(logits, y, (1.0, 0.5))
    assert torch.isclose(total, parts[0] + 0.5 * parts[1])


def test_tensorboard_log_is_written(tiny_arch, tmp_path):
    cfg = config_for("seed", "synthetic", epochs=1, batch_size=128)
    train(
        EarlyExitNet(tiny_arch),
        data.load("synthetic", "train"),
        None,
        cfg,
        tmp_path / "m.pt",
        tensorboard=tmp_path / "tb",
        progress=False,
    )
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
