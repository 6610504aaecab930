"""The early-exit network in PyTorch, built from an :class:`ArchConfig`."""

from __future__ import annotations

import torch
from torch import nn

from earlyexit.arch import ArchConfig, BlockSpec, HeadSpec


def _conv_bn_relu(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]


class ResidualBlock(nn.Module):
    """ResNet's basic block: two 3x3 conv-bn (ReLU between), shortcut, add, ReLU."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *_conv_bn_relu(cin, cout, stride), nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout)
        )
        self.shortcut = (
            nn.Identity()
            if cin == cout and stride == 1
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


def _block(cin: int, spec: BlockSpec) -> nn.Module:
    if spec.residual:
        return ResidualBlock(cin, spec.channels[-1], spec.stride)
    layers: list[nn.Module] = []
    for cout in spec.channels:
        layers += _conv_bn_relu(cin, cout)
        cin = cout
    if spec.pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class ExitHead(nn.Sequential):
    """Classifier at one exit: [conv stride 2] -> global average pool -> linear."""

    def __init__(self, cin: int, num_classes: int, spec: HeadSpec) -> None:
        layers: list[nn.Module] = []
        if spec.kind == "conv":
            layers += _conv_bn_relu(cin, spec.channels, stride=2)
            cin = spec.channels
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes)]
        super().__init__(*layers)


class EarlyExitNet(nn.Module):
    """Stages (trunk segments ending at an exit) and one head per exit.

    ``forward`` returns the logits of every exit, shallowest first; ``stage`` and
    ``head`` run one segment, which is what slicing and the policy build on.
    """

    def __init__(self, arch: ArchConfig) -> None:
        super().__init__()
        self.arch = arch
        stages, heads = [], []
        cin = arch.in_channels
        for k in range(arch.num_exits):
            blocks = []
            for b in arch.stage_blocks(k):
                blocks.append(_block(cin, arch.blocks[b]))
                cin = arch.blocks[b].channels[-1]
            stages.append(nn.Sequential(*blocks))
            heads.append(ExitHead(cin, arch.num_classes, arch.head(k)))
        self.stages = nn.ModuleList(stages)
        self.heads = nn.ModuleList(heads)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        logits = []
        for stage, head in zip(self.stages, self.heads):
            x = stage(x)
            logits.append(head(x))
        return logits


class Slice(nn.Module):
    """Stage ``k`` + head ``k`` as one module: input -> (logits, trunk activation).

    The last slice returns its logits only. This is the unit the converter exports.
    """

    def __init__(self, net: EarlyExitNet, k: int) -> None:
        super().__init__()
        self.stage = net.stages[k]
        self.head = net.heads[k]
        self.last = k == len(net.stages) - 1

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        x = self.stage(x)
        return self.head(x) if self.last else (self.head(x), x)
