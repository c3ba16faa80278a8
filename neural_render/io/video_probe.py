"""Cheap look at a video input before decoding it: frame count and size from metadata only.

:func:`probe_input` reads a clip folder's meta.json, a frame folder's file list and first image header, or a video
file's container header (ffmpeg, via imageio-ffmpeg; nothing is decoded beyond what ffmpeg needs to print the
header). It never raises for an unreadable input: it returns None and the real reader reports the problem.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

FRAME_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class VideoProbe:
    """frames: frame count (from the container: exact for a frame or clip folder, duration x fps for a file);
    height, width: frame size in pixels; source: "clip" | "frames" | "file"."""

    frames: int
    height: int
    width: int
    source: str


def _probe_clip(folder: Path) -> VideoProbe | None:
    from neural_render.io import read_meta

    meta = read_meta(folder)
    return VideoProbe(int(meta.num_frames), int(meta.height), int(meta.width), "clip")


def _probe_frames(folder: Path) -> VideoProbe | None:
    from PIL import Image

    files = sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in FRAME_SUFFIXES)
    if not files:
        return None
    with Image.open(files[0]) as image:  # lazy: reads the header only
        width, height = image.size
    return VideoProbe(len(files), int(height), int(width), "frames")


def _probe_file(path: Path) -> VideoProbe | None:
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(os.fspath(path), pix_fmt="rgb24")
    try:
        meta = next(reader)
    finally:
        reader.close()
    width, height = (int(v) for v in meta["size"])
    fps, duration = float(meta.get("fps") or 0.0), float(meta.get("duration") or 0.0)
    if not (math.isfinite(fps) and fps > 0 and math.isfinite(duration) and duration > 0):
        return None
    return VideoProbe(max(1, round(duration * fps)), height, width, "file")


def probe_input(path: str | os.PathLike) -> VideoProbe | None:
    """Frame count and size of a video file, frame folder or clip folder from metadata alone; None when unknown."""
    p = Path(path)
    try:
        if p.is_dir():
            return _probe_clip(p) if (p / "meta.json").is_file() else _probe_frames(p)
        if p.is_file() and p.stat().st_size > 0:
            return _probe_file(p)
    except Exception:  # noqa: BLE001 - an unreadable input is reported by the reader, with its own message
        return None
    return None
