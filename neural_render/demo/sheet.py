"""The demo's contact sheet: one labelled ROW per video (input, estimated passes, relights, edit, insert), frames
spread over the clip in columns, and a first column showing the env map that lights the row (blank for G-buffers).

Images are uint8 (H, W, 3) / (T, H, W, 3) sRGB as made by :func:`neural_render.viz.contact_sheet.pass_to_display`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from neural_render.errors import NeuralRenderError
from neural_render.viz.contact_sheet import common_shape_and_picks, label_strip

GAP = 2
BACKGROUND = (255, 255, 255)


def env_thumbnail(image: Tensor, height: int, width: int) -> np.ndarray:
    """Equirect env map (3, h, w) linear -> uint8 (height, width, 3): display sRGB, fitted (2:1) and centred on grey."""
    from neural_render.render.tonemap import display

    thumb_w = width
    thumb_h = min(height, max(1, width // 2))
    small = torch.nn.functional.interpolate(image[None].float(), size=(thumb_h, thumb_w), mode="area")[0]
    tile = np.full((height, width, 3), 64, np.uint8)
    top = (height - thumb_h) // 2
    tile[top:top + thumb_h] = display(small).permute(1, 2, 0).numpy()
    return tile


def demo_sheet(rows: list[tuple[str, Tensor, Tensor | None]], num_columns: int = 5) -> np.ndarray:
    """rows: (label, uint8 (T, H, W, 3) frames, env map image (3, h, w) or None) -> uint8 sheet (H', W', 3).

    Each row: a label strip over the full width, then [env thumbnail | frame columns...]; ``num_columns`` frames
    evenly spread over the clip (all rows share T, H, W).
    """
    if not rows:
        raise NeuralRenderError("contact sheet needs at least one row")
    h, w, picks = common_shape_and_picks([frames for _, frames, _ in rows], num_columns, "rows")
    gap_v = np.full((h, GAP, 3), 255, np.uint8)
    lines = []
    for label, frames, env in rows:
        tiles = [env_thumbnail(env, h, w) if env is not None else np.full((h, w, 3), 255, np.uint8), gap_v]
        for i in picks:
            tiles += [frames[i].cpu().numpy(), gap_v]
        line = np.concatenate(tiles[:-1], axis=1)
        lines += [label_strip(line.shape[1], label), line, np.full((GAP, line.shape[1], 3), 255, np.uint8)]
    header = label_strip(lines[1].shape[1], "light | frames " + ", ".join(str(int(i)) for i in picks))
    return np.concatenate([header, np.full((GAP, header.shape[1], 3), 255, np.uint8), *lines[:-1]], axis=0)
