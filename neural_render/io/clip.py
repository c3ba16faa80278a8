"""The dataset clip folder (format "neural_render.clip", version 1).

::

    clip_dir/
      meta.json              ClipMeta as JSON (see below)
      frames/000000.exr ...  one EXR per frame with any of the passes rgb (linear HDR), basecolor, normal,
                             depth, roughness, metallic, mask; channels "<pass>.<suffix>" (io/exr.py)
      rgb.mp4                optional 8-bit sRGB video: the RGB source when ``rgb_source == "mp4"``
                             (lossless libx264rgb), else a browser-playable preview (lossy)

meta.json fields: ``format`` ("neural_render.clip"), ``version`` (1; readers reject other formats and
versions), ``width``, ``height``, ``num_frames``, ``fps``, ``intrinsics`` {fx, fy, cx, cy} in pixels,
``camera_to_world`` (num_frames x 4 x 4, OpenGL camera axes, see types/camera.py), ``camera_convention``
("opengl"), ``envmap`` (null or {"path": relative to the clip folder or absolute, "rotation_deg": [yaw, pitch,
roll], optional "rotation_matrix": 3x3 that takes precedence}), ``depth_scale`` (float or null), ``units``
("meters"), ``passes`` (passes stored in the frame EXRs, "rgb" included when rgb lives there),
``rgb_source`` ("exr" | "mp4" | null), ``extra`` (free-form dict, not sliced by ``read_clip(frames=...)``).
Floats are written with repr precision, so a round trip is exact (float32 poses included).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from neural_render.errors import NeuralRenderError
from neural_render.io.atomic import atomic_dir
from neural_render.io.clip_meta import CLIP_FORMAT, CLIP_VERSION, FRAMES_DIR, META_NAME, RGB_VIDEO, ClipMeta
from neural_render.io.exr import read_frame_exr, write_frame_exr
from neural_render.types import Camera, EnvMap, GBuffer
from neural_render.types.gbuffer import PASS_CHANNELS, depth_scale_of

__all__ = ["CLIP_FORMAT", "CLIP_VERSION", "Clip", "ClipMeta", "frame_file", "is_complete_clip", "read_clip",
           "read_clip_envmap", "read_meta", "write_clip"]


def frame_file(index: int) -> str:
    """Relative path of frame ``index``'s EXR inside a clip folder."""
    return f"{FRAMES_DIR}/{index:06d}.exr"


@dataclass
class Clip:
    """One clip in memory.

    rgb:     (1, T, 3, H, W) float32 linear radiance, or None.
    gbuffer: GBuffer with B=1 (any subset of passes, possibly none).
    camera:  Camera with B=1, T frames, H x W pixels.
    meta:    ClipMeta; defaults to ``ClipMeta.for_camera(camera)`` (24 fps, no env map).
    """

    rgb: Tensor | None
    gbuffer: GBuffer
    camera: Camera
    meta: ClipMeta | None = None

    def __post_init__(self):
        if self.meta is None:
            self.meta = ClipMeta.for_camera(self.camera)

    @property
    def num_frames(self) -> int:
        return self.camera.num_frames


def _check_clip(clip: Clip, source) -> None:
    cam = clip.camera
    if cam.intrinsics.shape[0] != 1:
        raise NeuralRenderError(f"a clip holds one camera (B=1), got B={cam.intrinsics.shape[0]}", source)
    t, h, w = cam.num_frames, cam.height, cam.width
    if clip.rgb is None and not clip.gbuffer.passes:
        raise NeuralRenderError("clip has neither rgb nor G-buffer passes", source)
    if clip.rgb is not None:
        x = clip.rgb
        if not isinstance(x, Tensor) or x.dtype != torch.float32 or tuple(x.shape) != (1, t, 3, h, w):
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise NeuralRenderError(f"rgb must be float32 (1, {t}, 3, {h}, {w}) to match the camera, got {shape}",
                                    source)
        if not bool(torch.isfinite(x).all()):
            raise NeuralRenderError("rgb contains NaN or inf", source)
    if clip.gbuffer.passes:
        clip.gbuffer.validate(source)
        if clip.gbuffer.shape != (1, t, h, w):
            raise NeuralRenderError(f"G-buffer (B, T, H, W) = {clip.gbuffer.shape} does not match the camera "
                                    f"(1, {t}, {h}, {w})", source)


def write_clip(clip_dir: str | os.PathLike, clip: Clip, rgb_format: str = "exr", preview_mp4: bool = True,
               owner: str | None = None, srgb8=None) -> ClipMeta:
    """Write ``clip`` as a clip folder, atomically (temp folder renamed into place); returns the written meta.

    rgb_format: "exr" stores linear rgb in the frame EXRs (bit-exact); "mp4" stores sRGB(clamp(rgb)) in a
    lossless rgb.mp4 (8-bit, so linear values are quantised). preview_mp4 adds a lossy browser-playable
    rgb.mp4 when rgb is stored in EXR. Fields describing the data (width, height, num_frames, intrinsics,
    camera_to_world, passes, rgb_source) are taken from the tensors and camera; fps, envmap, units, extra
    and depth_scale from ``clip.meta`` (depth_scale defaults to :func:`depth_scale_of` when depth is present).
    owner: the command writing it; recorded in the folder's owner marker (io/output.py).
    srgb8: optional (T, H, W, 3) uint8 equal to ``display(rgb)`` (e.g. the decoded frames the linear rgb was made
    from): written to rgb.mp4 as is instead of converting the float rgb again.
    """
    if rgb_format not in ("exr", "mp4"):
        raise NeuralRenderError(f"rgb_format must be 'exr' or 'mp4', got {rgb_format!r}", clip_dir)
    _check_clip(clip, clip_dir)
    gb = clip.gbuffer.passes
    rgb_source = None if clip.rgb is None else rgb_format
    depth_scale = clip.meta.depth_scale
    if depth_scale is None and "depth" in gb:
        depth_scale = float(depth_scale_of(gb["depth"], gb.get("mask"))[0])
    exr_passes = (["rgb"] if rgb_source == "exr" else []) + list(gb)
    base = ClipMeta.for_camera(clip.camera, fps=clip.meta.fps)
    meta = dataclasses.replace(clip.meta, width=base.width, height=base.height, num_frames=base.num_frames,
                               intrinsics=base.intrinsics, camera_to_world=base.camera_to_world,
                               passes=exr_passes, rgb_source=rgb_source, depth_scale=depth_scale)
    meta.to_json()  # fail early on a non-serialisable 'extra'
    try:
        _write_clip_files(clip_dir, clip, meta, preview_mp4, owner, srgb8)
    except OSError as err:
        raise NeuralRenderError(f"could not write clip: {err}", clip_dir) from err
    return meta


def _write_clip_files(clip_dir, clip: Clip, meta: ClipMeta, preview_mp4: bool, owner: str | None = None,
                      srgb8=None) -> None:
    from neural_render.io.video import write_video
    from neural_render.render.tonemap import display
    rgb_source, gb = meta.rgb_source, clip.gbuffer.passes
    with atomic_dir(clip_dir) as tmp:
        tmp_dir = Path(tmp)
        if owner is not None:
            from neural_render.io.output import write_folder_marker

            write_folder_marker(tmp_dir, owner)
        (tmp_dir / FRAMES_DIR).mkdir()
        tensors = ({"rgb": clip.rgb} if rgb_source == "exr" else {}) | gb
        arrays = {name: x[0].detach().cpu().numpy() for name, x in tensors.items()}  # (T, C, H, W)
        if arrays:
            for i in range(meta.num_frames):
                write_frame_exr(tmp_dir / frame_file(i), {name: a[i] for name, a in arrays.items()})
        if rgb_source == "mp4" or (rgb_source == "exr" and preview_mp4):  # (T, H, W, 3) uint8 sRGB(clamp(rgb))
            if srgb8 is None or tuple(srgb8.shape) != (meta.num_frames, meta.height, meta.width, 3):
                srgb8 = display(clip.rgb[0]).permute(0, 2, 3, 1).contiguous().numpy()
            write_video(tmp_dir / RGB_VIDEO, srgb8, fps=meta.fps, lossless=rgb_source == "mp4")
        (tmp_dir / META_NAME).write_text(meta.to_json())  # inside the temp folder, renamed with it


def read_meta(clip_dir: str | os.PathLike) -> ClipMeta:
    """Read and validate ``clip_dir/meta.json`` (NeuralRenderError naming the file on any problem)."""
    path = Path(clip_dir) / META_NAME
    if not Path(clip_dir).is_dir():
        raise NeuralRenderError("no such clip folder", clip_dir)
    if not path.is_file():
        raise NeuralRenderError("missing meta.json: not a neural_render clip folder", path)
    try:
        return ClipMeta.from_json(path.read_bytes(), source=path)
    except OSError as err:
        raise NeuralRenderError(f"cannot read: {err}", path) from err


def read_clip(clip_dir: str | os.PathLike, frames: slice | None = None, passes: list[str] | None = None,
              rgb: bool = True) -> Clip:
    """Read a clip folder -> :class:`Clip` (rgb linear float32; from EXR exactly or srgb_to_linear(mp4 / 255)).

    frames: slice of frame indices to load (default all); passes: G-buffer passes to load (default every stored
    G-buffer pass; each must be stored); rgb: load rgb when the clip has it. The returned meta describes the
    returned data (num_frames, camera_to_world, passes, rgb_source updated; ``extra`` is left as stored).
    """
    meta = read_meta(clip_dir)
    check_frame_files(clip_dir, meta)
    if frames is not None and not isinstance(frames, slice):
        raise NeuralRenderError(f"frames must be a slice or None, got {type(frames).__name__}", clip_dir)
    indices = list(range(meta.num_frames))[frames or slice(None)]
    if not indices:
        raise NeuralRenderError(f"frame selection {frames} is empty for a clip of {meta.num_frames} frames", clip_dir)
    stored = [p for p in meta.passes if p != "rgb"]
    if passes is None:
        wanted = stored
    else:
        bad = [p for p in passes if not isinstance(p, str) or p not in PASS_CHANNELS or p not in stored]
        if bad:
            raise NeuralRenderError(f"pass(es) {bad} not stored in this clip (stored: {stored})", clip_dir)
        wanted = [p for p in PASS_CHANNELS if p in passes]
    rgb_source = meta.rgb_source if rgb else None
    exr_passes = (["rgb"] if rgb_source == "exr" else []) + wanted
    data: dict[str, list[np.ndarray]] = {name: [] for name in exr_passes}
    for i in indices if exr_passes else []:
        path = Path(clip_dir) / frame_file(i)
        frame = read_frame_exr(path, passes=exr_passes)
        for name, array in frame.items():
            if array.shape[1:] != (meta.height, meta.width):
                raise NeuralRenderError(f"pass {name!r} is {array.shape[2]}x{array.shape[1]}, meta.json says "
                                        f"{meta.width}x{meta.height}", path)
            data[name].append(array)
    tensors = {name: torch.from_numpy(np.stack(arrays))[None] for name, arrays in data.items()}
    rgb_tensor = tensors.pop("rgb", None)
    if rgb_source == "mp4":
        rgb_tensor = _read_rgb_mp4(Path(clip_dir) / RGB_VIDEO, meta, indices)
    gbuffer = GBuffer(**tensors)
    if tensors:
        gbuffer.validate(clip_dir)
    poses = [meta.camera_to_world[i] for i in indices]
    out_meta = dataclasses.replace(meta, num_frames=len(indices), camera_to_world=poses,
                                   passes=exr_passes, rgb_source=rgb_source)
    try:
        camera = out_meta.camera()
    except NeuralRenderError as err:
        raise NeuralRenderError(err.reason, Path(clip_dir) / META_NAME) from err
    return Clip(rgb_tensor, gbuffer, camera, out_meta)


def check_frame_files(clip_dir: str | os.PathLike, meta: ClipMeta) -> None:
    """Refuse a clip folder whose files disagree with meta.json's ``num_frames`` (cheap: no frame is decoded).

    Numbered frame EXRs (when meta lists passes) must be exactly ``frames/000000.exr`` .. ``num_frames - 1``;
    other files in ``frames/`` (e.g. ``flow_000000.exr``) are not counted. ``rgb.mp4``
    must hold ``num_frames`` frames where its container states the count exactly (MP4 sample count).
    """
    import re

    from neural_render.io.video import mp4_frame_count
    root = Path(clip_dir)
    n = meta.num_frames
    if meta.passes:
        folder = root / FRAMES_DIR
        numbered = re.compile(r"\d{6,}\.exr")  # frame_file's names; other files (flow_*.exr, ...) are extras
        found = sorted(f.name for f in folder.iterdir() if numbered.fullmatch(f.name)) if folder.is_dir() else []
        expected = [Path(frame_file(i)).name for i in range(n)]
        if found != expected:
            missing = sorted(set(expected) - set(found))
            extra = sorted(set(found) - set(expected))
            detail = "; ".join(part for part in (
                f"missing {len(missing)} ({missing[0]}{' ...' if len(missing) > 1 else ''})" if missing else "",
                f"{len(extra)} unexpected ({extra[0]}{' ...' if len(extra) > 1 else ''})" if extra else "") if part)
            raise NeuralRenderError(f"meta.json says num_frames={n} but {FRAMES_DIR}/ holds {len(found)} frame EXRs "
                                    f"({detail})", clip_dir)
    video = root / RGB_VIDEO
    if video.is_file():
        counted = mp4_frame_count(video)
        if counted is not None and counted[1] and int(counted[0]) != n:
            raise NeuralRenderError(f"meta.json says num_frames={n} but {RGB_VIDEO} holds {int(counted[0])} frames",
                                    clip_dir)


def _read_rgb_mp4(path: Path, meta: ClipMeta, indices: list[int]) -> Tensor:
    from neural_render.io.video import read_video
    from neural_render.render.tonemap import srgb_to_linear
    video, _ = read_video(path)
    if video.shape != (meta.num_frames, meta.height, meta.width, 3):
        raise NeuralRenderError(f"video is {video.shape[0]} frames of {video.shape[2]}x{video.shape[1]}, meta.json "
                                f"says {meta.num_frames} of {meta.width}x{meta.height}", path)
    x = torch.from_numpy(np.ascontiguousarray(video[indices])).permute(0, 3, 1, 2).to(torch.float32) / 255.0
    return srgb_to_linear(x)[None].contiguous()


def is_complete_clip(clip_dir: str | os.PathLike) -> bool:
    """True when meta.json is valid and every file it promises exists and is non-empty (EXRs are not decoded)."""
    try:
        meta = read_meta(clip_dir)
    except NeuralRenderError:
        return False
    root = Path(clip_dir)
    needed = [root / frame_file(i) for i in range(meta.num_frames)] if meta.passes else []
    if meta.rgb_source == "mp4":
        needed.append(root / RGB_VIDEO)
    return all(p.is_file() and p.stat().st_size > 0 for p in needed)


def read_clip_envmap(clip_dir: str | os.PathLike, meta: ClipMeta | None = None) -> EnvMap | None:
    """The clip's env map (path resolved against the clip folder) with its rotation applied, or None."""
    from neural_render.io.hdr import load_envmap
    from neural_render.render.rotation import euler_to_matrix
    meta = read_meta(clip_dir) if meta is None else meta
    if meta.envmap is None:
        return None
    path = Path(meta.envmap["path"])
    path = path if path.is_absolute() else Path(clip_dir) / path
    env = load_envmap(path)
    if "rotation_matrix" in meta.envmap:
        rotation = torch.tensor(meta.envmap["rotation_matrix"], dtype=torch.float32)
    else:
        rotation = euler_to_matrix(*meta.envmap["rotation_deg"])
    return EnvMap(env.image, rotation, env.name)
