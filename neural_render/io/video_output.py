"""Rendered videos to files: display MP4s (sRGB, browser-playable) and side-by-side comparisons.

Videos are (1, T, 3, H, W) float32 linear radiance; ``stops`` is an exposure in photographic stops applied before
tone mapping (render/tonemap.display). Writes are atomic (io/video.write_video); ``owner`` is the command that
writes the file (its output marker, io/output.py).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import torch


def write_mp4(path: str | os.PathLike, rgb, fps: float, stops: float = 0.0, owner: str | None = None) -> None:
    """(1, T, 3, H, W) linear -> display MP4 at ``fps`` frames per second (atomic)."""
    from neural_render.io import write_video
    from neural_render.render.tonemap import display

    write_video(path, display(rgb[0], stops).permute(0, 2, 3, 1).contiguous().numpy(), fps=fps, owner=owner)


def side_by_side(videos) -> "torch.Tensor":
    """(1, T, 3, H, W) videos (same T and H) -> one (1, T, 3, H, sum of W) video, left to right, clamped to [0, 1]."""
    import torch

    return torch.cat([v.clamp(0.0, 1.0) for v in videos], dim=-1)


def write_video_or_clip(out: str | os.PathLike, rgb, camera, fps: float, owner: str | None = None) -> None:
    """(1, T, 3, H, W) linear -> ``out``: an .mp4 (sRGB display) or else a clip folder (linear EXR rgb + ``camera``;
    a static 60-degree camera when None), atomically."""
    from pathlib import Path

    from neural_render.io import Clip, write_clip
    from neural_render.io.clip import ClipMeta
    from neural_render.types import Camera, GBuffer

    out = Path(out)
    if out.suffix.lower() == ".mp4":
        write_mp4(out, rgb, fps, owner=owner)
        return
    if camera is None:
        import torch

        t, h, w = rgb.shape[1], rgb.shape[-2], rgb.shape[-1]
        camera = Camera.from_fov(60.0, w, h, torch.eye(4).expand(1, t, 4, 4).clone())
    meta = ClipMeta.for_camera(camera, fps=fps)
    write_clip(out, Clip(rgb=rgb.contiguous(), gbuffer=GBuffer(), camera=camera, meta=meta), owner=owner)


def write_relit_folder(out: str | os.PathLike, names: list[str], video, relit: list, fps: float, stops: float = 0.0,
                       owner: str = "relight") -> None:
    """``out`` as one folder renamed into place: ``relit_<k>_<env>.mp4`` per env map (``names``: the env maps as
    given; file-name-safe stems) and ``side_by_side.mp4`` (the input ``video`` | every relit video)."""
    import re
    from pathlib import Path

    from neural_render.io.atomic import atomic_dir
    from neural_render.io.output import write_folder_marker

    with atomic_dir(out) as tmp:
        write_folder_marker(tmp, owner)
        for k, (name, rgb) in enumerate(zip(names, relit)):
            stem = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(name).stem)
            write_mp4(Path(tmp) / f"relit_{k}_{stem}.mp4", rgb, fps, stops)
        write_mp4(Path(tmp) / "side_by_side.mp4", side_by_side([video, *relit]), fps, stops)
