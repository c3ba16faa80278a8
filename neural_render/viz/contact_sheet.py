"""Contact sheet: one row per frame, one labelled column per image kind (rgb | basecolor | normal | depth | ...).

Display conversions (all -> uint8 sRGB (H, W, 3)):
rgb        linear radiance -> sRGB (optional exposure in stops)
basecolor  linear albedo -> sRGB
normal     camera-space unit normal -> (n + 1) / 2 (OpenGL axes: facing camera = blue-ish)
depth      near = bright: 1 - depth / max valid depth of the clip, background black
roughness, metallic, mask   grey
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from neural_render.errors import NeuralRenderError
from neural_render.render.tonemap import display, linear_to_srgb, to_uint8
from neural_render.types import GBuffer

COLUMN_ORDER = ("rgb", "basecolor", "normal", "depth", "roughness", "metallic")
LABEL_HEIGHT = 14


def pass_to_display(name: str, x: Tensor, mask: Tensor | None = None, stops: float = 0.0) -> Tensor:
    """One pass of one clip (T, C, H, W) -> uint8 (T, H, W, 3) for display (see module doc)."""
    if name == "rgb":
        y = display(x, stops)
    elif name == "basecolor":
        y = to_uint8(linear_to_srgb(x))
    elif name == "normal":
        y = to_uint8((x + 1.0) * 0.5)
    elif name == "depth":
        valid = x > 0 if mask is None else (x > 0) & (mask > 0.5)
        far = torch.where(valid, x, torch.zeros_like(x)).amax().clamp_min(1e-8)
        y = to_uint8(torch.where(valid, 1.0 - 0.8 * x / far, torch.zeros_like(x)))
    else:
        y = to_uint8(x)
    if y.shape[1] == 1:
        y = y.expand(-1, 3, -1, -1)
    return y.permute(0, 2, 3, 1).contiguous()


def label_strip(width: int, text: str) -> np.ndarray:
    """Dark strip (LABEL_HEIGHT, width, 3) with ``text`` in PIL's default font."""
    from PIL import Image, ImageDraw

    strip = Image.new("RGB", (width, LABEL_HEIGHT), (24, 24, 24))
    ImageDraw.Draw(strip).text((3, 1), text, fill=(235, 235, 235))
    return np.asarray(strip)


def common_shape_and_picks(images, count: int, what: str) -> tuple[int, int, np.ndarray]:
    """uint8 (T, H, W, 3) videos that must share their shape -> (H, W, up to ``count`` frame indices spread evenly
    over the T frames). what: "rows" / "columns" for the error message."""
    shapes = {tuple(v.shape) for v in images}
    if len(shapes) != 1:
        raise NeuralRenderError(f"contact sheet {what} disagree in shape: {sorted(shapes)}")
    t, h, w, _ = shapes.pop()
    return h, w, np.unique(np.linspace(0, t - 1, num=min(t, count)).round().astype(int))


def make_contact_sheet(columns: dict[str, Tensor], max_rows: int = 6, gap: int = 2) -> np.ndarray:
    """Labelled grid from display images ``{label: uint8 (T, H, W, 3)}`` -> uint8 (H', W', 3).

    Rows are up to ``max_rows`` frames spread evenly over the clip.
    """
    if not columns:
        raise NeuralRenderError("contact sheet needs at least one column")
    h, w, rows = common_shape_and_picks(columns.values(), max_rows, "columns")
    pad_v = np.full((h, gap, 3), 255, np.uint8)
    lines = []
    for r in rows:
        tiles = []
        for images in columns.values():
            tiles += [images[r].cpu().numpy(), pad_v]
        lines.append(np.concatenate(tiles[:-1], axis=1))
    grid = np.concatenate([np.concatenate([ln, np.full((gap, ln.shape[1], 3), 255, np.uint8)]) for ln in lines])[:-gap]
    header_tiles = []
    for label in columns:
        header_tiles += [label_strip(w, label), np.full((LABEL_HEIGHT, gap, 3), 255, np.uint8)]
    header = np.concatenate(header_tiles[:-1], axis=1)
    return np.concatenate([header, grid], axis=0)


def gbuffer_contact_sheet(gbuffer: GBuffer, rgb: Tensor | None = None, batch_index: int = 0, max_rows: int = 6,
                          extra: dict[str, Tensor] | None = None, stops: float = 0.0) -> np.ndarray:
    """Contact sheet rgb | basecolor | normal | depth | roughness | metallic for clip ``batch_index``.

    rgb: (B, T, 3, H, W) linear or None; extra: more linear-radiance videos (B, T, 3, H, W) appended as columns.
    """
    cols: dict[str, Tensor] = {}
    mask = gbuffer.mask[batch_index] if gbuffer.mask is not None else None
    if rgb is not None:
        cols["rgb"] = pass_to_display("rgb", rgb[batch_index], stops=stops)
    passes = gbuffer.passes if gbuffer.passes else {}
    for name in COLUMN_ORDER[1:]:
        if name in passes:
            cols[name] = pass_to_display(name, passes[name][batch_index], mask)
    for label, video in (extra or {}).items():
        cols[label] = pass_to_display("rgb", video[batch_index], stops=stops)
    return make_contact_sheet(cols, max_rows=max_rows)
