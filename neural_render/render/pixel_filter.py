"""Pixel reconstruction filter for shaded G-buffers (pure function).

A path tracer's pixel integrates radiance over its footprint (Mitsuba's ``box`` filter in the synthetic engine), while
a G-buffer holds ONE sample at the pixel centre, so a shader fed with it aliases at every edge. A separable Gaussian of
standard deviation ``sigma`` pixels approximates that footprint integration on the shaded image (sigma 0.5 px: the
variance of a 1-pixel box, 1/12, plus the spread of the neighbouring centre samples).

The blur is kornia's (``kornia.filters.gaussian_blur2d``, separable, replicate border) with ``2 r + 1`` taps,
r = ceil(4 sigma); it agrees with a direct separable convolution to float32 rounding (~2e-7 relative).
"""

from __future__ import annotations

import math

import torch
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


def filter_radius(sigma: float) -> int:
    """Half-width r (pixels) of the pixel filter: ceil(4 sigma), at least 1; NeuralRenderError unless sigma > 0."""
    if not sigma > 0:
        raise NeuralRenderError(f"pixel filter sigma must be > 0, got {sigma}")
    return max(1, int(torch.tensor(4.0 * sigma).ceil()))


def gaussian_taps(sigma: float, radius: int | None = None) -> Tensor:
    """Normalised 1-D Gaussian taps (2 r + 1,) float32 (kornia's), r = :func:`filter_radius` unless given."""
    from kornia.filters import get_gaussian_kernel1d

    r = filter_radius(sigma) if radius is None else int(radius)
    return get_gaussian_kernel1d(2 * r + 1, float(sigma))[0]


def pixel_filter(video: Tensor, sigma: float = PIXEL_FILTER_SIGMA) -> Tensor:
    """Separable Gaussian blur of video (B, T, C, H, W) (any units; linear radiance for shading), replicate border.

    sigma: pixels (0 returns the input unchanged). Energy preserving: a constant image is unchanged.
    """
    if video.ndim != 5:
        raise NeuralRenderError(f"pixel_filter expects (B, T, C, H, W), got shape {tuple(video.shape)}")
    if sigma == 0:
        return video
    from kornia.filters import gaussian_blur2d

    k = 2 * filter_radius(sigma) + 1
    b, t, c, h, w = video.shape
    out = gaussian_blur2d(video.reshape(b * t, c, h, w), (k, k), (float(sigma), float(sigma)), border_type="replicate")
    return out.reshape(b, t, c, h, w)
