"""Named architectures.

- ``wassimnet``: the seed's VGG-style design, 16 conv-bn-relu layers with max-pooling,
  5 early exits + the final classifier (our reading of it: VGG-19's convolutions grouped
  into six stages).
- ``mcu-fmnist`` and ``mcu-cifar``: the microcontroller-friendly family of the bundled
  models. Narrow early stages with small activations (they run on a Nano 33 BLE next to
  its firmware), wide late stages (they run on the edge).
- ``resnet8``: the MLPerf Tiny image classification reference (ResNet-8: a 16-filter stem,
  three residual stages of 16/32/64 filters, average pool + dense), one exit.
- ``ee-resnet-s`` and ``ee-resnet-m``: the early-exit residual family for the device:
  ResNet-8-like device stages with exits after them (a conv head where the activation is
  still large, a linear one after), wider residual stages on the edge.
"""

from __future__ import annotations

from dataclasses import dataclass

from earlyexit.arch import ArchConfig, BlockSpec, HeadSpec

B, H = BlockSpec, HeadSpec


def R(channels: int, stride: int = 1) -> BlockSpec:
    """A residual basic block of ``channels`` filters."""
    return BlockSpec((channels, channels), pool=False, residual=True, stride=stride)


@dataclass(frozen=True)
class ArchSpec:
    """An architecture without its input and class count, plus the input it was made for."""

    blocks: tuple[BlockSpec, ...]
    exits: tuple[int, ...]
    heads: tuple[HeadSpec, ...]
    default_input: tuple[int, int, int]  # channels, size, classes


ARCHS = {
    "wassimnet": ArchSpec(
        blocks=(
            B((64, 64)),
            B((128, 128)),
            B((256, 256), pool=False),
            B((256, 256)),
            B((512, 512, 512, 512)),
            B((512, 512, 512, 512)),
        ),
        exits=(0, 1, 2, 3, 4, 5),
        heads=(),
        default_input=(3, 32, 10),
    ),
    "mcu-fmnist": ArchSpec(
        blocks=(B((16, 16)), B((32, 32)), B((64, 64), pool=False)),
        exits=(0, 1, 2),
        heads=(H("conv", 32), H("conv", 64), H()),
        default_input=(1, 28, 10),
    ),
    "mcu-cifar": ArchSpec(
        blocks=(B((16, 32)), B((64, 64)), B((128, 128)), B((256, 256), pool=False)),
        exits=(0, 1, 2, 3),
        heads=(H("conv", 64), H("conv", 96), H(), H()),
        default_input=(3, 32, 10),
    ),
    "resnet8": ArchSpec(
        blocks=(B((16,), pool=False), R(16), R(32, 2), R(64, 2)),
        exits=(3,),
        heads=(H(),),
        default_input=(3, 32, 10),
    ),
    "ee-resnet-s": ArchSpec(
        blocks=(B((16,), pool=False), R(16, 2), R(32), R(64, 2), R(128, 2), R(256)),
        exits=(1, 2, 3, 5),
        heads=(H("conv", 32), H(), H(), H()),
        default_input=(3, 32, 10),
    ),
    "ee-resnet-m": ArchSpec(
        blocks=(B((24,), pool=False), R(24, 2), R(48), R(64, 2), R(160, 2), R(320)),
        exits=(1, 2, 3, 5),
        heads=(H("conv", 32), H(), H(), H()),
        default_input=(3, 32, 10),
    ),
}


def build_arch(
    name: str, in_channels: int | None = None, input_size: int | None = None, num_classes: int | None = None
) -> ArchConfig:
    """The named architecture sized for a dataset (default: the input it was made for).

    ``KeyError`` lists the known names.
    """
    if name not in ARCHS:
        raise KeyError(f"unknown architecture {name!r}; known: {', '.join(sorted(ARCHS))}")
    spec = ARCHS[name]
    channels, size, classes = spec.default_input
    return ArchConfig(
        name=name,
        in_channels=in_channels or channels,
        input_size=input_size or size,
        num_classes=num_classes or classes,
        blocks=spec.blocks,
        exits=spec.exits,
        heads=spec.heads,
    )
