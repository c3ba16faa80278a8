"""SSIM (kornia underneath) against a direct float64 implementation of Wang et al. 2004 and an analytic case."""

import pytest
import torch
import torch.nn.functional as F

from neural_render.errors import NeuralRenderError
from neural_render.metrics import ssim


def _reference_ssim(x, y, peak=1.0, size=11, sigma=1.5):
    """Per-clip mean SSIM: separable Gaussian window, 'valid' region (no padding), float64."""
    b, t, c, h, w = x.shape
    x = x.double().reshape(-1, 1, h, w)
    y = y.double().reshape(-1, 1, h, w)
    g = torch.exp(-((torch.arange(size, dtype=torch.float64) - (size - 1) / 2) ** 2) / (2 * sigma * sigma))
    g = g / g.sum()

    def blur(z):
        return F.conv2d(F.conv2d(z, g.view(1, 1, -1, 1)), g.view(1, 1, 1, -1))

    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    m = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return m.reshape(b, -1).mean(1)


@pytest.mark.parametrize("shape,peak", [((2, 3, 3, 16, 16), 1.0), ((1, 2, 1, 11, 13), 2.0), ((1, 1, 3, 24, 40), 1.0)])
def test_ssim_matches_the_direct_formula(shape, peak):
    gen = torch.Generator().manual_seed(sum(shape))
    x = torch.rand(shape, generator=gen) * peak
    y = (x + 0.15 * peak * torch.randn(shape, generator=gen)).clamp(0, peak)
    out = ssim(x, y, peak=peak)
    assert out.dtype == torch.float64 and out.shape == (shape[0],)
    assert torch.allclose(out, _reference_ssim(x, y, peak), rtol=0, atol=1e-12)


def test_ssim_of_two_flat_images_is_the_luminance_term():
    a, b = 0.2, 0.7
    x, y = torch.full((1, 1, 1, 12, 12), a), torch.full((1, 1, 1, 12, 12), b)
    c1 = 0.01 ** 2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)  # zero variances: the contrast term is c2 / c2 = 1
    assert float(ssim(x, y)[0]) == pytest.approx(expected, rel=1e-6)


def test_ssim_window_must_be_odd_and_fit():
    x = torch.rand(1, 1, 1, 12, 12)
    with pytest.raises(NeuralRenderError, match="odd"):
        ssim(x, x, window_size=10)
    with pytest.raises(NeuralRenderError, match="at least 13x13"):
        ssim(x, x, window_size=13)
