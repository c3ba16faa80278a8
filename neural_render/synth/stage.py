"""Scene styles of the generator version 2 (issue #23): what the objects stand on and what is behind them.

Styles (world metres, +Y up, the support's centre above the origin):

* ``ground``: today's large ground quad at y = 0 (half size max(12, 6 x camera distance));
* ``table``: a finite table whose top is at y = 0.5-0.9 m: a rectangular slab on four box or cylinder legs, or a
  round top on a pedestal with a foot; 60 % of the time a floor below it, else nothing (a product shot: with a
  black background the table floats in the dark);
* ``room``: a floor and two walls meeting in a corner at x = -wx, z = -wz (0.15-1.5 m beyond the support); the
  camera stays in the quadrant facing the corner;
* ``backdrop``: a photo-studio sweep (cyclorama): the floor bends up into a back wall at z = -d along a quarter
  circle of radius 0.3-1.2 m (40 % of the time a sharp floor / wall corner); the camera faces the wall.

Every part is a mesh of the scene, so camera rays that hit it are foreground (mask 1, with depth, normal and its
material in the G-buffer) exactly like objects; only rays that leave the scene are background (mask 0). Parts carry
uvs in METRES (box mapping on flat parts); the scene divides them by its texture scale so a texture repeats every
0.3-2 m on large surfaces. :func:`draw_stage` draws the style's random parameters; :func:`stage_parts` builds the
meshes once the camera distance is known (large planes are sized to fill the view).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from neural_render.synth import shapes
from neural_render.synth.shapes import Geometry

STYLES = ("ground", "table", "room", "backdrop")
BACKGROUNDS = ("env", "black")


@dataclass
class Stage:
    """style; support: where objects rest ("rect" half extents (hx, hz) or "disc" radius hx) at height ``top``;
    elevation_deg / azimuth_deg: (low, high) camera ranges (azimuth None = any); params: the drawn dimensions."""

    style: str
    support: str
    half: tuple[float, float]
    top: float
    elevation_deg: tuple[float, float]
    azimuth_deg: tuple[float, float] | None
    params: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"style": self.style, "support": self.support, "half": list(self.half), "top": self.top,
                **self.params}


def draw_stage(style: str, rng: np.random.Generator) -> Stage:
    """Random dimensions of a stage of ``style`` (module doc)."""
    if style == "ground":
        ring = float(rng.uniform(0.6, 1.6))
        return Stage(style, "rect", (ring, ring), 0.0, (5.0, 40.0), None)
    if style == "table":
        height, thick = float(rng.uniform(0.5, 0.9)), float(rng.uniform(0.03, 0.08))
        floor = bool(rng.uniform() < 0.6)
        if rng.uniform() < 0.65:
            hx, hz = float(rng.uniform(0.35, 1.0)), float(rng.uniform(0.3, 0.8))
            legs = str(rng.choice(["box", "cylinder"]))
            return Stage(style, "rect", (hx, hz), height, (8.0, 55.0), None,
                         {"top_shape": "slab", "legs": legs, "thickness": thick, "floor": floor,
                          "leg_width": float(rng.uniform(0.03, 0.08)), "inset": float(rng.uniform(0.02, 0.12))})
        radius = float(rng.uniform(0.35, 0.8))
        return Stage(style, "disc", (radius, radius), height, (8.0, 55.0), None,
                     {"top_shape": "round", "thickness": thick, "floor": floor,
                      "pedestal": float(rng.uniform(0.04, 0.1)), "foot": float(rng.uniform(0.2, 0.45)) * radius})
    if style == "room":
        hx, hz = float(rng.uniform(0.5, 1.0)), float(rng.uniform(0.5, 1.0))
        return Stage(style, "rect", (hx, hz), 0.0, (10.0, 40.0), (20.0, 70.0),
                     {"wall_x": hx + float(rng.uniform(0.15, 1.5)), "wall_z": hz + float(rng.uniform(0.15, 1.5)),
                      "wall_height": float(rng.uniform(2.2, 3.5))})
    if style == "backdrop":
        hx, hz = float(rng.uniform(0.5, 1.1)), float(rng.uniform(0.4, 0.9))
        radius = float(rng.uniform(0.3, 1.2)) if rng.uniform() < 0.6 else 0.0
        return Stage(style, "rect", (hx, hz), 0.0, (3.0, 30.0), (-30.0, 30.0),
                     {"wall_z": hz + radius + float(rng.uniform(0.1, 0.8)), "radius": radius,
                      "wall_height": float(rng.uniform(2.0, 3.5))})
    raise ValueError(f"unknown scene style {style!r}; choose one of {STYLES}")


def quad(origin, edge_u, edge_v, normal) -> Geometry:
    """Parallelogram origin + a edge_u + b edge_v (a, b in [0, 1]), facing ``normal``; uv = (a |edge_u|, b |edge_v|)
    in metres."""
    o, eu, ev = (np.asarray(x, dtype=np.float64) for x in (origin, edge_u, edge_v))
    pos = np.stack([o, o + eu, o + eu + ev, o + ev])
    lu, lv = float(np.linalg.norm(eu)), float(np.linalg.norm(ev))
    uv = np.array([[0.0, 0.0], [lu, 0.0], [lu, lv], [0.0, lv]])
    return shapes._finish(pos, np.tile(np.asarray(normal, dtype=np.float64), (4, 1)), uv,
                          np.array([[0, 1, 2], [0, 2, 3]]))


def box_mapped(geometry: Geometry) -> Geometry:
    """The geometry with uvs in metres by box mapping: each vertex takes the two world coordinates across the
    dominant axis of its normal (exact for flat-faced parts, whose faces have one normal)."""
    axis = np.abs(geometry.normals).argmax(1)
    keep = np.array([[2, 1], [0, 2], [0, 1]])[axis]
    uv = np.take_along_axis(geometry.vertices, keep, 1)
    return Geometry(geometry.vertices, geometry.faces, geometry.normals, uv.astype(np.float32))


def _cylinder_part(radius: float, height: float, y_bottom: float, segments: int, x=0.0, z=0.0) -> Geometry:
    """Upright capped cylinder standing on y_bottom at (x, z), uvs in metres (side: arc length, height)."""
    g = shapes.transformed(shapes.cylinder(radius, height, segments), offset=(x, y_bottom + height / 2, z))
    side = np.abs(g.normals[:, 1]) < 0.5
    uv = np.where(side[:, None], g.uvs * np.array([2 * math.pi * radius, height]), g.uvs * 2 * radius)
    return Geometry(g.vertices, g.faces, g.normals, uv.astype(np.float32))


def _sweep(half_width: float, front: float, wall_z: float, radius: float, height: float, rows: int) -> Geometry:
    """Cyclorama: floor (y = 0) from z = front back to z = -wall_z + radius, a quarter circle of ``radius`` up to
    the wall z = -wall_z, the wall up to ``height``; extruded over |x| <= half_width. uv: (x, arc length) in metres."""
    zc = -wall_z + radius
    angle = np.linspace(0.0, math.pi / 2, rows + 1)
    profile = [(front, 0.0, 0.0, 1.0)] + [(zc - radius * math.sin(a), radius - radius * math.cos(a), math.sin(a),
                                           math.cos(a)) for a in angle] + [(-wall_z, height, 1.0, 0.0)]
    p = np.array(profile)                                              # (K, 4): z, y, nz, ny
    arc = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(p[:, 0]), np.diff(p[:, 1])))])
    xs = np.array([-half_width, half_width])
    pos = np.stack([np.broadcast_to(xs[None], (len(p), 2)), np.repeat(p[:, 1:2], 2, 1),
                    np.repeat(p[:, 0:1], 2, 1)], -1).reshape(-1, 3)
    nrm = np.stack([np.zeros((len(p), 2)), np.repeat(p[:, 3:4], 2, 1), np.repeat(p[:, 2:3], 2, 1)], -1)
    uv = np.stack([np.broadcast_to(xs[None], (len(p), 2)), np.repeat(arc[:, None], 2, 1)], -1)
    return shapes._finish(pos, nrm.reshape(-1, 3), uv.reshape(-1, 2), shapes._grid_faces(len(p) - 1, 1))


def stage_parts(stage: Stage, distance: float, segments: int = 64) -> list[tuple[str, Geometry]]:
    """[(part name, geometry with uvs in metres)] of the stage, for a camera about ``distance`` metres away."""
    big = max(12.0, 6.0 * distance)
    p = stage.params
    floor = quad((-big, 0.0, big), (2 * big, 0.0, 0.0), (0.0, 0.0, -2 * big), (0.0, 1.0, 0.0))
    if stage.style == "ground":
        return [("ground", floor)]
    if stage.style == "table":
        h, t = stage.top, p["thickness"]
        parts = []
        if p["top_shape"] == "slab":
            hx, hz = stage.half
            parts.append(("table_top", box_mapped(shapes.transformed(shapes.box((2 * hx, t, 2 * hz)),
                                                                     offset=(0.0, h - t / 2, 0.0)))))
            w, inset = p["leg_width"], p["inset"]
            legs = []
            for sx in (-1.0, 1.0):
                for sz in (-1.0, 1.0):
                    x, z = sx * (hx - inset - w / 2), sz * (hz - inset - w / 2)
                    if p["legs"] == "box":
                        legs.append(box_mapped(shapes.transformed(shapes.box((w, h - t, w)),
                                                                  offset=(x, (h - t) / 2, z))))
                    else:
                        legs.append(_cylinder_part(w / 2, h - t, 0.0, max(12, segments // 4), x, z))
            parts.append(("table_legs", shapes.merge(legs)))
        else:
            radius = stage.half[0]
            parts.append(("table_top", _cylinder_part(radius, t, h - t, segments)))
            stem = _cylinder_part(p["pedestal"], h - t - 0.02, 0.02, max(12, segments // 4))
            parts.append(("table_legs", shapes.merge([stem, _cylinder_part(p["foot"], 0.02, 0.0, segments // 2)])))
        if p["floor"]:
            parts.append(("floor", floor))
        return parts
    if stage.style == "room":
        wx, wz, height = p["wall_x"], p["wall_z"], p["wall_height"]
        floor = quad((-wx, 0.0, big), (big + wx, 0.0, 0.0), (0.0, 0.0, -big - wz), (0.0, 1.0, 0.0))
        wall_x = quad((-wx, 0.0, big), (0.0, 0.0, -big - wz), (0.0, height, 0.0), (1.0, 0.0, 0.0))
        wall_z = quad((-wx, 0.0, -wz), (big + wx, 0.0, 0.0), (0.0, height, 0.0), (0.0, 0.0, 1.0))
        return [("floor", floor), ("wall", wall_x), ("wall", wall_z)]
    if stage.style == "backdrop":
        width = max(3.0, 2.5 * distance)
        if p["radius"] > 0:
            return [("backdrop", _sweep(width, big, p["wall_z"], p["radius"], p["wall_height"], 12))]
        floor = quad((-width, 0.0, big), (2 * width, 0.0, 0.0), (0.0, 0.0, -big - p["wall_z"]), (0.0, 1.0, 0.0))
        wall = quad((-width, 0.0, -p["wall_z"]), (2 * width, 0.0, 0.0), (0.0, p["wall_height"], 0.0),
                    (0.0, 0.0, 1.0))
        return [("floor", floor), ("wall", wall)]
    raise ValueError(f"unknown scene style {stage.style!r}")
