"""Random metallic-roughness materials: constants and procedural textures (checker, stripes, blocky noise).

Textures are tiny arrays sampled with the "nearest" filter (raster/material.py), e.g. an 8x8 checker is an 8x8
texture; so the path tracer and the G-buffer see piecewise-constant maps whose values are exactly the assigned
ones. All randomness comes from the ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

import colorsys

import numpy as np
import torch

from neural_render.raster.material import Material

PATTERNS = ("checker", "stripes", "blocks")
#: uniform ranges of the roughness draws: objects (constants and texture values), the ground
OBJECT_ROUGHNESS = (0.05, 0.95)
GROUND_ROUGHNESS = (0.3, 0.95)


def random_color(rng: np.random.Generator, saturation=(0.1, 0.9), value=(0.15, 0.9)) -> np.ndarray:
    """Linear RGB (3,) in [0, 1]: a random hue with the given HSV saturation / value ranges (value in sRGB)."""
    h = rng.uniform(0.0, 1.0)
    s = rng.uniform(*saturation)
    v = rng.uniform(*value)
    srgb = np.array(colorsys.hsv_to_rgb(h, s, v))
    linear = np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)
    return np.clip(linear, 0.0, 1.0).astype(np.float32)


def pattern_mask(rng: np.random.Generator, kind: str, size: int) -> np.ndarray:
    """(size, size) integer labels in {0, 1} (checker, stripes) or {0..3} (blocks)."""
    r, c = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    if kind == "checker":
        return (r + c) % 2
    if kind == "stripes":
        return (c if rng.uniform() < 0.5 else r) % 2
    if kind == "blocks":
        return rng.integers(0, 4, size=(size, size))
    raise ValueError(f"unknown pattern {kind!r}")


def _textured(values: np.ndarray, labels: np.ndarray) -> torch.Tensor:
    """values (K, C), labels (h, w) -> texture (C, h, w) float32."""
    return torch.from_numpy(values[labels].transpose(2, 0, 1).astype(np.float32).copy())


def random_material(rng: np.random.Generator, textured_prob: float = 0.4, name: str = "") -> Material:
    """A plausible random PBR material; with ``textured_prob`` its basecolor (and maybe roughness / metallic)
    follow a procedural pattern."""
    kind = rng.choice(["dielectric", "metal", "mixed"], p=[0.6, 0.25, 0.15])
    metallic = {"dielectric": 0.0, "metal": 1.0, "mixed": float(rng.uniform(0.0, 1.0))}[kind]
    roughness = float(rng.uniform(*OBJECT_ROUGHNESS))
    color = random_color(rng, value=(0.4, 1.0) if kind == "metal" else (0.15, 0.9))
    if rng.uniform() >= textured_prob:
        return Material(color, roughness, metallic, name=name)
    pattern = str(rng.choice(PATTERNS))
    size = int(rng.choice([2, 4, 8, 16]))
    labels = pattern_mask(rng, pattern, size)
    k = int(labels.max()) + 1
    colors = np.stack([color] + [random_color(rng) for _ in range(k - 1)])
    rough = np.array([[roughness]] + [[rng.uniform(*OBJECT_ROUGHNESS)] for _ in range(k - 1)], np.float32)
    metal = np.full((k, 1), metallic, np.float32)
    if rng.uniform() < 0.3:  # metal / dielectric pattern
        metal = np.array([[float(i % 2)] for i in range(k)], np.float32)
    base = _textured(colors, labels)
    rough_tex = _textured(rough, labels) if rng.uniform() < 0.5 else roughness
    metal_tex = _textured(metal, labels) if (metal != metal[0]).any() else float(metal[0, 0])
    return Material(base, rough_tex, metal_tex, name=f"{name}{pattern}{size}")


def ground_material(rng: np.random.Generator) -> Material:
    """Dielectric ground: a constant colour or a two-colour checker (tiled by the ground's uv)."""
    roughness = float(rng.uniform(*GROUND_ROUGHNESS))
    color = random_color(rng, saturation=(0.0, 0.5), value=(0.2, 0.8))
    if rng.uniform() < 0.5:
        return Material(color, roughness, 0.0, name="ground")
    other = random_color(rng, saturation=(0.0, 0.5), value=(0.2, 0.8))
    return Material(_textured(np.stack([color, other]), pattern_mask(rng, "checker", 2)), roughness, 0.0,
                    name="ground_checker")
