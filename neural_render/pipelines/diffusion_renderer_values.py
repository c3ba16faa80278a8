"""Frame sizes and value conventions of DiffusionRenderer checkpoints inside this toolkit's pipelines.

The toolkit's API is (B, T, C, H, W) linear float32 (types/gbuffer.py); a DiffusionRenderer model sees 8-bit-style
images in [0, 1] at a processing size whose sides are multiples of 64. Everything converting between the two is
here, used only inside :mod:`.diffusion_renderer_inverse` and :mod:`.diffusion_renderer_forward`:

* RGB video: display sRGB of clamp(linear, 0, 1) (the frames the reference reads are 8-bit sRGB / 255); the forward
  renderer's output is decoded back with the inverse curve (display-referred: values above 1 do not come back).
* G-buffers: the toolkit's DiffusionRenderer-style packing (:func:`neural_render.types.gbuffer.pack_pass` /
  ``unpack_pass``) mapped from [-1, 1] to [0, 1]: basecolor sRGB-encoded, normal ``n * 0.5 + 0.5`` of the unit
  camera-space normal (OpenGL axes, the axes of the env encodings' direction image), roughness / metallic repeated
  to 3 channels, depth ``depth / depth_scale`` repeated (relative: 1 = the farthest visible surface, 0 = no
  surface). ASSUMED, not documented by the reference's released code (its inference scripts only move 8-bit
  images around): that its basecolor images are sRGB-encoded, its normals camera-space OpenGL, and its depth a
  per-clip normalised depth. A model trained on another depth normalisation (e.g. inverse depth) sees a
  different depth image than it expects; change :func:`pass_to_model` / :func:`pass_from_model` if so.
* Processing size: without a size, the reference's own rule (its ``resize_upscale_without_padding``): scale the
  frame so that its SHORTER side is ``base`` (512), truncate, round each side up to a multiple of the stride (64);
  the aspect ratio is kept (a 16:9 video runs at 960x512, not squeezed to 512x512). With a size: the toolkit's
  rule (:func:`neural_render.pipelines.frame_size.processing_shape`: N = the longer side, or (h, w)), snapped to
  the stride. Outputs are resized back to the input size (bilinear, antialiased, kornia).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from neural_render.errors import NeuralRenderError
from neural_render.pipelines.frame_size import processing_shape as toolkit_processing_shape
from neural_render.pipelines.frame_size import resize_video
from neural_render.render.tonemap import linear_to_srgb, srgb_to_linear
from neural_render.types.gbuffer import pack_pass, unpack_pass


def processing_shape(height: int, width: int, stride: int, base: int,
                     size: int | Sequence[int] | None = None) -> tuple[int, int]:
    """Processing (h, w), multiples of ``stride``, for an input of (height, width) pixels (module doc)."""
    if height < 1 or width < 1:
        raise NeuralRenderError(f"frame size {width}x{height} has no pixels")
    if size is not None:  # a frame smaller than the stride is scaled up first (same aspect; the size is relative)
        k = -(-stride // min(height, width))
        return toolkit_processing_shape(height * k, width * k, stride, size)
    scale = float(base) / min(height, width)

    def up(v: float) -> int:
        return max(stride, -(-int(v) // stride) * stride)

    return up(height * scale), up(width * scale)


def video_to_model(rgb: Tensor, height: int, width: int) -> Tensor:
    """Linear video (B, T, 3, H, W) -> display sRGB in [0, 1] at (height, width)."""
    return resize_video(linear_to_srgb(rgb.float().clamp(0.0, 1.0)), height, width).clamp(0.0, 1.0)


def rgb_from_model(frames: Tensor, height: int, width: int) -> Tensor:
    """The forward renderer's frames (B, T, 3, h, w) in [0, 1] -> linear radiance (B, T, 3, height, width) in [0, 1]."""
    return srgb_to_linear(resize_video(frames.float(), height, width).clamp(0.0, 1.0))


def pass_to_model(name: str, x: Tensor, depth_scale: Tensor | float | None, height: int, width: int) -> Tensor:
    """One toolkit pass (B, T, C, H, W) -> the model's 3-channel image in [0, 1] at (height, width)."""
    packed = pack_pass(name, x.float(), depth_scale)
    return resize_video((packed + 1.0) * 0.5, height, width).clamp(0.0, 1.0)


def pass_from_model(name: str, frames: Tensor, height: int, width: int,
                    depth_scale: Tensor | float = 1.0) -> Tensor:
    """The inverse renderer's image (B, T, 3, h, w) in [0, 1] -> the toolkit pass at (height, width): basecolor
    linear, unit normals (a vector that decoded to zero faces the camera, +Z), depth relative x ``depth_scale``,
    scalars the channel mean."""
    packed = resize_video(frames.float(), height, width).clamp(0.0, 1.0) * 2.0 - 1.0
    x = unpack_pass(name, packed, depth_scale if name == "depth" else None)
    if name == "normal":
        facing = torch.tensor([0.0, 0.0, 1.0]).view(1, 1, 3, 1, 1).to(x)
        x = torch.where(x.abs().sum(dim=2, keepdim=True) > 0, x, facing)
    return x


def env_shape(proc: Sequence[int], native: int, env_resolution: Sequence[int], factor: int) -> tuple[int, int]:
    """(h, w) of the env encodings for frames processed at ``proc``: the reference's ``env_resolution`` (512x512) at
    its ``native`` 512-px frames, scaled with the shorter side otherwise; multiples of the VAE ``factor``."""
    k = min(int(proc[0]), int(proc[1])) / float(native)
    eh, ew = (int(v) for v in env_resolution)
    return max(2 * factor, round(eh * k / factor) * factor), max(factor, round(ew * k / factor) * factor)
