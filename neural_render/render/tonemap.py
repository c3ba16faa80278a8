"""Tone mapping and transfer functions (pure, differentiable, any tensor shape).

All inputs are linear radiance / reflectance; outputs of the encoders lie in [0, 1].
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

#: DiffusionRenderer's LDR env encoding white point and log encoding range.
REINHARD_MAX_WHITE = 16.0
LOG_ENCODING_MAX = 10000.0


def _differentiable(x: Tensor) -> bool:
    return torch.is_grad_enabled() and x.requires_grad


# Not kornia's ``color.linear_rgb_to_rgb`` / ``rgb_to_linear_rgb``: they accept only (*, 3, H, W) images and do not
# clamp, while these take ANY shape (callers pass (3,) colours, a (256,) decoding table, 1-channel passes and
# channel-last frames) and clamp to [0, 1]. On (*, 3, H, W) values in [0, 1] both give bit-identical results
# (checked for issue #25), so the curve itself is kornia's; only the shape contract differs.
def linear_to_srgb(x: Tensor) -> Tensor:
    """IEC 61966-2-1 sRGB OETF on [0, 1] (input clamped)."""
    x = x.clamp(0.0, 1.0)
    if not _differentiable(x):  # the same operations in place on fresh temporaries: equal values, fewer allocations
        return torch.where(x <= 0.0031308, x * 12.92, x.clamp_min(0.0031308).pow_(1.0 / 2.4).mul_(1.055).sub_(0.055))
    return torch.where(x <= 0.0031308, 12.92 * x, 1.055 * x.clamp_min(0.0031308) ** (1.0 / 2.4) - 0.055)


def srgb_to_linear(x: Tensor) -> Tensor:
    """Inverse of :func:`linear_to_srgb` on [0, 1] (input clamped)."""
    x = x.clamp(0.0, 1.0)
    return torch.where(x <= 0.04045, x / 12.92, ((x.clamp_min(0.04045) + 0.055) / 1.055) ** 2.4)


def reinhard(x: Tensor, max_white: float = REINHARD_MAX_WHITE) -> Tensor:
    """Extended Reinhard ``x (1 + x / w^2) / (1 + x)``: maps [0, w] onto [0, 1], clamped above."""
    x = x.clamp_min(0.0)
    return (x * (1.0 + x / (max_white * max_white)) / (1.0 + x)).clamp(max=1.0)


def log_encode(x: Tensor, max_value: float = LOG_ENCODING_MAX) -> Tensor:
    """``log1p(x) / log1p(max_value)``, clamped to [0, 1]."""
    return (torch.log1p(x.clamp_min(0.0)) / math.log1p(max_value)).clamp(0.0, 1.0)


def env_ldr(x: Tensor) -> Tensor:
    """DiffusionRenderer LDR env encoding: sRGB(Reinhard(x, max 16))."""
    return linear_to_srgb(reinhard(x))


def env_log(x: Tensor) -> Tensor:
    """DiffusionRenderer log env encoding: sRGB(log1p(x) / log1p(10000))."""
    return linear_to_srgb(log_encode(x))


def exposure(x: Tensor, stops: float) -> Tensor:
    """Scale linear radiance by ``2**stops``."""
    return x * (2.0 ** stops)


def to_uint8(x: Tensor) -> Tensor:
    """Display values in [0, 1] -> uint8 with round-to-nearest (same shape)."""
    return x.clamp(0.0, 1.0).mul_(255.0).add_(0.5).floor_().to(torch.uint8)


def display(x: Tensor, stops: float = 0.0) -> Tensor:
    """Linear radiance -> 8-bit sRGB for previews: exposure, clamp, sRGB encode."""
    return to_uint8(linear_to_srgb(exposure(x, stops)))
