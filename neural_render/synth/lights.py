"""Local lights of the generator version 2 (issue #23): point and spot lights beside the env map or sky.

A :class:`Light` is a Mitsuba ``point`` or ``spot`` emitter: it has no geometry, so it is never seen by camera rays
(the G-buffer and the mask are unaffected) and only lights the scene. Units: positions in metres (world, +Y up),
``intensity`` linear RGB radiant intensity (W/sr, the scene's radiance units times m^2), spot angles in degrees
(``cutoff_deg`` the half-angle where the light ends, ``beam_deg`` where its falloff begins).

:func:`random_lights` scales the lights so that together they add 0.2-1.5 times the env's own irradiance on an
upward-facing surface (:func:`horizontal_irradiance`) at the scene centre, shared equally, so local lights neither
vanish next to a bright sky nor blow out a dim interior. Positions: above the scene, 1.5-4 scene extents from its
centre, aimed at the centre.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from neural_render.synth.materials import random_color


@dataclass
class Light:
    kind: str                                   # "point" | "spot"
    position: tuple[float, float, float]        # metres
    intensity: tuple[float, float, float]       # W/sr, linear RGB
    target: tuple[float, float, float] = (0.0, 0.0, 0.0)   # spot: the point it aims at
    cutoff_deg: float = 30.0                    # spot: half-angle of the cone
    beam_deg: float = 20.0                      # spot: half-angle of the full-intensity core

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


def horizontal_irradiance(env) -> float:
    """Luminance of the irradiance (radiance units x sr) that ``env`` (an EnvMap, rotation included) gives a surface
    facing world +Y: the cosine-weighted integral over the upper hemisphere."""
    image = env.image.numpy().astype(np.float64)
    h, w = image.shape[1:]
    theta = (np.arange(h) + 0.5) / h * math.pi
    phi = (np.arange(w) + 0.5) / w * 2 * math.pi
    d = np.stack([np.sin(theta)[:, None] * np.sin(phi)[None], np.cos(theta)[:, None] * np.ones(w)[None],
                  -np.sin(theta)[:, None] * np.cos(phi)[None]], -1)          # map-frame directions (H, W, 3)
    up = env.rotation.numpy().astype(np.float64).T @ np.array([0.0, 1.0, 0.0])
    weight = np.clip(d @ up, 0.0, None) * (math.pi / h) * (2 * math.pi / w) * np.sin(theta)[:, None]
    rgb = (image * weight[None]).sum((1, 2))
    return float(rgb @ np.array([0.2126, 0.7152, 0.0722]))


def random_lights(rng: np.random.Generator, centre, extent: float, env_irradiance: float, count: int
                  ) -> list[Light]:
    """``count`` random point / spot lights around a scene (module doc). centre: (3,) metres; extent: scene radius
    in metres; env_irradiance: :func:`horizontal_irradiance` of the scene's env (> 0)."""
    share = float(rng.uniform(0.2, 1.5)) * max(env_irradiance, 1e-3) / max(count, 1)
    centre = np.asarray(centre, dtype=np.float64)
    lights = []
    for _ in range(count):
        kind = str(rng.choice(["point", "spot"]))
        distance = float(rng.uniform(1.5, 4.0)) * max(extent, 0.2)
        azimuth = float(rng.uniform(0.0, 2 * math.pi))
        elevation = math.radians(float(rng.uniform(20.0, 80.0)))
        offset = np.array([math.cos(elevation) * math.sin(azimuth), math.sin(elevation),
                           math.cos(elevation) * math.cos(azimuth)]) * distance
        target = centre + rng.uniform(-0.3, 0.3, 3) * extent * np.array([1.0, 0.0, 1.0])
        position = centre + offset
        color = random_color(rng, saturation=(0.0, 0.35), value=(0.9, 1.0), hue=(0.0, 1.0))
        color = color / max(float(color.max()), 1e-6)
        power = share * float(np.sum((position - target) ** 2))  # I = E d^2 (facing the light)
        cutoff = float(rng.uniform(15.0, 45.0))
        lights.append(Light(kind, tuple(float(x) for x in position), tuple(float(x) for x in color * power),
                            tuple(float(x) for x in target), cutoff, cutoff * float(rng.uniform(0.4, 0.9))))
    return lights


def emitter_dict(mi, light: Light) -> dict:
    """Mitsuba scene-dict entry of one light."""
    intensity = {"type": "rgb", "value": list(light.intensity)}
    if light.kind == "point":
        return {"type": "point", "position": list(light.position), "intensity": intensity}
    if light.kind == "spot":
        up = (0.0, 1.0, 0.0) if abs(np.subtract(light.target, light.position)[[0, 2]]).sum() > 1e-6 else (1.0, 0, 0)
        return {"type": "spot", "intensity": intensity, "cutoff_angle": light.cutoff_deg,
                "beam_width": light.beam_deg,
                "to_world": mi.ScalarTransform4f().look_at(origin=list(light.position), target=list(light.target),
                                                           up=list(up))}
    raise ValueError(f"unknown light kind {light.kind!r}")
