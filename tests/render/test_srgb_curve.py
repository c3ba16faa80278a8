"""The sRGB transfer functions equal kornia's on (*, 3, H, W) images in [0, 1] and also take any other shape."""

import torch

from neural_render.render.tonemap import linear_to_srgb, srgb_to_linear


def test_srgb_curves_equal_kornias_and_accept_any_shape():
    from kornia.color import linear_rgb_to_rgb, rgb_to_linear_rgb

    x = torch.rand(2, 3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    x[0, 0, 0, 0, :4] = torch.tensor([0.0, 0.0031308, 0.04045, 1.0])  # both thresholds and the ends
    assert torch.equal(linear_to_srgb(x), linear_rgb_to_rgb(x))
    assert torch.equal(srgb_to_linear(x), rgb_to_linear_rgb(x))
    table = torch.arange(256) / 255.0  # shapes kornia rejects: a decoding table, a colour, a 1-channel pass
    assert torch.allclose(linear_to_srgb(srgb_to_linear(table)), table, atol=1e-6)
    assert torch.equal(srgb_to_linear(torch.tensor([2.0, -1.0, 0.5])), rgb_to_linear_rgb(torch.tensor(
        [1.0, 0.0, 0.5]).view(1, 3, 1, 1)).view(3))  # clamped to [0, 1] first
    assert linear_to_srgb(torch.rand(1, 2, 1, 4, 4)).shape == (1, 2, 1, 4, 4)
