"""Random metallic-roughness materials: constants and procedural textures, in families.

Families: ``constant`` and ``pattern`` (checker, stripes, blocks) are the train families (``TRAIN_MATERIALS``, the
default); the held-out ones are smooth procedural fields: ``noise`` (val: fractal value noise) and ``marble`` /
``wood`` (test: turbulent veins / growth rings). A held-out texture blends two colours (and maybe two roughness
values) by its field and may carry a metal / dielectric mask where the field passes a threshold. Mixing train and
held-out families follows synth/families.py (:func:`~neural_render.synth.families.pick_held_out`).

Textures are tiny arrays sampled with the "nearest" filter (raster/material.py), e.g. an 8x8 checker is an 8x8
texture; so the path tracer and the G-buffer see piecewise-constant maps whose values are exactly the assigned
ones. All randomness comes from the ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

import colorsys
import math

import numpy as np
import torch

from neural_render.raster.material import Material
from neural_render.synth.families import pick_held_out

PATTERNS = ("checker", "stripes", "blocks")
TRAIN_MATERIALS = ("constant", "pattern")
HELD_OUT_MATERIALS = ("noise", "marble", "wood")
MATERIAL_FAMILIES = TRAIN_MATERIALS + HELD_OUT_MATERIALS
HELD_OUT_TEXTURE_SIZES = (16, 32)
#: uniform ranges of the roughness draws: objects (constants and texture values), the ground
OBJECT_ROUGHNESS = (0.05, 0.95)
GROUND_ROUGHNESS = (0.3, 0.95)


def srgb_to_linear_np(srgb: np.ndarray) -> np.ndarray:
    """sRGB values in [0, 1] (any shape, float64) -> linear float32 in [0, 1] (IEC 61966-2-1 decoding curve)."""
    linear = np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)
    return np.clip(linear, 0.0, 1.0).astype(np.float32)


def random_color(rng: np.random.Generator, saturation=(0.1, 0.9), value=(0.15, 0.9), hue=(0.0, 1.0)) -> np.ndarray:
    """Linear RGB (3,) in [0, 1]: a random hue with the given HSV hue / saturation / value ranges (value in sRGB)."""
    h = rng.uniform(*hue)
    s = rng.uniform(*saturation)
    v = rng.uniform(*value)
    return srgb_to_linear_np(np.array(colorsys.hsv_to_rgb(h, s, v)))


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


def random_material(rng: np.random.Generator, textured_prob: float = 0.4, name: str = "",
                    families=TRAIN_MATERIALS) -> Material:
    """A plausible random PBR material of one of ``families`` (module doc). Among the train families, ``pattern``
    is drawn with ``textured_prob`` when ``constant`` is allowed too: its basecolor (and maybe roughness /
    metallic) follow a procedural pattern. The material name is ``name`` + the texture's kind and size."""
    kind = rng.choice(["dielectric", "metal", "mixed"], p=[0.6, 0.25, 0.15])
    metallic = {"dielectric": 0.0, "metal": 1.0, "mixed": float(rng.uniform(0.0, 1.0))}[kind]
    roughness = float(rng.uniform(*OBJECT_ROUGHNESS))
    color = random_color(rng, value=(0.4, 1.0) if kind == "metal" else (0.15, 0.9))
    held = pick_held_out(rng, families, TRAIN_MATERIALS)
    if held is not None:
        return held_out_material(rng, held, color, roughness, metallic, name)
    train = [f for f in families if f in TRAIN_MATERIALS]
    if train == ["constant"] or (len(train) == 2 and rng.uniform() >= textured_prob):
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


def material_family(name: str) -> str:
    """The family of a generated material from its name (``Material.name``, summary ``"name"``): e.g. ``obj2_`` and
    ``ground`` -> constant, ``obj0_checker8`` and ``ground_checker`` -> pattern, ``obj1_marble32`` -> marble."""
    label = name.rsplit("_", 1)[-1].rstrip("0123456789") if "_" in name else ""
    if label in PATTERNS:
        return "pattern"
    if label in HELD_OUT_MATERIALS:
        return label
    if label == "":
        return "constant"
    raise ValueError(f"not a generated material name: {name!r}")


def _value_noise(rng: np.random.Generator, size: int, octaves: int = 3) -> np.ndarray:
    """(size, size) fractal value noise in [0, 1], periodic: bilinear upsampling of random lattices of 3, 6, 12...
    cells, each octave half the amplitude of the one before."""
    total = np.zeros((size, size))
    weight = 0.0
    for octave in range(octaves):
        cells = 3 * 2 ** octave
        lattice = rng.uniform(0.0, 1.0, (cells, cells))
        x = (np.arange(size) + 0.5) / size * cells
        i0 = np.floor(x).astype(int) % cells
        i1 = (i0 + 1) % cells
        f = x - np.floor(x)
        f = f * f * (3 - 2 * f)  # smoothstep between lattice points
        rows = lattice[i0] * (1 - f)[:, None] + lattice[i1] * f[:, None]
        total += 0.5 ** octave * (rows[:, i0] * (1 - f)[None] + rows[:, i1] * f[None])
        weight += 0.5 ** octave
    return total / weight


def held_out_field(rng: np.random.Generator, family: str, size: int) -> np.ndarray:
    """(size, size) blend field in [0, 1] of a held-out family: noise, marble (veins) or wood (rings)."""
    turbulence = _value_noise(rng, size)
    if family == "noise":
        field = turbulence
    else:
        y, x = np.meshgrid((np.arange(size) + 0.5) / size, (np.arange(size) + 0.5) / size, indexing="ij")
        if family == "marble":
            angle = rng.uniform(0.0, math.pi)
            phase = float(rng.uniform(1.0, 4.0)) * (x * math.cos(angle) + y * math.sin(angle))
            field = (0.5 + 0.5 * np.sin(2 * math.pi * (phase + float(rng.uniform(0.5, 1.5)) * turbulence))) ** 3
        elif family == "wood":
            centre = rng.uniform(-0.5, 1.5, 2)
            rings = float(rng.uniform(3.0, 9.0)) * np.hypot(x - centre[0], y - centre[1])
            field = np.mod(rings + float(rng.uniform(0.2, 0.6)) * turbulence, 1.0) ** 2
        else:
            raise ValueError(f"unknown held-out material family {family!r}")
    low, high = float(field.min()), float(field.max())
    return (field - low) / max(high - low, 1e-9)


def held_out_material(rng: np.random.Generator, family: str, color: np.ndarray, roughness: float, metallic: float,
                      name: str = "") -> Material:
    """A material of a held-out family: basecolor = lerp(color, other, field); roughness the same blend of two
    values (half of the time, else constant); a metal / dielectric mask where the field exceeds a threshold (30% of
    the time, else ``metallic``). Wood draws both colours from brown hues."""
    size = int(rng.choice(HELD_OUT_TEXTURE_SIZES))
    field = held_out_field(rng, family, size)[..., None]
    if family == "wood":
        color = random_color(rng, saturation=(0.35, 0.8), value=(0.25, 0.8), hue=(0.04, 0.12))
        other = random_color(rng, saturation=(0.35, 0.8), value=(0.15, 0.6), hue=(0.04, 0.12))
    else:
        other = random_color(rng, value=(0.5, 1.0) if family == "marble" else (0.15, 0.9))
    base = torch.from_numpy((color * (1 - field) + other * field).transpose(2, 0, 1).astype(np.float32).copy())
    rough = roughness
    if rng.uniform() < 0.5:
        alt = float(rng.uniform(*OBJECT_ROUGHNESS))
        rough = torch.from_numpy((roughness * (1 - field) + alt * field).transpose(2, 0, 1).astype(np.float32))
    metal = metallic
    if rng.uniform() < 0.3:
        mask = (field > rng.uniform(0.3, 0.7)).astype(np.float32)
        if mask.min() != mask.max():
            metal = torch.from_numpy(np.ascontiguousarray(mask.transpose(2, 0, 1)))
    return Material(base, rough, metal, name=f"{name}{family}{size}")
