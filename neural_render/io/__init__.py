"""File I/O: atomic writes, OpenEXR, HDR env maps, 8-bit images, MP4 video and the clip folder format.

Names are re-exported lazily (PEP 562) so ``import neural_render.io`` stays cheap: OpenEXR, cv2, imageio
and torch load only when a function that needs them is first looked up.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_EXPORTS = {
    "atomic_path": "atomic", "atomic_dir": "atomic",
    "write_exr": "exr", "read_exr": "exr", "write_frame_exr": "exr", "read_frame_exr": "exr",
    "GBUFFER_CHANNELS": "exr",
    "read_hdr": "hdr", "write_hdr": "hdr", "load_envmap": "hdr", "downsample_equirect": "hdr",
    "read_image": "image", "write_image": "image",
    "read_video": "video", "write_video": "video",
    "ClipMeta": "clip_meta", "Clip": "clip", "write_clip": "clip", "read_clip": "clip", "read_meta": "clip",
    "is_complete_clip": "clip", "read_clip_envmap": "clip", "CLIP_FORMAT": "clip_meta",
    "CLIP_VERSION": "clip_meta",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from neural_render.io.atomic import atomic_dir, atomic_path
    from neural_render.io.clip import Clip, is_complete_clip, read_clip, read_clip_envmap, read_meta, write_clip
    from neural_render.io.clip_meta import CLIP_FORMAT, CLIP_VERSION, ClipMeta
    from neural_render.io.exr import GBUFFER_CHANNELS, read_exr, read_frame_exr, write_exr, write_frame_exr
    from neural_render.io.hdr import downsample_equirect, load_envmap, read_hdr, write_hdr
    from neural_render.io.image import read_image, write_image
    from neural_render.io.video import read_video, write_video


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'neural_render.io' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"neural_render.io.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
