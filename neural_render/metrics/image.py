"""Image similarity (pure functions): PSNR and SSIM of videos (B, T, C, H, W).

PSNR: ``10 log10(peak^2 / MSE)`` per clip over valid pixels and channels (+inf for identical inputs).
SSIM: Wang et al. 2004 with an 11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, dynamic range ``peak``,
computed per frame and channel on the 'valid' region of the window (no padding), averaged over channels and
frames -> (B,). Inputs are compared as given (pass display-space images for perceptual comparisons). The SSIM map is
kornia's (``kornia.metrics.ssim``, ``padding="valid"``, ``eps=0``: the plain formula), evaluated in float64.
"""

from __future__ import annotations

from torch import Tensor

from neural_render.errors import NeuralRenderError
from neural_render.metrics._common import check_pair, masked_mean, valid_mask
from neural_render.metrics.gbuffer import psnr_from_mse


def psnr(pred: Tensor, target: Tensor, mask: Tensor | None = None, peak: float = 1.0) -> Tensor:
    """PSNR per clip (B,) float64 dB over valid pixels (mask (B, T, 1, H, W) or None)."""
    check_pair(pred, target)
    mse = masked_mean((pred.double() - target.double()) ** 2, valid_mask(mask, pred), (1, 2, 3, 4))
    return psnr_from_mse(mse, peak)


def ssim(pred: Tensor, target: Tensor, peak: float = 1.0, window_size: int = 11) -> Tensor:
    """Mean SSIM per clip (B,) float64 (see module doc). ``window_size``: odd, in pixels (kornia's window has sigma 1.5
    whatever its size); frames must be at least that wide and high."""
    from kornia.metrics import ssim as ssim_map

    check_pair(pred, target)
    b, t, c, h, w = pred.shape
    if window_size < 1 or window_size % 2 == 0:
        raise NeuralRenderError(f"SSIM window size must be a positive odd number of pixels, got {window_size}")
    if h < window_size or w < window_size:
        raise NeuralRenderError(f"SSIM needs frames of at least {window_size}x{window_size}, got {h}x{w}")
    x = pred.double().reshape(b * t * c, 1, h, w)
    y = target.double().reshape(b * t * c, 1, h, w)
    return ssim_map(x, y, window_size, max_val=float(peak), eps=0.0, padding="valid").reshape(b, -1).mean(dim=1)
