import pytest
import torch

from earlyexit.arch import ArchConfig, BlockSpec
from earlyexit.model import EarlyExitNet, Slice
from earlyexit.profile import block_costs, exit_costs
from earlyexit.zoo import ARCHS, build_arch


@pytest.mark.parametrize("name", sorted(ARCHS))
def test_every_zoo_arch_gives_one_logit_vector_per_exit(name):
    arch = build_arch(name)
    net = EarlyExitNet(arch).eval()
    out = net(torch.zeros(2, arch.in_channels, arch.input_size, arch.input_size))
    assert len(out) == arch.num_exits
    assert all(o.shape == (2, arch.num_classes) for o in out)


def test_wassimnet_has_16_convs_and_5_exits_plus_final():
    arch = build_arch("wassimnet")
    assert sum(len(b.channels) for b in arch.blocks) == 16
    assert arch.num_exits == 6


def test_slices_chain_to_the_full_network(tiny_arch):
    net = EarlyExitNet(tiny_arch).eval()
    x = torch.randn(3, 3, 16, 16)
    expected = net(x)
    h = x
    for k in range(tiny_arch.num_exits):
        out = Slice(net, k)(h)
        logits, h = out if isinstance(out, tuple) else (out, None)
        torch.testing.assert_close(logits, expected[k], rtol=0, atol=0)
    assert h is None


def test_exit_k_loss_reaches_no_layer_after_exit_k(tiny_arch):
    net = EarlyExitNet(tiny_arch)
    x = torch.randn(4, 3, 16, 16)
    y = torch.randint(0, 4, (4,))
    for k in range(tiny_arch.num_exits):
        net.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(net(x)[k], y).backward()
        for j, (stage, head) in enumerate(zip(net.stages, net.heads)):
            stage_grads = [p.grad for p in stage.parameters()]
            assert all((g is not None) == (j <= k) for g in stage_grads), f"stage {j}, exit {k}"
            assert all((p.grad is not None) == (j == k) for p in head.parameters()), f"head {j}, exit {k}"


def test_costs_match_a_hand_count():
    arch = ArchConfig("hand", 1, 8, 2, blocks=(BlockSpec((2,)), BlockSpec((4,), pool=False)), exits=(0, 1))
    c0, c1 = exit_costs(EarlyExitNet(arch))
    conv0 = 8 * 8 * 2 * 1 * 9  # 8x8 output, 2 filters, 1 input channel, 3x3
    conv1 = 4 * 4 * 4 * 2 * 9  # after 2x2 pooling
    assert c0.stage.macs == conv0 and c0.head.macs == 2 * 2
    assert c1.cumulative_macs == conv0 + 4 + conv1 + 4 * 2
    assert c0.stage.int8_weight_bytes == 2 * 9 + 4 * 2
    # conv0 reads 8x8x1 and writes 8x8x2 bytes at int8
    assert c0.stage.peak_activation_bytes == 64 + 128
    assert c1.cumulative_params == sum(p.numel() for p in EarlyExitNet(arch).parameters())


def test_mcu_cifar_fits_the_nano33_budget_up_to_exit_2():
    net = EarlyExitNet(build_arch("mcu-cifar", 3, 32, 10))
    costs = exit_costs(net)[:2]
    assert costs[-1].cumulative_int8_weight_bytes <= 150 * 1024
    assert max(c.peak_activation_bytes for c in costs) <= 64 * 1024


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(exits=(0,)), "end at the last block"),
        (dict(exits=(1, 0)), "strictly increasing"),
        (dict(heads=()), None),
        (dict(num_classes=1), "num_classes"),
    ],
)
def test_bad_architectures_are_named(tiny_arch, change, message):
    data = {**tiny_arch.to_dict(), **change}
    if message is None:
        assert ArchConfig.from_dict(data).head(0).kind == "linear"
        return
    with pytest.raises(ValueError, match=message):
        ArchConfig.from_dict(data)


def test_arch_dict_round_trip_and_missing_field(tiny_arch):
    assert ArchConfig.from_dict(tiny_arch.to_dict()) == tiny_arch
    data = tiny_arch.to_dict()
    del data["blocks"]
    with pytest.raises(ValueError, match="blocks"):
        ArchConfig.from_dict(data)
    with pytest.raises(KeyError, match="known"):
        build_arch("resnet-9000", 3, 32, 10)


def test_block_costs_add_up_to_stage_costs():
    net = EarlyExitNet(build_arch("mcu-cifar"))
    blocks, exits = block_costs(net), exit_costs(net)
    arch = net.arch
    for k, e in enumerate(exits):
        in_stage = [blocks[b] for b in arch.stage_blocks(k)]
        assert sum(c.macs for c in in_stage) == e.stage.macs
        assert sum(c.params for c in in_stage) == e.stage.params
    assert blocks[-1].output_shape == (256, 4, 4)


def test_profile_command_prints_blocks_and_exits(capsys):
    from earlyexit.__main__ import main

    assert main(["profile", "wassimnet"]) == 0
    lines = capsys.readouterr().out.splitlines()
    net = EarlyExitNet(build_arch("wassimnet"))
    block_rows = lines[2:8]
    for row, cost in zip(block_rows, block_costs(net)):
        assert f"{cost.macs:,}" in row and f"{cost.params:,}" in row
    exit_rows = lines[-6:]
    for k, (row, cost) in enumerate(zip(exit_rows, exit_costs(net))):
        assert row.split()[0] == str(k + 1) and f"{cost.cumulative_macs:,}" in row
