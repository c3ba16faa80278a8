"""Our texture evaluation (raster/material.py) against Mitsuba's own ``bitmap`` / constant textures, both variants."""

import numpy as np
import pytest
import torch

from neural_render.errors import NeuralRenderError
from neural_render.raster import Material, sample_texture


@pytest.fixture(params=["llvm_ad_rgb", "scalar_rgb"])
def mi(request, use_variant):
    return use_variant(request.param)  # tests/conftest.py


def mitsuba_eval(mi, texture, uv: np.ndarray, channels: int) -> np.ndarray:
    """Evaluate a loaded Mitsuba texture at uv (N, 2) -> (N, channels)."""
    import drjit as dr

    if mi.variant().startswith("scalar"):
        out = []
        for u, v in uv:
            si = dr.zeros(mi.SurfaceInteraction3f)
            si.uv = mi.Point2f(float(u), float(v))
            value = texture.eval(si) if channels == 3 else texture.eval_1(si)
            out.append(np.array(value, dtype=np.float32).reshape(-1))
        return np.stack(out)
    si = dr.zeros(mi.SurfaceInteraction3f, len(uv))
    si.uv = mi.Point2f(mi.Float(np.ascontiguousarray(uv[:, 0])), mi.Float(np.ascontiguousarray(uv[:, 1])))
    if channels == 3:
        value = texture.eval(si)
        out = np.stack([np.broadcast_to(np.array(c), (len(uv),)) for c in (value.x, value.y, value.z)], 1)
    else:
        out = np.broadcast_to(np.array(texture.eval_1(si)), (len(uv),))[:, None]
    return np.ascontiguousarray(out, dtype=np.float32)  # constants come back as one (broadcast) lane


def boundary_uvs(rng, width: int, height: int) -> np.ndarray:
    """Random uvs in [-1, 2] plus every texel boundary k / size and its float32 neighbours."""
    def edges(n):
        values = []
        for k in range(-n, 2 * n + 1):
            x = np.float32(k / n)
            values += [x, np.nextafter(x, np.float32(-9)), np.nextafter(x, np.float32(9))]
        return np.array(values, np.float32)

    eu, ev = edges(width), edges(height)
    grid = np.stack(np.meshgrid(eu[::2], ev[::2]), -1).reshape(-1, 2)
    random = rng.uniform(-1.0, 2.0, size=(400, 2)).astype(np.float32)
    rows = np.stack([eu, np.full_like(eu, 0.37)], 1)
    cols = np.stack([np.full_like(ev, 0.61), ev], 1)
    return np.concatenate([random, rows, cols, grid]).astype(np.float32)


def test_nearest_lookup_is_bitwise_mitsuba_bitmap(mi):
    from neural_render.synth.mitsuba_scene import texture_dict

    rng = np.random.default_rng(3)
    for channels, (h, w) in ((3, (5, 7)), (1, (4, 3))):
        tex = torch.from_numpy(rng.uniform(0, 1, (channels, h, w)).astype(np.float32))
        uv = boundary_uvs(rng, w, h)
        ours = sample_texture(tex, torch.from_numpy(uv), "nearest",
                              flush_denormals=mi.variant().startswith("llvm")).numpy()
        theirs = mitsuba_eval(mi, mi.load_dict(texture_dict(mi, tex, "nearest")), uv, channels)
        assert np.array_equal(ours, theirs), np.abs(ours - theirs).max()


def test_bilinear_lookup_matches_mitsuba_to_float_rounding(mi):
    from neural_render.synth.mitsuba_scene import texture_dict

    rng = np.random.default_rng(4)
    tex = torch.from_numpy(rng.uniform(0, 1, (3, 6, 9)).astype(np.float32))
    uv = rng.uniform(-1.0, 2.0, size=(300, 2)).astype(np.float32)
    ours = sample_texture(tex, torch.from_numpy(uv), "bilinear").numpy()
    theirs = mitsuba_eval(mi, mi.load_dict(texture_dict(mi, tex, "bilinear")), uv, 3)
    assert np.abs(ours - theirs).max() < 1e-5


def test_constant_textures_are_exact_in_mitsuba(mi):
    from neural_render.synth.mitsuba_scene import texture_dict

    material = Material((0.123456789, 0.5, 0.987654321), 0.3141592, 0.7)
    uv = np.array([[0.2, 0.3], [5.5, -2.25]], np.float32)
    ours = material.evaluate(torch.from_numpy(uv))
    colour = mitsuba_eval(mi, mi.load_dict(texture_dict(mi, material.basecolor, "nearest")), uv, 3)
    assert np.array_equal(ours["basecolor"].numpy(), colour)
    assert np.array_equal(ours["basecolor"][0].numpy(), material.basecolor.reshape(3).numpy())
    # scalar constants become Python floats in the scene dict: the float32 value must survive unchanged
    value = texture_dict(mi, material.roughness, "nearest")
    assert np.float32(value) == material.roughness.reshape(()).item()


def test_material_validation():
    with pytest.raises(NeuralRenderError):
        Material((1.2, 0.0, 0.0), 0.5, 0.0)
    with pytest.raises(NeuralRenderError):
        Material((0.5, 0.5, 0.5), torch.zeros(2, 4, 4), 0.0)
    with pytest.raises(NeuralRenderError):
        Material(0.5, 0.5, 0.5, filter="cubic")
    assert Material(0.25, 0.5, 1.0).basecolor.shape == (3, 1, 1)
