"""Pixel reconstruction filter for shaded G-buffers (pure function).

A path tracer's pixel integrates radiance over its footprint (Mitsuba's ``box`` filter in the synthetic engine), while
a G-buffer holds ONE sample at the pixel centre, so a shader fed with it aliases at every edge. A separable Gaussian of
standard deviation ``sigma`` pixels approximates that footprint integration on the shaded image (sigma 0.5 px: the
variance of a 1-pixel box, 1/12, plus the spread of the neighbouring centre samples).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from neural_render.errors import NeuralRenderError

#: default standard deviation (pixels) of the pixel filter applied to split-sum renders
PIXEL_FILTER_SIGMA = 0.5


def checked_sigma(value, name: str = "sigma", source=None) -> float:
    """``value`` (None = 0) as a pixel-filter standard deviation in pixels: a finite float >= 0, else
    NeuralRenderError naming ``name`` (and ``source``, e.g. a model folder)."""
    sigma = float(value or 0.0)
    if not (math.isfinite(sigma) and sigma >= 0.0):
        raise NeuralRenderError(f"{name} must be a finite number of pixels >= 0, got {value}", source)
    return sigma


def gaussian_taps(sigma: float, radius: int | None = None) -> Tensor:
    """Normalised 1-D Gaussian taps (2 r + 1,) float32, r = ceil(4 sigma) (at least 1) unless given."""
    if not sigma > 0:
        raise NeuralRenderError(f"pixel filter sigma must be > 0, got {sigma}")
    r = max(1, int(torch.tensor(4.0 * sigma).ceil())) if radius is None else int(radius)
    x = torch.arange(-r, r + 1, dtype=torch.float32)
    g = torch.exp(-x * x / (2.0 * sigma * sigma))
    return g / g.sum()


def pixel_filter(video: Tensor, sigma: float = PIXEL_FILTER_SIGMA) -> Tensor:
    """Separable Gaussian blur of video (B, T, C, H, W) (any units; linear radiance for shading), replicate border.

    sigma: pixels (0 returns the input unchanged). Energy preserving: a constant image is unchanged.
    """
    if video.ndim != 5:
        raise NeuralRenderError(f"pixel_filter expects (B, T, C, H, W), got shape {tuple(video.shape)}")
    if sigma == 0:
        return video
    g = gaussian_taps(sigma).to(video)
    r = (g.numel() - 1) // 2
    b, t, c, h, w = video.shape
    flat = F.pad(video.reshape(b * t * c, 1, h, w), (r, r, r, r), mode="replicate")
    flat = F.conv2d(F.conv2d(flat, g.view(1, 1, -1, 1)), g.view(1, 1, 1, -1))
    return flat.reshape(b, t, c, h, w)
