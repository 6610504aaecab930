"""uint8 NHWC images -> normalized float NCHW tensors, and training augmentation."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def channel_stats(x: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 NHWC images, in [0, 1] units."""
    flat = x.reshape(-1, x.shape[-1]).astype(np.float64) / 255.0
    return tuple(flat.mean(0).round(6).tolist()), tuple(flat.std(0).round(6).tolist())


def to_input(x: np.ndarray | torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Normalize uint8 NHWC images to float NCHW (channels-last memory layout)."""
    t = torch.as_tensor(x).permute(0, 3, 1, 2).float().div_(255.0)
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    return t.sub_(m).div_(s)


def random_crop_flip(x: torch.Tensor, pad: int, flip: bool, gen: torch.Generator) -> torch.Tensor:
    """Random crop after zero padding and random horizontal flip of an NCHW batch."""
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    rows = (dy[:, None] + torch.arange(h)[None, :])[:, None, :, None].expand(n, x.shape[1], h, w + 2 * pad)
    out = padded.gather(2, rows)
    cols = (dx[:, None] + torch.arange(w)[None, :])[:, None, None, :].expand(n, x.shape[1], h, w)
    out = out.gather(3, cols)
    if flip:
        mirror = torch.rand(n, generator=gen) < 0.5
        out[mirror] = out[mirror].flip(3)
    return out.contiguous(memory_format=torch.channels_last)
