"""Seeded random scene generation: objects, materials, ground, camera trajectory, motion, env map and its rotation.

``generate_scene(config, seed, clip_index, envs, user_meshes)`` is a pure function of its arguments: every random
draw comes from ``numpy.random.default_rng(SeedSequence([seed, clip_index]))``, so clip ``i`` of a dataset is the
same whichever worker renders it, in whatever order, after however many restarts. Mesh index 0 is the ground when
there is one; object ids in the G-buffer AOV are mesh index + 1 (0 = background). ``config.roughness_variant`` k > 0
re-draws every surface's roughness from a separate stream after the scene is drawn (:func:`redraw_roughness`): the
same clip, with other roughness only.

``config.generator`` 2 (issue #23) draws the scene with synth/scene2.py instead: scene styles (tables, rooms,
backdrops), black backgrounds, textured materials, more shape families, local lights; its fields (``styles``,
``backgrounds``, ``texture_split``) are ignored by version 1, which stays exactly as it was.

Held-out factors (synth/splits.py defines the dataset splits): ``config.shape_families`` and
``config.material_families`` name the families objects are drawn from (synth/families.py, synth/materials.py) and
``config.sky_split`` the procedural sky's ranges (synth/sky.py). Their defaults are the train families and ranges,
with which a scene is exactly the one this generator drew before these options existed (same random draws).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from neural_render.data_assets import TEXTURE_SPLITS
from neural_render.errors import NeuralRenderError
from neural_render.raster.material import Material
from neural_render.raster.mesh import Mesh
from neural_render.render.rotation import euler_to_matrix
from neural_render.synth import shapes
from neural_render.synth.cameras import TrajectoryParams, trajectory
from neural_render.synth.families import SHAPE_FAMILIES, TRAIN_SHAPES, draw_shape, pick_held_out
from neural_render.synth.families2 import V2_SHAPES
from neural_render.synth.materials import (
    GROUND_ROUGHNESS,
    MATERIAL_FAMILIES,
    OBJECT_ROUGHNESS,
    TRAIN_MATERIALS,
    ground_material,
    random_material,
)
from neural_render.synth.motion import MotionParams, object_transforms, visibility
from neural_render.synth.scene_parts import SynthScene, clip_rng, frame_seeds, object_geometry, tessellation
from neural_render.synth.scene_parts import environment as _environment
from neural_render.synth.scene_parts import placed_radius as _placed_radius
from neural_render.synth.sky import SKY_SPLITS
from neural_render.synth.stage import BACKGROUNDS, STYLES
from neural_render.synth.textures import V2_MATERIALS
from neural_render.types import Camera, EnvMap

PROCEDURAL_KINDS = TRAIN_SHAPES
#: fields left out of ``SynthConfig.to_dict()`` while they hold these defaults, so the specs of datasets made
#: before the options existed (synth.json, meta.json) stay exactly as they were
_OMITTED_DEFAULTS = {"roughness_variant": 0, "shape_families": TRAIN_SHAPES, "material_families": TRAIN_MATERIALS,
                     "sky_split": "train", "split": None, "generator": 1, "styles": STYLES,
                     "backgrounds": BACKGROUNDS, "texture_split": "train"}


@dataclass
class SynthConfig:
    """Everything that shapes a clip's content (not how or where it is written)."""

    width: int = 128
    height: int = 128
    num_frames: int = 8
    spp: int = 64
    max_depth: int = 6
    fps: float = 12.0
    min_objects: int = 1
    max_objects: int = 6
    ground_prob: float = 0.75
    motion_prob: float = 0.5
    spawn_prob: float = 0.2
    jitter_prob: float = 0.5
    user_mesh_prob: float = 0.5
    env_tilt_deg: float = 0.0     # max |pitch|, |roll| of the env rotation (yaw is uniform in [0, 360))
    sky: bool = False             # procedural sky instead of env map files
    env_height: int = 128         # rows of the procedural sky; taller env map files are shrunk to this
    roughness_variant: int = 0    # k > 0: the same scene with every surface's roughness re-drawn (module doc)
    shape_families: tuple[str, ...] = TRAIN_SHAPES        # families objects are drawn from (synth/families.py)
    material_families: tuple[str, ...] = TRAIN_MATERIALS  # families of object materials (synth/materials.py)
    sky_split: str = "train"      # ranges of the procedural sky (synth/sky.py SKY_SPLITS)
    split: str | None = None      # dataset split these settings came from (synth/splits.py); a record only
    generator: int = 1            # 2: synth/scene2.py (styles, textures, lights); the fields below need it
    styles: tuple[str, ...] = STYLES            # scene styles drawn from (synth/stage.py)
    backgrounds: tuple[str, ...] = BACKGROUNDS  # "env" (visible env map / sky) and / or "black" (hidden emitters)
    texture_split: str = "train"  # data/textures/<split>/ photos of the "photo" material family

    def __post_init__(self):  # JSON gives lists: SynthConfig(**spec["config"]) must equal the config written
        self.shape_families = tuple(self.shape_families)
        self.material_families = tuple(self.material_families)
        self.styles = tuple(self.styles)
        self.backgrounds = tuple(self.backgrounds)

    def validate(self) -> "SynthConfig":
        if not (isinstance(self.num_frames, int) and self.num_frames >= 1):
            raise NeuralRenderError(f"frames must be a positive integer, got {self.num_frames!r}")
        if self.width < 8 or self.height < 8:
            raise NeuralRenderError(f"image size must be at least 8x8, got {self.width}x{self.height}")
        if self.spp < 1 or self.max_depth < 1:
            raise NeuralRenderError(f"spp and max_depth must be >= 1, got {self.spp}, {self.max_depth}")
        if not 1 <= self.min_objects <= self.max_objects:
            raise NeuralRenderError(f"need 1 <= min_objects <= max_objects, got {self.min_objects}, {self.max_objects}")
        for name in ("ground_prob", "motion_prob", "spawn_prob", "jitter_prob", "user_mesh_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise NeuralRenderError(f"{name} must lie in [0, 1], got {getattr(self, name)}")
        if self.env_height < 2 or not 0.0 <= self.env_tilt_deg <= 90.0 or self.fps <= 0:
            raise NeuralRenderError("env_height must be >= 2, env_tilt_deg in [0, 90] and fps > 0")
        if not (isinstance(self.roughness_variant, int) and self.roughness_variant >= 0):
            raise NeuralRenderError(f"roughness_variant must be an integer >= 0, got {self.roughness_variant!r}")
        if self.generator not in (1, 2):
            raise NeuralRenderError(f"generator must be 1 or 2, got {self.generator!r}")
        v2 = self.generator == 2
        if not v2 and any(getattr(self, k) != _OMITTED_DEFAULTS[k] for k in ("styles", "backgrounds", "texture_split")):
            raise NeuralRenderError("styles, backgrounds and texture_split need generator 2")
        for name, known in (("styles", STYLES), ("backgrounds", BACKGROUNDS), ("texture_split", TEXTURE_SPLITS)):
            chosen = getattr(self, name)
            ok = chosen in known if isinstance(chosen, str) else (
                chosen and len(set(chosen)) == len(chosen) and set(chosen) <= set(known))
            if not ok:
                raise NeuralRenderError(f"{name} must be among {', '.join(known)}, got {chosen!r}")
        for name, known in (("shape_families", SHAPE_FAMILIES + V2_SHAPES if v2 else SHAPE_FAMILIES),
                            ("material_families", V2_MATERIALS if v2 else MATERIAL_FAMILIES)):
            chosen = getattr(self, name)
            if not chosen or len(set(chosen)) != len(chosen) or not set(chosen) <= set(known):
                raise NeuralRenderError(f"{name} must be distinct names among {', '.join(known)}, got {chosen!r}")
        if self.sky_split not in SKY_SPLITS:
            raise NeuralRenderError(f"sky_split must be one of {', '.join(SKY_SPLITS)}, got {self.sky_split!r}")
        return self

    def to_dict(self) -> dict:
        """JSON-ready fields; those in ``_OMITTED_DEFAULTS`` only when they differ from the default."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()
                if k not in _OMITTED_DEFAULTS or v != _OMITTED_DEFAULTS[k]}


def shape_family(config: SynthConfig, rng: np.random.Generator) -> str:
    """The family of the next object: a held-out one of ``config.shape_families`` or, by the mixing rule of
    synth/families.py, a uniform pick among its train ones (for the default families: the original draw)."""
    held = pick_held_out(rng, config.shape_families, TRAIN_SHAPES)
    if held is not None:
        return held
    return str(rng.choice([f for f in config.shape_families if f in TRAIN_SHAPES]))


def generate_scene(config: SynthConfig, seed: int, clip_index: int, envs: list[EnvMap] | None = None,
                   user_meshes: dict[str, shapes.Geometry] | None = None) -> SynthScene:
    """Draw clip ``clip_index`` of the dataset with global ``seed`` (see module doc).

    envs: loaded env maps to choose from (ignored when ``config.sky``); user_meshes: {label: Geometry} that may
    replace procedural shapes (``config.user_mesh_prob`` per object).
    """
    config.validate()
    if config.generator == 2:
        from neural_render.synth.scene2 import generate_scene_v2
        scene = generate_scene_v2(config, seed, clip_index, envs, user_meshes)
        if config.roughness_variant:
            redraw_roughness(scene.meshes, scene.objects, seed, clip_index, config.roughness_variant)
        return scene
    rng = clip_rng(seed, clip_index)
    t = config.num_frames
    user = dict(user_meshes or {})
    count = int(rng.integers(config.min_objects, config.max_objects + 1))
    has_ground = bool(rng.uniform() < config.ground_prob)
    meshes: list[Mesh] = []
    objects: list[dict] = []
    if has_ground:
        meshes.append(None)  # placeholder: the ground is sized once the camera distance is known
        objects.append(None)
    placed: list[tuple[float, float, float]] = []  # (x, z, radius)
    ring = 0.3 + 0.2 * count
    segments = tessellation(config)
    for k in range(count):
        geometry, kind = object_geometry(config, rng, user, shape_family,
                                         lambda kind, rng: draw_shape(kind, rng, segments))
        lo, hi = geometry.bounds()
        size = float(rng.uniform(0.35, 0.8))
        scale = size / float((hi - lo).max())
        floating = (not has_ground) or rng.uniform() < 0.15
        tilted = floating or (kind == "torus" and rng.uniform() < 0.5)
        tilt = (float(rng.uniform(-60, 60)), float(rng.uniform(-60, 60))) if tilted else (0.0, 0.0)
        yaw = float(rng.uniform(0, 360))
        rotation = euler_to_matrix(yaw, tilt[0], tilt[1], dtype=torch.float64).numpy()
        radius, low = _placed_radius(geometry, rotation, scale)
        spot = None
        for _ in range(200):
            x, z = rng.uniform(-ring, ring, 2)
            if all(math.hypot(x - px, z - pz) > radius + pr + 0.05 for px, pz, pr in placed):
                spot = (float(x), float(z))
                break
        if spot is None:
            continue
        placed.append((spot[0], spot[1], radius))
        y = -low + (float(rng.uniform(0.15, 0.8)) if floating else 0.0)
        motion = MotionParams(position=(spot[0], y, spot[1]), yaw_deg=yaw, tilt_deg=tilt, scale=scale)
        if t > 1 and rng.uniform() < config.motion_prob:
            motion.kind = str(rng.choice(["translate", "spin", "bob"] if floating else ["translate", "spin"]))
            if motion.kind == "translate":
                direction = rng.normal(size=2)
                direction /= max(np.linalg.norm(direction), 1e-9)
                speed = float(rng.uniform(0.1, 0.5)) / (t - 1)
                motion.velocity = (float(direction[0] * speed), 0.0, float(direction[1] * speed))
            elif motion.kind == "spin":
                motion.spin_deg = float(rng.uniform(-8.0, 8.0))
            else:
                motion.bob_amplitude = float(rng.uniform(0.05, 0.15))
                motion.bob_period = float(rng.uniform(8.0, 24.0))
        if t > 1 and k > 0 and rng.uniform() < config.spawn_prob:
            motion.spawn_frame = int(rng.integers(1, t))
        material = random_material(rng, name=f"obj{k}_", families=config.material_families)
        meshes.append(Mesh(geometry.vertices, geometry.faces, geometry.normals, geometry.uvs, material,
                           object_transforms(motion, t), visibility(motion, t), name=kind))
        objects.append({"kind": kind, "material": material.summary(), "motion": motion.to_dict(),
                        "bounding_radius": radius})

    # camera: frame the placed objects
    xs = np.array([p[0] for p in placed]) if placed else np.zeros(1)
    zs = np.array([p[1] for p in placed]) if placed else np.zeros(1)
    centre = (float(xs.mean()), float(zs.mean()))
    extent = max([math.hypot(x - centre[0], z - centre[1]) + r for x, z, r in placed] + [0.5])
    fov = float(rng.uniform(35.0, 55.0))
    distance = 1.15 * extent / math.tan(math.radians(fov) / 2) + 0.2
    params = TrajectoryParams(kind=str(rng.choice(["orbit", "dolly", "static"], p=[0.5, 0.3, 0.2])),
                              target=(centre[0], 0.3 if has_ground else 0.5, centre[1]), distance=distance,
                              elevation_deg=float(rng.uniform(10.0, 35.0) if has_ground else rng.uniform(-15, 35)),
                              azimuth_deg=float(rng.uniform(0.0, 360.0)), sweep_deg=float(rng.uniform(-50, 50)),
                              dolly_factor=float(rng.uniform(0.7, 1.25)), fov_x_deg=fov,
                              jitter=float(rng.uniform(0.005, 0.02) * distance) if rng.uniform() < config.jitter_prob
                              else 0.0, jitter_seed=int(rng.integers(2 ** 31)))
    c2w = trajectory(params, t)
    camera = Camera.from_fov(fov, config.width, config.height, c2w[None])
    if has_ground:
        half = max(12.0, 6.0 * distance)
        tile = float(rng.uniform(0.4, 1.5))
        ground = shapes.ground_quad(half, 2 * half / tile)
        material = ground_material(rng)
        meshes[0] = Mesh(ground.vertices, ground.faces, ground.normals, ground.uvs, material, name="ground")
        objects[0] = {"kind": "ground", "material": material.summary(), "motion": None, "tile_size": tile}
    env, env_info = _environment(config, rng, envs)
    angles = (float(rng.uniform(0.0, 360.0)), float(rng.uniform(-1, 1) * config.env_tilt_deg),
              float(rng.uniform(-1, 1) * config.env_tilt_deg))
    env = env.rotated(*angles)
    if config.roughness_variant:
        redraw_roughness(meshes, objects, seed, clip_index, config.roughness_variant)
    for i, info in enumerate(objects):
        info["id"] = i + 1
    return SynthScene(config, int(seed), int(clip_index), meshes, objects, camera, env, angles, env_info,
                      frame_seeds(seed, clip_index, t), params.to_dict())


def redraw_roughness(meshes: list[Mesh], objects: list[dict], seed: int, clip_index: int, variant: int) -> None:
    """Roughness variant ``variant`` of a drawn scene, in place: every mesh's roughness map is shifted so that its
    mean is a fresh uniform draw from that surface kind's range (a constant map becomes exactly that draw; a textured
    one keeps its pattern), clamped to the range. The draws come from their own stream (seed, clip_index, variant),
    so geometry, colours, metallic, camera, motion and lighting stay exactly those of the base scene: clips that
    differ ONLY in roughness, whose gloss is then the only cue a model can learn roughness from."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(clip_index), 0x2006, int(variant)]))
    for mesh, info in zip(meshes, objects):
        low, high = GROUND_ROUGHNESS if info.get("kind") == "ground" else OBJECT_ROUGHNESS
        old = mesh.material
        value = float(rng.uniform(low, high))
        rough = (old.roughness - old.roughness.mean() + value).clamp(low, high)
        mesh.material = Material(old.basecolor, rough, old.metallic, filter=old.filter, name=old.name)
        info["material"] = mesh.material.summary()


def rotation_matrix(scene: SynthScene) -> Tensor:
    """(3, 3) float32 world-from-map rotation of the clip's env (= ``scene.env.rotation``)."""
    return scene.env.rotation
