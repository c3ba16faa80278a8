"""Metallic-roughness materials as small texture arrays, and their exact per-pixel evaluation from uv.

A :class:`Material` holds three textures (a 1x1 texture is a constant):

* ``basecolor`` (3, h, w) float32 linear RGB in [0, 1]
* ``roughness`` (1, h, w) float32 perceptual GGX roughness in [0, 1] (alpha = roughness**2, as Mitsuba's principled)
* ``metallic``  (1, h, w) float32 in [0, 1]

Texture addressing is Mitsuba 3's ``bitmap`` texture (verified bit-exact in tests/raster/test_material.py): u runs
along columns (left -> right), v along rows with **row 0 at v = 0**, wrap mode "repeat". ``filter`` "nearest" picks
texel ``(floor(v * h) mod h, floor(u * w) mod w)`` so every G-buffer value is exactly one of the assigned texel
values; "bilinear" interpolates between texel centres (position ``uv * size - 0.5``) and matches Mitsuba to float
rounding (~1e-6). The same arrays are handed to Mitsuba (:func:`neural_render.synth.mitsuba_scene.material_bsdf`)
so the path tracer shades with exactly the values the G-buffer reports.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from neural_render.errors import NeuralRenderError

FILTERS = ("nearest", "bilinear")
#: Smallest normal float32; the LLVM backend of Dr.Jit flushes smaller magnitudes to zero before texturing.
_FLT_MIN = 1.1754943508222875e-38


def _texture(value, channels: int, what: str) -> Tensor:
    """A float, a (channels,) sequence or a (channels, h, w) tensor in [0, 1] -> (channels, h, w) float32."""
    x = torch.as_tensor(value, dtype=torch.float32)
    if x.ndim <= 1:
        x = x.reshape(-1)
        if x.numel() == 1:
            x = x.expand(channels)
        x = x.reshape(-1, 1, 1)
    if x.ndim != 3 or x.shape[0] != channels or x.shape[1] < 1 or x.shape[2] < 1:
        raise NeuralRenderError(f"material {what} must be a float, {channels} values or a ({channels}, h, w) "
                                f"texture, got shape {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()) or float(x.min()) < 0.0 or float(x.max()) > 1.0:
        raise NeuralRenderError(f"material {what} must lie in [0, 1]")
    return x.contiguous()


@dataclass
class Material:
    """Textures (see module doc); construct with floats, RGB triples or (C, h, w) tensors."""

    basecolor: Tensor
    roughness: Tensor
    metallic: Tensor
    filter: str = "nearest"
    name: str = ""

    def __post_init__(self):
        self.basecolor = _texture(self.basecolor, 3, "basecolor")
        self.roughness = _texture(self.roughness, 1, "roughness")
        self.metallic = _texture(self.metallic, 1, "metallic")
        if self.filter not in FILTERS:
            raise NeuralRenderError(f"material filter must be one of {FILTERS}, got {self.filter!r}")

    def textures(self) -> dict[str, Tensor]:
        return {"basecolor": self.basecolor, "roughness": self.roughness, "metallic": self.metallic}

    def evaluate(self, uv: Tensor, flush_denormals: bool = False) -> dict[str, Tensor]:
        """uv (N, 2) float32 -> {"basecolor": (N, 3), "roughness": (N, 1), "metallic": (N, 1)} float32."""
        return {name: sample_texture(tex, uv, self.filter, flush_denormals) for name, tex in self.textures().items()}

    def summary(self) -> dict:
        """JSON-ready description: constants as numbers, textures as their size and value range."""
        out = {"filter": self.filter, "name": self.name}
        for name, tex in self.textures().items():
            if tex.shape[1:] == (1, 1):
                values = [float(v) for v in tex.reshape(-1)]
                out[name] = values if len(values) > 1 else values[0]
            else:
                out[name] = {"texture": [int(tex.shape[1]), int(tex.shape[2])],
                             "min": float(tex.min()), "max": float(tex.max())}
        return out


def sample_texture(texture: Tensor, uv: Tensor, filter: str = "nearest", flush_denormals: bool = False) -> Tensor:
    """Mitsuba-``bitmap``-compatible lookup: texture (C, h, w), uv (N, 2) float32 -> (N, C) float32, wrap "repeat".

    ``flush_denormals`` mimics the flush-to-zero of Dr.Jit's LLVM backend (only matters for |u| < 1.2e-38).
    """
    if uv.ndim != 2 or uv.shape[1] != 2:
        raise NeuralRenderError(f"uv must be (N, 2), got {tuple(uv.shape)}")
    c, h, w = texture.shape
    uv = uv.to(torch.float32)
    if flush_denormals:
        uv = torch.where(uv.abs() < _FLT_MIN, torch.zeros_like(uv), uv)
    flat = texture.reshape(c, h * w).to(uv.device)
    if h == 1 and w == 1:
        return flat[:, 0].expand(uv.shape[0], c).clone()
    size = torch.tensor([w, h], dtype=torch.float32, device=uv.device)
    if filter == "nearest":
        idx = torch.floor(uv * size).to(torch.int64)
        x, y = torch.remainder(idx[:, 0], w), torch.remainder(idx[:, 1], h)
        return flat[:, y * w + x].T.contiguous()
    if filter != "bilinear":
        raise NeuralRenderError(f"texture filter must be one of {FILTERS}, got {filter!r}")
    pos = uv * size - 0.5
    base = torch.floor(pos)
    frac = pos - base
    x0, y0 = base[:, 0].to(torch.int64), base[:, 1].to(torch.int64)
    fx, fy = frac[:, 0:1], frac[:, 1:2]

    def texel(yy: Tensor, xx: Tensor) -> Tensor:
        return flat[:, torch.remainder(yy, h) * w + torch.remainder(xx, w)].T

    top = texel(y0, x0) * (1 - fx) + texel(y0, x0 + 1) * fx
    bottom = texel(y0 + 1, x0) * (1 - fx) + texel(y0 + 1, x0 + 1) * fx
    return (top * (1 - fy) + bottom * fy).contiguous()
