"""Degraded "real"-domain stand-in G-buffers: valid ranges, unit normals, no mask, seeded, actually degraded."""

import torch

from neural_render.data.degraded_real import degrade_gbuffer
from neural_render.demo.scene import demo_scene


def test_degraded_gbuffer_is_valid_seeded_and_different_from_the_input():
    g = demo_scene(3, 16, 12).gbuffer
    a = degrade_gbuffer(g, torch.Generator().manual_seed(1))
    b = degrade_gbuffer(g, torch.Generator().manual_seed(1))
    c = degrade_gbuffer(g, torch.Generator().manual_seed(2))
    assert "mask" not in a.passes and set(a.passes) == set(g.passes) - {"mask"}
    for name, x in a.passes.items():
        assert torch.equal(x, b.passes[name]), name          # same seed, same stand-in
        assert not torch.equal(x, c.passes[name]), name      # another seed, another one
        assert (x - g.passes[name]).abs().mean() > 1e-3, name  # degraded, not a copy
    assert torch.allclose(a.normal.norm(dim=2), torch.ones(()), atol=1e-4)
    for name in ("basecolor", "roughness", "metallic"):
        assert float(a.passes[name].min()) >= 0.0 and float(a.passes[name].max()) <= 1.0
    assert float(a.depth.min()) >= 0.0
