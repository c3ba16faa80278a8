"""G-buffer video container and its DiffusionRenderer-style packing.

Every pass is a float32 tensor (B, T, C, H, W) in linear units; any subset may be present.

=========  ==  ==========================================================================
pass       C   meaning
=========  ==  ==========================================================================
basecolor  3   linear albedo in [0, 1]
normal     3   unit camera-space normal, OpenGL axes (+X right, +Y up, +Z to viewer)
depth      1   camera-space planar depth ``-z_cam`` in scene units, >= 0 (0 = no surface)
roughness  1   perceptual GGX roughness in [0, 1] (alpha = roughness**2)
metallic   1   metalness in [0, 1]
mask       1   1 = valid surface / foreground, 0 = background (env visible)
=========  ==  ==========================================================================

Packing (for latent diffusion) turns each pass into a 3-channel image in [-1, 1]:
basecolor -> sRGB-encoded * 2 - 1 (VAEs were trained on display images); normal -> xyz as is;
depth -> clamp(depth / depth_scale, 0, 1) * 2 - 1 repeated to 3 channels, ``depth_scale`` per clip
(see :func:`depth_scale_of`, stored in meta.json); roughness, metallic, mask -> x * 2 - 1 repeated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
from torch import Tensor

from neural_render.errors import NeuralRenderError

PASS_CHANNELS = {"basecolor": 3, "normal": 3, "depth": 1, "roughness": 1, "metallic": 1, "mask": 1}
#: The passes an inverse renderer predicts (mask is derived, not predicted).
PREDICTED_PASSES = ("basecolor", "normal", "depth", "roughness", "metallic")
UNIT_NORMAL_TOLERANCE = 1e-3


def _srgb_encode(x: Tensor) -> Tensor:
    from neural_render.render.tonemap import linear_to_srgb
    return linear_to_srgb(x)


def _srgb_decode(x: Tensor) -> Tensor:
    from neural_render.render.tonemap import srgb_to_linear
    return srgb_to_linear(x)


def vector_length(x: Tensor, dim: int = 2) -> Tensor:
    """Euclidean length over a 3-channel ``dim`` (kept, size 1): sqrt(x0^2 + x1^2 + x2^2) elementwise. The same as
    ``x.norm(dim=dim, keepdim=True)`` to within 1 ulp and ~20x faster on CPU for (B, T, 3, H, W) tensors (torch's
    norm over a strided channel dim is a slow reduction: 0.3 s per 12 frames of 512x512)."""
    a, b, c = x.unbind(dim)
    return (a * a + b * b + c * c).sqrt().unsqueeze(dim)


def unit_vectors(x: Tensor, dim: int = 2, eps: float = 1e-12) -> Tensor:
    """``torch.nn.functional.normalize(x, dim=dim, eps=eps)`` for 3-channel vectors via :func:`vector_length`
    (zero vectors stay zero)."""
    return x / vector_length(x, dim).clamp_min(eps)


@dataclass
class GBuffer:
    """A batch of G-buffer videos; each field is None or (B, T, C, H, W) float32 (see module doc)."""

    basecolor: Tensor | None = None
    normal: Tensor | None = None
    depth: Tensor | None = None
    roughness: Tensor | None = None
    metallic: Tensor | None = None
    mask: Tensor | None = None

    # ------------------------------------------------------------------ access
    @property
    def passes(self) -> dict[str, Tensor]:
        """Present passes in canonical order."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(B, T, H, W) shared by all passes."""
        p = self.passes
        if not p:
            raise NeuralRenderError("G-buffer has no passes")
        x = next(iter(p.values()))
        return (x.shape[0], x.shape[1], x.shape[3], x.shape[4])

    def replace(self, **changes: Tensor | None) -> "GBuffer":
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        unknown = set(changes) - set(values)
        if unknown:
            raise NeuralRenderError(f"unknown G-buffer passes {sorted(unknown)}")
        values.update(changes)
        return GBuffer(**values)

    def map(self, fn) -> "GBuffer":
        """Apply ``fn`` to every present pass tensor (e.g. slicing frames, moving devices)."""
        return GBuffer(**{k: fn(v) for k, v in self.passes.items()})

    def frames(self, start: int, stop: int) -> "GBuffer":
        return self.map(lambda x: x[:, start:stop])

    # -------------------------------------------------------------- validation
    def validate(self, source: str | None = None) -> "GBuffer":
        """Check shapes, dtypes, ranges, finiteness and unit normals; raise NeuralRenderError naming ``source``."""
        passes = self.passes
        if not passes:
            raise NeuralRenderError("G-buffer has no passes", source)
        ref = None
        for name, x in passes.items():
            if not isinstance(x, Tensor):
                raise NeuralRenderError(f"pass {name!r} is {type(x).__name__}, expected a torch.Tensor", source)
            if x.ndim != 5 or x.shape[2] != PASS_CHANNELS[name]:
                raise NeuralRenderError(
                    f"pass {name!r} must be (B, T, {PASS_CHANNELS[name]}, H, W), got {tuple(x.shape)}", source)
            if x.dtype != torch.float32:
                raise NeuralRenderError(f"pass {name!r} must be float32, got {x.dtype}", source)
            dims = (x.shape[0], x.shape[1], x.shape[3], x.shape[4])
            if ref is None:
                ref = (name, dims)
            elif dims != ref[1]:
                raise NeuralRenderError(
                    f"pass {name!r} has (B, T, H, W) = {dims} but {ref[0]!r} has {ref[1]}", source)
            if x.numel() == 0:
                continue
            lo, hi = (float(v) for v in torch.aminmax(x))  # one pass; NaN propagates, inf is an extreme
            if not (math.isfinite(lo) and math.isfinite(hi)):
                raise NeuralRenderError(f"pass {name!r} contains NaN or inf", source)
            if name in ("basecolor", "roughness", "metallic", "mask"):
                if lo < 0.0 or hi > 1.0:
                    raise NeuralRenderError(f"pass {name!r} must lie in [0, 1], found [{lo:.4g}, {hi:.4g}]", source)
            if name == "depth" and lo < 0.0:
                raise NeuralRenderError("pass 'depth' must be >= 0 (0 marks no surface)", source)
        if self.normal is not None:
            length = vector_length(self.normal)
            valid = torch.ones_like(length, dtype=torch.bool) if self.mask is None else self.mask > 0.5
            err = ((length - 1.0).abs() * valid).amax()
            if float(err) > UNIT_NORMAL_TOLERANCE:
                raise NeuralRenderError(
                    f"pass 'normal' is not unit length on valid pixels (max | |n| - 1 | = {float(err):.4g})", source)
        return self

    # ----------------------------------------------------------------- packing
    def pack(self, name: str, depth_scale: Tensor | float | None = None) -> Tensor:
        """Pass ``name`` -> (B, T, 3, H, W) in [-1, 1]. Depth needs ``depth_scale`` (B,) or float."""
        return pack_pass(name, self._require(name), depth_scale)

    def _require(self, name: str) -> Tensor:
        if name not in PASS_CHANNELS:
            raise NeuralRenderError(f"unknown G-buffer pass {name!r}; known: {sorted(PASS_CHANNELS)}")
        x = getattr(self, name)
        if x is None:
            raise NeuralRenderError(f"G-buffer has no {name!r} pass")
        return x


def depth_scale_of(depth: Tensor, mask: Tensor | None = None) -> Tensor:
    """Per-clip depth normaliser (B,): the largest valid depth of each clip (1.0 where none is valid)."""
    valid = depth > 0 if mask is None else (mask > 0.5) & (depth > 0)
    scale = torch.where(valid, depth, torch.zeros_like(depth)).flatten(1).amax(dim=1)
    return torch.where(scale > 0, scale, torch.ones_like(scale))


def _per_clip(scale: Tensor | float, like: Tensor) -> Tensor:
    s = torch.as_tensor(scale, dtype=like.dtype, device=like.device)
    return s.reshape(-1, 1, 1, 1, 1) if s.ndim else s


def pack_pass(name: str, x: Tensor, depth_scale: Tensor | float | None = None) -> Tensor:
    """One pass (B, T, C, H, W) -> (B, T, 3, H, W) in [-1, 1] (see module doc)."""
    if name == "basecolor":
        y = _srgb_encode(x.clamp(0, 1))
    elif name == "normal":
        return x.clamp(-1, 1)
    elif name == "depth":
        if depth_scale is None:
            raise NeuralRenderError("packing depth needs depth_scale (see depth_scale_of)")
        y = (x / _per_clip(depth_scale, x)).clamp(0, 1).expand(-1, -1, 3, -1, -1)
    elif name in ("roughness", "metallic", "mask"):
        y = x.clamp(0, 1).expand(-1, -1, 3, -1, -1)
    else:
        raise NeuralRenderError(f"unknown G-buffer pass {name!r}")
    return y * 2.0 - 1.0


def unpack_pass(name: str, y: Tensor, depth_scale: Tensor | float | None = None) -> Tensor:
    """Inverse of :func:`pack_pass`: (B, T, 3, H, W) in [-1, 1] -> the pass in its own units.

    Scalars average the three channels; normals are re-normalised (zero vectors stay zero).
    """
    if y.ndim != 5 or y.shape[2] != 3:
        raise NeuralRenderError(f"packed pass must be (B, T, 3, H, W), got {tuple(y.shape)}")
    z = (y.clamp(-1, 1) + 1.0) * 0.5
    if name == "basecolor":
        return _srgb_decode(z)
    if name == "normal":
        return unit_vectors(y)
    scalar = z.mean(dim=2, keepdim=True)
    if name == "depth":
        if depth_scale is None:
            raise NeuralRenderError("unpacking depth needs depth_scale")
        return scalar * _per_clip(depth_scale, scalar)
    if name in ("roughness", "metallic", "mask"):
        return scalar
    raise NeuralRenderError(f"unknown G-buffer pass {name!r}")


def composite_nearest(*layers: GBuffer, return_index: bool = False):
    """Depth-composite G-buffers of the same size: per pixel, the valid layer with the smallest depth wins.

    Every layer needs ``depth`` and ``mask``; only passes present in every layer are kept. Where no layer is
    valid the first layer's values are kept (its mask is 0 there). With ``return_index`` also returns the
    winning layer index (B, T, 1, H, W) long.
    """
    if not layers:
        raise NeuralRenderError("composite_nearest needs at least one G-buffer")
    names = [n for n in PASS_CHANNELS if all(getattr(g, n) is not None for g in layers)]
    if "depth" not in names or "mask" not in names:
        raise NeuralRenderError("composite_nearest needs depth and mask in every layer")
    far = torch.finfo(torch.float32).max
    keyed = torch.stack([torch.where(g.mask > 0.5, g.depth, torch.full_like(g.depth, far)) for g in layers])
    winner = keyed.argmin(dim=0, keepdim=True)  # (1, B, T, 1, H, W)
    out = {}
    for name in names:
        stack = torch.stack([getattr(g, name) for g in layers])
        index = winner.expand(1, *stack.shape[1:])
        out[name] = torch.gather(stack, 0, index)[0]
    return (GBuffer(**out), winner[0]) if return_index else GBuffer(**out)
