"""Cost of each stage and exit head, read off the graph with forward hooks.

MACs count convolutions and linear layers (pooling and activations are not counted).
Int8 sizes assume what the converter produces: batch norm folded into the convolution,
int8 weights, int32 biases (one per output channel), int8 activations, ReLU fused.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from earlyexit.model import EarlyExitNet, ResidualBlock


@dataclass(frozen=True)
class Cost:
    """Cost of one module run on one sample."""

    macs: int
    params: int
    int8_weight_bytes: int
    peak_activation_bytes: int
    output_shape: tuple[int, ...]


@dataclass(frozen=True)
class ExitCost:
    """Per exit: its stage and head alone, and the cumulative figures to reach it.

    ``cumulative_macs`` is the runtime path to exit k: stages 0..k and heads 0..k (every
    exit on the way is evaluated). ``cumulative_params`` counts the same modules.
    """

    exit: int
    stage: Cost
    head: Cost
    cumulative_macs: int
    cumulative_params: int
    cumulative_int8_weight_bytes: int
    peak_activation_bytes: int


def _leaf_cost(module: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> tuple[int, int]:
    """(MACs, int8 weight bytes) of one leaf layer."""
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        macs = out.numel() * (module.in_channels // module.groups) * kh * kw
        return macs, module.weight.numel() + 4 * module.out_channels
    if isinstance(module, nn.Linear):
        return module.in_features * module.out_features, module.weight.numel() + 4 * module.out_features
    return 0, 0


def _measure(module: nn.Module, x: torch.Tensor, keep_alive: int = 0) -> tuple[Cost, torch.Tensor]:
    """Run ``module`` on ``x`` (batch 1) and add up its leaves' costs.

    ``keep_alive`` bytes stay resident the whole time (the trunk activation while a head runs);
    a residual block's input stays resident until its add.
    """
    macs = weights = held = 0
    held_input: torch.Tensor | None = None
    peak = keep_alive + x[0].numel()

    def hook(mod: nn.Module, args: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal macs, weights, peak
        m, w = _leaf_cost(mod, args[0], out)
        macs += m
        weights += w
        if isinstance(mod, (nn.Conv2d, nn.Linear, nn.MaxPool2d, nn.AdaptiveAvgPool2d)):
            waiting = held if args[0] is not held_input else 0  # a residual input waiting for its add
            peak = max(peak, keep_alive + waiting + args[0][0].numel() + out[0].numel())

    def hold(mod: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        nonlocal held, held_input
        held, held_input = args[0][0].numel(), args[0]

    def release(mod: ResidualBlock, args: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal held, held_input, peak
        # the add reads the body's output and the shortcut's (the input itself, or a 1x1 conv of it)
        branches = out[0].numel() * (1 if isinstance(mod.shortcut, nn.Identity) else 2)
        peak = max(peak, keep_alive + held + branches)
        held, held_input = 0, None

    handles = [m.register_forward_hook(hook) for m in module.modules() if not list(m.children())]
    for m in module.modules():
        if isinstance(m, ResidualBlock):
            handles += [m.register_forward_pre_hook(hold), m.register_forward_hook(release)]
    try:
        with torch.no_grad():
            y = module(x)
    finally:
        for h in handles:
            h.remove()
    params = sum(p.numel() for p in module.parameters())
    return Cost(macs, params, weights, peak, tuple(y.shape[1:])), y


def block_costs(net: EarlyExitNet) -> list[Cost]:
    """Cost of every trunk block, in order (a stage holds one or more blocks)."""
    arch = net.arch
    was_training = net.training
    net.eval()
    x = torch.zeros(1, arch.in_channels, arch.input_size, arch.input_size)
    out = []
    try:
        for stage in net.stages:
            for block in stage:
                cost, x = _measure(block, x)
                out.append(cost)
    finally:
        net.train(was_training)
    return out


def exit_costs(net: EarlyExitNet) -> list[ExitCost]:
    """Per-exit costs of ``net`` for one input sample."""
    arch = net.arch
    was_training = net.training
    net.eval()
    x = torch.zeros(1, arch.in_channels, arch.input_size, arch.input_size)
    out: list[ExitCost] = []
    cum_macs = cum_params = cum_bytes = 0
    try:
        for k, (stage, head) in enumerate(zip(net.stages, net.heads)):
            stage_cost, x = _measure(stage, x)
            head_cost, _ = _measure(head, x, keep_alive=x[0].numel())
            cum_macs += stage_cost.macs + head_cost.macs
            cum_params += stage_cost.params + head_cost.params
            cum_bytes += stage_cost.int8_weight_bytes + head_cost.int8_weight_bytes
            peak = max(stage_cost.peak_activation_bytes, head_cost.peak_activation_bytes)
            out.append(ExitCost(k, stage_cost, head_cost, cum_macs, cum_params, cum_bytes, peak))
    finally:
        net.train(was_training)
    return out
