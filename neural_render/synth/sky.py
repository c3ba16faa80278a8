"""Procedural sky: a zenith-to-horizon gradient, a sun halo, a sun disc and a dim ground, as an HDR equirect image.

The image follows the project env map convention (types/envmap.py); each pixel is the mean of 4x4 sub-samples so
the small sun disc is area-filtered, not aliased. Radiance units are arbitrary but physically plausible in ratio:
sky ~1, sun disc ~ ``sun_radiance`` (default: the sun gives about 6x the sky's irradiance on a horizontal plane).

``random_sky_params(rng, split)`` draws the sun elevation and the halo (the haze glow around the sun, our stand-in
for turbidity) from disjoint ranges per dataset split (``SKY_SPLITS``): train keeps the generator's original ranges
(mid-height suns, light to moderate haze); val has high suns and heavier haze; test has very low and near-zenith
suns with either almost no halo or the haziest one. The other parameters share one range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

SUPERSAMPLE = 4


@dataclass
class SkyParams:
    sun_elevation_deg: float = 35.0
    sun_azimuth_deg: float = 0.0      # about +Y, 0 = towards -Z (u = 0 of the equirect image)
    sun_radius_deg: float = 2.5
    sun_radiance: float | None = None  # None -> 6x the sky irradiance
    zenith: tuple[float, float, float] = (0.25, 0.45, 0.95)
    horizon: tuple[float, float, float] = (0.9, 0.95, 1.0)
    ground: tuple[float, float, float] = (0.12, 0.1, 0.08)
    sun_color: tuple[float, float, float] = (1.0, 0.93, 0.82)
    halo: float = 0.6

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class SkyRanges:
    """Per-split ranges: unions of [low, high) intervals of the sun elevation (degrees) and the halo strength."""

    elevation_deg: tuple[tuple[float, float], ...]
    halo: tuple[tuple[float, float], ...]


SKY_SPLITS = {
    "train": SkyRanges(elevation_deg=((8.0, 65.0),), halo=((0.2, 1.0),)),
    "val": SkyRanges(elevation_deg=((65.0, 78.0),), halo=((1.0, 1.4),)),
    "test": SkyRanges(elevation_deg=((4.0, 8.0), (78.0, 88.0)), halo=((0.02, 0.2), (1.4, 1.8))),
}


def uniform_union(rng: np.random.Generator, intervals) -> float:
    """One uniform draw from a union of disjoint intervals (a single interval: exactly ``rng.uniform(low, high)``)."""
    if len(intervals) == 1:
        return float(rng.uniform(*intervals[0]))
    lengths = np.array([high - low for low, high in intervals])
    x = float(rng.uniform(0.0, lengths.sum()))
    for (low, high), length in zip(intervals, lengths):
        if x < length:
            return low + x
        x -= length
    return float(intervals[-1][1])


def random_sky_params(rng: np.random.Generator, split: str = "train") -> SkyParams:
    """Random sky of dataset split ``split`` (a key of ``SKY_SPLITS``; module doc)."""
    ranges = SKY_SPLITS[split]
    warm = rng.uniform(0.0, 1.0)
    elevation = uniform_union(rng, ranges.elevation_deg)
    low = max(0.0, 1.0 - elevation / 30.0)  # low sun -> warmer light
    sun_color = (1.0, 0.93 - 0.25 * low * warm, 0.82 - 0.45 * low * warm)
    zenith = tuple(float(x) for x in np.array([0.2, 0.4, 0.9]) * rng.uniform(0.6, 1.3))
    horizon = (float(rng.uniform(0.75, 1.0)), float(rng.uniform(0.8, 0.95)), float(rng.uniform(0.8, 1.0)))
    return SkyParams(sun_elevation_deg=elevation, sun_azimuth_deg=float(rng.uniform(0.0, 360.0)),
                     sun_radius_deg=float(rng.uniform(1.5, 4.0)), zenith=zenith, horizon=horizon,
                     ground=tuple(float(x) for x in rng.uniform(0.05, 0.2, 3)), sun_color=sun_color,
                     halo=uniform_union(rng, ranges.halo))


def _directions(height: int, width: int, ss: int) -> np.ndarray:
    """(H, W, ss*ss, 3) sub-sample directions of each pixel (equirect convention)."""
    offsets = (np.arange(ss) + 0.5) / ss
    v = (np.arange(height)[:, None] + offsets[None, :]).reshape(-1) / height
    u = (np.arange(width)[:, None] + offsets[None, :]).reshape(-1) / width
    vv, uu = np.meshgrid(v, u, indexing="ij")
    phi, theta = 2 * math.pi * uu, math.pi * vv
    d = np.stack([np.sin(theta) * np.sin(phi), np.cos(theta), -np.sin(theta) * np.cos(phi)], -1)
    return d.reshape(height, ss, width, ss, 3).transpose(0, 2, 1, 3, 4).reshape(height, width, ss * ss, 3)


def procedural_sky(params: SkyParams, height: int = 128) -> Tensor:
    """HDR sky (3, height, 2 * height) float32 linear radiance."""
    width = 2 * height
    d = _directions(height, width, SUPERSAMPLE)
    y = d[..., 1]
    el, az = math.radians(params.sun_elevation_deg), math.radians(params.sun_azimuth_deg)
    sun = np.array([math.cos(el) * math.sin(az), math.sin(el), -math.cos(el) * math.cos(az)])
    t = np.sqrt(np.clip(y, 0.0, 1.0))[..., None]
    sky = np.asarray(params.horizon) * (1 - t) + np.asarray(params.zenith) * t
    ground = np.asarray(params.ground) * (1.0 + 0.5 * np.clip(-y, 0, 1))[..., None]
    radiance = np.where((y >= 0)[..., None], sky, ground)
    cos_sun = np.clip(d @ sun, -1.0, 1.0)
    angle = np.arccos(cos_sun)
    radiance = radiance + params.halo * np.exp(-angle / 0.15)[..., None] * np.asarray(params.sun_color)
    radius = math.radians(params.sun_radius_deg)
    disc = (angle <= radius)[..., None]
    sun_radiance = params.sun_radiance
    if sun_radiance is None:
        solid_angle = 2 * math.pi * (1 - math.cos(radius))
        sky_irradiance = math.pi * float(np.mean(np.asarray(params.zenith) + np.asarray(params.horizon)) / 2)
        sun_radiance = 6.0 * sky_irradiance / (solid_angle * max(math.sin(el), 0.2))
    radiance = np.where(disc, np.asarray(params.sun_color) * sun_radiance, radiance)
    image = radiance.mean(axis=2).astype(np.float32)  # (H, W, 3)
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
