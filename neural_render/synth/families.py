"""Shape families of the scene generator and the rule that mixes held-out families into a split.

A family is a named random recipe for one object's geometry (object space, metres, largest extent about 1 before
the scene scales it). ``TRAIN_SHAPES`` are the families every shipped model was trained on (the generator's
default, in this order: the draws of a default scene are exactly those of the generator before families existed).
The held-out families are meshes with exact G-buffers like the others (vertices, faces, unit normals, uvs):

- ``extruded`` (val): a random star, polygon or rounded outline extruded into a prism with flat caps;
- ``revolved`` (test): a lathe of a random smooth profile with flat caps (vases, bottles, jars);
- ``composite`` (test): primitives joined into one object (mushroom, dumbbell, snowman).

Mixing rule (:func:`pick_held_out`): when a config lists held-out families beside train ones, each object draws
from the held-out ones (uniformly) with probability ``HELD_OUT_SHARE`` = 1/2, else from the train ones as in a
train scene; a config listing only held-out families draws only those.
"""

from __future__ import annotations

import math

import numpy as np

from neural_render.synth import shapes

TRAIN_SHAPES = ("sphere", "box", "cylinder", "torus", "superquadric", "displaced")
HELD_OUT_SHAPES = ("extruded", "revolved", "composite")
SHAPE_FAMILIES = TRAIN_SHAPES + HELD_OUT_SHAPES
#: probability that an object of a mixed split comes from its held-out families
HELD_OUT_SHARE = 0.5


def pick_held_out(rng: np.random.Generator, families, train) -> str | None:
    """The held-out family (one of ``families`` not in ``train``) this object draws from, or None: draw from the
    train families in ``families`` (see module doc). No random draw at all when ``families`` has no held-out one,
    so default scenes consume exactly the random numbers they always did."""
    held = [f for f in families if f not in train]
    if not held:
        return None
    if len(held) < len(families) and rng.uniform() >= HELD_OUT_SHARE:
        return None
    return held[int(rng.integers(len(held)))]


def draw_shape(kind: str, rng: np.random.Generator, segments: int = 64) -> shapes.Geometry:
    """Random geometry of family ``kind``; ``segments`` around curved shapes (see scene.tessellation)."""
    n = segments
    if kind == "sphere":
        return shapes.uv_sphere(0.5, n, n // 2)
    if kind == "box":
        return shapes.box(tuple(rng.uniform(0.4, 1.0, 3)))
    if kind == "cylinder":
        return shapes.cylinder(0.5 * rng.uniform(0.4, 1.0), rng.uniform(0.4, 1.0), n)
    if kind == "torus":
        return shapes.torus(0.35, 0.35 * rng.uniform(0.2, 0.5), n, n // 2)
    if kind == "superquadric":
        return shapes.superquadric(tuple(rng.uniform(0.3, 0.5, 3)), float(rng.uniform(0.25, 1.6)),
                                   float(rng.uniform(0.25, 1.6)), n, (3 * n) // 4)
    if kind == "displaced":
        return shapes.displaced_sphere(rng, 0.4, float(rng.uniform(0.03, 0.1)), nu=(3 * n) // 2, nv=(3 * n) // 4)
    if kind == "extruded":
        return random_extruded(rng, n)
    if kind == "revolved":
        return random_revolved(rng, n)
    if kind == "composite":
        return random_composite(rng, n)
    raise ValueError(f"unknown shape family {kind!r}")


def random_outline(rng: np.random.Generator, segments: int = 64) -> tuple[np.ndarray, bool]:
    """(K, 2) closed (x, z) outline of largest radius 1 (metres), star-shaped around the origin, and whether it is
    smooth: a star (4-8 points), a jittered regular polygon (3-8 sides) or a rounded blob (Fourier radius)."""
    variant = str(rng.choice(["star", "polygon", "rounded"]))
    start = float(rng.uniform(0.0, 2 * math.pi))
    if variant == "star":
        points = int(rng.integers(4, 9))
        angle = start + np.arange(2 * points) * math.pi / points
        radius = np.where(np.arange(2 * points) % 2 == 0, 1.0, float(rng.uniform(0.4, 0.75)))
    elif variant == "polygon":
        sides = int(rng.integers(3, 9))
        angle = start + (np.arange(sides) + rng.uniform(-0.15, 0.15, sides)) * 2 * math.pi / sides
        radius = rng.uniform(0.85, 1.0, sides)
    else:
        angle = start + np.arange(segments) * 2 * math.pi / segments
        k = np.arange(2, 5)[:, None]
        amp = rng.uniform(-1.0, 1.0, (3, 1)) * 0.3 / k
        radius = 1.0 + (amp * np.cos(k * angle[None] + rng.uniform(0, 2 * math.pi, (3, 1)))).sum(0)
    radius = radius / radius.max()
    return np.stack([radius * np.sin(angle), -radius * np.cos(angle)], 1), variant == "rounded"


def random_extruded(rng: np.random.Generator, segments: int = 64) -> shapes.Geometry:
    """Family ``extruded``: a random outline (:func:`random_outline`) of radius 0.3-0.5 m extruded 0.15-0.9 m."""
    outline, smooth = random_outline(rng, segments)
    return shapes.extruded(outline * float(rng.uniform(0.3, 0.5)), float(rng.uniform(0.15, 0.9)), smooth)


def random_profile(rng: np.random.Generator):
    """A smooth random lathe profile r(v) (metres, >= 0.05) for v in [0, 1]: a cosine series (vase / bottle)."""
    k = np.arange(1, 5)
    coef = rng.uniform(-1.0, 1.0, 4) * 0.14 / k
    base = float(rng.uniform(0.2, 0.35))
    low = float(np.min(base + np.cos(np.pi * np.outer(np.linspace(0, 1, 257), k)) @ coef))
    lift = max(0.0, 0.05 - low)

    def radius(v):
        v = np.asarray(v, dtype=np.float64)
        return base + lift + np.cos(np.pi * v[..., None] * k) @ coef

    return radius


def random_revolved(rng: np.random.Generator, segments: int = 64) -> shapes.Geometry:
    """Family ``revolved``: :func:`random_profile` turned around +Y, 0.5-1.1 m tall."""
    profile = random_profile(rng)
    return shapes.revolved(profile, float(rng.uniform(0.5, 1.1)), segments, max(8, segments // 2))


def random_composite(rng: np.random.Generator, segments: int = 64) -> shapes.Geometry:
    """Family ``composite``: overlapping closed primitives merged into one mesh, one of

    mushroom (a flattened ellipsoid cap on a cylinder stem), dumbbell (two spheres on a bar along X), snowman (two
    stacked spheres). Each part is closed, so the union is a closed surface (parts interpenetrate)."""
    n = segments
    variant = str(rng.choice(["mushroom", "dumbbell", "snowman"]))
    if variant == "mushroom":
        stem_r, stem_h = float(rng.uniform(0.06, 0.14)), float(rng.uniform(0.3, 0.6))
        cap_r, flat = float(rng.uniform(0.25, 0.45)), float(rng.uniform(0.35, 0.7))
        stem = shapes.transformed(shapes.cylinder(stem_r, stem_h, n), offset=(0.0, stem_h / 2, 0.0))
        cap = shapes.transformed(shapes.uv_sphere(1.0, n, n // 2), np.diag([cap_r, cap_r * flat, cap_r]),
                                 (0.0, stem_h, 0.0))
        return shapes.merge([stem, cap])
    if variant == "dumbbell":
        ball, length = float(rng.uniform(0.14, 0.24)), float(rng.uniform(0.5, 0.8))
        bar = shapes.cylinder(ball * float(rng.uniform(0.25, 0.5)), length, n)
        to_x = np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # rotation about Z: +Y -> +X
        balls = [shapes.transformed(shapes.uv_sphere(ball, n, n // 2), offset=(s * length / 2, 0.0, 0.0))
                 for s in (-1.0, 1.0)]
        return shapes.merge([shapes.transformed(bar, to_x)] + balls)
    low = float(rng.uniform(0.25, 0.35))
    high = low * float(rng.uniform(0.55, 0.8))
    return shapes.merge([shapes.uv_sphere(low, n, n // 2),
                         shapes.transformed(shapes.uv_sphere(high, n, n // 2), offset=(0.0, low + 0.6 * high, 0.0))])
