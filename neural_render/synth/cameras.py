"""Camera trajectories around a target: orbit, dolly, static; optional handheld jitter. OpenGL camera-to-world.

A trajectory is (T, 4, 4) float32 camera-to-world (:func:`neural_render.types.look_at`): the camera at ``distance``
from ``target``, ``elevation_deg`` above it, at yaw ``azimuth_deg`` (0 = on the +Z side, looking towards -Z).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from neural_render.types import look_at

KINDS = ("orbit", "dolly", "static")


@dataclass
class TrajectoryParams:
    kind: str = "orbit"
    target: tuple[float, float, float] = (0.0, 0.3, 0.0)
    distance: float = 3.0
    elevation_deg: float = 20.0
    azimuth_deg: float = 0.0
    sweep_deg: float = 30.0           # orbit: total yaw change over the clip
    dolly_factor: float = 0.8         # dolly: final distance / initial distance
    jitter: float = 0.0               # handheld: position jitter amplitude in scene units (0 = tripod)
    jitter_seed: int = 0
    fov_x_deg: float = 45.0

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


def _smooth_noise(seed: int, num_frames: int, dims: int) -> np.ndarray:
    """(T, dims) smooth zero-mean noise in about [-1, 1]: three random sinusoids per dimension."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_frames, dtype=np.float64)[:, None]
    out = np.zeros((num_frames, dims))
    for _ in range(3):
        freq = rng.uniform(0.05, 0.35, size=dims)
        phase = rng.uniform(0, 2 * math.pi, size=dims)
        out += np.sin(2 * math.pi * freq * t / 4 + phase) / 3
    return out


def trajectory(params: TrajectoryParams, num_frames: int) -> Tensor:
    """(T, 4, 4) float32 camera-to-world poses."""
    s = np.linspace(0.0, 1.0, num_frames) if num_frames > 1 else np.zeros(1)
    azimuth = np.full(num_frames, params.azimuth_deg, dtype=np.float64)
    distance = np.full(num_frames, params.distance, dtype=np.float64)
    if params.kind == "orbit":
        azimuth = azimuth + (s - 0.5) * params.sweep_deg
    elif params.kind == "dolly":
        distance = distance * (1.0 + (params.dolly_factor - 1.0) * s)
    elif params.kind != "static":
        raise ValueError(f"unknown trajectory kind {params.kind!r}; choose one of {KINDS}")
    az, el = np.radians(azimuth), math.radians(params.elevation_deg)
    target = np.asarray(params.target, dtype=np.float64)
    eye = target + distance[:, None] * np.stack(
        [np.sin(az) * math.cos(el), np.full_like(az, math.sin(el)), np.cos(az) * math.cos(el)], 1)
    look = np.repeat(target[None], num_frames, 0)
    if params.jitter > 0:
        noise = _smooth_noise(params.jitter_seed, num_frames, 6)
        eye = eye + params.jitter * noise[:, :3]
        look = look + 0.5 * params.jitter * noise[:, 3:]
    return look_at(torch.from_numpy(eye).float(), torch.from_numpy(look).float())
