"""Conventions of the shared types: camera axes, G-buffer validation and packing."""

import math

import pytest
import torch

from neural_render.errors import NeuralRenderError
from neural_render.types import (
    Camera,
    EnvMap,
    GBuffer,
    composite_nearest,
    depth_scale_of,
    intrinsics_from_fov,
    look_at,
    pack_pass,
    to_mitsuba_to_world,
    unpack_pass,
)


def _gbuffer(b=1, t=2, h=4, w=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = torch.nn.functional.normalize(torch.randn(b, t, 3, h, w, generator=g), dim=2)
    return GBuffer(basecolor=torch.rand(b, t, 3, h, w, generator=g), normal=n,
                   depth=torch.rand(b, t, 1, h, w, generator=g) * 5 + 0.1,
                   roughness=torch.rand(b, t, 1, h, w, generator=g), metallic=torch.rand(b, t, 1, h, w, generator=g),
                   mask=torch.ones(b, t, 1, h, w))


def test_look_at_uses_opengl_axes():
    c2w = look_at((0.0, 0.0, 3.0), (0.0, 0.0, 0.0))
    # camera looks along -Z (towards the origin), +X right, +Y up
    assert torch.allclose(c2w[:3, 2], torch.tensor([0.0, 0.0, 1.0]))
    assert torch.allclose(c2w[:3, 0], torch.tensor([1.0, 0.0, 0.0]))
    assert torch.allclose(c2w[:3, 1], torch.tensor([0.0, 1.0, 0.0]))
    assert torch.allclose(c2w[:3, 3], torch.tensor([0.0, 0.0, 3.0]))


def test_ray_directions_project_back_to_pixel_centres():
    cam = Camera.from_fov(60.0, 8, 6, look_at((1.0, 2.0, 3.0), (0.0, 0.0, 0.0))[None, None])
    d = cam.ray_directions()[0, 0]  # (3, H, W)
    fx, fy, cx, cy = cam.intrinsics[0]
    u = cx + fx * d[0] / -d[2]
    v = cy - fy * d[1] / -d[2]
    jj, ii = torch.meshgrid(torch.arange(8) + 0.5, torch.arange(6) + 0.5, indexing="xy")
    assert torch.allclose(u, jj.float(), atol=1e-4) and torch.allclose(v, ii.float(), atol=1e-4)
    assert torch.allclose(d.norm(dim=0), torch.ones(6, 8))
    # top-left pixel looks up-left: x < 0, y > 0
    assert d[0, 0, 0] < 0 and d[1, 0, 0] > 0


def test_intrinsics_from_fov():
    k = intrinsics_from_fov(90.0, 100, 50)
    assert math.isclose(float(k[0]), 50.0, rel_tol=1e-6) and float(k[2]) == 50.0 and float(k[3]) == 25.0


def test_mitsuba_to_world_flips_x_and_z():
    c2w = look_at((0.0, 0.0, 3.0), (0.0, 0.0, 0.0))
    m = to_mitsuba_to_world(c2w)
    assert torch.allclose(m[:3, 2], torch.tensor([0.0, 0.0, -1.0]))  # Mitsuba looks along its +Z: towards origin
    assert torch.allclose(m[:3, 0], torch.tensor([-1.0, 0.0, 0.0]))  # Mitsuba +X is image left
    assert torch.allclose(to_mitsuba_to_world(m), c2w)


def test_camera_rejects_bad_pose():
    with pytest.raises(NeuralRenderError, match="orthonormal"):
        Camera(torch.tensor([[10.0, 10.0, 4.0, 4.0]]), torch.eye(4)[None, None] * 2, 8, 8)
    with pytest.raises(NeuralRenderError, match="NaN"):
        Camera(torch.tensor([[float("nan"), 10.0, 4.0, 4.0]]), torch.eye(4)[None, None], 8, 8)


def test_gbuffer_valid_passes_and_shape():
    g = _gbuffer().validate()
    assert g.shape == (1, 2, 4, 5)
    assert list(g.passes) == ["basecolor", "normal", "depth", "roughness", "metallic", "mask"]
    assert GBuffer(normal=g.normal).validate().shape == (1, 2, 4, 5)


@pytest.mark.parametrize("change, match", [
    (dict(depth=torch.full((1, 2, 1, 4, 5), float("nan"))), "NaN"),
    (dict(basecolor=torch.rand(1, 2, 3, 4, 6)), "has \\(B, T, H, W\\)"),
    (dict(roughness=torch.rand(1, 2, 3, 4, 5)), "must be \\(B, T, 1, H, W\\)"),
    (dict(normal=torch.ones(1, 2, 3, 4, 5)), "not unit length"),
    (dict(metallic=torch.full((1, 2, 1, 4, 5), 1.5)), "\\[0, 1\\]"),
    (dict(depth=-torch.ones(1, 2, 1, 4, 5)), ">= 0"),
    (dict(mask=torch.ones(1, 2, 1, 4, 5, dtype=torch.float64)), "float32"),
])
def test_gbuffer_validation_rejects(change, match):
    with pytest.raises(NeuralRenderError, match=match):
        _gbuffer().replace(**change).validate("clip_0007")


def test_validation_error_names_the_source():
    with pytest.raises(NeuralRenderError) as err:
        _gbuffer().replace(depth=torch.full((1, 2, 1, 4, 5), float("inf"))).validate("frames/000003.exr")
    assert err.value.path == "frames/000003.exr" and "depth" in err.value.reason


def test_background_normals_may_be_zero_when_masked():
    g = _gbuffer()
    mask = torch.ones(1, 2, 1, 4, 5)
    mask[..., 0, 0] = 0
    n = g.normal.clone()
    n[..., 0, 0] = 0
    g.replace(normal=n, mask=mask).validate()


@pytest.mark.parametrize("name", ["basecolor", "normal", "depth", "roughness", "metallic", "mask"])
def test_packing_round_trip(name):
    g = _gbuffer(b=2)
    scale = depth_scale_of(g.depth, g.mask)
    packed = g.pack(name, depth_scale=scale)
    assert packed.shape == (2, 2, 3, 4, 5)
    assert float(packed.min()) >= -1.0 and float(packed.max()) <= 1.0
    back = unpack_pass(name, packed, depth_scale=scale)
    assert torch.allclose(back, getattr(g, name), atol=1e-5)


def test_depth_packing_uses_per_clip_scale():
    depth = torch.stack([torch.full((1, 1, 2, 2), 2.0), torch.full((1, 1, 2, 2), 8.0)])
    scale = depth_scale_of(depth)
    assert torch.equal(scale, torch.tensor([2.0, 8.0]))
    assert torch.equal(pack_pass("depth", depth, scale), torch.ones(2, 1, 3, 2, 2))
    with pytest.raises(NeuralRenderError, match="depth_scale"):
        pack_pass("depth", depth)


def test_envmap_validation():
    EnvMap(torch.rand(3, 8, 16))
    with pytest.raises(NeuralRenderError, match="\\(3, H, W\\)"):
        EnvMap(torch.rand(8, 16))
    with pytest.raises(NeuralRenderError, match="NaN"):
        EnvMap(torch.full((3, 8, 16), float("nan")))
    with pytest.raises(NeuralRenderError, match="negative"):
        EnvMap(-torch.ones(3, 8, 16))


def test_composite_nearest_picks_the_closest_valid_layer():
    a, b = _gbuffer(seed=1), _gbuffer(seed=2)
    b.mask[..., 0, 0] = 0  # b is invalid at (0, 0): a must win there whatever the depths
    out = composite_nearest(a, b)
    closer_b = (b.depth < a.depth) & (b.mask > 0.5)
    for name in ("basecolor", "normal", "depth", "roughness", "metallic"):
        expect = torch.where(closer_b, getattr(b, name), getattr(a, name))
        assert torch.equal(getattr(out, name), expect)
    assert torch.equal(out.depth[..., 0, 0], a.depth[..., 0, 0])
