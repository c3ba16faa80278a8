"""Shape families of the generator version 2 (issue #23): thin parts, rounded boxes, capsules, low-poly rocks, rings
and mugs, beside the families of synth/families.py.

Every builder returns a :class:`~neural_render.synth.shapes.Geometry` in object space (metres, largest extent about
1 before the scene scales it) with unit normals (exact where the surface is analytic, flat per face for rocks), uvs
in [0, 1] and faces wound counter-clockwise seen from outside. Families and which split may draw them (the rule of
synth/splits.py; a family is never drawn by a split it is not listed for):

=============  ==========================================================================  =======
family         geometry                                                                    split
=============  ==========================================================================  =======
rounded_box    a box whose edges and corners are rounded with a random radius              train2
capsule        a cylinder with hemispherical ends (upright or lying)                      train2
rock           a low-poly rock: a radially jittered, squashed icosphere with flat facets   train2
plate          a thin part: a disc (0.02-0.06 m thick per metre) or a thin rounded slab   train2
rod            a thin part: a cylinder or capsule 10-30x longer than thick, lying along X  train2
ring           a thin part: a flat washer (annulus of rectangular cross-section)           val2
mug            a closed cylinder with a half-torus handle                                  test2
=============  ==========================================================================  =======
"""

from __future__ import annotations

import math

import numpy as np

from neural_render.synth import shapes
from neural_render.synth.families import TRAIN_SHAPES
from neural_render.synth.shapes import Geometry, parametric_surface

V2_TRAIN_SHAPES = ("rounded_box", "capsule", "rock", "plate", "rod")
V2_VAL_SHAPES = ("ring",)
V2_TEST_SHAPES = ("mug",)
V2_SHAPES = V2_TRAIN_SHAPES + V2_VAL_SHAPES + V2_TEST_SHAPES
#: the families a version-2 split treats as train ones: the version-1 train families + the new train2 ones (the
#: version-1 held-out families extruded / revolved / composite stay reserved for val / test)
V2_TRAIN_FAMILIES = TRAIN_SHAPES + V2_TRAIN_SHAPES
#: rotation about Z taking +Y to +X (lays an upright part along X)
TO_X = np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])


def rounded_box(size=(0.6, 0.6, 0.6), radius: float = 0.08, band: int = 6) -> Geometry:
    """Box of full extents ``size`` (metres) centred at the origin with edges and corners rounded by ``radius``.

    Each cube face is a grid whose outer ``band`` rows/columns bend around the rounding: a face point p maps to
    q + r n with q = clamp(p, -(half - r), half - r) and n = (p - q) / |p - q| (the exact normal); band coordinates
    are spaced r tan(theta) so the normal angle advances evenly to 45 degrees at the face border, where the
    neighbouring face continues. uv: [0, 1]^2 per face."""
    half = np.asarray(size, dtype=np.float64) / 2
    r = float(min(radius, 0.999 * half.min()))
    inner = half - r
    theta = np.linspace(0.0, math.pi / 4, band + 1)[1:]

    def coords(axis: int) -> np.ndarray:
        outer = inner[axis] + r * np.tan(theta)
        return np.concatenate([-outer[::-1], np.linspace(-inner[axis], inner[axis], 3), outer])

    parts = []
    for axis in range(3):
        a, b = [i for i in range(3) if i != axis]
        ca, cb = coords(a), coords(b)
        ga, gb = np.meshgrid(ca, cb, indexing="ij")
        for sign in (1.0, -1.0):
            p = np.zeros(ga.shape + (3,))
            p[..., axis] = sign * half[axis]
            p[..., a], p[..., b] = ga, gb
            q = np.clip(p, -inner, inner)
            n = p - q
            n = n / np.linalg.norm(n, axis=-1, keepdims=True)
            pos = q + r * n
            uv = np.stack([(ga + half[a]) / (2 * half[a]), (gb + half[b]) / (2 * half[b])], -1)
            faces = shapes._grid_faces(len(ca) - 1, len(cb) - 1)
            parts.append(shapes._finish(pos.reshape(-1, 3), n.reshape(-1, 3), np.clip(uv, 0, 1).reshape(-1, 2),
                                        faces))
    return shapes.merge(parts)


def capsule(radius: float = 0.2, length: float = 0.6, nu: int = 64) -> Geometry:
    """Capsule along +Y: a cylinder of ``length`` (metres, between the hemisphere centres) and ``radius`` with
    hemispherical ends; exact normals; u around Y, v from the top pole to the bottom pole by arc length."""
    arc = math.pi * radius / 2
    total = 2 * arc + length

    def profile(v):
        s = np.asarray(v, dtype=np.float64) * total
        top = np.clip(s / arc, 0, 1) * math.pi / 2                     # angle from the top pole
        bottom = np.clip((s - arc - length) / arc, 0, 1) * math.pi / 2  # angle from the equator, downwards
        on_top, on_bottom = s <= arc, s >= arc + length
        rad = np.where(on_top, radius * np.sin(top), np.where(on_bottom, radius * np.cos(bottom), radius))
        y = np.where(on_top, length / 2 + radius * np.cos(top),
                     np.where(on_bottom, -length / 2 - radius * np.sin(bottom), length / 2 - (s - arc)))
        ny = np.where(on_top, np.cos(top), np.where(on_bottom, -np.sin(bottom), 0.0))
        nr = np.where(on_top, np.sin(top), np.where(on_bottom, np.cos(bottom), 1.0))
        return rad, y, nr, ny

    def fn(u, v):
        rad, y, _, _ = profile(v)
        phi = 2 * math.pi * u
        return np.stack([rad * np.sin(phi), y, -rad * np.cos(phi)], -1)

    def normal(u, v):
        _, _, nr, ny = profile(v)
        phi = 2 * math.pi * u
        return np.stack([nr * np.sin(phi), ny, -nr * np.cos(phi)], -1)

    return parametric_surface(fn, nu, max(8, nu // 2 + 2), normal_fn=normal)


def _icosphere(subdivisions: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(V, 3) unit vertices and (F, 3) faces of an icosahedron subdivided ``subdivisions`` times."""
    t = (1 + math.sqrt(5)) / 2
    v = [(-1, t, 0), (1, t, 0), (-1, -t, 0), (1, -t, 0), (0, -1, t), (0, 1, t), (0, -1, -t), (0, 1, -t),
         (t, 0, -1), (t, 0, 1), (-t, 0, -1), (-t, 0, 1)]
    f = [(0, 11, 5), (0, 5, 1), (0, 1, 7), (0, 7, 10), (0, 10, 11), (1, 5, 9), (5, 11, 4), (11, 10, 2), (10, 7, 6),
         (7, 1, 8), (3, 9, 4), (3, 4, 2), (3, 2, 6), (3, 6, 8), (3, 8, 9), (4, 9, 5), (2, 4, 11), (6, 2, 10),
         (8, 6, 7), (9, 8, 1)]
    verts = [np.asarray(p, dtype=np.float64) / np.linalg.norm(p) for p in v]
    faces = list(f)
    for _ in range(subdivisions):
        cache: dict[tuple[int, int], int] = {}

        def middle(i, j):
            key = (min(i, j), max(i, j))
            if key not in cache:
                m = verts[i] + verts[j]
                verts.append(m / np.linalg.norm(m))
                cache[key] = len(verts) - 1
            return cache[key]

        new = []
        for a, b, c in faces:
            ab, bc, ca = middle(a, b), middle(b, c), middle(c, a)
            new += [(a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca)]
        faces = new
    return np.array(verts), np.array(faces, dtype=np.int64)


def rock(rng: np.random.Generator, subdivisions: int = 1) -> Geometry:
    """Low-poly rock: icosphere vertices pushed radially by 0-25 %, squashed per axis, flat-shaded (every face has
    its own 3 vertices and its geometric normal); uv: the face's vertices projected on the plane of the dominant
    axis of its normal (box mapping), in [0, 1]."""
    unit, faces = _icosphere(subdivisions)
    pos = unit * rng.uniform(0.75, 1.0, (len(unit), 1)) * rng.uniform([0.35, 0.2, 0.3], [0.5, 0.4, 0.5])
    tri = pos[faces]                                                   # (F, 3, 3)
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    outward = (cross * tri.mean(1)).sum(1) < 0                         # star-shaped: outward = away from centre
    tri[outward] = tri[outward][:, [0, 2, 1]]
    cross[outward] *= -1
    normal = cross / np.linalg.norm(cross, axis=1, keepdims=True)
    axis = np.abs(normal).argmax(1)
    keep = np.array([[1, 2], [0, 2], [0, 1]])[axis]                    # (F, 2) the other two axes
    reach = float(np.abs(pos).max())
    uv = np.take_along_axis(tri, keep[:, None, :].repeat(3, 1), 2) / (2 * reach) + 0.5
    n = len(faces)
    return shapes._finish(tri.reshape(-1, 3), np.repeat(normal, 3, 0), np.clip(uv.reshape(-1, 2), 0, 1),
                          np.arange(3 * n).reshape(n, 3))


def ring(inner: float = 0.35, height: float = 0.08, nu: int = 64) -> Geometry:
    """Flat washer around +Y: outer radius 0.5 m, inner radius ``inner``, thickness ``height``; four exact parts
    (outer side, inner side facing the hole, top and bottom annuli) with sharp rims; uv [0, 1] per part."""
    outer = 0.5

    def circle(u, radius, y):
        phi = 2 * math.pi * u
        return np.stack([radius * np.sin(phi), np.broadcast_to(y, np.shape(u)), -radius * np.cos(phi)], -1)

    def radial(u, sign):
        phi = 2 * math.pi * u
        return sign * np.stack([np.sin(phi), 0 * u, -np.cos(phi)], -1)

    sides = [parametric_surface(lambda u, v, rad=rad: circle(u, rad, height / 2 - height * v), nu, 1,
                                normal_fn=lambda u, v, s=s: radial(u, s)) for rad, s in ((outer, 1.0), (inner, -1.0))]
    caps = [parametric_surface(lambda u, v, y=y: circle(u, inner + (outer - inner) * v, y), nu, 2,
                               normal_fn=lambda u, v, s=s: np.broadcast_to([0.0, s, 0.0], np.shape(u) + (3,)))
            for y, s in ((height / 2, 1.0), (-height / 2, -1.0))]
    return shapes.merge(sides + caps)


def mug(rng: np.random.Generator, nu: int = 64) -> Geometry:
    """Closed cylinder body (radius 0.2-0.3 m, 0.45-0.7 m tall) with a half-torus handle in the XY plane on its +X
    side, whose tube ends sink into the body; exact normals on both parts."""
    body_r, body_h = float(rng.uniform(0.2, 0.3)), float(rng.uniform(0.45, 0.7))
    major = body_h * float(rng.uniform(0.22, 0.32))
    minor = major * float(rng.uniform(0.18, 0.3))
    extra = math.asin(min(1.0, 1.3 * minor / major))
    centre = np.array([body_r, 0.0, 0.0])

    def tube(u, v):
        phi = (u - 0.5) * (math.pi + 2 * extra)                       # around the handle, -90..90 deg + extra
        t = 2 * math.pi * v
        n = np.stack([np.cos(t) * np.cos(phi), np.cos(t) * np.sin(phi), np.sin(t)], -1)
        return n, phi

    def fn(u, v):
        n, phi = tube(u, v)
        return centre + major * np.stack([np.cos(phi), np.sin(phi), 0 * phi], -1) + minor * n

    handle = parametric_surface(fn, max(16, nu // 2), max(8, nu // 4), normal_fn=lambda u, v: tube(u, v)[0])
    return shapes.merge([shapes.cylinder(body_r, body_h, nu), handle])


def draw_shape_v2(kind: str, rng: np.random.Generator, segments: int = 64) -> Geometry:
    """Random geometry of a version-2 family ``kind`` (module doc); ``segments`` around curved shapes."""
    n = segments
    if kind == "rounded_box":
        size = rng.uniform(0.35, 1.0, 3)
        return rounded_box(tuple(size), float(rng.uniform(0.05, 0.35)) * float(size.min()), max(3, n // 16))
    if kind == "capsule":
        return capsule(float(rng.uniform(0.12, 0.3)), float(rng.uniform(0.1, 0.7)), n)
    if kind == "rock":
        return rock(rng, int(rng.integers(1, 3)))
    if kind == "plate":
        thick = float(rng.uniform(0.02, 0.06))
        if rng.uniform() < 0.5:
            return shapes.cylinder(0.5, thick, n)
        return rounded_box((1.0, thick, float(rng.uniform(0.5, 1.0))), thick / 2, max(3, n // 16))
    if kind == "rod":
        radius = float(rng.uniform(1 / 60, 1 / 20))
        part = shapes.cylinder(radius, 1.0, max(16, n // 2)) if rng.uniform() < 0.5 else \
            capsule(radius, 1.0 - 2 * radius, max(16, n // 2))
        return shapes.transformed(part, TO_X)
    if kind == "ring":
        return ring(float(rng.uniform(0.25, 0.42)), float(rng.uniform(0.03, 0.15)), n)
    if kind == "mug":
        return mug(rng, n)
    raise ValueError(f"unknown version-2 shape family {kind!r}")
