"""Equirect convention (against Mitsuba 3's envmap emitter), lookup, camera-space re-projection and encodings."""

import math

import numpy as np
import pytest
import torch

from neural_render.errors import NeuralRenderError
from neural_render.render.envmap import (
    camera_space_directions,
    camera_space_env,
    dir_to_uv,
    env_encodings,
    equirect_directions,
    lookup,
    mitsuba_compatible_image,
    resample_equirect,
    solid_angles,
    uv_to_dir,
)
from neural_render.render.rotation import euler_to_matrix
from neural_render.render.tonemap import env_ldr, env_log
from neural_render.types import EnvMap


def _rand(*shape, seed=0, dtype=torch.float32):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _unit(n, seed=0):
    return torch.nn.functional.normalize(torch.randn(n, 3, generator=torch.Generator().manual_seed(seed)), dim=-1)


def _poses(rotations):
    """(B, T, 3, 3) -> (B, T, 4, 4) camera-to-world with an arbitrary translation (must not matter)."""
    m = torch.zeros(rotations.shape[:-2] + (4, 4))
    m[..., :3, :3] = rotations
    m[..., :3, 3] = torch.tensor([1.0, -2.0, 3.0])
    m[..., 3, 3] = 1.0
    return m


# ---------------------------------------------------------------- direction <-> uv

def test_dir_uv_round_trip_and_ranges():
    dirs = _unit(2000, seed=1)
    uv = dir_to_uv(dirs)
    assert float(uv[:, 0].min()) >= 0.0 and float(uv[:, 0].max()) < 1.0
    assert float(uv[:, 1].min()) >= 0.0 and float(uv[:, 1].max()) <= 1.0
    assert torch.allclose(uv_to_dir(uv), dirs, atol=1e-5)
    uv2 = _rand(500, 2, seed=2) * torch.tensor([1.0, 0.98]) + torch.tensor([0.0, 0.01])
    assert torch.allclose(dir_to_uv(uv_to_dir(uv2)), uv2, atol=1e-5)


def test_anchor_directions():
    dirs = torch.tensor([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, 1.0, 0.0],
                         [0.0, -1.0, 0.0]])
    uv = dir_to_uv(dirs)
    assert torch.allclose(uv[:4], torch.tensor([[0.0, 0.5], [0.25, 0.5], [0.5, 0.5], [0.75, 0.5]]), atol=1e-6)
    assert torch.allclose(uv[4:, 1], torch.tensor([0.0, 1.0]), atol=1e-6)


def test_pixel_grid_and_solid_angles():
    h, w = 12, 24
    dirs = equirect_directions(h, w)
    assert dirs.shape == (h, w, 3)
    assert torch.allclose(dirs.norm(dim=-1), torch.ones(h, w), atol=1e-6)
    uv = dir_to_uv(dirs)
    assert torch.allclose(uv[..., 0] * w - 0.5, torch.arange(w, dtype=torch.float32).expand(h, w), atol=1e-4)
    assert torch.allclose(uv[..., 1] * h - 0.5, torch.arange(h, dtype=torch.float32)[:, None].expand(h, w), atol=1e-4)
    omega = solid_angles(h, w)
    assert omega.shape == (h, 1)
    assert math.isclose(float(omega.sum()) * w, 4.0 * math.pi, rel_tol=1e-6)
    # a pixel's solid angle ~ sin(theta) dtheta dphi
    theta = (torch.arange(h) + 0.5) * math.pi / h
    assert torch.allclose(omega[:, 0], torch.sin(theta) * (math.pi / h) * (2 * math.pi / w), rtol=1e-2)


# ---------------------------------------------------------------- lookup

def test_lookup_at_pixel_centres_returns_pixels():
    img = _rand(3, 6, 10, seed=3)
    assert torch.allclose(lookup(img, equirect_directions(6, 10)).permute(2, 0, 1), img, atol=1e-5)


def test_lookup_wraps_in_u_and_clamps_in_v():
    img = _rand(3, 6, 10, seed=4)
    seam = uv_to_dir(torch.tensor([[0.0, 2.5 / 6]]))  # u = 0 lies half way between the last and first column
    assert torch.allclose(lookup(img, seam)[0], 0.5 * (img[:, 2, 0] + img[:, 2, -1]), atol=1e-5)
    top = uv_to_dir(torch.tensor([[3.5 / 10, 0.2 / 6]]))  # above the first row centre: row 0 only
    assert torch.allclose(lookup(img, top)[0], img[:, 0, 3], atol=1e-5)
    bottom = uv_to_dir(torch.tensor([[6.5 / 10, 1.0 - 0.1 / 6]]))
    assert torch.allclose(lookup(img, bottom)[0], img[:, -1, 6], atol=1e-5)
    halfway = uv_to_dir(torch.tensor([[6.5 / 10, 2.0 / 6]]))  # between rows 1 and 2
    assert torch.allclose(lookup(img, halfway)[0], 0.5 * (img[:, 1, 6] + img[:, 2, 6]), atol=1e-5)


def test_lookup_is_differentiable():
    img = _rand(3, 5, 8, seed=5, dtype=torch.float64).requires_grad_(True)
    dirs = torch.nn.functional.normalize(torch.randn(7, 3, generator=torch.Generator().manual_seed(6),
                                                     dtype=torch.float64), dim=-1).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda i, d: lookup(i, d), (img, dirs), eps=1e-6, atol=1e-4)


def test_lookup_rejects_bad_shapes():
    with pytest.raises(NeuralRenderError):
        lookup(torch.rand(4, 5, 8), _unit(3))
    with pytest.raises(NeuralRenderError):
        lookup(torch.rand(3, 5, 8), torch.rand(3, 2))


def test_resample_area_preserves_mean_and_upsampling_interpolates():
    img = _rand(3, 16, 32, seed=7)
    small = resample_equirect(img, 8, 16)
    assert torch.allclose(small, torch.nn.functional.avg_pool2d(img[None], 2)[0], atol=1e-6)
    big = resample_equirect(img, 32, 64)
    assert torch.allclose(big, lookup(img, equirect_directions(32, 64)).permute(2, 0, 1), atol=1e-6)


# ---------------------------------------------------------------- Mitsuba 3 convention (the key test)

def _mitsuba_eval(mi, image, dirs):
    """Radiance Mitsuba's envmap (built from ``image`` (3, H, W)) sends from world directions (N, 3)."""
    arr = np.ascontiguousarray(image.permute(1, 2, 0).numpy().astype(np.float32))
    emitter = mi.load_dict({"type": "envmap", "bitmap": mi.Bitmap(arr)})
    d = dirs.numpy().astype(np.float32)
    if mi.variant().startswith("scalar"):
        out = []
        for x, y, z in d:
            si = mi.SurfaceInteraction3f()
            si.wi = mi.Vector3f(-float(x), -float(y), -float(z))  # eval() looks up -si.wi, the arrival direction
            out.append(list(emitter.eval(si)))
        return torch.tensor(out, dtype=torch.float32)
    import drjit as dr
    si = dr.zeros(mi.SurfaceInteraction3f, d.shape[0])
    si.wi = mi.Vector3f(-d[:, 0], -d[:, 1], -d[:, 2])
    return torch.from_numpy(np.array(emitter.eval(si))).T.to(torch.float32)


def test_mitsuba_texel_positions(mi):
    # Mitsuba's envmap: column j at u = (j + 0.5) / W (like ours), row i at v = i / (H - 1) (pole to pole).
    # Our uv_to_dir must send those uv to directions where Mitsuba returns exactly pixel (i, j).
    h, w = 5, 8
    img = _rand(3, h, w, seed=8)
    rows = torch.arange(1, h - 1, dtype=torch.float32)  # rows 0 and H-1 sit exactly on the poles (u undefined)
    cols = torch.arange(w, dtype=torch.float32)
    vv, uu = torch.meshgrid(rows / (h - 1), (cols + 0.5) / w, indexing="ij")
    dirs = uv_to_dir(torch.stack([uu, vv], dim=-1)).reshape(-1, 3)
    got = _mitsuba_eval(mi, img, dirs).reshape(h - 2, w, 3).permute(2, 0, 1)
    assert torch.allclose(got, img[:, 1:-1], atol=1e-5)


def test_mitsuba_raw_bitmap_equals_lookup_after_row_remap(mi):
    # Random bitmap, random directions: Mitsuba at (u, v) == our lookup at (u, (v (H - 1) + 0.5) / H). The only
    # difference between the two conventions is where rows sit; direction mapping and u interpolation are identical.
    h, w = 6, 12
    img = _rand(3, h, w, seed=9)
    dirs = _unit(3000, seed=10)
    uv = dir_to_uv(dirs)
    ours = lookup(img, uv_to_dir(torch.stack([uv[:, 0], (uv[:, 1] * (h - 1) + 0.5) / h], dim=-1)))
    theirs = _mitsuba_eval(mi, img, dirs)
    assert torch.allclose(theirs, ours, atol=2e-5)
    assert float((theirs - lookup(img, dirs)).abs().max()) > 0.05  # the raw bitmap is NOT our sky at this size


def test_mitsuba_compatible_image_evaluates_exactly_like_lookup(mi):
    h, w = 6, 12
    img = _rand(3, h, w, seed=11) * 5.0
    bitmap = mitsuba_compatible_image(img)
    assert bitmap.shape == (3, 2 * h + 1, w)
    dirs = torch.cat([_unit(3000, seed=12),
                      uv_to_dir(torch.tensor([[1e-4, 0.5], [0.9999, 0.3], [0.3, 0.01], [0.7, 0.995]]))])
    assert torch.allclose(_mitsuba_eval(mi, bitmap, dirs), lookup(img, dirs), atol=5e-5)


# ---------------------------------------------------------------- camera-space env and encodings

def test_constant_env_gives_constant_encodings():
    env = EnvMap(torch.full((3, 8, 16), 2.5))
    c2w = _poses(euler_to_matrix(torch.tensor([[10.0, 100.0]]), torch.tensor([[5.0, -40.0]])))
    radiance = camera_space_env(env, c2w, 6, 12)
    assert radiance.shape == (1, 2, 3, 6, 12)
    assert torch.allclose(radiance, torch.full_like(radiance, 2.5), atol=1e-5)
    enc = env_encodings(env, c2w, 6, 12)
    assert torch.allclose(enc["ldr"], env_ldr(torch.tensor(2.5)).expand_as(radiance), atol=1e-5)
    assert torch.allclose(enc["log"], env_log(torch.tensor(2.5)).expand_as(radiance), atol=1e-5)


def test_dir_encoding_is_unit_and_frame_independent():
    env = EnvMap(_rand(3, 8, 16, seed=13))
    c2w = _poses(euler_to_matrix(torch.tensor([[0.0, 90.0, 200.0]]), torch.tensor([[0.0, 30.0, -60.0]])))
    enc = env_encodings(env, c2w, 6, 12)
    d = enc["dir"]
    assert d.shape == (1, 3, 3, 6, 12)
    assert torch.allclose(d.norm(dim=2), torch.ones(1, 3, 6, 12), atol=1e-5)
    assert float(d.abs().max()) <= 1.0
    assert torch.equal(d[:, 0], d[:, 2]) and torch.equal(d[0, 1], camera_space_directions(6, 12))
    for key in ("ldr", "log"):
        assert float(enc[key].min()) >= 0.0 and float(enc[key].max()) <= 1.0


def test_identity_pose_reproduces_the_env_with_forward_at_the_centre():
    """At the identity pose the encoding is the env turned half a turn: world -Z (forward) lands in the middle
    column."""
    img = _rand(3, 8, 16, seed=14)
    out = camera_space_env(EnvMap(img), _poses(torch.eye(3).expand(2, 1, 3, 3)), 8, 16)
    assert torch.allclose(out, torch.roll(img, 8, dims=-1).expand(2, 1, 3, 8, 16), atol=1e-5)
    forward = camera_space_directions(8, 16)[:, 3:5, 7:9].mean(dim=(1, 2))
    assert torch.allclose(forward / forward.norm(), torch.tensor([0.0, 0.0, -1.0]), atol=1e-6)


def test_env_yaw_360_leaves_encodings_unchanged():
    env = EnvMap(_rand(3, 8, 16, seed=15) * 20.0)
    c2w = _poses(euler_to_matrix(torch.tensor([[15.0, -70.0]]), torch.tensor([[20.0, 10.0]])))
    a, b = env_encodings(env, c2w, 8, 16), env_encodings(env.rotated(yaw=360.0), c2w, 8, 16)
    for key in ("ldr", "log", "dir"):
        assert torch.allclose(a[key], b[key], atol=1e-5)


def test_camera_yaw_equals_opposite_env_yaw():
    env = EnvMap(_rand(3, 8, 16, seed=16) * 4.0).rotated(yaw=10.0, pitch=20.0)
    identity = _poses(torch.eye(3).expand(1, 1, 3, 3))
    for yaw in (30.0, 90.0, -135.0):
        turned_camera = camera_space_env(env, _poses(euler_to_matrix(yaw).expand(1, 1, 3, 3)), 8, 16)
        turned_env = camera_space_env(env.rotated(yaw=-yaw), identity, 8, 16)
        assert torch.allclose(turned_camera, turned_env, atol=1e-5)
        assert not torch.allclose(turned_camera, camera_space_env(env, identity, 8, 16), atol=1e-2)
    r = euler_to_matrix(40.0, -25.0, 60.0)  # any camera rotation R == env rotated by R^T
    assert torch.allclose(camera_space_env(env, _poses(r.expand(1, 1, 3, 3)), 8, 16),
                          camera_space_env(env.rotated(matrix=r.T), identity, 8, 16), atol=1e-5)


def test_large_env_is_filtered_so_a_small_sun_does_not_flicker():
    # a one-texel sun in a 128x256 env, encoded at 8x16 while the camera turns in small yaw steps
    img = torch.full((3, 128, 256), 0.1)
    img[:, 40, 77] = 5000.0
    env = EnvMap(img)
    omega_src, omega_out = solid_angles(128, 256), solid_angles(8, 16)
    energy_src = float((img[0] * omega_src).sum())
    energies = []
    for yaw in torch.linspace(0.0, 20.0, 9):
        out = camera_space_env(env, _poses(euler_to_matrix(yaw).expand(1, 1, 3, 3)), 8, 16)[0, 0, 0]
        energies.append(float((out * omega_out).sum()))
    energies = torch.tensor(energies)
    # box-filtered then bilinear (a partition of unity): the sun keeps its energy at every yaw (point sampling
    # would miss the one-texel sun at most yaws); the ~1% offset is the coarse rows' solid-angle weighting
    assert torch.allclose(energies, torch.full_like(energies, energy_src), rtol=0.05)
    assert float(energies.max() / energies.min()) < 1.001


def test_pose_validation():
    env = EnvMap(_rand(3, 8, 16))
    with pytest.raises(NeuralRenderError, match="camera_to_world"):
        camera_space_env(env, torch.eye(4), 4, 8)
