"""Named architectures.

- ``wassimnet``: the seed's VGG-style design, 16 conv-bn-relu layers with max-pooling,
  5 early exits + the final classifier (our reading of it: VGG-19's convolutions grouped
  into six stages).
- ``mcu-fmnist`` and ``mcu-cifar``: the microcontroller-friendly family of the bundled
  models. Narrow early stages with small activations (they run on a Nano 33 BLE next to
  its firmware), wide late stages (they run on the edge).
"""

from __future__ import annotations

from earlyexit.arch import ArchConfig, BlockSpec, HeadSpec


def wassimnet(in_channels: int = 3, input_size: int = 32, num_classes: int = 10) -> ArchConfig:
    b = BlockSpec
    return ArchConfig(
        name="wassimnet",
        in_channels=in_channels,
        input_size=input_size,
        num_classes=num_classes,
        blocks=(
            b((64, 64)),
            b((128, 128)),
            b((256, 256), pool=False),
            b((256, 256)),
            b((512, 512, 512, 512)),
            b((512, 512, 512, 512)),
        ),
        exits=(0, 1, 2, 3, 4, 5),
    )


def mcu_fmnist(in_channels: int = 1, input_size: int = 28, num_classes: int = 10) -> ArchConfig:
    b = BlockSpec
    return ArchConfig(
        name="mcu-fmnist",
        in_channels=in_channels,
        input_size=input_size,
        num_classes=num_classes,
        blocks=(b((16, 16)), b((32, 32)), b((64, 64), pool=False)),
        exits=(0, 1, 2),
        heads=(HeadSpec("conv", 32), HeadSpec("conv", 64), HeadSpec()),
    )


def mcu_cifar(in_channels: int = 3, input_size: int = 32, num_classes: int = 10) -> ArchConfig:
    b = BlockSpec
    return ArchConfig(
        name="mcu-cifar",
        in_channels=in_channels,
        input_size=input_size,
        num_classes=num_classes,
        blocks=(b((16, 32)), b((64, 64)), b((128, 128)), b((256, 256), pool=False)),
        exits=(0, 1, 2, 3),
        heads=(HeadSpec("conv", 64), HeadSpec("conv", 96), HeadSpec(), HeadSpec()),
    )


ARCHS = {"wassimnet": wassimnet, "mcu-fmnist": mcu_fmnist, "mcu-cifar": mcu_cifar}


def build_arch(name: str, in_channels: int, input_size: int, num_classes: int) -> ArchConfig:
    """The named architecture sized for a dataset; ``KeyError`` lists the known names."""
    if name not in ARCHS:
        raise KeyError(f"unknown architecture {name!r}; known: {', '.join(sorted(ARCHS))}")
    return ARCHS[name](in_channels=in_channels, input_size=input_size, num_classes=num_classes)
