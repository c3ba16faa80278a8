"""Pixel reconstruction filter: identity at sigma 0, constant images and energy preserved, separable Gaussian taps."""

import math

import pytest
import torch

from neural_render.errors import NeuralRenderError
from neural_render.render.pixel_filter import gaussian_taps, pixel_filter


def test_sigma_zero_is_the_identity_and_constants_are_unchanged():
    video = torch.rand(2, 3, 3, 9, 11)
    assert pixel_filter(video, 0.0) is video
    flat = torch.full((1, 2, 3, 8, 8), 0.37)
    assert torch.allclose(pixel_filter(flat, 0.5), flat, atol=1e-6)


def test_energy_is_preserved_and_an_impulse_becomes_the_outer_product_of_the_taps():
    video = torch.zeros(1, 1, 1, 15, 15)
    video[..., 7, 7] = 1.0
    out = pixel_filter(video, 0.8)
    g = gaussian_taps(0.8)
    r = (g.numel() - 1) // 2
    assert float(out.sum()) == pytest.approx(1.0, abs=1e-6)  # the impulse is far from the border
    assert torch.allclose(out[0, 0, 0, 7 - r:8 + r, 7 - r:8 + r], torch.outer(g, g), atol=1e-7)
    var = float((out[0, 0, 0].sum(0) * (torch.arange(15) - 7.0) ** 2).sum())
    assert var == pytest.approx(0.8 ** 2, rel=0.02)  # its horizontal variance is sigma^2 (truncation at 4 sigma)


def test_taps_and_bad_input():
    g = gaussian_taps(0.5)
    assert g.numel() == 5 and float(g.sum()) == pytest.approx(1.0) and torch.equal(g, g.flip(0))
    assert float(g[1] / g[2]) == pytest.approx(math.exp(-1.0 / (2 * 0.25)), rel=1e-5)
    with pytest.raises(NeuralRenderError, match="sigma"):
        gaussian_taps(-1.0)
    with pytest.raises(NeuralRenderError, match="B, T, C, H, W"):
        pixel_filter(torch.zeros(3, 8, 8))
