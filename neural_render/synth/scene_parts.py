"""The pieces both scene generators share (synth/scene.py for version 1, synth/scene2.py for version 2): the
generated clip (:class:`SynthScene`), the per-clip random stream, frame seeds, tessellation, object geometry draws,
placement bounds and the env-map / procedural-sky draw. Split out of synth/scene.py so that scene2 does not import
scene (which dispatches to scene2): no import cycle."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from neural_render.errors import NeuralRenderError
from neural_render.raster.mesh import Mesh
from neural_render.synth import shapes
from neural_render.synth.sky import procedural_sky, random_sky_params
from neural_render.types import Camera, EnvMap

if TYPE_CHECKING:
    from neural_render.synth.scene import SynthConfig


@dataclass
class SynthScene:
    """One generated clip: meshes (with materials and motion), camera, env (rotated), per-frame render seeds."""

    config: SynthConfig
    seed: int
    clip_index: int
    meshes: list[Mesh]
    objects: list[dict]           # per mesh: id, kind, material summary, motion (JSON-ready)
    camera: Camera
    env: EnvMap                   # image as given + the per-clip rotation (EnvMap.rotated semantics)
    env_rotation_deg: tuple[float, float, float]
    env_info: dict                # {"kind": "file" | "sky", "name": ..., ["sky": params]}
    frame_seeds: list[int]
    trajectory: dict = field(default_factory=dict)
    lights: list = field(default_factory=list)   # synth/lights.py Light: local point / spot lights (generator 2)
    hide_emitters: bool = False   # True: emitters invisible to camera rays, the background renders black
    extra: dict = field(default_factory=dict)    # more JSON-ready record for description() (generator 2: style...)

    def description(self) -> dict:
        """JSON-ready record of how the clip was made (stored in meta.json ``extra["synth"]``)."""
        return {"seed": self.seed, "clip_index": self.clip_index, "config": self.config.to_dict(),
                "objects": self.objects, "trajectory": self.trajectory, "env": self.env_info,
                "frame_seeds": self.frame_seeds, **self.extra}


def clip_rng(seed: int, clip_index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(clip_index)]))


def frame_seeds(seed: int, clip_index: int, num_frames: int) -> list[int]:
    """Mitsuba sampler seeds (uint32) of every frame, independent of the scene draws."""
    state = np.random.SeedSequence([int(seed), int(clip_index), 0x5EED]).generate_state(num_frames)
    return [int(s) for s in state]


def tessellation(config: SynthConfig) -> int:
    """Segments around curved shapes: about one per 2 pixels of the image's long side, in [32, 128] (objects cover
    well under the full frame, so facets stay at most a few pixels wide while the BVH stays small)."""
    return int(np.clip(max(config.width, config.height) // 16 * 8, 32, 128))


def object_geometry(config, rng: np.random.Generator, user: dict, family, draw) -> tuple[shapes.Geometry, str]:
    """(geometry, kind) of the next object: one of the ``user`` meshes ({label: Geometry}, kind ``file:<label>``) with
    probability ``config.user_mesh_prob``, else ``draw(kind, rng)`` of ``kind = family(config, rng)``. The random
    draws, in this order, are those of both scene generators (their datasets stay reproducible)."""
    if user and rng.uniform() < config.user_mesh_prob:
        label = sorted(user)[int(rng.integers(len(user)))]
        return user[label], f"file:{label}"
    kind = family(config, rng)
    return draw(kind, rng), kind


def placed_radius(geometry: shapes.Geometry, rotation: np.ndarray, scale: float) -> tuple[float, float]:
    """(horizontal bounding radius, lowest y) of the geometry after rotation and scaling."""
    v = geometry.vertices.astype(np.float64) @ rotation.T * scale
    return float(np.sqrt((v[:, [0, 2]] ** 2).sum(1)).max()), float(v[:, 1].min())


def environment(config: SynthConfig, rng: np.random.Generator, envs: list[EnvMap] | None) -> tuple[EnvMap, dict]:
    if config.sky:
        sky = random_sky_params(rng, config.sky_split)
        image = procedural_sky(sky, config.env_height)
        return EnvMap(image, torch.eye(3), "sky"), {"kind": "sky", "name": "sky", "sky": sky.to_dict()}
    if not envs:
        raise NeuralRenderError("no env maps to choose from (give env maps or use the procedural sky)")
    env = envs[int(rng.integers(len(envs)))]
    return EnvMap(env.image, torch.eye(3), env.name), {"kind": "file", "name": env.name}
