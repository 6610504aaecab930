"""Architecture description of an early-exit network: plain data, JSON round-trippable.

A network is a stack of *blocks*: plain ones (conv-bn-relu layers, optionally followed by
2x2 max-pooling) and residual ones (ResNet's basic block). Exits sit after chosen blocks;
the last block always carries the final exit. The blocks between two exits form a
*stage*: stage k ends at exit k, and the converter turns stage k + exit head k into slice k.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

HEAD_KINDS = ("linear", "conv")


@dataclass(frozen=True)
class BlockSpec:
    """Conv-bn-relu layers (3x3, stride 1, same padding), then optional 2x2 max-pool.

    ``residual``: ResNet's basic block instead, ``channels`` = (c, c): 3x3 conv-bn-relu of
    stride ``stride``, 3x3 conv-bn, plus the shortcut (the input itself, or a 1x1 conv-bn of
    stride ``stride`` where the shape changes), then ReLU; no pooling.
    """

    channels: tuple[int, ...]
    pool: bool = True
    residual: bool = False
    stride: int = 1


@dataclass(frozen=True)
class HeadSpec:
    """Exit head: ``linear`` = global average pool + linear; ``conv`` = one 3x3 stride-2
    conv-bn-relu of ``channels`` filters before the pool and the linear layer."""

    kind: str = "linear"
    channels: int = 0


@dataclass(frozen=True)
class ArchConfig:
    """Everything needed to rebuild the network without the training code."""

    name: str
    in_channels: int
    input_size: int
    num_classes: int
    blocks: tuple[BlockSpec, ...]
    exits: tuple[int, ...]
    heads: tuple[HeadSpec, ...] = field(default=())

    def __post_init__(self) -> None:
        problems = _problems(self)
        if problems:
            raise ValueError(f"invalid architecture {self.name!r}: " + "; ".join(problems))

    @property
    def num_exits(self) -> int:
        return len(self.exits)

    def head(self, k: int) -> HeadSpec:
        """Head of exit ``k``; a ``linear`` head where none is configured."""
        return self.heads[k] if self.heads else HeadSpec()

    def stage_blocks(self, k: int) -> range:
        """Indices of the blocks of stage ``k`` (0-based)."""
        start = 0 if k == 0 else self.exits[k - 1] + 1
        return range(start, self.exits[k] + 1)

    def to_dict(self) -> dict[str, Any]:
        """Plain blocks keep the fields they had before residual blocks (model hashes stay put)."""
        out = asdict(self)
        for b in out["blocks"]:
            if not b["residual"]:
                del b["residual"], b["stride"]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArchConfig:
        """Inverse of :meth:`to_dict`; raises ``ValueError`` naming the bad field."""
        try:
            blocks = tuple(
                BlockSpec(
                    channels=tuple(int(c) for c in b["channels"]),
                    pool=bool(b.get("pool", True)),
                    residual=bool(b.get("residual", False)),
                    stride=int(b.get("stride", 1)),
                )
                for b in data["blocks"]
            )
            heads = tuple(
                HeadSpec(kind=str(h.get("kind", "linear")), channels=int(h.get("channels", 0)))
                for h in data.get("heads", ())
            )
            return cls(
                name=str(data["name"]),
                in_channels=int(data["in_channels"]),
                input_size=int(data["input_size"]),
                num_classes=int(data["num_classes"]),
                blocks=blocks,
                exits=tuple(int(e) for e in data["exits"]),
                heads=heads,
            )
        except KeyError as err:
            raise ValueError(f"architecture config lacks the field {err.args[0]!r}") from None
        except (TypeError, AttributeError) as err:
            raise ValueError(f"architecture config is malformed: {err}") from None


def _problems(cfg: ArchConfig) -> list[str]:
    out = []
    if cfg.in_channels < 1 or cfg.input_size < 1 or cfg.num_classes < 2:
        out.append("in_channels, input_size must be >= 1 and num_classes >= 2")
    if not cfg.blocks or any(not b.channels or min(b.channels) < 1 for b in cfg.blocks):
        out.append("every block needs at least one conv layer with >= 1 channel")
    for i, b in enumerate(cfg.blocks):
        if b.residual and (len(b.channels) != 2 or len(set(b.channels)) != 1 or b.pool or b.stride not in (1, 2)):
            out.append(f"residual block {i + 1} needs channels (c, c), pool false and stride 1 or 2")
        elif not b.residual and b.stride != 1:
            out.append(f"plain block {i + 1} has stride {b.stride}: plain blocks downsample by pooling only")
    if not cfg.exits or list(cfg.exits) != sorted(set(cfg.exits)):
        out.append("exits must be strictly increasing block indices")
    elif cfg.exits[-1] != len(cfg.blocks) - 1 or cfg.exits[0] < 0:
        out.append(f"exits must lie in 0..{len(cfg.blocks) - 1} and end at the last block")
    if cfg.heads and len(cfg.heads) != len(cfg.exits):
        out.append(f"{len(cfg.heads)} heads given for {len(cfg.exits)} exits")
    for h in cfg.heads:
        if h.kind not in HEAD_KINDS:
            out.append(f"head kind {h.kind!r} is not one of {HEAD_KINDS}")
        elif h.kind == "conv" and h.channels < 1:
            out.append("a conv head needs channels >= 1")
    halvings = sum(b.pool or b.stride == 2 for b in cfg.blocks)
    if cfg.input_size >> halvings < 1:
        out.append(f"{halvings} poolings or strides shrink a {cfg.input_size}-pixel input below 1 pixel")
    return out
