"""8-bit display images (PNG, JPEG, ...) via imageio's pillow plugin: numpy (H, W, 3) uint8 sRGB."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from neural_render.errors import NeuralRenderError
from neural_render.io.atomic import atomic_path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image -> (H, W, 3) uint8. Alpha is dropped, gray is repeated to RGB, 16-bit is reduced to 8-bit.

    Missing, empty, corrupt or non-image files raise :class:`NeuralRenderError`.
    """
    import imageio.v3 as iio

    p = Path(path)
    if not p.is_file():
        raise NeuralRenderError("no such image file", path)
    if p.stat().st_size == 0:
        raise NeuralRenderError("image file is empty (0 bytes)", path)
    try:
        image = np.asarray(iio.imread(os.fspath(p), index=0, plugin="pillow"))
    except Exception as err:  # imageio/pillow raise many types for bad files
        raise NeuralRenderError(f"unreadable image: {err}", path) from err
    if image.ndim == 3 and image.shape[2] in (2, 4):   # gray+alpha or RGBA
        image = image[..., :-1]
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise NeuralRenderError(f"unsupported image layout {image.shape}", path)
    if image.dtype == np.uint16:
        image = ((image.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    elif image.dtype == np.bool_:
        image = image.astype(np.uint8) * 255
    elif image.dtype != np.uint8:
        raise NeuralRenderError(f"unsupported image sample type {image.dtype} (expected 8 or 16 bit)", path)
    return np.ascontiguousarray(image)


def write_image(path: str | os.PathLike, image: np.ndarray, owner: str | None = None) -> None:
    """Write (H, W, 3) or (H, W) uint8 atomically; the format follows the suffix (.png lossless, .jpg quality 95).

    owner: the command writing it, stored in a PNG text chunk (io/output.py recognises it; ignored for JPEG).
    """
    import imageio.v3 as iio

    suffix = Path(path).suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise NeuralRenderError(f"unsupported image format {suffix or '(no suffix)'!r}; "
                                f"use one of {', '.join(IMAGE_SUFFIXES)}", path)
    if hasattr(image, "detach"):
        image = image.detach().cpu().numpy()
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise NeuralRenderError(f"image must be uint8, got {image.dtype} (convert with tonemap.display)", path)
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)) or min(image.shape[:2]) < 1:
        raise NeuralRenderError(f"image must be (H, W, 3) or (H, W), got {image.shape}", path)
    kwargs = {"quality": 95} if suffix in (".jpg", ".jpeg") else {}
    if owner is not None and suffix == ".png":
        from PIL.PngImagePlugin import PngInfo

        from neural_render.io.output import PNG_TEXT_KEY, marker

        kwargs["pnginfo"] = PngInfo()
        kwargs["pnginfo"].add_text(PNG_TEXT_KEY, marker(owner))
    try:
        with atomic_path(path) as tmp:
            iio.imwrite(tmp, np.ascontiguousarray(image), plugin="pillow", extension=suffix, **kwargs)
    except NeuralRenderError:
        raise
    except Exception as err:
        raise NeuralRenderError(f"could not write image: {err}", path) from err
