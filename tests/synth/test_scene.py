"""Scene generator: determinism, shapes, user meshes (and bad ones), sky, trajectories, motion, spawning."""

import math

import numpy as np
import pytest
import torch

from neural_render.errors import NeuralRenderError
from neural_render.render.rotation import euler_to_matrix
from neural_render.synth import shapes
from neural_render.synth.cameras import TrajectoryParams, trajectory
from neural_render.synth.scene import SynthConfig, generate_scene
from neural_render.synth.sky import SkyParams, procedural_sky
from neural_render.types import EnvMap


def tiny_env(value=1.0):
    return EnvMap(torch.full((3, 8, 16), value), torch.eye(3), f"const{value}")


def scene_signature(scene):
    return ([(m.name, m.vertices.sum().item(), m.to_world.sum().item(), m.material.basecolor.sum().item(),
              None if m.visible is None else m.visible.tolist()) for m in scene.meshes],
            scene.camera.camera_to_world.sum().item(), scene.env.name, scene.env_rotation_deg, scene.frame_seeds)


def test_generation_is_a_pure_function_of_seed_and_clip_index():
    cfg = SynthConfig(width=32, height=24, num_frames=4)
    envs = [tiny_env(1.0), tiny_env(2.0)]
    a = generate_scene(cfg, 7, 3, envs)
    b = generate_scene(cfg, 7, 3, envs)
    assert scene_signature(a) == scene_signature(b)
    assert a.description() == b.description()
    assert scene_signature(a) != scene_signature(generate_scene(cfg, 7, 4, envs))
    assert scene_signature(a) != scene_signature(generate_scene(cfg, 8, 3, envs))
    counts = []
    for i in range(12):
        s = generate_scene(cfg, 1, i, envs)
        n_objects = sum(o["kind"] != "ground" for o in s.objects)
        counts.append(n_objects)
        assert [o["id"] for o in s.objects] == list(range(1, len(s.meshes) + 1))
        assert torch.allclose(s.env.rotation, euler_to_matrix(*s.env_rotation_deg), atol=1e-6)
        assert s.camera.camera_to_world.shape == (1, 4, 4, 4) and (s.camera.width, s.camera.height) == (32, 24)
        assert len(set(s.frame_seeds)) == 4
    assert 1 <= min(counts) and max(counts) <= 6 and len(set(counts)) > 1


def test_roughness_variant_changes_only_roughness():
    import dataclasses

    base_cfg = SynthConfig(width=32, height=24, num_frames=4)
    assert "roughness_variant" not in base_cfg.to_dict()  # older datasets' synth.json specs stay valid
    envs = [tiny_env(1.0), tiny_env(2.0)]
    for clip in range(6):
        base = generate_scene(base_cfg, 5, clip, envs)
        variants = [generate_scene(dataclasses.replace(base_cfg, roughness_variant=k), 5, clip, envs)
                    for k in (1, 1, 2)]
        assert scene_signature(variants[0]) == scene_signature(base)  # geometry, colours, camera, env, seeds
        assert variants[0].config.to_dict()["roughness_variant"] == 1
        for a, b, again, c in zip(base.meshes, *(v.meshes for v in variants)):
            assert torch.equal(a.material.metallic, b.material.metallic)
            assert torch.equal(b.material.roughness, again.material.roughness)  # deterministic
            low, high = (0.3, 0.95) if a.name == "ground" else (0.05, 0.95)
            assert low - 1e-6 <= float(b.material.roughness.min()) <= float(b.material.roughness.max()) <= high + 1e-6
            assert not torch.equal(a.material.roughness, b.material.roughness)
            assert not torch.equal(b.material.roughness, c.material.roughness)
            pattern = a.material.roughness - a.material.roughness.mean()  # a texture keeps its pattern (if unclamped)
            shifted = b.material.roughness - b.material.roughness.mean()
            if float(b.material.roughness.min()) > low + 1e-6 and float(b.material.roughness.max()) < high - 1e-6:
                assert torch.allclose(pattern, shifted, atol=1e-5)
    with pytest.raises(NeuralRenderError, match="roughness_variant"):
        SynthConfig(roughness_variant=-1).validate()


def test_spawned_objects_appear_mid_clip():
    cfg = SynthConfig(num_frames=5, spawn_prob=1.0, min_objects=3, max_objects=3, ground_prob=0.0)
    scene = generate_scene(cfg, 0, 0, [tiny_env()])
    spawns = [o["motion"]["spawn_frame"] for o in scene.objects]
    assert spawns[0] == 0 and any(s > 0 for s in spawns[1:])
    for mesh, k in zip(scene.meshes, spawns):
        assert mesh.visible.tolist() == [t >= k for t in range(5)]


def test_procedural_shapes_are_closed_outward_and_unit_normal():
    rng = np.random.default_rng(0)
    for g in (shapes.uv_sphere(0.5, 32, 16), shapes.torus(0.4, 0.1, 32, 16), shapes.box((0.3, 0.5, 0.7)),
              shapes.cylinder(0.3, 0.6, 32), shapes.superquadric((0.3, 0.4, 0.5), 0.3, 1.5, 32, 16),
              shapes.displaced_sphere(rng, 0.4, 0.08, nu=32, nv=16)):
        assert np.abs(np.linalg.norm(g.normals, axis=1) - 1).max() < 1e-5
        tri = g.vertices[g.faces].astype(np.float64)
        cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        assert ((cross * g.normals[g.faces].sum(1)).sum(1) > 0).all()  # winding agrees with normals
        volume = (tri[:, 0] * np.cross(tri[:, 1], tri[:, 2])).sum() / 6  # > 0 for an outward closed surface
        assert volume > 0
    assert abs(np.linalg.norm(shapes.uv_sphere(0.5).vertices, axis=1) - 0.5).max() < 1e-6
    with pytest.raises(NeuralRenderError):
        shapes.superquadric(e_vertical=0.05)


def test_user_meshes_load_and_bad_files_are_refused(tmp_path):
    import trimesh

    good = tmp_path / "part.obj"
    trimesh.creation.icosphere(subdivisions=2, radius=3.0).export(good)
    geometry = shapes.load_mesh_file(good)
    for suffix in (".glb", ".ply"):
        other = tmp_path / f"part{suffix}"
        trimesh.creation.box((1.0, 2.0, 4.0)).export(other)
        loaded = shapes.load_mesh_file(other)
        assert loaded.faces.shape == (12, 3) and loaded.vertices.shape[0] == 24  # creases split: flat faces
        assert np.abs(np.abs(loaded.normals).max(1) - 1).max() < 1e-6
        assert np.allclose(loaded.vertices.max(0) - loaded.vertices.min(0), [0.25, 0.5, 1.0], atol=1e-6)
    assert math.isclose(float((geometry.vertices.max(0) - geometry.vertices.min(0)).max()), 1.0, rel_tol=1e-5)
    scene = generate_scene(SynthConfig(num_frames=2, user_mesh_prob=1.0, min_objects=2, max_objects=2), 3, 0,
                           [tiny_env()], {"part.obj": geometry})
    assert all(o["kind"] == "file:part.obj" for o in scene.objects if o["kind"] != "ground")

    garbage = tmp_path / "broken.obj"
    garbage.write_text("this is not a mesh\nat all\n")
    cloud = tmp_path / "cloud.ply"
    trimesh.PointCloud(np.random.default_rng(0).normal(size=(50, 3))).export(cloud)
    for bad in (garbage, cloud, tmp_path / "missing.glb", tmp_path / "notes.txt"):
        with pytest.raises(NeuralRenderError) as err:
            shapes.load_mesh_file(bad)
        assert err.value.path == str(bad)


def test_procedural_sky_has_its_sun_where_asked():
    params = SkyParams(sun_elevation_deg=30.0, sun_azimuth_deg=120.0, sun_radius_deg=3.0)
    sky = procedural_sky(params, 64)
    assert sky.shape == (3, 64, 128) and bool(torch.isfinite(sky).all()) and float(sky.min()) >= 0
    from neural_render.render.envmap import equirect_directions
    brightest = equirect_directions(64, 128).reshape(-1, 3)[sky.sum(0).reshape(-1).argmax()]
    el, az = math.radians(30.0), math.radians(120.0)
    sun = torch.tensor([math.cos(el) * math.sin(az), math.sin(el), -math.cos(el) * math.cos(az)])
    assert math.degrees(math.acos(float((brightest * sun).sum()))) < 3.0 + 2.0  # within the disc (+ a pixel)
    assert float(sky[:, 50:].mean()) < float(sky[:, 5:20].mean())  # ground darker than the sky


def test_camera_trajectories():
    orbit = trajectory(TrajectoryParams(kind="orbit", distance=3.0, sweep_deg=40.0), 5)
    dist = (orbit[:, :3, 3] - torch.tensor([0.0, 0.3, 0.0])).norm(dim=1)
    assert torch.allclose(dist, torch.full((5,), 3.0), atol=1e-5)
    dolly = trajectory(TrajectoryParams(kind="dolly", distance=4.0, dolly_factor=0.5), 3)
    d = (dolly[:, :3, 3] - torch.tensor([0.0, 0.3, 0.0])).norm(dim=1)
    assert torch.allclose(d, torch.tensor([4.0, 3.0, 2.0]), atol=1e-5)
    shaky = trajectory(TrajectoryParams(kind="static", jitter=0.05, jitter_seed=3), 6)
    offsets = (shaky[:, :3, 3] - shaky[:, :3, 3].mean(0)).norm(dim=1)
    assert float(offsets.max()) < 0.1 and float(offsets.max()) > 0


def test_large_env_maps_are_shrunk_energy_preserving():
    from neural_render.render.envmap import solid_angles
    from neural_render.synth.dataset import fit_envmap

    gen = torch.Generator().manual_seed(0)
    big = EnvMap(torch.rand(3, 256, 512, generator=gen) * 5, torch.eye(3), "big")
    small = fit_envmap(big, 64)
    assert small.image.shape == (3, 64, 128) and small.name == "big"

    def energy(env):
        return float((env.image * solid_angles(env.height, env.width)).sum())

    assert abs(energy(small) - energy(big)) < 1e-4 * energy(big)
    assert fit_envmap(small, 64) is small
