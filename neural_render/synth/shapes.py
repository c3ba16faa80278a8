"""Procedural triangle meshes (object space, metres) and user mesh files, as :class:`Geometry`.

Every builder returns unit shading normals and uv coordinates; faces are wound counter-clockwise seen from outside
(:func:`orient_faces` enforces it from the normals). Parametric surfaces use ``u`` around the +Y axis (u = 0 at -Z,
like the env map convention) and ``v`` from the top (+Y) to the bottom; their normals are exact (sphere, torus,
cylinder, box) or from central differences of the parametrisation (superquadric, displaced sphere), so they are
smooth and continuous across the u seam.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neural_render.errors import NeuralRenderError

MESH_SUFFIXES = (".obj", ".glb", ".gltf", ".ply", ".stl", ".off")


@dataclass
class Geometry:
    """vertices (V, 3) float32, faces (F, 3) int64, normals (V, 3) float32 unit, uvs (V, 2) float32."""

    vertices: np.ndarray
    faces: np.ndarray
    normals: np.ndarray
    uvs: np.ndarray

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self.vertices.min(0), self.vertices.max(0)


def _normalize(x: np.ndarray, fallback=(0.0, 1.0, 0.0)) -> np.ndarray:
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    out = x / np.maximum(n, 1e-30)
    return np.where(n > 1e-12, out, np.asarray(fallback, dtype=x.dtype))


def orient_faces(vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """Drop degenerate triangles and flip those whose winding disagrees with their mean vertex normal."""
    tri = vertices[faces].astype(np.float64)
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    area = np.linalg.norm(cross, axis=1)
    keep = area > 1e-14 * max(1.0, float(np.abs(vertices).max()) ** 2)
    faces, cross = faces[keep], cross[keep]
    flip = (cross * normals[faces].sum(1)).sum(1) < 0
    faces = faces.copy()
    faces[flip] = faces[flip][:, [0, 2, 1]]
    return faces


def _finish(positions: np.ndarray, normals: np.ndarray, uvs: np.ndarray, faces: np.ndarray) -> Geometry:
    normals = _normalize(normals.astype(np.float64))
    faces = orient_faces(positions, faces.astype(np.int64), normals)
    return Geometry(positions.astype(np.float32), faces, normals.astype(np.float32), uvs.astype(np.float32))


def _grid_faces(rows: int, cols: int) -> np.ndarray:
    """Two triangles per cell of a (rows + 1) x (cols + 1) vertex grid (row-major)."""
    r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    a = (r * (cols + 1) + c).ravel()
    b, d = a + 1, a + cols + 2
    cc = a + cols + 1
    return np.concatenate([np.stack([a, b, cc], 1), np.stack([b, d, cc], 1)])


def parametric_surface(fn, nu: int, nv: int, normal_fn=None, eps: float = 1e-5) -> Geometry:
    """Mesh of ``fn(u, v) -> (..., 3)`` over [0, 1]^2 (u periodic) on a (nv + 1) x (nu + 1) grid.

    Normals: ``normal_fn(u, v)`` if given, else normalised dP/du x dP/dv by central differences (one-sided in v at
    the grid border); where that vanishes (poles) the mean normal of the neighbouring row is used.
    """
    u, v = np.meshgrid(np.linspace(0.0, 1.0, nu + 1), np.linspace(0.0, 1.0, nv + 1))
    pos = fn(u, v)
    if normal_fn is not None:
        nrm = normal_fn(u, v)
    else:
        du = fn(u + eps, v) - fn(u - eps, v)
        v_hi, v_lo = np.minimum(v + eps, 1.0), np.maximum(v - eps, 0.0)
        dv = fn(u, v_hi) - fn(u, v_lo)
        nrm = np.cross(du, dv)
        length = np.linalg.norm(nrm, axis=-1)
        scale = np.median(length) if length.size else 1.0
        for row in (0, nv):
            if (length[row] < 1e-6 * scale).all():
                neighbour = 1 if row == 0 else nv - 1
                mean = _normalize(nrm[neighbour]).mean(0)
                nrm[row] = mean
    uvs = np.stack([u, v], -1).reshape(-1, 2)
    return _finish(pos.reshape(-1, 3), nrm.reshape(-1, 3), uvs, _grid_faces(nv, nu))


def _sphere_dir(u, v):
    phi, theta = 2 * math.pi * u, math.pi * v
    return np.stack([np.sin(theta) * np.sin(phi), np.cos(theta), -np.sin(theta) * np.cos(phi)], -1)


def uv_sphere(radius: float = 0.5, nu: int = 96, nv: int = 48) -> Geometry:
    """Sphere centred at the origin; vertices lie exactly on it (normals are the exact radial directions)."""
    return parametric_surface(lambda u, v: radius * _sphere_dir(u, v), nu, nv, normal_fn=_sphere_dir)


def torus(major: float = 0.4, minor: float = 0.15, nu: int = 96, nv: int = 48) -> Geometry:
    """Torus around +Y: tube of radius ``minor`` around a circle of radius ``major``."""
    def ring(u, v):
        phi, theta = 2 * math.pi * u, 2 * math.pi * v
        return np.stack([np.cos(theta) * np.sin(phi), np.sin(theta), -np.cos(theta) * np.cos(phi)], -1), phi

    def fn(u, v):
        n, phi = ring(u, v)
        centre = np.stack([major * np.sin(phi), np.zeros_like(phi), -major * np.cos(phi)], -1)
        return centre + minor * n

    return parametric_surface(fn, nu, nv, normal_fn=lambda u, v: ring(u, v)[0])


def _signed_pow(x, e):
    return np.sign(x) * np.abs(x) ** e


def superquadric(radii=(0.4, 0.4, 0.4), e_vertical: float = 0.5, e_horizontal: float = 0.5,
                 nu: int = 96, nv: int = 64) -> Geometry:
    """Superellipsoid with exponents in (0.2, 2]: 1 = ellipsoid, small = boxy, 2 = octahedral."""
    if not (0.2 <= e_vertical <= 2.0 and 0.2 <= e_horizontal <= 2.0):
        raise NeuralRenderError("superquadric exponents must lie in [0.2, 2]")
    rx, ry, rz = radii

    def fn(u, v):
        phi, theta = 2 * math.pi * u, math.pi * v
        s, c = _signed_pow(np.sin(theta), e_vertical), _signed_pow(np.cos(theta), e_vertical)
        return np.stack([rx * s * _signed_pow(np.sin(phi), e_horizontal), ry * c,
                         -rz * s * _signed_pow(np.cos(phi), e_horizontal)], -1)

    return parametric_surface(fn, nu, nv)


def displaced_sphere(rng: np.random.Generator, radius: float = 0.4, amplitude: float = 0.12, waves: int = 6,
                     nu: int = 128, nv: int = 64) -> Geometry:
    """Sphere whose radius is modulated by a smooth random field on directions (sum of ``waves`` plane waves)."""
    axes = _normalize(rng.normal(size=(waves, 3)))
    freq = rng.uniform(1.5, 5.0, size=waves)
    phase = rng.uniform(0, 2 * math.pi, size=waves)
    weight = rng.uniform(0.5, 1.0, size=waves)
    weight = weight / weight.sum()

    def fn(u, v):
        d = _sphere_dir(u, v)
        field = (weight * np.sin(freq * (d @ axes.T) + phase)).sum(-1)
        return radius * (1.0 + amplitude / radius * field)[..., None] * d

    return parametric_surface(fn, nu, nv)


def box(size=(0.6, 0.6, 0.6)) -> Geometry:
    """Axis-aligned box centred at the origin, flat normals per face, uv [0, 1]^2 on every face."""
    half = np.asarray(size, dtype=np.float64) / 2
    positions, normals, uvs, faces = [], [], [], []
    for axis in range(3):
        for sign in (1.0, -1.0):
            a, b = [i for i in range(3) if i != axis]
            corners = np.zeros((4, 3))
            corners[:, axis] = sign * half[axis]
            corners[:, a] = np.array([-1, 1, 1, -1]) * half[a]
            corners[:, b] = np.array([-1, -1, 1, 1]) * half[b]
            n = np.zeros((4, 3))
            n[:, axis] = sign
            base = len(positions) * 4
            positions.append(corners)
            normals.append(n)
            uvs.append(np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float64))
            faces.append(np.array([[0, 1, 2], [0, 2, 3]]) + base)
    return _finish(np.concatenate(positions), np.concatenate(normals), np.concatenate(uvs), np.concatenate(faces))


def cylinder(radius: float = 0.3, height: float = 0.8, nu: int = 96) -> Geometry:
    """Capped cylinder along +Y centred at the origin; sharp rims (separate cap vertices with flat normals)."""
    side = parametric_surface(
        lambda u, v: np.stack([radius * np.sin(2 * math.pi * u), height / 2 - height * v,
                               -radius * np.cos(2 * math.pi * u)], -1),
        nu, 1, normal_fn=lambda u, v: np.stack([np.sin(2 * math.pi * u), 0 * u, -np.cos(2 * math.pi * u)], -1))
    phi = np.linspace(0, 2 * math.pi, nu, endpoint=False)
    outline = np.stack([radius * np.sin(phi), -radius * np.cos(phi)], 1)
    return merge([side] + [fan_cap(outline, sign * height / 2, sign, radius) for sign in (1.0, -1.0)])


def fan_cap(outline: np.ndarray, y: float, sign: float, uv_radius: float) -> Geometry:
    """Flat cap at height ``y`` facing ``sign`` * Y: a triangle fan from (0, y, 0) to the closed ``outline`` (K, 2)
    of (x, z) points, which must be star-shaped around the Y axis; uv = 0.5 + 0.5 (x, z) / ``uv_radius``."""
    k = len(outline)
    ring = np.stack([outline[:, 0], np.full(k, y, dtype=np.float64), outline[:, 1]], 1)
    pos = np.concatenate([[[0.0, y, 0.0]], ring])
    nrm = np.tile([0.0, sign, 0.0], (k + 1, 1))
    uv = 0.5 + 0.5 * pos[:, [0, 2]] / uv_radius
    idx = np.arange(k)
    fan = np.stack([np.zeros(k, np.int64), 1 + idx, 1 + (idx + 1) % k], 1)
    return _finish(pos, nrm, uv, fan)


def revolved(radius_fn, height: float, nu: int = 96, nv: int = 48) -> Geometry:
    """Lathe (vase, bottle) around +Y: the side ``r = radius_fn(v)`` (metres, > 0, smooth) from y = height / 2
    (v = 0) to y = -height / 2 (v = 1), normals from the parametrisation, closed by flat caps with sharp rims."""
    def fn(u, v):
        r = radius_fn(v)
        return np.stack([r * np.sin(2 * math.pi * u), height / 2 - height * v, -r * np.cos(2 * math.pi * u)], -1)

    side = parametric_surface(fn, nu, nv)
    phi = np.linspace(0, 2 * math.pi, nu, endpoint=False)
    caps = []
    for v, sign in ((0.0, 1.0), (1.0, -1.0)):
        r = float(radius_fn(np.array(v)))
        caps.append(fan_cap(np.stack([r * np.sin(phi), -r * np.cos(phi)], 1), sign * height / 2, sign, r))
    return merge([side] + caps)


def extruded(outline: np.ndarray, height: float, smooth: bool = False) -> Geometry:
    """Prism of a closed (x, z) ``outline`` (K, 2), star-shaped around the Y axis, from y = -height/2 to height/2
    with flat caps. ``smooth``: side normals are averaged at the outline's corners (a rounded outline), else every
    outline edge is a flat face with its own vertices (sharp corners). Side uv: u = arc length fraction, v = 0 at
    the top; cap uv as :func:`fan_cap`."""
    pts = np.asarray(outline, dtype=np.float64)
    k = len(pts)
    nxt = np.roll(pts, -1, axis=0)
    edge = nxt - pts
    normal = _normalize(np.stack([edge[:, 1], -edge[:, 0]], 1), fallback=(1.0, 0.0))
    normal *= np.where(((pts + nxt) * normal).sum(1) < 0, -1.0, 1.0)[:, None]  # outward: away from the axis
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(edge, axis=1))])
    u = arc / arc[-1]
    top, bottom = height / 2, -height / 2
    if smooth:
        corner = _normalize(normal + np.roll(normal, 1, axis=0), fallback=(1.0, 0.0))
        ring = np.concatenate([pts, pts[:1]])                                  # (K + 1) with the seam repeated
        ring_n = np.concatenate([corner, corner[:1]])
        pos = np.concatenate([np.stack([ring[:, 0], np.full(k + 1, y), ring[:, 1]], 1) for y in (top, bottom)])
        nrm = np.tile(np.stack([ring_n[:, 0], np.zeros(k + 1), ring_n[:, 1]], 1), (2, 1))
        uv = np.concatenate([np.stack([u, np.full(k + 1, v)], 1) for v in (0.0, 1.0)])
        side = _finish(pos, nrm, uv, _grid_faces(1, k))
    else:
        def at(p, y):
            return np.stack([p[:, 0], np.full(k, y), p[:, 1]], 1)

        pos = np.stack([at(pts, top), at(nxt, top), at(nxt, bottom), at(pts, bottom)], 1).reshape(-1, 3)
        nrm = np.repeat(np.stack([normal[:, 0], np.zeros(k), normal[:, 1]], 1), 4, axis=0)
        uv = np.stack([np.stack([u[:-1], np.zeros(k)], 1), np.stack([u[1:], np.zeros(k)], 1),
                       np.stack([u[1:], np.ones(k)], 1), np.stack([u[:-1], np.ones(k)], 1)], 1).reshape(-1, 2)
        quad = 4 * np.arange(k)[:, None]
        side = _finish(pos, nrm, uv, np.concatenate([quad + [0, 1, 2], quad + [0, 2, 3]]))
    reach = float(np.linalg.norm(pts, axis=1).max())
    return merge([side, fan_cap(pts, top, 1.0, reach), fan_cap(pts, bottom, -1.0, reach)])


def transformed(geometry: Geometry, matrix=None, offset=(0.0, 0.0, 0.0)) -> Geometry:
    """``geometry`` mapped by x -> matrix @ x + offset (metres; matrix (3, 3) invertible, default identity); normals
    by the inverse transpose, renormalised, and faces re-wound when the matrix mirrors."""
    m = np.eye(3) if matrix is None else np.asarray(matrix, dtype=np.float64)
    pos = geometry.vertices.astype(np.float64) @ m.T + np.asarray(offset, dtype=np.float64)
    nrm = geometry.normals.astype(np.float64) @ np.linalg.inv(m)
    return _finish(pos, nrm, geometry.uvs.astype(np.float64), geometry.faces)


def merge(parts: list[Geometry]) -> Geometry:
    offsets = np.cumsum([0] + [p.vertices.shape[0] for p in parts[:-1]])
    return Geometry(np.concatenate([p.vertices for p in parts]),
                    np.concatenate([p.faces + o for p, o in zip(parts, offsets)]),
                    np.concatenate([p.normals for p in parts]), np.concatenate([p.uvs for p in parts]))


def ground_quad(half_size: float = 12.0, uv_tiles: float = 12.0) -> Geometry:
    """Square at y = 0 facing +Y, uv spanning [0, uv_tiles] (textures repeat)."""
    h = half_size
    pos = np.array([[-h, 0, -h], [h, 0, -h], [h, 0, h], [-h, 0, h]], np.float64)
    uv = (pos[:, [0, 2]] + h) / (2 * h) * uv_tiles
    return _finish(pos, np.tile([0.0, 1.0, 0.0], (4, 1)), uv, np.array([[0, 1, 2], [0, 2, 3]]))


def load_mesh_file(path: str | os.PathLike) -> Geometry:
    """Read an OBJ / GLB / glTF / PLY / STL / OFF mesh with trimesh, centred at the origin with largest extent 1.

    Anything that is not a triangle mesh with faces (missing file, garbage, a point cloud, an empty scene)
    raises :class:`NeuralRenderError` naming the file. Vertex uvs are kept when the file has them, otherwise a
    spherical projection is used; normals are trimesh's vertex normals, with vertices split at sharp edges
    (``smooth_shaded``) when the file has no uvs to preserve.
    """
    p = Path(path)
    if p.suffix.lower() not in MESH_SUFFIXES:
        raise NeuralRenderError(f"unsupported mesh format {p.suffix or '(no suffix)'!r}; "
                                f"use one of {', '.join(MESH_SUFFIXES)}", path)
    if not p.is_file():
        raise NeuralRenderError("no such mesh file", path)
    try:
        import trimesh
        loaded = trimesh.load(os.fspath(p), force="mesh", process=True)
    except Exception as err:  # trimesh raises many types on garbage
        raise NeuralRenderError(f"not a readable mesh: {err}", path) from err
    if not isinstance(loaded, trimesh.Trimesh) or len(loaded.faces) == 0 or len(loaded.vertices) < 3:
        raise NeuralRenderError("file holds no triangle mesh (no faces)", path)
    try:
        return _geometry_from_trimesh(loaded, path)
    except NeuralRenderError:
        raise
    except Exception as err:  # trimesh's processing of malformed geometry (found by tests/hardening fuzzing)
        raise NeuralRenderError(f"mesh could not be processed: {type(err).__name__}: {err}", path) from err


def _geometry_from_trimesh(loaded, path) -> Geometry:
    """Normalised Geometry (centred, largest extent 1, normals, uvs) of a loaded trimesh.Trimesh."""
    uv = getattr(loaded.visual, "uv", None)
    if uv is None or len(uv) != len(loaded.vertices):
        loaded = loaded.smooth_shaded  # split vertices at sharp edges so creases keep flat normals
    verts = np.asarray(loaded.vertices, dtype=np.float64)
    if not np.isfinite(verts).all():
        raise NeuralRenderError("mesh has NaN or inf vertices", path)
    lo, hi = verts.min(0), verts.max(0)
    extent = float((hi - lo).max())
    if extent <= 0:
        raise NeuralRenderError("mesh is degenerate (zero size)", path)
    verts = (verts - (lo + hi) / 2) / extent
    normals = _normalize(np.asarray(loaded.vertex_normals, dtype=np.float64))
    uv = getattr(loaded.visual, "uv", None)
    if uv is not None and len(uv) == len(verts) and np.isfinite(uv).all():
        uvs = np.asarray(uv, dtype=np.float64)
    else:
        d = _normalize(verts)
        uvs = np.stack([(np.arctan2(d[:, 0], -d[:, 2]) / (2 * math.pi)) % 1.0,
                        np.arccos(np.clip(d[:, 1], -1, 1)) / math.pi], 1)
    faces = orient_faces(verts, np.asarray(loaded.faces, dtype=np.int64), normals)
    if len(faces) == 0:
        raise NeuralRenderError("mesh has only degenerate faces", path)
    return Geometry(verts.astype(np.float32), faces, normals.astype(np.float32), uvs.astype(np.float32))
