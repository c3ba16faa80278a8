"""Precomputed G-buffers of a video (``--gbuffer CLIP`` of relight and edit): a clip folder's passes, checked
against the video they describe."""

from __future__ import annotations

import os


def read_gbuffer(path: str | os.PathLike | None, video, source: str | os.PathLike | None = None):
    """The forward passes (+ mask) of the clip folder ``path`` as a GBuffer (1, T, C, H, W); None when ``path`` is
    None. video: (1, T, 3, H, W), whose frame count and size the clip must match (NeuralRenderError naming the
    clip otherwise); source: the video's name for that message."""
    from neural_render.errors import NeuralRenderError
    from neural_render.io import read_clip, read_meta
    from neural_render.models.conditioning import FORWARD_PASSES

    if path is None:
        return None
    meta = read_meta(path)
    passes = [p for p in (*FORWARD_PASSES, "mask") if p in meta.passes]
    if not passes:
        raise NeuralRenderError("clip folder holds no G-buffer passes", path)
    b, t, _, h, w = video.shape
    if (meta.num_frames, meta.height, meta.width) != (t, h, w):
        raise NeuralRenderError(f"G-buffer clip is {meta.num_frames} frames of {meta.width}x{meta.height} but the "
                                f"video {source or ''} is {t} frames of {w}x{h}", path)
    return read_clip(path, passes=passes, rgb=False).gbuffer
