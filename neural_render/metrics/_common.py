"""Shared helpers of the metric functions: shape checks and validity masks.

Every metric takes video tensors (B, T, C, H, W) float and an optional mask (B, T, 1, H, W) (bool, or float where
> 0.5 counts as valid); ``None`` means every pixel is valid. Reductions are "per clip": over T, H, W (and C where
stated) of each batch element, giving (B,) results.
"""

from __future__ import annotations

import torch
from torch import Tensor

from neural_render.errors import NeuralRenderError


def check_video(name: str, x: Tensor, channels: int | None = None) -> None:
    """Raise NeuralRenderError unless ``x`` is a (B, T, C, H, W) tensor (with ``channels`` channels if given)."""
    if not isinstance(x, Tensor) or x.ndim != 5:
        raise NeuralRenderError(f"{name} must be a (B, T, C, H, W) tensor, got {tuple(getattr(x, 'shape', ()))}")
    if channels is not None and x.shape[2] != channels:
        raise NeuralRenderError(f"{name} must have {channels} channels, got shape {tuple(x.shape)}")


def check_pair(pred: Tensor, target: Tensor, channels: int | None = None) -> None:
    check_video("pred", pred, channels)
    check_video("target", target, channels)
    if pred.shape != target.shape:
        raise NeuralRenderError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")


def valid_mask(mask: Tensor | None, like: Tensor) -> Tensor:
    """(B, T, 1, H, W) bool validity from ``mask`` (None = all valid), checked against ``like`` (B, T, C, H, W)."""
    b, t, _, h, w = like.shape
    if mask is None:
        return torch.ones(b, t, 1, h, w, dtype=torch.bool, device=like.device)
    if not isinstance(mask, Tensor) or tuple(mask.shape) != (b, t, 1, h, w):
        raise NeuralRenderError(f"mask must be (B, T, 1, H, W) = {(b, t, 1, h, w)}, "
                                f"got {tuple(getattr(mask, 'shape', ()))}")
    return mask if mask.dtype == torch.bool else mask > 0.5


def masked_mean(x: Tensor, valid: Tensor, dims: tuple[int, ...]) -> Tensor:
    """Mean of ``x`` over ``dims`` counting only ``valid`` entries (broadcast to x); NaN where none is valid."""
    valid = valid.expand_as(x)
    total = torch.where(valid, x, torch.zeros_like(x)).sum(dim=dims)  # invalid entries may hold NaN: never multiply
    count = valid.to(x.dtype).sum(dim=dims)
    return torch.where(count > 0, total / count.clamp_min(1), torch.full_like(total, float("nan")))
