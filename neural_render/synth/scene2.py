"""Scene generation of the generator version 2 (``SynthConfig.generator == 2``, issue #23): variety for models that
work beyond their training scenes, every G-buffer still exact.

A clip is drawn from ``numpy.random.default_rng(SeedSequence([seed, clip_index, 2]))`` (a stream of its own: a
version-2 scene never shares draws with the version-1 scene of the same seed and index) in this order:

1. style (synth/stage.py: ground, table, room, backdrop) among ``config.styles`` and background among
   ``config.backgrounds``: "env" shows the env map / sky behind the scene; "black" hides the emitters from camera
   rays (Mitsuba ``path`` integrator ``hide_emitters``): the env still lights the scene and shows in reflections,
   but pixels whose camera ray leaves the scene are exactly 0 (up to pixel-filter coverage at silhouettes);
2. 1 to ``max_objects`` objects (``min_objects`` at least) of ``config.shape_families`` (synth/families.py and
   synth/families2.py; user meshes with ``user_mesh_prob``), largest extent 0.1-0.4 m on tables, else 0.2-0.8 m,
   resting on the support at random yaw (rods, capsules, cylinders and boxes sometimes on their side), with
   static / translate / spin motion and late spawns as in version 1;
3. materials of ``config.material_families`` (synth/textures.py; photos from ``config.texture_split``) for every
   object and stage part;
4. camera: horizontal field of view 25-70 degrees, distance 0.9-1.6 x the distance that fits the objects, elevation
   and azimuth in the style's ranges, orbit / dolly / static with handheld jitter as in version 1;
5. env map (or sky) and its rotation as in version 1, then 0-3 local point / spot lights (synth/lights.py) scaled
   to the env's brightness (none 40 % of the time).

Mesh order: stage parts first, then objects; object ids = mesh index + 1 (0 = background), as in version 1.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from neural_render.raster.mesh import Mesh
from neural_render.render.rotation import euler_to_matrix
from neural_render.synth import shapes
from neural_render.synth.cameras import TrajectoryParams, trajectory
from neural_render.synth.families import draw_shape, pick_held_out
from neural_render.synth.families2 import V2_SHAPES, V2_TRAIN_FAMILIES, draw_shape_v2
from neural_render.synth.lights import horizontal_irradiance, random_lights
from neural_render.synth.motion import MotionParams, object_transforms, visibility
from neural_render.synth.stage import draw_stage, stage_parts
from neural_render.synth.textures import random_material_v2, texture_scale
from neural_render.types import Camera

LIES_DOWN = ("rod", "capsule", "cylinder", "box", "rounded_box")


def v2_rng(seed: int, clip_index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(clip_index), 2]))


def shape_family_v2(config, rng: np.random.Generator) -> str:
    """The family of the next object: a held-out one of ``config.shape_families`` (those not in
    ``V2_TRAIN_FAMILIES``) with the synth/families.py mixing rule, else a uniform pick among its train ones."""
    held = pick_held_out(rng, config.shape_families, V2_TRAIN_FAMILIES)
    if held is not None:
        return held
    return str(rng.choice([f for f in config.shape_families if f in V2_TRAIN_FAMILIES]))


def _geometry(kind: str, rng: np.random.Generator, segments: int) -> shapes.Geometry:
    return draw_shape_v2(kind, rng, segments) if kind in V2_SHAPES else draw_shape(kind, rng, segments)


def _fits(stage, x: float, z: float, radius: float) -> bool:
    if stage.support == "disc":
        return math.hypot(x, z) + radius <= stage.half[0] - 0.02
    return abs(x) + radius <= stage.half[0] - 0.02 and abs(z) + radius <= stage.half[1] - 0.02


def _with_uv_scale(geometry: shapes.Geometry, scale: float) -> shapes.Geometry:
    return shapes.Geometry(geometry.vertices, geometry.faces, geometry.normals,
                           (geometry.uvs / scale).astype(np.float32))


def generate_scene_v2(config, seed: int, clip_index: int, envs=None, user_meshes=None):
    """Draw clip ``clip_index`` of a version-2 dataset with global ``seed`` (module doc) -> SynthScene."""
    from neural_render.data_assets import texture_files
    from neural_render.synth.scene_parts import SynthScene, frame_seeds, object_geometry, tessellation
    from neural_render.synth.scene_parts import environment as _environment
    from neural_render.synth.scene_parts import placed_radius as _placed_radius

    rng = v2_rng(seed, clip_index)
    t = config.num_frames
    photos = texture_files(config.texture_split) if "photo" in config.material_families else None
    style = str(rng.choice(config.styles))
    background = str(rng.choice(config.backgrounds))
    stage = draw_stage(style, rng)
    user = dict(user_meshes or {})
    segments = tessellation(config)
    count = int(rng.integers(config.min_objects, config.max_objects + 1))
    meshes, objects, placed = [], [], []
    for k in range(count):
        geometry, kind = object_geometry(config, rng, user, shape_family_v2,
                                         lambda kind, rng: _geometry(kind, rng, segments))
        lo, hi = geometry.bounds()
        size = float(rng.uniform(0.1, 0.4) if style == "table" else rng.uniform(0.2, 0.8))
        scale = size / float((hi - lo).max())
        tilt = (90.0, 0.0) if kind in LIES_DOWN and rng.uniform() < 0.25 else (0.0, 0.0)
        yaw = float(rng.uniform(0, 360))
        rotation = euler_to_matrix(yaw, tilt[0], tilt[1], dtype=torch.float64).numpy()
        radius, low = _placed_radius(geometry, rotation, scale)
        spot = None
        for _ in range(100):
            x, z = (rng.uniform(-1, 1, 2) * np.asarray(stage.half))
            if _fits(stage, x, z, radius) and all(math.hypot(x - px, z - pz) > radius + pr + 0.02
                                                  for px, pz, pr in placed):
                spot = (float(x), float(z))
                break
        if spot is None:
            continue
        placed.append((spot[0], spot[1], radius))
        motion = MotionParams(position=(spot[0], stage.top - low, spot[1]), yaw_deg=yaw, tilt_deg=tilt, scale=scale)
        if t > 1 and rng.uniform() < config.motion_prob:
            motion.kind = str(rng.choice(["translate", "spin"]))
            if motion.kind == "translate":
                direction = rng.normal(size=2)
                direction /= max(np.linalg.norm(direction), 1e-9)
                speed = float(rng.uniform(0.05, 0.25)) * size / (t - 1)
                motion.velocity = (float(direction[0] * speed), 0.0, float(direction[1] * speed))
            else:
                motion.spin_deg = float(rng.uniform(-8.0, 8.0))
        if t > 1 and k > 0 and rng.uniform() < config.spawn_prob:
            motion.spawn_frame = int(rng.integers(1, t))
        material, record = random_material_v2(rng, config.material_families, config.texture_split, f"obj{k}_",
                                              photos=photos)
        meshes.append(Mesh(geometry.vertices, geometry.faces, geometry.normals, geometry.uvs, material,
                           object_transforms(motion, t), visibility(motion, t), name=kind))
        objects.append({"kind": kind, "material": material.summary(), "material_family": record["family"],
                        **({"texture": record["texture"]} if "texture" in record else {}),
                        "motion": motion.to_dict(), "bounding_radius": radius})

    # camera: frame the placed objects (the support's centre when none fitted)
    xs = np.array([p[0] for p in placed]) if placed else np.zeros(1)
    zs = np.array([p[1] for p in placed]) if placed else np.zeros(1)
    centre = (float(xs.mean()), float(zs.mean()))
    extent = max([math.hypot(x - centre[0], z - centre[1]) + r for x, z, r in placed] + [0.25])
    fov = float(rng.uniform(25.0, 70.0))
    distance = float(rng.uniform(0.9, 1.6)) * extent / math.tan(math.radians(fov) / 2) + 0.1
    azimuth = float(rng.uniform(*stage.azimuth_deg)) if stage.azimuth_deg else float(rng.uniform(0.0, 360.0))
    sweep = float(rng.uniform(-50, 50)) if stage.azimuth_deg is None else float(rng.uniform(-20, 20))
    params = TrajectoryParams(kind=str(rng.choice(["orbit", "dolly", "static"], p=[0.5, 0.3, 0.2])),
                              target=(centre[0], stage.top + float(rng.uniform(0.05, 0.35)) * extent, centre[1]),
                              distance=distance, elevation_deg=float(rng.uniform(*stage.elevation_deg)),
                              azimuth_deg=azimuth, sweep_deg=sweep, dolly_factor=float(rng.uniform(0.7, 1.25)),
                              fov_x_deg=fov,
                              jitter=float(rng.uniform(0.005, 0.02) * distance) if rng.uniform() < config.jitter_prob
                              else 0.0, jitter_seed=int(rng.integers(2 ** 31)))
    c2w = trajectory(params, t)
    camera = Camera.from_fov(fov, config.width, config.height, c2w[None])

    # stage parts (sized for the camera), each with its own material; they come first in the mesh list
    stage_meshes, stage_objects = [], []
    for name, geometry in stage_parts(stage, distance, segments):
        material, record = random_material_v2(rng, config.material_families, config.texture_split, f"{name}_",
                                              surface=True, photos=photos)
        tile = texture_scale(rng)
        geometry = _with_uv_scale(geometry, tile)
        stage_meshes.append(Mesh(geometry.vertices, geometry.faces, geometry.normals, geometry.uvs, material,
                                 name=name))
        stage_objects.append({"kind": name, "material": material.summary(), "material_family": record["family"],
                              **({"texture": record["texture"]} if "texture" in record else {}),
                              "motion": None, "tile_size": tile})
    meshes, objects = stage_meshes + meshes, stage_objects + objects

    env, env_info = _environment(config, rng, envs)
    angles = (float(rng.uniform(0.0, 360.0)), float(rng.uniform(-1, 1) * config.env_tilt_deg),
              float(rng.uniform(-1, 1) * config.env_tilt_deg))
    env = env.rotated(*angles)
    count = int(rng.choice([0, 1, 2, 3], p=[0.4, 0.3, 0.2, 0.1]))
    lights = random_lights(rng, (centre[0], stage.top, centre[1]), extent, horizontal_irradiance(env), count)
    for i, info in enumerate(objects):
        info["id"] = i + 1
    extra = {"style": stage.to_dict(), "background": background, "lights": [light.to_dict() for light in lights]}
    return SynthScene(config, int(seed), int(clip_index), meshes, objects, camera, env, angles, env_info,
                      frame_seeds(seed, clip_index, t), params.to_dict(), lights=lights,
                      hide_emitters=background == "black", extra=extra)
