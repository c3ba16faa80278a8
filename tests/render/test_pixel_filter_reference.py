"""pixel_filter (kornia's Gaussian blur underneath) against a direct separable convolution with replicate padding."""

import pytest
import torch
import torch.nn.functional as F

from neural_render.render.pixel_filter import filter_radius, gaussian_taps, pixel_filter


def _reference(video, sigma):
    r = max(1, int(torch.tensor(4.0 * sigma).ceil()))
    x = torch.arange(-r, r + 1, dtype=torch.float64)
    g = torch.exp(-x * x / (2 * sigma * sigma))
    g = g / g.sum()
    b, t, c, h, w = video.shape
    flat = F.pad(video.double().reshape(-1, 1, h, w), (r, r, r, r), mode="replicate")
    return F.conv2d(F.conv2d(flat, g.view(1, 1, -1, 1)), g.view(1, 1, 1, -1)).reshape(b, t, c, h, w)


@pytest.mark.parametrize("sigma", [0.3, 0.5, 0.8, 1.7])
def test_pixel_filter_matches_a_separable_convolution_with_replicate_border(sigma):
    video = torch.rand(2, 2, 3, 9, 13, generator=torch.Generator().manual_seed(3)) * 10
    video[..., 0, :] = 50.0  # a bright border row: replicate padding keeps it bright, zero / reflect padding would not
    out = pixel_filter(video, sigma)
    assert out.dtype == torch.float32 and out.shape == video.shape
    assert torch.allclose(out.double(), _reference(video, sigma), rtol=1e-6, atol=1e-5)


def test_radius_taps_and_gradient():
    assert [filter_radius(s) for s in (0.1, 0.25, 0.5, 0.6)] == [1, 1, 2, 3]
    assert gaussian_taps(0.5, radius=3).numel() == 7
    video = torch.rand(1, 2, 1, 6, 6, requires_grad=True)
    pixel_filter(video, 0.5).sum().backward()
    assert torch.allclose(video.grad.sum(), torch.tensor(float(video.numel())), rtol=1e-5)  # energy preserving
