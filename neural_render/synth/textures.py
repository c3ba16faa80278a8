"""Textured PBR materials of the generator version 2 (issue #23): basecolor AND roughness AND metallic maps.

Families (which split may draw them: synth/splits.py; the mixing rule of held-out families is
:func:`neural_render.synth.families.pick_held_out` with the train families below):

==========  ==================================================================================  =======
family      maps                                                                                split
==========  ==================================================================================  =======
constant    one colour, roughness and metallic                                                  train2
pattern     checker / stripes / blocks (synth/materials.py patterns, 2-16 cells)                train2
bricks      running-bond bricks (per-brick colour jitter) with mortar joints                    train2
tiles       square tiles (one or two tones) with grout joints                                   train2
cells       Voronoi cells in 2-4 colours with dark cracks                                       train2
photo       a real photograph (data/textures/<texture split>/, scripts/import_textures.py)      all *
noise       fractal value noise blending two colours (the v1 val family)                        val2
dots        polka dots on a grid                                                                val2
marble      turbulent veins (the v1 test family)                                                test2
wood        growth rings in brown hues (the v1 test family)                                     test2
==========  ==================================================================================  =======

\\* ``photo`` is a train family whose FILES are held out: a split draws only the photos of its own texture split
(``SynthConfig.texture_split``: train2 -> data/textures/train, val2 -> val, test2 -> test).

Labelled families (pattern, bricks, tiles, cells, dots) give each label its own colour and, 70 % of the time, their
joints / background another roughness; 20 % of the time (5 % on large surfaces) a metal / dielectric mask by label.
Continuous ones (noise, marble, wood, photo) blend two values by their field (photo: by its luminance). Maps are
(C, S, S) float32 with S in ``TEXTURE_SIZES`` (photos: 128) sampled with the "nearest" filter, so every G-buffer
value is exactly a texel value the path tracer uses; all fields are periodic except photos. All randomness comes
from the ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from neural_render.raster.material import Material
from neural_render.synth.families import pick_held_out
from neural_render.synth.materials import (
    OBJECT_ROUGHNESS,
    _value_noise,
    held_out_field,
    pattern_mask,
    random_color,
    srgb_to_linear_np,
)

V2_TRAIN_MATERIALS = ("constant", "pattern", "bricks", "tiles", "cells", "photo")
V2_VAL_MATERIALS = ("noise", "dots")
V2_TEST_MATERIALS = ("marble", "wood")
V2_MATERIALS = V2_TRAIN_MATERIALS + V2_VAL_MATERIALS + V2_TEST_MATERIALS
TEXTURE_SIZES = (64, 128)
LABELLED = ("pattern", "bricks", "tiles", "cells", "dots")


def _pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """(y, x) pixel-centre coordinates in [0, 1) of a (size, size) texture, row-major."""
    c = (np.arange(size) + 0.5) / size
    return np.meshgrid(c, c, indexing="ij")


def bricks_labels(rng: np.random.Generator, size: int) -> np.ndarray:
    """(size, size) int labels: 0 = mortar, 1.. = one label per brick of a running bond (periodic)."""
    rows, cols = int(rng.choice([4, 6, 8])), int(rng.choice([2, 3, 4]))
    y, x = _pixel_grid(size)
    r = np.floor(y * rows)
    xs = (x + (r % 2) * 0.5 / cols) % 1.0
    c = np.floor(xs * cols)
    joint = float(rng.uniform(0.012, 0.03))
    mortar = (y * rows - r < joint * rows) | (xs * cols - c < joint * cols * 2)
    return np.where(mortar, 0, 1 + (r * cols + c).astype(np.int64))


def tiles_labels(rng: np.random.Generator, size: int) -> np.ndarray:
    """(size, size) int labels: 0 = grout, 1 (and 2 for two-tone checkered tiles) = tiles (periodic)."""
    n = int(rng.choice([2, 4, 8]))
    y, x = _pixel_grid(size)
    i, j = np.floor(y * n), np.floor(x * n)
    joint = float(rng.uniform(0.02, 0.06))
    grout = (y * n - i < joint) | (x * n - j < joint)
    tile = 1 + (((i + j) % 2).astype(np.int64) if rng.uniform() < 0.5 else 0)
    return np.where(grout, 0, tile)


def cells_labels(rng: np.random.Generator, size: int) -> np.ndarray:
    """(size, size) int labels of periodic Voronoi cells: 0 = crack (near a cell border), 1..m = colour index."""
    k, m = int(rng.integers(6, 21)), int(rng.integers(2, 5))
    seeds = rng.uniform(0.0, 1.0, (k, 2))
    colour = rng.integers(1, m + 1, k)
    y, x = _pixel_grid(size)
    d = np.abs(np.stack([y, x], -1)[..., None, :] - seeds)           # (S, S, k, 2)
    d = np.minimum(d, 1.0 - d)                                         # wrap-around distance
    dist = np.sqrt((d ** 2).sum(-1))
    order = np.sort(dist, axis=-1)
    crack = order[..., 1] - order[..., 0] < float(rng.uniform(0.005, 0.02))
    return np.where(crack, 0, colour[dist.argmin(-1)])


def dots_labels(rng: np.random.Generator, size: int) -> np.ndarray:
    """(size, size) int labels: 0 = background, 1 = dots on an n x n grid (every other row shifted half a cell)."""
    n = int(rng.integers(3, 9))
    radius = float(rng.uniform(0.2, 0.42))
    y, x = _pixel_grid(size)
    shift = (np.floor(y * n) % 2) * 0.5 if rng.uniform() < 0.5 else 0.0
    fy, fx = y * n % 1.0 - 0.5, (x * n + shift) % 1.0 - 0.5
    return (np.hypot(fy, fx) < radius).astype(np.int64)


_LABELS = {"bricks": bricks_labels, "tiles": tiles_labels, "cells": cells_labels, "dots": dots_labels}


@functools.lru_cache(maxsize=256)
def load_photo(path: str) -> np.ndarray:
    """(h, w, 3) float32 linear RGB in [0, 1] of an sRGB image file (cached per process)."""
    from PIL import Image

    with Image.open(path) as image:
        return srgb_to_linear_np(np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0)


def _map(values: np.ndarray) -> torch.Tensor:
    """(S, S, C) -> (C, S, S) float32 tensor in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(np.clip(values, 0.0, 1.0).transpose(2, 0, 1).astype(np.float32)))


def _labelled_maps(rng, family, labels, color, roughness, metallic, metal_prob):
    """basecolor, roughness, metallic maps (or constants) of a labelled texture (module doc)."""
    k = int(labels.max()) + 1
    if family == "bricks":  # bricks: one hue, jittered per brick; mortar a light grey
        colors = np.stack([random_color(rng, saturation=(0.0, 0.15), value=(0.4, 0.85))]
                          + [np.clip(color * rng.uniform(0.7, 1.15), 0, 1) for _ in range(k - 1)])
    else:
        colors = np.stack([color] + [random_color(rng) for _ in range(k - 1)])
        if family in ("tiles", "cells"):  # dark or light joints
            colors[0] = random_color(rng, saturation=(0.0, 0.2), value=(0.05, 0.9))
    base = _map(colors[labels])
    rough = roughness
    if rng.uniform() < 0.7:
        values = np.array([[rng.uniform(*OBJECT_ROUGHNESS)]] + [[roughness]] * (k - 1), np.float32)
        rough = _map(values[labels])
    metal = metallic
    if rng.uniform() < metal_prob:
        flags = (rng.uniform(size=k) < 0.5).astype(np.float32)
        flags[int(rng.integers(k))] = 1.0 - flags[0] if k > 1 else flags[0]
        if flags.min() != flags.max():
            metal = _map(flags[labels][..., None])
    return base, rough, metal


def _blended_maps(rng, field, color, other, roughness, metallic, metal_prob):
    """Maps of a continuous field in [0, 1] (S, S): lerp of two colours / roughness values, maybe a metal mask."""
    f = field[..., None]
    base = _map(color * (1 - f) + other * f)
    rough = roughness
    if rng.uniform() < 0.7:
        rough = _map(roughness * (1 - f) + float(rng.uniform(*OBJECT_ROUGHNESS)) * f)
    metal = metallic
    if rng.uniform() < metal_prob:
        mask = (f > rng.uniform(0.3, 0.7)).astype(np.float32)
        if mask.min() != mask.max():
            metal = _map(mask)
    return base, rough, metal


def pick_family(rng: np.random.Generator, families) -> str:
    """The material family of the next surface: a held-out one of ``families`` or, by the mixing rule of
    synth/families.py, a uniform pick among its version-2 train families."""
    held = pick_held_out(rng, families, V2_TRAIN_MATERIALS)
    if held is not None:
        return held
    return str(rng.choice([f for f in families if f in V2_TRAIN_MATERIALS]))


def random_material_v2(rng: np.random.Generator, families, texture_split: str = "train", name: str = "",
                       surface: bool = False, photos: list | None = None) -> tuple[Material, dict]:
    """(material, record) of a family drawn from ``families`` (module doc).

    surface: a large stage surface (floor, wall, table): mostly dielectric, metal masks rarer. photos: the image
    files of ``texture_split`` (default: data_assets.texture_files(texture_split)). The record holds ``family`` and,
    for photos, the file ``texture`` ("<split>/<name>"); the material name is ``name`` + family + texture size."""
    family = pick_family(rng, families)
    kind = rng.choice(["dielectric", "metal", "mixed"], p=[0.94, 0.03, 0.03] if surface else [0.6, 0.25, 0.15])
    metallic = {"dielectric": 0.0, "metal": 1.0, "mixed": float(rng.uniform(0.0, 1.0))}[str(kind)]
    roughness = float(rng.uniform(*OBJECT_ROUGHNESS))
    color = random_color(rng, value=(0.4, 1.0) if kind == "metal" else (0.15, 0.9))
    metal_prob = 0.05 if surface else 0.2
    record = {"family": family}
    if family == "constant":
        return Material(color, roughness, metallic, name=name), record
    size = int(rng.choice(TEXTURE_SIZES))
    if family == "pattern":
        labels = pattern_mask(rng, str(rng.choice(["checker", "stripes", "blocks"])), int(rng.choice([2, 4, 8, 16])))
        labels = np.kron(labels, np.ones((size // labels.shape[0],) * 2, np.int64))
        maps = _labelled_maps(rng, family, labels, color, roughness, metallic, metal_prob)
    elif family in _LABELS:
        maps = _labelled_maps(rng, family, _LABELS[family](rng, size), color, roughness, metallic, metal_prob)
    elif family == "photo":
        if photos is None:
            from neural_render.data_assets import texture_files
            photos = texture_files(texture_split)
        path = photos[int(rng.integers(len(photos)))]
        image = np.rot90(load_photo(str(path)), int(rng.integers(4)))
        size = image.shape[0]
        luminance = image @ np.array([0.2126, 0.7152, 0.0722], np.float32)
        field = (luminance - luminance.min()) / max(float(np.ptp(luminance)), 1e-6)
        maps = _blended_maps(rng, field, image, image, roughness, metallic if kind != "metal" else 0.0, metal_prob)
        record["texture"] = f"{texture_split}/{path.name}"
    elif family in ("noise", "marble", "wood"):
        field = held_out_field(rng, family, size) if family != "noise" else _value_noise(rng, size, 4)
        field = (field - field.min()) / max(float(np.ptp(field)), 1e-9)
        if family == "wood":
            color = random_color(rng, saturation=(0.35, 0.8), value=(0.25, 0.8), hue=(0.04, 0.12))
            other = random_color(rng, saturation=(0.35, 0.8), value=(0.15, 0.6), hue=(0.04, 0.12))
        else:
            other = random_color(rng, value=(0.5, 1.0) if family == "marble" else (0.15, 0.9))
        maps = _blended_maps(rng, field, color, other, roughness, metallic, metal_prob)
    else:
        raise ValueError(f"unknown version-2 material family {family!r}")
    base, rough, metal = maps
    return Material(base, rough, metal, name=f"{name}{family}{size}"), record


def texture_scale(rng: np.random.Generator) -> float:
    """Metres covered by one repeat of a texture on a large surface (uv tiles = extent / scale)."""
    return float(math.exp(rng.uniform(math.log(0.3), math.log(2.0))))
