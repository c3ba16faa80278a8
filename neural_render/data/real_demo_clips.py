"""The two small REAL clips shipped in ``data/clips/`` (issue #26): cut from the videos of Debian's ``opencv-doc``.

* ``real_box``: the first 24 frames (0..23) of ``opencv4/html/box.mp4.gz`` (a hand holding a printed box over a
  white table; 640x480, 29.97 fps). The camera is nearly static over these frames; the hand-labelled regions of
  ``data/real/box_labels.json`` hold for them (tests/test_real_box.py).
* ``real_pedestrians``: 24 frames of ``examples/data/vtest.avi`` (pedestrians on a campus, static camera; 768x576,
  10 fps), every 2nd frame from frame 200 (200, 202, ..., 246: people walk through the whole stretch).

Both are area-resized to 128x96 (exactly 1/5 and 1/6 of the source; same 4:3 aspect, no crop) and written as clip
folders (:func:`neural_render.io.write_clip`: lossless rgb.mp4 of the decoded sRGB frames, identity poses = a
static camera, 60 deg horizontal FOV), as ``neural-render import`` does (io/video_import.py). ``meta.extra`` records
the source file, the source frame numbers, the licence and ``demo`` settings for ``neural-render demo --clip <name>``
(:data:`DEMO_SETTINGS`: run at 64x48, the forward model's native size, with the shipped inverse_v2;
neural_render/demo/run.py). Licence of the videos: Apache-2.0 AND BSD-3-Clause
(``data/clips/CREDITS.md``).

Made by ``scripts/make_real_demo_clips.py``. Splits: box.mp4 is the real-footage TEST video and vtest.avi a TRAIN
video of :mod:`neural_render.data.real_footage` (the real-footage set cuts 64x64 clips elsewhere); these two shipped
clips are for looking at (demo, docs) and for the box acceptance test, never for training or for a choice.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neural_render.data.real_footage import write_real_clip
from neural_render.errors import NeuralRenderError

SIZE = (128, 96)  # width, height
FOV = 60.0
OWNER = "make_real_demo_clips"
LICENCE = "Apache-2.0 AND BSD-3-Clause (Debian opencv-doc 4.6.0; see data/clips/CREDITS.md)"
#: meta.extra["demo"] of every real clip (neural_render/demo/run.py reads it)
DEMO_SETTINGS = {"size": [64, 48], "inverse_model": "inverse_v2"}


@dataclass(frozen=True)
class RealDemoClip:
    """name: clip folder name; path: inside the opencv-doc folder (``.gz``: gzip-compressed); frames: the source
    frame numbers; fps: of the clip (source fps / stride)."""

    name: str
    path: str
    frames: tuple[int, ...]
    fps: float

    @property
    def source_fps(self) -> float:
        step = self.frames[1] - self.frames[0] if len(self.frames) > 1 else 1
        return self.fps * step


REAL_DEMO_CLIPS: tuple[RealDemoClip, ...] = (
    RealDemoClip("real_box", "opencv4/html/box.mp4.gz", tuple(range(0, 24)), 29.97),
    RealDemoClip("real_pedestrians", "examples/data/vtest.avi", tuple(range(200, 248, 2)), 5.0),
)


def read_frames(path: str | os.PathLike, frames: tuple[int, ...]) -> np.ndarray:
    """(len(frames), H, W, 3) uint8: the given frame numbers of a video file (``.gz``: decompressed to a temporary
    file first); decoding stops after the last one. NeuralRenderError when the video is shorter."""
    import imageio.v3 as iio

    from neural_render.data.real_footage import decompressed

    path = Path(path)
    if not path.is_file():
        raise NeuralRenderError("video missing from the opencv-doc folder", path)
    with decompressed(path) as plain:
        wanted, last, out = set(frames), max(frames), {}
        for i, frame in enumerate(iio.imiter(plain)):
            if i in wanted:
                out[i] = np.asarray(frame)[..., :3]
            if i >= last:
                break
    missing = sorted(wanted - set(out))
    if missing:
        raise NeuralRenderError(f"video has no frame {missing[0]} (needed frames {min(frames)}..{last})", path)
    return np.stack([out[i] for i in frames])


def area_resize(frames: np.ndarray, size: tuple[int, int] = SIZE) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (T, size[1], size[0], 3) uint8, area (box) resampling of the whole frame."""
    from PIL import Image

    return np.stack([np.asarray(Image.fromarray(f).resize(size, Image.Resampling.BOX)) for f in frames])


def write_real_demo_clips(doc: str | os.PathLike, out_root: str | os.PathLike,
                          clips: tuple[RealDemoClip, ...] = REAL_DEMO_CLIPS) -> list[Path]:
    """Write every clip of ``clips`` as ``out_root/<name>`` (module doc; each folder replaced atomically) from the
    opencv-doc folder ``doc``; returns the folders."""
    doc, out_root = Path(doc), Path(out_root)
    written = []
    for spec in clips:
        frames = area_resize(read_frames(doc / spec.path, spec.frames))
        extra = {"source": f"Debian opencv-doc: {spec.path}", "source_frames": list(spec.frames),
                 "source_fps": spec.source_fps, "resize": "area (box), whole frame", "poses": "identity",
                 "licence": LICENCE,
                 "demo": {**DEMO_SETTINGS, "source": f"real footage: {Path(spec.path).name.removesuffix('.gz')}, "
                                                     f"area-resized to {DEMO_SETTINGS['size'][0]}x"
                                                     f"{DEMO_SETTINGS['size'][1]}"}}
        write_real_clip(out_root / spec.name, frames, spec.fps, extra, owner=OWNER, fov=FOV)
        written.append(out_root / spec.name)
    return written
