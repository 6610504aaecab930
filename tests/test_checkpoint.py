import pytest
import torch

from earlyexit import checkpoint
from earlyexit.checkpoint import Checkpoint
from earlyexit.model import EarlyExitNet


def _ckpt(arch):
    return Checkpoint(EarlyExitNet(arch).eval(), "synthetic", ("a", "b", "c", "d"), (0.5,) * 3, (0.25,) * 3)


def test_round_trip_keeps_outputs_and_hash(tiny_arch, tmp_path):
    ckpt = _ckpt(tiny_arch)
    checkpoint.save(ckpt, tmp_path / "m.pt")
    back = checkpoint.load(tmp_path / "m.pt")
    x = torch.randn(2, 3, 16, 16)
    for a, b in zip(ckpt.net(x), back.net(x)):
        assert torch.equal(a, b)
    assert back.model_hash() == ckpt.model_hash()
    assert (back.arch, back.classes, back.mean, back.std) == (tiny_arch, ckpt.classes, ckpt.mean, ckpt.std)


def test_hash_changes_with_any_weight(tiny_arch):
    ckpt = _ckpt(tiny_arch)
    before = ckpt.model_hash()
    with torch.no_grad():
        ckpt.net.heads[-1][-1].bias[0] += 1e-6
    assert ckpt.model_hash() != before


def test_corrupt_and_foreign_files_are_refused_with_the_path(tiny_arch, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(checkpoint.CheckpointError, match="bad.pt"):
        checkpoint.load(bad)
    old = tmp_path / "old.pt"
    torch.save({**_ckpt(tiny_arch).to_dict(), "format_version": 99}, old)
    with pytest.raises(checkpoint.CheckpointError, match="format 99"):
        checkpoint.load(old)
    partial = tmp_path / "partial.pt"
    d = _ckpt(tiny_arch).to_dict()
    del d["state_dict"]["heads.0.0.weight"]
    torch.save(d, partial)
    with pytest.raises(checkpoint.CheckpointError, match="incomplete or inconsistent"):
        checkpoint.load(partial)
    with pytest.raises(checkpoint.CheckpointError, match="bundled"):
        checkpoint.load("no-such-model")
