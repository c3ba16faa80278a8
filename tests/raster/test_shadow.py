"""env_occlusion (raster/shadow.py) against closed-form occlusion: a sphere above a point under a uniform sky
blocks sin^2(alpha) of its cosine-weighted irradiance; an infinite ceiling blocks all of it; a sun cell is blocked
exactly when an occluder sits on its ray; per-frame visibility; the scalar_rgb fallback agrees with llvm_ad_rgb."""

import math

import pytest
import torch

from neural_render.errors import NeuralRenderError
from neural_render.raster import Material, Mesh
from neural_render.raster.shadow import env_directions, env_occlusion, mutual_occlusion
from neural_render.render.envmap import dir_to_uv
from neural_render.synth import shapes
from neural_render.types import Camera, EnvMap, look_at

SIZE = 5  # odd: the centre pixel's ray hits the ground point straight below the camera
HEIGHT = 3.0


def down_camera(frames=1):
    """Camera at (0, 3, 0) looking straight down at the ground plane y = 0."""
    c2w = look_at(torch.tensor([[0.0, HEIGHT, 0.0]] * frames), torch.tensor([[0.0, 0.0, 0.0]] * frames),
                  up=(0.0, 0.0, -1.0))
    return Camera.from_fov(30.0, SIZE, SIZE, c2w[None])


def ground(frames=1):
    """Planar depth of y = 0 seen by down_camera (= 3 everywhere), world up = camera +Z, all pixels surface."""
    depth = torch.full((1, frames, 1, SIZE, SIZE), HEIGHT)
    normal = torch.zeros(1, frames, 3, SIZE, SIZE)
    normal[:, :, 2] = 1.0
    return depth, normal, torch.ones(1, frames, 1, SIZE, SIZE)


def uniform_env(rows=64):
    return EnvMap(torch.ones(3, rows, 2 * rows))


def sphere(radius, centre, frames=None, visible=None):
    g = shapes.uv_sphere(radius, 96, 48)
    m = torch.eye(4)
    m[:3, 3] = torch.tensor(centre)
    if frames:
        m = m.repeat(frames, 1, 1)
    return Mesh(g.vertices, g.faces, g.normals, g.uvs, Material(0.5, 0.5, 0.0), m, visible, "sphere")


def test_no_mesh_and_open_sky_give_zero():
    depth, normal, mask = ground()
    assert torch.equal(env_occlusion([], down_camera(), depth, normal, mask, uniform_env()), torch.zeros_like(depth))
    far_away = sphere(0.1, (50.0, -5.0, 0.0))  # below the horizon of every ground point
    out = env_occlusion([far_away], down_camera(), depth, normal, mask, uniform_env())
    assert float(out.max()) == 0.0


def test_sphere_above_point_blocks_sin_squared_alpha():
    """Cosine-weighted irradiance share of a cap of half-angle alpha around the normal = sin^2 alpha."""
    depth, normal, mask = ground()
    radius, h = 0.5, 1.0
    out = env_occlusion([sphere(radius, (0.0, h, 0.0))], down_camera(), depth, normal, mask, uniform_env(),
                        env_rows=64)
    expected = (radius / h) ** 2
    centre = float(out[0, 0, 0, SIZE // 2, SIZE // 2])
    assert abs(centre - expected) < 0.02, (centre, expected)
    assert float(out[0, 0, 0, 0, 0]) < centre  # off-centre points see the sphere lower, less blocked


def test_ceiling_blocks_everything():
    ceiling = ceiling_mesh(1.0)
    depth, normal, mask = ground()
    out = env_occlusion([ceiling], down_camera(), depth, normal, mask, uniform_env(16))
    assert float(out.min()) > 0.99
    mask[..., 0, 0] = 0.0  # no surface: left at 0
    out = env_occlusion([ceiling], down_camera(), depth, normal, mask, uniform_env(16))
    assert float(out[..., 0, 0].max()) == 0.0


def sun_env(direction, rows=16):
    """Black sky with one bright cell in ``direction``."""
    image = torch.zeros(3, rows, 2 * rows)
    uv = dir_to_uv(torch.tensor([direction], dtype=torch.float32))[0]
    image[:, min(int(uv[1] * rows), rows - 1), min(int(uv[0] * 2 * rows), 2 * rows - 1)] = 100.0
    return EnvMap(image)


def ceiling_mesh(height=1.0):
    g = shapes.ground_quad(1000.0, 1.0)
    m = torch.eye(4)
    m[1, 3] = height
    return Mesh(g.vertices, g.faces, g.normals, g.uvs, Material(0.5, 0.5, 0.0), m, None, "ceiling")


def test_mutual_occlusion_object_receives_scene_shadow_scene_only_the_objects():
    """The 'object' pixels (a 3x3 patch) get the light the scene (a ceiling) AND the object block (all of it), the
    rest only what the object (a sphere) blocks, exactly env_occlusion of the object there."""
    depth, normal, mask = ground()
    obj, scene = [sphere(0.5, (0.0, 2.0, 0.0))], [ceiling_mesh(2.5)]
    on_object = torch.zeros_like(mask)
    on_object[..., 1:4, 1:4] = 1.0
    out = mutual_occlusion(obj, scene, down_camera(), depth, normal, mask, on_object, uniform_env(16))
    cast = env_occlusion(obj, down_camera(), depth, normal, mask, uniform_env(16))
    assert float(out[on_object > 0].min()) > 0.99
    assert torch.equal(out[on_object == 0], cast[on_object == 0])
    assert 0.0 < float(cast[on_object == 0].max()) < 0.2  # the sphere alone blocks little there
    no_scene = mutual_occlusion(obj, [], down_camera(), depth, normal, mask, on_object, uniform_env(16))
    assert torch.allclose(no_scene, cast)  # without scene meshes: the object's own occlusion everywhere


def test_sun_blocked_only_on_its_ray():
    depth, normal, mask = ground()
    sun = torch.nn.functional.normalize(torch.tensor([1.0, 1.0, 0.0]), dim=0)
    dirs, weight = env_directions(sun_env(sun.tolist()), 16)
    cell = dirs[int(weight.argmax())]  # the lit cell's centre direction
    on_ray = sphere(0.3, (cell * 1.5).tolist())
    off_ray = sphere(0.3, (-cell[0] * 1.5, cell[1] * 1.5, cell[2] * 1.5))
    env = sun_env(sun.tolist())
    c = SIZE // 2
    assert float(env_occlusion([on_ray], down_camera(), depth, normal, mask, env)[0, 0, 0, c, c]) > 0.999
    assert float(env_occlusion([off_ray], down_camera(), depth, normal, mask, env)[0, 0, 0, c, c]) == 0.0


def test_per_frame_visibility_and_pose():
    depth, normal, mask = ground(frames=3)
    m = torch.eye(4).repeat(3, 1, 1)
    m[:, 1, 3] = 1.0
    m[2, 0, 3] = 100.0  # frame 2: moved far away
    g = shapes.uv_sphere(0.5, 48, 24)
    mesh = Mesh(g.vertices, g.faces, g.normals, g.uvs, Material(0.5, 0.5, 0.0), m,
                torch.tensor([True, False, True]), "s")
    out = env_occlusion([mesh], down_camera(3), depth, normal, mask, uniform_env(64), env_rows=64)
    c = SIZE // 2
    assert abs(float(out[0, 0, 0, c, c]) - 0.25) < 0.03
    assert float(out[0, 1].max()) == 0.0 and float(out[0, 2, 0, c, c]) < 0.01


def test_scalar_fallback_matches_llvm(monkeypatch):
    from neural_render.render.mitsuba_variant import select_mitsuba_variant

    depth, normal, mask = ground()
    args = ([sphere(0.5, (0.2, 1.0, 0.0))], down_camera(), depth, normal, mask, uniform_env(8))
    monkeypatch.setenv("NEURAL_RENDER_MITSUBA_VARIANT", "llvm_ad_rgb")
    try:
        select_mitsuba_variant()
    except NeuralRenderError:
        pytest.skip("llvm_ad_rgb unavailable")
    fast = env_occlusion(*args)
    monkeypatch.setenv("NEURAL_RENDER_MITSUBA_VARIANT", "scalar_rgb")
    slow = env_occlusion(*args)
    monkeypatch.delenv("NEURAL_RENDER_MITSUBA_VARIANT")
    select_mitsuba_variant()
    assert torch.allclose(fast, slow, atol=1e-6)
    assert float(fast.max()) > 0.1


def test_bad_shapes_raise():
    depth, normal, mask = ground()
    with pytest.raises(NeuralRenderError, match="normal"):
        env_occlusion([], down_camera(), depth, normal[:, :, :2], mask, uniform_env())
    with pytest.raises(NeuralRenderError, match="env_rows"):
        env_directions(uniform_env(), 1)


def test_weights_sum_to_total_light():
    dirs, weight = env_directions(uniform_env(32), 16)
    assert dirs.shape == (512, 3) and abs(float(weight.sum()) - 4 * math.pi) < 1e-3
