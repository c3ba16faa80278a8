"""Simple rigid object motion: per-frame object-to-world transforms (T, 4, 4) and visibility (objects may appear).

An object's pose at frame t is ``translate(position + velocity * t + bob(t)) @ rotate_y(yaw + spin * t) @
rotate(tilt) @ scale(s)``: translation in scene units per frame, angles in degrees (per frame for spin).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from neural_render.render.rotation import euler_to_matrix

KINDS = ("static", "translate", "spin", "bob")


@dataclass
class MotionParams:
    kind: str = "static"
    position: tuple[float, float, float] = (0.0, 0.0, 0.0)
    yaw_deg: float = 0.0
    tilt_deg: tuple[float, float] = (0.0, 0.0)       # pitch, roll applied before the yaw
    scale: float = 1.0
    velocity: tuple[float, float, float] = (0.0, 0.0, 0.0)   # translate: units per frame
    spin_deg: float = 0.0                                     # spin: degrees per frame about +Y
    bob_amplitude: float = 0.0                                # bob: vertical sine amplitude (units)
    bob_period: float = 12.0                                  # frames
    spawn_frame: int = 0                                      # first visible frame
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


def object_transforms(params: MotionParams, num_frames: int) -> Tensor:
    """(T, 4, 4) float32 object-to-world transforms."""
    t = np.arange(num_frames, dtype=np.float64)
    position = np.asarray(params.position, dtype=np.float64)[None].repeat(num_frames, 0)
    yaw = np.full(num_frames, params.yaw_deg, dtype=np.float64)
    if params.kind == "translate":
        position = position + t[:, None] * np.asarray(params.velocity, dtype=np.float64)
    elif params.kind == "spin":
        yaw = yaw + params.spin_deg * t
    elif params.kind == "bob":
        position[:, 1] += params.bob_amplitude * np.sin(2 * math.pi * t / params.bob_period)
    elif params.kind != "static":
        raise ValueError(f"unknown motion kind {params.kind!r}; choose one of {KINDS}")
    rot = euler_to_matrix(torch.from_numpy(yaw), params.tilt_deg[0], params.tilt_deg[1], dtype=torch.float64)
    m = torch.zeros(num_frames, 4, 4, dtype=torch.float64)
    m[:, :3, :3] = rot * params.scale
    m[:, :3, 3] = torch.from_numpy(position)
    m[:, 3, 3] = 1.0
    return m.to(torch.float32)


def visibility(params: MotionParams, num_frames: int) -> Tensor:
    """(T,) bool: visible from ``spawn_frame`` on."""
    return torch.arange(num_frames) >= params.spawn_frame
