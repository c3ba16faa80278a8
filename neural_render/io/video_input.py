"""A user's video as a tensor: a video file (MP4 or anything ffmpeg reads), a folder of PNG/JPG frames, or a clip
folder (meta.json; its rgb and cameras). Also mask videos / images (``neural-render edit --mask``).

Every video comes back as (1, T, 3, H, W) float32 LINEAR radiance (8-bit inputs are sRGB-decoded); unreadable
inputs raise NeuralRenderError naming the file (io/video.py, io/clip.py).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import torch


def read_input(path: str | os.PathLike, fov: float = 60.0, with_srgb8: bool = False):
    """Video file / frame folder / clip folder -> (rgb (1, T, 3, H, W) linear, Camera, fps, rgb_format), plus the
    decoded uint8 sRGB frames (T, H, W, 3) (None for a clip folder) when ``with_srgb8``.

    A video without cameras gets a static camera (identity pose) with a horizontal field of view of ``fov`` degrees;
    rgb_format: "exr" or "mp4", how the clip folder written from it stores its rgb."""
    import torch

    from neural_render.errors import NeuralRenderError
    from neural_render.io import read_clip, read_video
    from neural_render.types import Camera

    p = Path(path)
    if (p / "meta.json").is_file():
        clip = read_clip(p, passes=[])
        if clip.rgb is None:
            raise NeuralRenderError("clip folder has no rgb to invert", p)
        out = clip.rgb, clip.camera, clip.meta.fps, "exr" if clip.meta.rgb_source == "exr" else "mp4"
        return (*out, None) if with_srgb8 else out
    frames, fps = read_video(p)
    t, h, w, _ = frames.shape
    camera = Camera.from_fov(fov, w, h, torch.eye(4).repeat(1, t, 1, 1))
    out = srgb8_to_linear(frames), camera, fps, "mp4"
    return (*out, frames) if with_srgb8 else out


def srgb8_to_linear(frames) -> "torch.Tensor":
    """uint8 sRGB (T, H, W, 3) numpy -> linear (1, T, 3, H, W) float32 through a 256-entry table of
    :func:`srgb_to_linear` (the values of the elementwise formula; a few frames at a time, so no full-size float
    temporaries)."""
    import torch

    from neural_render.render.tonemap import srgb_to_linear

    t, h, w, _ = frames.shape
    table = srgb_to_linear(torch.arange(256, dtype=torch.float32) / 255.0)
    rgb = torch.empty((1, t, 3, h, w), dtype=torch.float32)
    step = max(1, (1 << 24) // max(1, h * w * 3))
    for a in range(0, t, step):
        rgb[0, a:a + step] = table[torch.from_numpy(frames[a:a + step]).to(torch.int32)].permute(0, 3, 1, 2)
    return rgb


def read_mask(path: str | os.PathLike, num_frames: int | None = None):
    """Mask image / video / frame folder -> (1, T or 1, 1, H, W) float in [0, 1] (mean of RGB / 255); an image is
    one mask for every frame. ``num_frames`` is not used (the caller checks the shape against its video)."""
    import torch

    from neural_render.io import read_image, read_video

    p = Path(path)
    if p.is_file() and p.suffix.lower() in (".png", ".jpg", ".jpeg"):
        image = torch.from_numpy(read_image(p)).float() / 255.0          # (H, W, C)
        return image.mean(-1)[None, None, None]
    frames, _ = read_video(p)                                            # (T, H, W, 3) uint8
    return (torch.from_numpy(frames).float() / 255.0).mean(-1)[None, :, None]
