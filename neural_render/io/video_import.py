"""A video (MP4 or a folder of frames) as a clip folder (what ``neural-render import`` does).

Real videos carry no poses: the clip gets identity camera-to-world for every frame (a static camera) and pinhole
intrinsics from a horizontal field of view; the RGB is kept exactly (lossless rgb.mp4, ``rgb_source = "mp4"``).
"""

from __future__ import annotations

import os


def import_video(video: str | os.PathLike, out: str | os.PathLike, fov: float = 60.0, fps: float | None = None,
                 max_frames: int | None = None, owner: str = "import"):
    """Write the clip folder ``out`` from ``video`` (first ``max_frames`` frames; ``fps``: None = the video's;
    ``fov``: degrees) and return its ClipMeta (num_frames, width, height, fps)."""
    import torch

    from neural_render.io import Clip, ClipMeta, read_video, write_clip
    from neural_render.render.tonemap import srgb_to_linear
    from neural_render.types import Camera, GBuffer

    frames, video_fps = read_video(video)
    if max_frames is not None:
        frames = frames[:max_frames]
    t, h, w, _ = frames.shape
    camera = Camera.from_fov(fov, w, h, torch.eye(4).repeat(1, t, 1, 1))
    rgb = srgb_to_linear(torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0)[None]
    meta = ClipMeta.for_camera(camera, fps=float(fps or video_fps), extra={"source": str(video), "poses": "identity"})
    write_clip(out, Clip(rgb=rgb, gbuffer=GBuffer(), camera=camera, meta=meta), rgb_format="mp4", owner=owner)
    return meta
