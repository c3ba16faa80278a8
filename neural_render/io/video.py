"""Video files (MP4 via imageio-ffmpeg's ffmpeg binary) and folders of frames: numpy (T, H, W, 3) uint8 sRGB.

Two encodings:
* ``lossless=True``: H.264 ``libx264rgb`` with ``-qp 0``, RGB stored as is (no YUV conversion, no chroma
  subsampling) -> a bit-exact 8-bit RGB round trip. Not playable by most browsers; used for dataset storage.
* ``lossless=False`` (default): H.264 ``libx264`` ``yuv420p`` CRF 18 with ``+faststart`` -> plays in browsers
  and players. yuv420p needs even width and height, so an odd-sized video is padded by one row and/or
  column that repeats the last row/column (edge replication); the file is then (H+1) and/or (W+1) in size.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from neural_render.errors import NeuralRenderError
from neural_render.io.atomic import atomic_path

FRAME_SUFFIXES = (".png", ".jpg", ".jpeg")
DEFAULT_FPS = 24.0
LOSSY_CRF = 18


def _read_frame_folder(folder: Path, fps: float) -> tuple[np.ndarray, float]:
    from neural_render.io.image import read_image

    files = sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in FRAME_SUFFIXES)
    if not files:
        raise NeuralRenderError(f"folder holds no frames ({', '.join(FRAME_SUFFIXES)})", folder)
    frames = [read_image(f) for f in files]
    size = frames[0].shape
    for f, frame in zip(files, frames):
        if frame.shape != size:
            raise NeuralRenderError(f"frame is {frame.shape[1]}x{frame.shape[0]} but {files[0].name} is "
                                    f"{size[1]}x{size[0]}", f)
    return np.stack(frames), float(fps)


def read_video(path: str | os.PathLike, default_fps: float = DEFAULT_FPS) -> tuple[np.ndarray, float]:
    """Read a video file, or a folder of frames (png/jpg sorted by file name) -> ((T, H, W, 3) uint8, fps).

    ``default_fps`` is used for folders and for files that carry no usable frame rate.
    Missing, empty (0 frames), truncated or non-video files raise :class:`NeuralRenderError` naming ``path``.
    """
    import imageio_ffmpeg

    p = Path(path)
    if p.is_dir():
        return _read_frame_folder(p, default_fps)
    if not p.is_file():
        raise NeuralRenderError("no such video file or frame folder", path)
    if p.stat().st_size == 0:
        raise NeuralRenderError("video file is empty (0 bytes)", path)
    reader = None
    try:
        reader = imageio_ffmpeg.read_frames(os.fspath(p), pix_fmt="rgb24")
        meta = next(reader)
        width, height = (int(v) for v in meta["size"])
        frame_bytes = width * height * 3
        frames = []
        for buf in reader:
            if len(buf) != frame_bytes:
                raise ValueError(f"decoded frame has {len(buf)} bytes, expected {width}x{height}x3")
            frames.append(np.frombuffer(buf, dtype=np.uint8).reshape(height, width, 3))
    except NeuralRenderError:
        raise
    except Exception as err:  # imageio-ffmpeg raises OSError/RuntimeError/KeyError etc. for bad files
        reason = str(err).split("\n", 1)[0]
        raise NeuralRenderError(f"not a readable video: {reason}", path) from err
    finally:
        if reader is not None:
            reader.close()
    if not frames:
        raise NeuralRenderError("video has no frames", path)
    fps = meta.get("fps")
    fps = float(fps) if isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0 else float(default_fps)
    return np.stack(frames), fps


def _even_padded(frames: np.ndarray) -> np.ndarray:
    """Pad (T, H, W, 3) to even H and W by repeating the last row / column (needed by yuv420p)."""
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    if not (pad_h or pad_w):
        return frames
    return np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float = DEFAULT_FPS, lossless: bool = False) -> None:
    """Write (T, H, W, 3) uint8 sRGB frames to an H.264 ``.mp4`` atomically (see module doc for the two encodings).

    fps: frames per second (> 0). Lossy output of odd-sized frames is padded to even size by edge replication.
    """
    import imageio_ffmpeg

    if hasattr(frames, "detach"):
        frames = frames.detach().cpu().numpy()
    frames = np.asarray(frames)
    if Path(path).suffix.lower() != ".mp4":
        raise NeuralRenderError("write_video writes .mp4 files", path)
    if frames.ndim != 4 or frames.shape[3] != 3 or frames.shape[0] < 1 or min(frames.shape[1:3]) < 1:
        raise NeuralRenderError(f"video frames must be a non-empty (T, H, W, 3) array, got {frames.shape}", path)
    if frames.dtype != np.uint8:
        raise NeuralRenderError(f"video frames must be uint8, got {frames.dtype}", path)
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
        raise NeuralRenderError(f"fps must be a positive number, got {fps!r}", path)
    if lossless:
        codec, pix_fmt_out = "libx264rgb", "rgb24"
        params = ["-qp", "0", "-preset", "medium"]
    else:
        frames = _even_padded(frames)
        codec, pix_fmt_out = "libx264", "yuv420p"
        params = ["-crf", str(LOSSY_CRF), "-preset", "medium", "-movflags", "+faststart"]
    height, width = frames.shape[1:3]
    try:
        with atomic_path(path) as tmp:
            writer = imageio_ffmpeg.write_frames(tmp, (width, height), pix_fmt_in="rgb24", pix_fmt_out=pix_fmt_out,
                                                 fps=float(fps), quality=None, codec=codec, macro_block_size=1,
                                                 ffmpeg_log_level="error", output_params=params)
            try:
                writer.send(None)
                for frame in frames:
                    writer.send(np.ascontiguousarray(frame))
            finally:
                writer.close()
    except NeuralRenderError:
        raise
    except Exception as err:
        raise NeuralRenderError(f"could not encode video: {str(err).splitlines()[0] if str(err) else err!r}",
                                path) from err
