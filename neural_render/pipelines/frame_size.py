"""Frame sizes of the video pipelines: the processing size (multiples of the model stride) and the resize to it.

Pure functions on the project layout (B, T, C, H, W); shared by the inverse and sim-to-real pipelines.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from neural_render.errors import NeuralRenderError

if TYPE_CHECKING:  # torch is imported by the functions that use it: parse_size_arg serves --help-fast CLI modules
    from torch import Tensor


def resize_video(x: Tensor, height: int, width: int) -> Tensor:
    """(B, T, C, h, w) -> (B, T, C, height, width): bilinear, antialiased when shrinking (kornia)."""
    b, t, c, h, w = x.shape
    if (h, w) == (height, width):
        return x
    from kornia.geometry.transform import resize

    y = resize(x.reshape(b * t, c, h, w), (height, width), interpolation="bilinear", align_corners=False,
               antialias=True)
    return y.reshape(b, t, c, height, width)


def processing_shape(height: int, width: int, stride: int, size: int | Sequence[int] | None = None) -> tuple[int, int]:
    """Processing (h, w), multiples of ``stride``: size None = the input size rounded; int = longer side; (h, w)."""
    if height < stride or width < stride:
        raise NeuralRenderError(f"frame size {width}x{height} is below the model stride {stride} "
                                f"(codec x backbone): nothing to process")

    def snap(v: float) -> int:
        return max(stride, round(v / stride) * stride)

    if size is None:
        return snap(height), snap(width)
    if isinstance(size, int):
        if size < stride:
            raise NeuralRenderError(f"processing size {size} is below the model stride {stride}")
        scale = size / max(height, width)
        return snap(height * scale), snap(width * scale)
    if len(size) != 2 or min(int(s) for s in size) < stride:
        raise NeuralRenderError(f"processing size must be an int or (h, w) >= the stride {stride}, got {size}")
    return snap(int(size[0])), snap(int(size[1]))


SIZE_HELP = "WxH or N (longer side)"


def parse_size_arg(text: str | None, option: str = "--size", minimum: int = 1) -> int | tuple[int, int] | None:
    """The one parser of every command's size option: 'N' -> N (the longer side), 'WxH' -> (h, w) (height first, the
    project's internal order), None -> None. Each value must be an integer >= ``minimum`` (NeuralRenderError
    otherwise, naming ``option``)."""
    if text is None:
        return None
    value = str(text).strip().lower()
    try:
        if "x" in value:
            w, h = (int(v) for v in value.split("x"))
            if min(w, h) >= minimum:
                return (h, w)
        elif int(value) >= minimum:
            return int(value)
    except ValueError:
        pass
    raise NeuralRenderError(f"{option} must be {SIZE_HELP}, integers >= {minimum}, e.g. 640x480 or 512; "
                            f"got {text!r}")


def format_size(size: int | Sequence[int] | None) -> str:
    """(h, w) -> 'WxH', N -> 'N (longer side)', None -> 'the input size' (messages)."""
    if size is None:
        return "the input size"
    if isinstance(size, int):
        return f"{size} (longer side)"
    h, w = (int(s) for s in size)
    return f"{w}x{h}"
