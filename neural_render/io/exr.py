"""OpenEXR reading and writing (OpenEXR 3.x python API, ``OpenEXR.File``).

Two traps of the binding that this module hides:
* a non-contiguous numpy view (e.g. ``image[..., 0]``) is written with the wrong pixels, so every channel
  goes through ``np.ascontiguousarray``;
* ``OpenEXR.File(header, channels)`` replaces the arrays of the ``channels`` dict it is given by
  ``OpenEXR.Channel`` objects, so it always gets a private dict.

Per-frame clip EXRs hold the RGB and G-buffer passes of one frame as channels ``"<pass>.<suffix>"``
(see :data:`GBUFFER_CHANNELS`), e.g. ``rgb.R``, ``normal.X``, ``depth.Z``, ``mask.Y``.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from pathlib import Path

import numpy as np

from neural_render.errors import NeuralRenderError
from neural_render.io.atomic import atomic_path

#: Channel suffixes of each pass stored in a frame EXR (rgb: linear HDR radiance; the rest: see types/gbuffer.py).
GBUFFER_CHANNELS: dict[str, tuple[str, ...]] = {
    "rgb": ("R", "G", "B"),
    "basecolor": ("R", "G", "B"),
    "normal": ("X", "Y", "Z"),
    "depth": ("Z",),
    "roughness": ("Y",),
    "metallic": ("Y",),
    "mask": ("Y",),
}

#: Accepted ``compression`` names. zip/zips/rle/piz/zstd are lossless; pxr24 is lossy for float32; b44/dwa are lossy.
COMPRESSIONS = ("none", "rle", "zips", "zip", "piz", "pxr24", "b44", "b44a", "dwaa", "dwab", "zstd")

#: compression of :func:`write_frame_exr` when none is given; :func:`exr_compression` changes it for a block
_FRAME_COMPRESSION: contextvars.ContextVar[str] = contextvars.ContextVar("frame_exr_compression", default="zip")


@contextlib.contextmanager
def exr_compression(name: str):
    """Within the block (this thread / context), frame EXRs written without an explicit ``compression`` use ``name``
    (e.g. "rle": lossless, ~4x faster to write than "zip" for G-buffers, files ~15% larger). Lossless names keep the
    pixels bit-exact."""
    if str(name).lower() not in COMPRESSIONS:
        raise NeuralRenderError(f"unknown EXR compression {name!r}; choose one of {', '.join(COMPRESSIONS)}")
    token = _FRAME_COMPRESSION.set(str(name).lower())
    try:
        yield
    finally:
        _FRAME_COMPRESSION.reset(token)


def _compression(name: str, path) -> object:
    import OpenEXR
    key = str(name).lower()
    if key not in COMPRESSIONS:
        raise NeuralRenderError(f"unknown EXR compression {name!r}; choose one of {', '.join(COMPRESSIONS)}", path)
    attr = "NO_COMPRESSION" if key == "none" else f"{key.upper()}_COMPRESSION"
    if not hasattr(OpenEXR, attr):
        raise NeuralRenderError(f"EXR compression {name!r} is not supported by this OpenEXR build", path)
    return getattr(OpenEXR, attr)


def write_exr(path: str | os.PathLike, channels: dict[str, np.ndarray], compression: str = "zip",
              half: bool = False) -> None:
    """Write a single-part scanline EXR atomically.

    channels: name -> (H, W) array of real numbers, all the same (H, W); stored as float32
              (float16 when ``half``; values outside float16 range become inf).
    compression: one of :data:`COMPRESSIONS` (default "zip", lossless).
    """
    import OpenEXR

    if not isinstance(channels, dict) or not channels:
        raise NeuralRenderError("write_exr needs a non-empty dict of channels", path)
    dtype = np.float16 if half else np.float32
    pixels: dict[str, np.ndarray] = {}
    shape = None
    for name, array in channels.items():
        if not isinstance(name, str) or not name:
            raise NeuralRenderError(f"EXR channel names must be non-empty strings, got {name!r}", path)
        if hasattr(array, "detach"):  # torch tensor
            array = array.detach().cpu().numpy()
        array = np.asarray(array)
        if array.ndim != 2 or array.shape[0] < 1 or array.shape[1] < 1:
            raise NeuralRenderError(f"EXR channel {name!r} must be a non-empty (H, W) array, got {array.shape}", path)
        if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)
                or array.dtype == np.bool_):
            raise NeuralRenderError(f"EXR channel {name!r} has non-numeric dtype {array.dtype}", path)
        if shape is None:
            shape = array.shape
        elif array.shape != shape:
            raise NeuralRenderError(f"EXR channel {name!r} is {array.shape} but others are {shape}", path)
        pixels[name] = np.ascontiguousarray(array, dtype=dtype)  # the binding mis-writes strided views
    header = {"compression": _compression(compression, path), "type": OpenEXR.scanlineimage}
    try:
        with atomic_path(path) as tmp:
            OpenEXR.File(header, dict(pixels)).write(tmp)
    except NeuralRenderError:
        raise
    except (OSError, RuntimeError, ValueError, TypeError) as err:
        raise NeuralRenderError(f"could not write EXR: {err}", path) from err


def read_exr(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read every channel of the first part of an EXR: name -> (H, W) float32 (half and uint converted).

    Missing, empty, truncated, corrupt or non-EXR files raise :class:`NeuralRenderError` naming ``path``.
    """
    import OpenEXR

    p = Path(path)
    if not p.is_file():
        raise NeuralRenderError("no such EXR file", path)
    if p.stat().st_size == 0:
        raise NeuralRenderError("EXR file is empty (0 bytes)", path)
    with open(p, "rb") as fh:
        magic = fh.read(4)
    if magic != b"\x76\x2f\x31\x01":
        raise NeuralRenderError("not an OpenEXR file (bad magic number)", path)
    try:
        exr = OpenEXR.File(os.fspath(p), separate_channels=True)
        raw = exr.channels()
        out: dict[str, np.ndarray] = {}
        for name, channel in raw.items():
            px = channel.pixels
            if not isinstance(px, np.ndarray) or px.ndim != 2:
                raise ValueError(f"channel {name!r} has no (H, W) pixel data")
            out[str(name)] = np.ascontiguousarray(px, dtype=np.float32)
    except NeuralRenderError:
        raise
    except Exception as err:  # the binding raises RuntimeError/ValueError/TypeError for damaged files
        raise NeuralRenderError(f"unreadable or truncated EXR: {err}", path) from err
    if not out:
        raise NeuralRenderError("EXR has no channels", path)
    shapes = {v.shape for v in out.values()}
    if len(shapes) != 1:
        raise NeuralRenderError(f"EXR channels have different sizes {sorted(shapes)} (subsampled channels "
                                "are not supported)", path)
    return out


def write_frame_exr(path: str | os.PathLike, passes: dict[str, np.ndarray], compression: str | None = None) -> None:
    """Write one frame's passes to an EXR: name -> (C, H, W) float32 with C = len(GBUFFER_CHANNELS[name]).

    Channels are named ``"<pass>.<suffix>"``; values are stored as float32 (bit-exact round trip).
    compression: default "zip", or what an enclosing :func:`exr_compression` block set.
    """
    if compression is None:
        compression = _FRAME_COMPRESSION.get()
    if not isinstance(passes, dict) or not passes:
        raise NeuralRenderError("write_frame_exr needs a non-empty dict of passes", path)
    channels: dict[str, np.ndarray] = {}
    for name, array in passes.items():
        if name not in GBUFFER_CHANNELS:
            raise NeuralRenderError(f"unknown frame pass {name!r}; known: {', '.join(GBUFFER_CHANNELS)}", path)
        if hasattr(array, "detach"):
            array = array.detach().cpu().numpy()
        array = np.asarray(array)
        suffixes = GBUFFER_CHANNELS[name]
        if array.ndim != 3 or array.shape[0] != len(suffixes):
            raise NeuralRenderError(f"pass {name!r} must be ({len(suffixes)}, H, W), got {array.shape}", path)
        for i, suffix in enumerate(suffixes):
            channels[f"{name}.{suffix}"] = array[i]
    write_exr(path, channels, compression=compression)


def read_frame_exr(path: str | os.PathLike, passes: list[str] | tuple[str, ...] | None = None
                   ) -> dict[str, np.ndarray]:
    """Read a frame EXR written by :func:`write_frame_exr`: pass name -> (C, H, W) float32.

    passes: which passes to return (default: every known pass present). A requested pass that is absent,
    or a pass with some but not all of its channels, raises :class:`NeuralRenderError`. Channels that are
    not ``"<known pass>.<suffix>"`` are ignored.
    """
    channels = read_exr(path)
    present = {name.split(".", 1)[0] for name in channels if "." in name}
    wanted = [n for n in GBUFFER_CHANNELS if n in present] if passes is None else list(passes)
    out: dict[str, np.ndarray] = {}
    for name in wanted:
        if name not in GBUFFER_CHANNELS:
            raise NeuralRenderError(f"unknown frame pass {name!r}; known: {', '.join(GBUFFER_CHANNELS)}", path)
        keys = [f"{name}.{s}" for s in GBUFFER_CHANNELS[name]]
        missing = [k for k in keys if k not in channels]
        if missing:
            what = "is missing channels " + ", ".join(missing) if len(missing) < len(keys) else "is not in the file"
            raise NeuralRenderError(f"frame pass {name!r} {what}", path)
        out[name] = np.stack([channels[k] for k in keys])
    if not out:
        raise NeuralRenderError("EXR holds no neural_render frame passes (channels named '<pass>.<suffix>')", path)
    return out
