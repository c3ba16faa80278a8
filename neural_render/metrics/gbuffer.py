"""G-buffer accuracy metrics (pure functions): normals, albedo, scalar passes, depth.

Inputs are videos (B, T, C, H, W) float32 in the G-buffer units of ``neural_render.types.gbuffer`` and an optional
validity mask (B, T, 1, H, W) (bool or float > 0.5; None = all pixels). Per-clip results are (B,) tensors; a clip
without a valid pixel gives NaN.

* Normals: angular error in degrees between unit vectors (both inputs are re-normalised; a zero vector counts as
  90 degrees from anything). :func:`angle_stats` summarises a pool of angles the usual way (mean, median and the
  percentage of pixels below 11.25, 22.5 and 30 degrees).
* Albedo: scale-invariant PSNR as in the intrinsic-image literature (Grosse et al. 2009 si-MSE; Marigold-IID):
  before the error, each colour channel of the prediction is multiplied by the least-squares scale
  ``s_c = sum(p_c g_c) / sum(p_c^2)`` over the valid pixels of the clip (one scale per channel shared by all frames
  of a clip, so flicker in the overall albedo level is still penalised; ``per="frame"`` fits one per frame). PSNR is
  ``10 log10(peak^2 / MSE)`` over valid pixels and the 3 channels, in LINEAR albedo units with peak 1; the scaled
  prediction is not clipped. A perfect prediction gives +inf.
* Roughness / metallic: RMSE over valid pixels.
* Depth: scale-and-shift-invariant AbsRel: the prediction is aligned by least squares ``a p + b`` to the target
  over valid pixels with target depth > 0 (per clip, or per frame), then ``mean(|a p + b - g| / g)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from neural_render.errors import NeuralRenderError
from neural_render.metrics._common import check_pair, masked_mean, valid_mask

ANGLE_THRESHOLDS_DEG = (11.25, 22.5, 30.0)
_SCOPES = ("clip", "frame")


def _reduce_dims(per: str) -> tuple[int, ...]:
    """Dimensions of a (B, T, C, H, W) tensor that one fit/average spans (channel kept)."""
    if per not in _SCOPES:
        raise NeuralRenderError(f"per must be one of {_SCOPES}, got {per!r}")
    return (1, 3, 4) if per == "clip" else (3, 4)


# ---------------------------------------------------------------------------------------------------- normals
def angular_error_deg(pred: Tensor, target: Tensor) -> Tensor:
    """Angle between normal fields (B, T, 3, H, W) -> (B, T, 1, H, W) degrees in [0, 180]."""
    check_pair(pred, target, 3)
    p = torch.nn.functional.normalize(pred.double(), dim=2, eps=1e-12)
    g = torch.nn.functional.normalize(target.double(), dim=2, eps=1e-12)
    # atan2(|p x g|, p . g) is accurate near 0 and 180 degrees, unlike acos of the clamped dot product
    cross = torch.linalg.cross(p, g, dim=2).norm(dim=2, keepdim=True)
    dot = (p * g).sum(dim=2, keepdim=True)
    angle = torch.rad2deg(torch.atan2(cross, dot))
    zero = (p.norm(dim=2, keepdim=True) == 0) | (g.norm(dim=2, keepdim=True) == 0)
    return torch.where(zero, torch.full_like(angle, 90.0), angle).float()


def angle_stats(angles_deg: Tensor) -> dict[str, float]:
    """Summary of a 1-D pool of angular errors (degrees): mean, median and % below each threshold.

    Keys: ``mean``, ``median``, ``pct_11.25``, ``pct_22.5``, ``pct_30`` (percentages 0..100); NaN when empty.
    """
    a = torch.as_tensor(angles_deg).reshape(-1).double()
    if a.numel() == 0:
        nan = float("nan")
        return {"mean": nan, "median": nan, **{f"pct_{t:g}": nan for t in ANGLE_THRESHOLDS_DEG}}
    stats = {"mean": float(a.mean()), "median": float(a.median())}
    for threshold in ANGLE_THRESHOLDS_DEG:
        stats[f"pct_{threshold:g}"] = float((a < threshold).double().mean() * 100.0)
    return stats


def normal_angles(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """1-D tensor of the angular errors (degrees) at the valid pixels of all clips (for pooling across batches)."""
    angles = angular_error_deg(pred, target)
    return angles[valid_mask(mask, pred)]


def normal_error_stats(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> dict[str, float]:
    """:func:`angle_stats` over the valid pixels of every clip of the batch (pooled)."""
    return angle_stats(normal_angles(pred, target, mask))


# ---------------------------------------------------------------------------------------------------- albedo
def least_squares_scale(pred: Tensor, target: Tensor, mask: Tensor | None = None, per: str = "clip") -> Tensor:
    """Per-channel scale s minimising sum over valid pixels of (s p - g)^2.

    pred, target: (B, T, C, H, W). Returns (B, 1, C, 1, 1) for ``per="clip"`` or (B, T, C, 1, 1) for ``"frame"``;
    0 where the prediction is zero on every valid pixel.
    """
    check_pair(pred, target)
    valid = valid_mask(mask, pred).expand_as(pred)
    p = torch.where(valid, pred.double(), torch.zeros((), dtype=torch.float64))
    g = torch.where(valid, target.double(), torch.zeros((), dtype=torch.float64))
    dims = _reduce_dims(per)
    num = (p * g).sum(dim=dims, keepdim=True)
    den = (p * p).sum(dim=dims, keepdim=True)
    return torch.where(den > 0, num / den.clamp_min(1e-300), torch.zeros_like(den)).to(pred.dtype)


def psnr_from_mse(mse: Tensor, peak: float = 1.0) -> Tensor:
    """10 log10(peak^2 / mse) elementwise; +inf where mse == 0, NaN stays NaN."""
    mse = torch.as_tensor(mse, dtype=torch.float64)
    out = 10.0 * torch.log10(peak * peak / mse.clamp_min(1e-300))
    out = torch.where(mse == 0, torch.full_like(out, math.inf), out)
    return torch.where(torch.isnan(mse), mse, out)


def albedo_si_mse(pred: Tensor, target: Tensor, mask: Tensor | None = None, per: str = "clip") -> Tensor:
    """Scale-invariant MSE per clip (B,): mean over valid pixels and channels of (s_c p - g)^2 (module doc)."""
    scaled = pred * least_squares_scale(pred, target, mask, per)
    valid = valid_mask(mask, pred)
    return masked_mean((scaled.double() - target.double()) ** 2, valid, (1, 2, 3, 4))


def albedo_si_psnr(pred: Tensor, target: Tensor, mask: Tensor | None = None, per: str = "clip",
                   peak: float = 1.0) -> Tensor:
    """Scale-invariant albedo PSNR per clip (B,) in dB (float64), +inf for a prediction equal to the target up to
    a per-channel scale. pred, target: (B, T, 3, H, W) linear albedo."""
    check_pair(pred, target, 3)
    return psnr_from_mse(albedo_si_mse(pred, target, mask, per), peak)


# ---------------------------------------------------------------------------------------------------- scalars
def masked_rmse(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Root mean squared error per clip (B,) over valid pixels and channels (roughness, metallic: 1 channel)."""
    check_pair(pred, target)
    valid = valid_mask(mask, pred)
    return masked_mean((pred.double() - target.double()) ** 2, valid, (1, 2, 3, 4)).sqrt()


# ---------------------------------------------------------------------------------------------------- depth
def fit_scale_shift(pred: Tensor, target: Tensor, valid: Tensor, per: str = "clip") -> tuple[Tensor, Tensor]:
    """Least-squares (a, b) minimising sum over valid of (a p + b - g)^2.

    pred, target: (B, T, 1, H, W); valid: bool (B, T, 1, H, W). Returns a, b shaped (B, 1, 1, 1, 1) per clip or
    (B, T, 1, 1, 1) per frame. A constant prediction gets a = 0 and b = mean(g); no valid pixel gives a = 0, b = 0.
    """
    dims = _reduce_dims(per)
    w = valid.double()
    p = torch.where(valid, pred.double(), torch.zeros((), dtype=torch.float64))
    g = torch.where(valid, target.double(), torch.zeros((), dtype=torch.float64))
    n = w.sum(dim=dims, keepdim=True)
    sp, sg = p.sum(dim=dims, keepdim=True), g.sum(dim=dims, keepdim=True)
    spp, spg = (p * p).sum(dim=dims, keepdim=True), (p * g).sum(dim=dims, keepdim=True)
    n_safe = n.clamp_min(1.0)
    var = spp - sp * sp / n_safe                     # n * variance of p over valid pixels
    cov = spg - sp * sg / n_safe
    degenerate = var <= 1e-12 * spp.clamp_min(1e-300)
    a = torch.where(degenerate, torch.zeros_like(var), cov / var.clamp_min(1e-300))
    b = torch.where(n > 0, (sg - a * sp) / n_safe, torch.zeros_like(n))
    return a.to(pred.dtype), b.to(pred.dtype)


def depth_absrel_ssi(pred: Tensor, target: Tensor, mask: Tensor | None = None, per: str = "clip") -> Tensor:
    """Scale-and-shift-invariant AbsRel per clip (B,) (float64); valid = mask & target depth > 0.

    pred, target: (B, T, 1, H, W) depth (any units for pred; target in scene units, 0 = no surface).
    """
    check_pair(pred, target, 1)
    valid = valid_mask(mask, pred) & (target > 0) & torch.isfinite(pred)
    a, b = fit_scale_shift(pred, target, valid, per)
    aligned = a.double() * pred.double() + b.double()
    rel = (aligned - target.double()).abs() / target.double().clamp_min(1e-12)
    return masked_mean(rel, valid, (1, 2, 3, 4))
