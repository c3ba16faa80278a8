"""The inverse model's value conventions, shared by the pipeline and the training task: the input it sees
(:func:`rgb_to_model`), the per-video depth scales of a call (:func:`depth_scales`) and the G-buffer a call returns
from the decoded passes (:func:`assemble_gbuffer`: the mask rule, background zeroing, depth in units, normals)."""

from __future__ import annotations

import torch
from torch import Tensor

from neural_render.errors import NeuralRenderError
from neural_render.types.gbuffer import GBuffer, vector_length


def rgb_to_model(rgb: Tensor) -> Tensor:
    """Linear radiance (..., 3, H, W) -> display sRGB of clamp(x, 0, 1) mapped to [-1, 1] (the model's input)."""
    from neural_render.render.tonemap import linear_to_srgb

    return linear_to_srgb(rgb.clamp(0.0, 1.0)) * 2.0 - 1.0


def depth_scales(depth_scale, batch: int) -> Tensor:
    """None | float | (B,) -> (B,) float32 on the CPU (NeuralRenderError for a wrong count or a non-positive scale)."""
    scale = torch.ones(batch) if depth_scale is None else torch.as_tensor(depth_scale, dtype=torch.float32).cpu()
    if scale.numel() not in (1, batch) or not bool((scale > 0).all()):
        raise NeuralRenderError(f"depth_scale must be one or {batch} positive numbers, got {scale.tolist()}")
    return scale.reshape(-1).expand(batch).clone()


def assemble_gbuffer(values: dict[str, Tensor], out_passes: list[str], scale: Tensor, mask_threshold: float,
                     zero_background: bool = True) -> GBuffer:
    """Decoded passes ``values`` {pass: (B, T, C, H, W)} -> the returned GBuffer of ``out_passes`` + mask.

    Mask: the predicted ``mask`` pass > 0.5 when there is one, else relative depth > ``mask_threshold``; outside it
    every pass is 0 when ``zero_background``. Depth is multiplied by ``scale`` (B,); a normal that decoded to exactly
    zero faces the camera (+Z)."""
    mask = None
    if "mask" in values:
        mask = (values["mask"] > 0.5).float()
    elif "depth" in values:
        mask = (values["depth"] > mask_threshold).float()
    out = {}
    for name in out_passes:
        x = values[name]
        if name == "depth":
            x = x * scale.view(-1, 1, 1, 1, 1)
        elif name == "normal":
            facing = torch.tensor([0.0, 0.0, 1.0]).view(1, 1, 3, 1, 1)
            x = torch.where(vector_length(x) > 0.5, x, facing)
        out[name] = x * mask if mask is not None and zero_background else x
    if mask is not None:
        out["mask"] = mask
    return GBuffer(**out)
