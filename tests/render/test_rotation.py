"""Rotations (render/rotation.py) and the EnvMap rotation semantic (types/envmap.py)."""

import torch

from neural_render.render.envmap import bake, env_lookup, equirect_directions
from neural_render.render.rotation import axis_rotation, euler_to_matrix, is_rotation, matrix_to_euler
from neural_render.types import EnvMap


def _random_angles(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    yaw = (torch.rand(n, generator=g, dtype=torch.float64) * 2 - 1) * 179.0
    pitch = (torch.rand(n, generator=g, dtype=torch.float64) * 2 - 1) * 89.0
    roll = (torch.rand(n, generator=g, dtype=torch.float64) * 2 - 1) * 179.0
    return yaw, pitch, roll


def _env(h=16, w=32, seed=1):
    g = torch.Generator().manual_seed(seed)
    return EnvMap(torch.rand(3, h, w, generator=g))


def test_euler_round_trip():
    yaw, pitch, roll = _random_angles(500)
    r = euler_to_matrix(yaw, pitch, roll, dtype=torch.float64)
    assert r.shape == (500, 3, 3)
    y2, p2, r2 = matrix_to_euler(r)
    assert torch.allclose(y2, yaw, atol=1e-5)
    assert torch.allclose(p2, pitch, atol=1e-5)
    assert torch.allclose(r2, roll, atol=1e-5)


def test_euler_composition_order_and_axes():
    # yaw about +Y turns -Z (forward) towards -X for a positive angle (counter-clockwise seen from above)
    forward = torch.tensor([0.0, 0.0, -1.0], dtype=torch.float64)
    turned = euler_to_matrix(90.0, dtype=torch.float64) @ forward
    assert torch.allclose(turned, torch.tensor([-1.0, 0.0, 0.0], dtype=torch.float64), atol=1e-12)
    yaw, pitch, roll = 30.0, -20.0, 50.0
    expect = axis_rotation("y", yaw) @ axis_rotation("x", pitch) @ axis_rotation("z", roll)
    assert torch.allclose(euler_to_matrix(yaw, pitch, roll, dtype=torch.float64), expect, atol=1e-12)


def test_is_rotation():
    yaw, pitch, roll = _random_angles(20, seed=3)
    assert is_rotation(euler_to_matrix(yaw, pitch, roll))
    reflection = torch.diag(torch.tensor([1.0, 1.0, -1.0]))
    assert not is_rotation(reflection)
    assert not is_rotation(2.0 * torch.eye(3))
    skew = torch.eye(3)
    skew[0, 1] = 0.1
    assert not is_rotation(skew)


def test_rotated_then_inverse_is_identity():
    env = _env()
    dirs = torch.nn.functional.normalize(torch.randn(400, 3, generator=torch.Generator().manual_seed(2)), dim=-1)
    for yaw, pitch, roll in [(37.0, 12.0, -5.0), (-120.0, 80.0, 33.0), (200.0, -45.0, 170.0)]:
        r = euler_to_matrix(yaw, pitch, roll)
        rotated = env.rotated(yaw, pitch, roll)
        # the rotation did something
        assert not torch.allclose(env_lookup(rotated, dirs), env_lookup(env, dirs), atol=1e-2)
        back = rotated.rotated(matrix=r.T)
        assert torch.allclose(env_lookup(back, dirs), env_lookup(env, dirs), atol=1e-5)


def test_rotation_semantic_is_image_of_rotated_back_direction():
    # radiance from world direction d of env.rotated(R) equals the unrotated image looked up at R^T d
    env = _env()
    r = euler_to_matrix(25.0, -30.0, 10.0)
    dirs = torch.nn.functional.normalize(torch.randn(300, 3, generator=torch.Generator().manual_seed(4)), dim=-1)
    expect = env_lookup(env, (r.T @ dirs.T).T)
    assert torch.allclose(env_lookup(env.rotated(matrix=r), dirs), expect, atol=1e-5)


def test_yaw_360_is_identity():
    env = _env()
    dirs = equirect_directions(env.height, env.width).reshape(-1, 3)
    assert torch.allclose(env_lookup(env.rotated(yaw=360.0), dirs), env_lookup(env, dirs), atol=1e-5)


def test_yaw_90_shifts_columns_by_a_quarter():
    # Ry(a) maps azimuth phi -> phi - a, so env.rotated(yaw=a) shows at u the old image at u + a / 360:
    # the new column j is the old column j + W/4.
    env = _env(8, 32)
    dirs = equirect_directions(env.height, env.width)
    got = env_lookup(env.rotated(yaw=90.0), dirs).permute(2, 0, 1)
    expect = torch.roll(env.image, shifts=-env.width // 4, dims=2)
    assert torch.allclose(got, expect, atol=1e-5)
    assert not torch.allclose(got, torch.roll(env.image, shifts=env.width // 4, dims=2), atol=1e-2)


def test_baked_matches_lazy_rotation():
    env = _env().rotated(yaw=90.0)
    baked = bake(env)
    assert torch.allclose(baked.rotation, torch.eye(3))
    dirs = equirect_directions(env.height, env.width).reshape(-1, 3)
    assert torch.allclose(env_lookup(baked, dirs), env_lookup(env, dirs), atol=1e-5)
