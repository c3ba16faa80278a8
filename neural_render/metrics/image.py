"""Image similarity (pure functions): PSNR and SSIM of videos (B, T, C, H, W).

PSNR: ``10 log10(peak^2 / MSE)`` per clip over valid pixels and channels (+inf for identical inputs).
SSIM: Wang et al. 2004 with an 11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, dynamic range ``peak``,
computed per frame and channel on the 'valid' region of the window (no padding), averaged over channels and
frames -> (B,). Inputs are compared as given (pass display-space images for perceptual comparisons).
"""

from __future__ import annotations

import torch
from torch import Tensor

from neural_render.errors import NeuralRenderError
from neural_render.metrics._common import check_pair, masked_mean, valid_mask
from neural_render.metrics.gbuffer import psnr_from_mse


def psnr(pred: Tensor, target: Tensor, mask: Tensor | None = None, peak: float = 1.0) -> Tensor:
    """PSNR per clip (B,) float64 dB over valid pixels (mask (B, T, 1, H, W) or None)."""
    check_pair(pred, target)
    mse = masked_mean((pred.double() - target.double()) ** 2, valid_mask(mask, pred), (1, 2, 3, 4))
    return psnr_from_mse(mse, peak)


def _gaussian_window(size: int, sigma: float, dtype) -> Tensor:
    x = torch.arange(size, dtype=dtype) - (size - 1) / 2.0
    g = torch.exp(-(x * x) / (2.0 * sigma * sigma))
    return g / g.sum()


def ssim(pred: Tensor, target: Tensor, peak: float = 1.0, window_size: int = 11, sigma: float = 1.5) -> Tensor:
    """Mean SSIM per clip (B,) float64 (see module doc). Frames must be at least ``window_size`` pixels wide/high."""
    check_pair(pred, target)
    b, t, c, h, w = pred.shape
    if h < window_size or w < window_size:
        raise NeuralRenderError(f"SSIM needs frames of at least {window_size}x{window_size}, got {h}x{w}")
    x = pred.double().reshape(b * t * c, 1, h, w)
    y = target.double().reshape(b * t * c, 1, h, w)
    g = _gaussian_window(window_size, sigma, torch.float64)
    kernel_h, kernel_w = g.reshape(1, 1, -1, 1), g.reshape(1, 1, 1, -1)

    def blur(z: Tensor) -> Tensor:
        return torch.nn.functional.conv2d(torch.nn.functional.conv2d(z, kernel_h), kernel_w)

    mu_x, mu_y = blur(x), blur(y)
    sxx = blur(x * x) - mu_x * mu_x
    syy = blur(y * y) - mu_y * mu_y
    sxy = blur(x * y) - mu_x * mu_y
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x * mu_x + mu_y * mu_y + c1) * (sxx + syy + c2))
    return ssim_map.reshape(b, -1).mean(dim=1)
