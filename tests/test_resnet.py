"""Residual blocks: ResNet-8 as the MLPerf Tiny reference has it, the ee-resnet family, their int8 slices."""

import numpy as np
import pytest
import torch

from converter import flatbuf
from converter.slicing import convert
from earlyexit import checkpoint, data
from earlyexit.arch import ArchConfig, BlockSpec
from earlyexit.model import EarlyExitNet, ResidualBlock
from earlyexit.profile import exit_costs
from earlyexit.train import config_for, train
from earlyexit.zoo import build_arch
from tests.conftest import shared_path

RESNET8_MACS = 12_501_632  # 3x3 / 1x1 convolutions + dense, counted the same way from the reference .tflite


def test_resnet8_costs_what_the_mlperf_reference_costs():
    (cost,) = exit_costs(EarlyExitNet(build_arch("resnet8")))
    assert cost.cumulative_macs == RESNET8_MACS
    assert 77_000 < cost.cumulative_params < 79_000


def test_resnet8_layers_match_the_reference_tflite():
    raw = shared_path("mlperf-tiny", "pretrainedResnet.tflite").read_bytes()
    model = flatbuf._model(raw)
    sg = model.subgraphs[0]
    macs, kernels = 0, []
    for op, (name, _) in zip(sg.operators, flatbuf.ops(raw)):
        if name in ("CONV_2D", "FULLY_CONNECTED"):
            weight, out = sg.tensors[op.inputs[1]], sg.tensors[op.outputs[0]]
            per_output = int(np.prod(weight.shape[1:]))
            macs += int(np.prod(out.shape[1:-1])) * int(weight.shape[0]) * per_output
            if name == "CONV_2D":
                kernels.append(tuple(int(d) for d in weight.shape))
    ours = [
        (m.out_channels, *m.kernel_size, m.in_channels)
        for m in EarlyExitNet(build_arch("resnet8")).modules()
        if isinstance(m, torch.nn.Conv2d)
    ]
    assert sorted(ours) == sorted(kernels)
    assert macs == RESNET8_MACS


@pytest.mark.parametrize("name", ["ee-resnet-s", "ee-resnet-m"])
def test_ee_resnet_meets_the_device_budgets(name):
    costs = exit_costs(EarlyExitNet(build_arch(name)))
    assert costs[0].cumulative_macs <= 4_000_000
    assert any(c.cumulative_macs <= RESNET8_MACS and c.cumulative_int8_weight_bytes <= 100 * 1024 for c in costs[1:])


def test_residual_block_shortcut_and_validation():
    assert isinstance(EarlyExitNet(build_arch("resnet8")).stages[0][1].shortcut, torch.nn.Identity)
    block = ResidualBlock(16, 32, 2)
    assert block(torch.zeros(1, 16, 8, 8)).shape == (1, 32, 4, 4)
    arch = build_arch("resnet8")
    assert ArchConfig.from_dict(arch.to_dict()) == arch
    with pytest.raises(ValueError, match="residual block 2 needs channels"):
        blocks = [{"channels": [16]}, {"channels": [8, 16], "residual": True}]
        ArchConfig.from_dict({**arch.to_dict(), "blocks": blocks})
    with pytest.raises(ValueError, match="plain block 1 has stride 2"):
        ArchConfig.from_dict({**arch.to_dict(), "blocks": [{"channels": [16], "stride": 2}], "exits": [0]})


def test_plain_blocks_serialize_as_before():
    """Residual fields stay out of plain blocks' JSON, so existing model hashes do not move."""
    assert all(set(b) == {"channels", "pool"} for b in build_arch("mcu-cifar").to_dict()["blocks"])
    assert ArchConfig.from_dict(build_arch("mcu-cifar").to_dict()).blocks[0] == BlockSpec((16, 32))


@pytest.mark.slow
def test_residual_slices_convert_to_tflm_ops_with_nhwc_hand_off(tmp_path):
    blocks = (BlockSpec((8,), pool=False), BlockSpec((12, 12), False, True, 2), BlockSpec((8,), pool=False))
    arch = ArchConfig("tiny-res", 3, 16, 4, blocks=blocks, exits=(1, 2))
    ds = data.load("synthetic", "train")
    cfg = config_for("fast", "synthetic", epochs=1)
    ckpt = train(EarlyExitNet(arch), ds, None, cfg, tmp_path / "r.pt", progress=False)
    slices = convert(checkpoint.load(tmp_path / "r.pt"), ds.x[:32], tmp_path / "cache")
    assert "ADD" in slices[0].ops and "TRANSPOSE" not in slices[0].ops + slices[1].ops
    assert slices[0].trunk.shape == (1, 8, 8, 12)  # NHWC, as the next slice and the firmware read it
    assert ckpt.arch == arch
