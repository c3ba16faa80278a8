"""Radiance .hdr / EXR env maps: round trips, garbage files, LDR refusal, energy-preserving downsampling."""

import math

import numpy as np
import pytest
import torch

from neural_render.errors import NeuralRenderError
from neural_render.io.hdr import downsample_equirect, load_envmap, read_hdr, write_hdr


def _hdr_image(seed=0, h=8, w=16):
    rng = np.random.default_rng(seed)
    return (rng.random((h, w, 3)) * 10.0 ** rng.uniform(-2, 3, size=(h, w, 1))).astype(np.float32)


def test_radiance_hdr_round_trip_within_rgbe_precision(tmp_path):
    image = _hdr_image()
    image[0, 0] = (0.0, 0.0, 0.0)
    image[0, 1] = (5000.0, 2.5, 0.125)                    # very bright sun pixel with dim channels
    write_hdr(tmp_path / "sky.hdr", image)
    back = read_hdr(tmp_path / "sky.hdr")
    assert back.shape == image.shape and back.dtype == np.float32
    # RGBE shares one 8-bit exponent per pixel: error is relative to the pixel's largest channel.
    scale = image.max(axis=2, keepdims=True)
    rel = np.abs(back - image) / np.maximum(scale, 1e-30)
    assert rel.max() < 0.01
    np.testing.assert_array_equal(back[0, 0], 0.0)
    assert not np.array_equal(back, image)                # RGBE really is lossy (test is not trivially exact)
    # channel order: R stays R (BGR <-> RGB handled)
    assert back[0, 1, 0] > 1000 and back[0, 1, 2] < 1


def test_exr_hdr_round_trip_is_exact(tmp_path):
    image = _hdr_image(1)
    write_hdr(tmp_path / "sky.exr", image)
    np.testing.assert_array_equal(read_hdr(tmp_path / "sky.exr"), image)


def test_garbage_hdr_files_are_rejected(tmp_path):
    rng = np.random.default_rng(2)
    bad_header = tmp_path / "header.hdr"
    bad_header.write_bytes(b"#?RADIANCE\nGARBAGE=yes\n\n-Y 8 +X 16\n" + rng.bytes(200))
    random_bytes = tmp_path / "random.hdr"
    random_bytes.write_bytes(rng.bytes(500))
    good = tmp_path / "good.hdr"
    write_hdr(good, _hdr_image(3))
    truncated = tmp_path / "truncated.hdr"
    truncated.write_bytes(good.read_bytes()[:-40])
    empty = tmp_path / "empty.hdr"
    empty.write_bytes(b"")
    for path in (bad_header, random_bytes, truncated, empty, tmp_path / "missing.hdr"):
        with pytest.raises(NeuralRenderError) as info:
            read_hdr(path)
        assert info.value.path == str(path)
    with pytest.raises(NeuralRenderError, match="unsupported HDR format"):
        read_hdr(tmp_path / "x.png")
    write_hdr(tmp_path / "y.exr", _hdr_image(4))
    from neural_render.io.exr import write_exr
    write_exr(tmp_path / "depth_only.exr", {"Z": np.ones((4, 8), np.float32)})
    with pytest.raises(NeuralRenderError, match="R, G, B"):
        read_hdr(tmp_path / "depth_only.exr")


def test_write_hdr_validates(tmp_path):
    with pytest.raises(NeuralRenderError, match=r"\(H, W, 3\)"):
        write_hdr(tmp_path / "a.hdr", np.zeros((4, 8), np.float32))
    with pytest.raises(NeuralRenderError, match="non-negative"):
        write_hdr(tmp_path / "a.hdr", -np.ones((4, 8, 3), np.float32))
    assert list(tmp_path.iterdir()) == []


def test_load_envmap(tmp_path):
    image = _hdr_image(5)
    write_hdr(tmp_path / "studio.exr", image)
    env = load_envmap(tmp_path / "studio.exr")
    assert env.name == "studio" and env.image.shape == (3, 8, 16) and env.image.dtype == torch.float32
    np.testing.assert_array_equal(env.image.numpy(), image.transpose(2, 0, 1))
    assert torch.equal(env.rotation, torch.eye(3))
    assert load_envmap(tmp_path / "studio.exr", name="s").name == "s"


def test_load_envmap_rejects_ldr_and_bad_values(tmp_path):
    from neural_render.io.image import write_image
    write_image(tmp_path / "sky.png", np.zeros((4, 8, 3), np.uint8))
    for name in ("sky.png", "sky.jpg"):
        with pytest.raises(NeuralRenderError, match="not an HDR environment map") as info:
            load_envmap(tmp_path / name)
        assert info.value.path == str(tmp_path / name)
    bad = _hdr_image(6)
    bad[1, 2, 0] = -0.5
    write_hdr(tmp_path / "neg.exr", bad)
    with pytest.raises(NeuralRenderError, match="negative"):
        load_envmap(tmp_path / "neg.exr")
    bad[1, 2, 0] = np.inf
    write_hdr(tmp_path / "inf.exr", bad)
    with pytest.raises(NeuralRenderError, match="NaN or inf"):
        load_envmap(tmp_path / "inf.exr")


def _sphere_integral(image):
    """Integral of radiance over the sphere (per channel) for an equirect image (H, W, 3)."""
    h, w = image.shape[:2]
    theta = np.linspace(0.0, math.pi, h + 1)
    row_solid_angle = (np.cos(theta[:-1]) - np.cos(theta[1:])) * 2.0 * math.pi / w
    return (image.astype(np.float64) * row_solid_angle[:, None, None]).sum(axis=(0, 1))


@pytest.mark.parametrize("height", [1, 2, 4, 8])
def test_downsample_equirect_preserves_energy(height):
    image = _hdr_image(7, h=16, w=32)
    small = downsample_equirect(image, height)
    assert small.shape == (height, 2 * height, 3) and small.dtype == np.float32
    np.testing.assert_allclose(_sphere_integral(small), _sphere_integral(image), rtol=1e-5)
    constant = np.full((16, 32, 3), 2.5, np.float32)
    np.testing.assert_allclose(downsample_equirect(constant, height), 2.5, rtol=1e-6)


def test_downsample_equirect_non_integer_factor_uses_area_resampling():
    image = _hdr_image(8, h=12, w=24)
    small = downsample_equirect(image, 5)
    assert small.shape == (5, 10, 3)
    assert abs(small.mean() - image.mean()) < 0.02 * image.mean()  # INTER_AREA keeps the plain mean (approx.)
    with pytest.raises(NeuralRenderError, match="enlarge"):
        downsample_equirect(image, 24)
