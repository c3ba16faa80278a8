"""HDR images and environment maps: Radiance ``.hdr`` (RGBE, via OpenCV) and OpenEXR (R, G, B channels).

Images are numpy (H, W, 3) float32 linear RGB. RGBE stores a shared 8-bit exponent per pixel, so a
round trip through ``.hdr`` keeps each channel to about 1% of the pixel's largest channel; ``.exr`` is exact.
Environment maps are equirectangular (see :mod:`neural_render.types.envmap` for the convention).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from neural_render.errors import NeuralRenderError
from neural_render.io.atomic import atomic_path

HDR_SUFFIXES = (".hdr", ".exr")
#: Formats that cannot hold radiance above 1; load_envmap refuses them with a clear message.
LDR_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".tga", ".ppm")


def _suffix(path) -> str:
    return Path(path).suffix.lower()


def read_hdr(path: str | os.PathLike) -> np.ndarray:
    """Read a ``.hdr`` or ``.exr`` image -> (H, W, 3) float32 linear RGB.

    Missing files, garbage headers, truncated data and other formats raise :class:`NeuralRenderError`.
    """
    suffix = _suffix(path)
    p = Path(path)
    if suffix not in HDR_SUFFIXES:
        raise NeuralRenderError(f"unsupported HDR format {suffix or '(no suffix)'!r}; use .hdr or .exr", path)
    if not p.is_file():
        raise NeuralRenderError("no such HDR file", path)
    if suffix == ".exr":
        from neural_render.io.exr import read_exr
        channels = read_exr(path)
        missing = [c for c in "RGB" if c not in channels]
        if missing:
            raise NeuralRenderError(f"EXR has no {', '.join(missing)} channel(s) (found {sorted(channels)}); "
                                    "an HDR image needs R, G, B", path)
        return np.stack([channels[c] for c in "RGB"], axis=-1)

    import cv2
    with open(p, "rb") as fh:
        head = fh.read(10)
    if not (head.startswith(b"#?RADIANCE") or head.startswith(b"#?RGBE")):
        raise NeuralRenderError("not a Radiance .hdr file (missing '#?RADIANCE' header)", path)
    try:
        bgr = cv2.imread(os.fspath(p), cv2.IMREAD_ANYDEPTH | cv2.IMREAD_COLOR)
    except cv2.error as err:
        raise NeuralRenderError(f"unreadable Radiance .hdr file: {err}", path) from err
    if bgr is None:
        raise NeuralRenderError("unreadable Radiance .hdr file (bad header or truncated pixel data)", path)
    if bgr.dtype != np.float32 or bgr.ndim != 3 or bgr.shape[2] != 3:
        raise NeuralRenderError(f"Radiance .hdr decoded to {bgr.dtype} {bgr.shape}, expected float32 (H, W, 3)", path)
    return np.ascontiguousarray(bgr[..., ::-1])


def _check_image(image, path) -> np.ndarray:
    if hasattr(image, "detach"):
        image = image.detach().cpu().numpy()
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise NeuralRenderError(f"HDR image must be (H, W, 3), got {image.shape}", path)
    if not np.issubdtype(image.dtype, np.floating):
        raise NeuralRenderError(f"HDR image must be floating point, got {image.dtype}", path)
    return image.astype(np.float32, copy=False)


def write_hdr(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write (H, W, 3) float linear RGB to ``.hdr`` (RGBE, ~1% precision) or ``.exr`` (float32, exact), atomically."""
    suffix = _suffix(path)
    if suffix not in HDR_SUFFIXES:
        raise NeuralRenderError(f"unsupported HDR format {suffix or '(no suffix)'!r}; use .hdr or .exr", path)
    image = _check_image(image, path)
    if suffix == ".exr":
        from neural_render.io.exr import write_exr
        write_exr(path, {c: image[..., i] for i, c in enumerate("RGB")})
        return
    import cv2
    if not np.isfinite(image).all() or float(image.min()) < 0.0:
        raise NeuralRenderError("Radiance .hdr can only store finite non-negative values", path)
    bgr = np.ascontiguousarray(image[..., ::-1])
    try:
        with atomic_path(path) as tmp:
            if not cv2.imwrite(tmp, bgr):
                raise OSError("cv2.imwrite returned False")
    except (OSError, cv2.error) as err:
        raise NeuralRenderError(f"could not write Radiance .hdr: {err}", path) from err


def load_envmap(path: str | os.PathLike, name: str | None = None):
    """Read an equirectangular HDR env map -> :class:`neural_render.types.EnvMap` ((3, H, W) float32, identity
    rotation).

    LDR formats (.png, .jpg, ...) are refused: they clip the sun and sky and would light scenes wrongly.
    Values must be finite and non-negative, and the image exactly 2:1 (W == 2 H, the equirect layout): a cube-map
    cross, a mirror ball or a cropped panorama would otherwise be read as a stretched, wrong sky.
    ``name`` defaults to the file stem.
    """
    import torch

    from neural_render.types import EnvMap

    suffix = _suffix(path)
    if suffix in LDR_SUFFIXES:
        raise NeuralRenderError(f"not an HDR environment map: {suffix} is an 8-bit (LDR) format that clips "
                                "bright light; use a Radiance .hdr or OpenEXR .exr file", path)
    image = read_hdr(path)
    if not np.isfinite(image).all():
        raise NeuralRenderError("environment map contains NaN or inf", path)
    low = float(image.min())
    if low < 0.0:
        raise NeuralRenderError(f"environment map has negative radiance (min {low:.4g})", path)
    if image.shape[0] < 2 or image.shape[1] < 2:
        raise NeuralRenderError(f"environment map is too small: {image.shape[1]}x{image.shape[0]}", path)
    if image.shape[1] != 2 * image.shape[0]:
        h, w = image.shape[:2]
        raise NeuralRenderError(f"environment map is {w}x{h}, not 2:1: an equirectangular (lat-long) map must be "
                                f"exactly twice as wide as tall (e.g. {2 * h}x{h})", path)
    tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
    try:
        return EnvMap(tensor, torch.eye(3), Path(path).stem if name is None else name)
    except NeuralRenderError as err:
        raise NeuralRenderError(err.reason, path) from err


def _row_solid_angle_weights(height: int) -> np.ndarray:
    """Solid angle of each of ``height`` equirect rows per unit column width: cos(theta_top) - cos(theta_bottom)."""
    theta = np.linspace(0.0, math.pi, height + 1, dtype=np.float64)
    return np.cos(theta[:-1]) - np.cos(theta[1:])


def downsample_equirect(image: np.ndarray, height: int) -> np.ndarray:
    """Shrink an equirect image (H, W, 3) to (height, 2*height, 3) preserving energy.

    When ``H`` is a multiple of ``height`` and ``W`` of ``2*height``, each output pixel is the
    solid-angle-weighted mean of its block of input pixels, so the integral of radiance over the sphere
    (sum of value x pixel solid angle) is preserved exactly (up to float rounding). Otherwise falls back
    to ``cv2.INTER_AREA`` (plain area averaging, energy preserved only approximately).
    """
    if hasattr(image, "detach"):
        image = image.detach().cpu().numpy()
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise NeuralRenderError(f"equirect image must be (H, W, 3), got {image.shape}")
    if int(height) != height or height < 1:
        raise NeuralRenderError(f"target height must be a positive integer, got {height!r}")
    height = int(height)
    h, w = image.shape[:2]
    width = 2 * height
    if height > h:
        raise NeuralRenderError(f"downsample_equirect cannot enlarge: {h} rows -> {height}")
    if h % height == 0 and w % width == 0:
        fy, fx = h // height, w // width
        weights = _row_solid_angle_weights(h).reshape(height, fy)          # (height, fy)
        blocks = image.astype(np.float64).reshape(height, fy, width, fx, 3)  # row block, col block
        col_mean = blocks.mean(axis=3)                                      # equal solid angle per column
        out = (col_mean * weights[:, :, None, None]).sum(axis=1) / weights.sum(axis=1)[:, None, None]
        return out.astype(np.float32)
    import cv2
    return cv2.resize(image.astype(np.float32), (width, height), interpolation=cv2.INTER_AREA)
