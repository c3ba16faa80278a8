"""Hand-labelled regions of real footage and the checks made with them (issue #26: ``data/real/box_labels.json``).

A label file (JSON, ``format`` ``neural_render.real_labels``, version 1) holds named polygons ``[[x, y], ...]`` in the
pixel coordinates of the SOURCE video (``source_size`` [width, height]; pixel (x, y) covers [x, x + 1) x [y, y + 1)),
the inclusive frame range each label holds for (``frames`` {name: [first, last]}) and a ``note`` saying what was
labelled. :func:`label_mask` rasterises a polygon at any size (pixel centres inside the scaled polygon; even-odd
rule).

:func:`table_normal_check` scores an inverse model's normals and mask on ``box.mp4`` (tests/test_real_box.py):
a flat table's normals must agree with each other, point up and toward the camera (camera space, OpenGL axes: +X
right, +Y up, +Z toward the viewer), and the foreground mask must cover the table, the box and the hand.
:data:`ACCEPTANCE` holds the issue's thresholds and :func:`acceptance_failures` lists what misses them.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from neural_render.errors import NeuralRenderError

FORMAT = "neural_render.real_labels"
VERSION = 1
#: issue #26: table normals within 15 deg of their own mean (mean angle), the mean up (y) and toward the camera (z),
#: and the foreground mask covering (fraction of labelled pixels) the table, the box and the hand
ACCEPTANCE = {"max_table_spread_deg": 15.0, "min_mean_y": 0.3, "min_mean_z": 0.3, "min_coverage": 0.9}


def load_labels(path: str | os.PathLike) -> dict:
    """Read and check a label file (module doc) -> its dict; NeuralRenderError naming the file on any problem."""
    path = Path(path)
    try:
        labels = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise NeuralRenderError(f"cannot read labels ({err})", path) from err
    if not isinstance(labels, dict) or labels.get("format") != FORMAT or labels.get("version") != VERSION:
        raise NeuralRenderError(f"not a {FORMAT} version {VERSION} file", path)
    size = labels.get("source_size")
    polygons = labels.get("polygons")
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)):
        raise NeuralRenderError("source_size must be [width, height]", path)
    if not isinstance(polygons, dict) or not polygons:
        raise NeuralRenderError("no polygons", path)
    for name, polygon in polygons.items():
        if not (isinstance(polygon, list) and len(polygon) >= 3
                and all(isinstance(p, list) and len(p) == 2 for p in polygon)):
            raise NeuralRenderError(f"polygon {name!r} needs >= 3 [x, y] points", path)
        first, last = labels.get("frames", {}).get(name, [0, 0])
        if not 0 <= first <= last:
            raise NeuralRenderError(f"frames of {name!r} must be [first, last] with 0 <= first <= last", path)
    return labels


def label_mask(polygon, width: int, height: int, source_size: tuple[int, int] = (640, 480)) -> np.ndarray:
    """(height, width) bool: the pixels whose CENTRES lie inside ``polygon`` ([[x, y], ...] in ``source_size`` =
    (width, height) pixel coordinates) scaled to ``width`` x ``height``."""
    points = np.asarray(polygon, dtype=np.float64)
    if points.ndim != 2 or points.shape[0] < 3 or points.shape[1] != 2:
        raise NeuralRenderError(f"a polygon needs >= 3 (x, y) points, got shape {points.shape}")
    xs = points[:, 0] * (width / source_size[0])
    ys = points[:, 1] * (height / source_size[1])
    px = (np.arange(width) + 0.5)[None, :]
    py = (np.arange(height) + 0.5)[:, None]
    inside = np.zeros((height, width), dtype=bool)
    for i in range(len(xs)):  # even-odd rule: count edge crossings of a ray to +x
        x0, y0, x1, y1 = xs[i - 1], ys[i - 1], xs[i], ys[i]
        if y0 == y1:
            continue
        crosses = (py >= min(y0, y1)) & (py < max(y0, y1))
        x_at = x0 + (py - y0) * (x1 - x0) / (y1 - y0)
        inside ^= crosses & (px < x_at)
    return inside


def _frames(labels: dict, name: str, num_frames: int) -> list[int]:
    first, last = labels.get("frames", {}).get(name, [0, 0])
    return list(range(first, min(last, num_frames - 1) + 1))


def table_normal_check(normal: Tensor, mask: Tensor, labels: dict, threshold: float = 0.5) -> dict:
    """Normals and mask of an inverse model on labelled footage -> the table's normal statistics and mask coverage.

    normal: (T, 3, H, W) camera-space unit normals (OpenGL axes); mask: (T, 1, H, W) foreground (> ``threshold`` =
    covered); labels: :func:`load_labels` with polygons ``table``, ``box``, ``hand``. The table is taken in every
    frame its label holds for (within T), box and hand in theirs (frame 0 in box_labels.json). Returns
    ``table_mean_normal`` (unit [x, y, z] of the summed table normals), ``table_spread_deg`` (mean angle of every
    table pixel's normal to that mean; a pixel without a normal, length < 1e-6, counts as 90 deg),
    ``table_spread_p90_deg``, ``table_pixels``, ``table_frames`` and ``coverage`` {label: fraction of its pixels the
    mask covers}.
    """
    if normal.ndim != 4 or normal.shape[1] != 3 or mask.shape != (normal.shape[0], 1, *normal.shape[2:]):
        raise NeuralRenderError(f"need normal (T, 3, H, W) and mask (T, 1, H, W), got {tuple(normal.shape)} and "
                                f"{tuple(mask.shape)}")
    t, _, h, w = normal.shape
    size = tuple(labels["source_size"])
    regions = {name: torch.from_numpy(label_mask(poly, w, h, size)) for name, poly in labels["polygons"].items()}
    for name in ("table", "box", "hand"):
        if name not in regions:
            raise NeuralRenderError(f"the labels have no {name!r} polygon")
    frames = _frames(labels, "table", t)
    if not frames:
        raise NeuralRenderError(f"the table label holds for no frame of these {t}")
    n = normal[frames].permute(0, 2, 3, 1)[regions["table"].expand(len(frames), h, w)].double()  # (N, 3)
    length = n.norm(dim=1)
    valid = length > 1e-6
    total = n[valid].sum(0)
    if not bool(valid.any()) or float(total.norm()) < 1e-12:
        raise NeuralRenderError("no table pixel has a normal")
    mean = total / total.norm()
    cosine = (n[valid] / length[valid, None]) @ mean
    angles = torch.full((n.shape[0],), 90.0, dtype=torch.float64)
    angles[valid] = torch.rad2deg(torch.arccos(cosine.clamp(-1.0, 1.0)))
    coverage = {}
    for name in ("table", "box", "hand"):
        picked = _frames(labels, name, t)
        covered = mask[picked, 0][regions[name].expand(len(picked), h, w)] > threshold
        coverage[name] = float(covered.float().mean()) if covered.numel() else math.nan
    return {"table_mean_normal": [float(v) for v in mean], "table_spread_deg": float(angles.mean()),
            "table_spread_p90_deg": float(torch.quantile(angles, 0.9)), "table_pixels": int(n.shape[0]),
            "table_frames": len(frames), "coverage": coverage}


def acceptance_failures(result: dict, acceptance: dict | None = None) -> list[str]:
    """What in a :func:`table_normal_check` result misses :data:`ACCEPTANCE` (or ``acceptance``); [] = accepted."""
    a = {**ACCEPTANCE, **(acceptance or {})}
    x, y, z = result["table_mean_normal"]
    failures = []
    if not result["table_spread_deg"] < a["max_table_spread_deg"]:
        failures.append(f"table normals spread {result['table_spread_deg']:.1f} deg >= {a['max_table_spread_deg']}")
    if not y > a["min_mean_y"]:
        failures.append(f"table mean normal y {y:.2f} <= {a['min_mean_y']} (not up)")
    if not z > a["min_mean_z"]:
        failures.append(f"table mean normal z {z:.2f} <= {a['min_mean_z']} (not toward the camera)")
    for name, fraction in result["coverage"].items():
        if not fraction >= a["min_coverage"]:
            failures.append(f"mask covers {fraction:.2f} of the {name} < {a['min_coverage']}")
    return failures
