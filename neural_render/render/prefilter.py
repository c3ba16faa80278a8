"""GGX-prefiltered radiance mip chain for split-sum image-based lighting (Karis 2013), computed at runtime.

With Karis' assumption n = v = r, the prefiltered radiance for reflection direction r and GGX roughness alpha is
    P(r) = sum_l L(l) D(h) max(r . l, 0) dOmega_l / sum_l D(h) max(r . l, 0) dOmega_l,   h = normalize(r + l),
    D(h) = alpha^2 / (pi ((r . h)^2 (alpha^2 - 1) + 1)^2),   (r . h)^2 = (1 + r . l) / 2,
a deterministic quadrature over the texels of an area-downsampled copy of the env (2x the output resolution).
Level k of L levels has perceptual roughness k / (L - 1) and alpha = roughness^2 (floored at 1e-3); level 0 is
the unfiltered env. The BRDF half of the split sum lives in :mod:`neural_render.render.brdf`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from neural_render.errors import NeuralRenderError
from neural_render.render.envmap import equirect_directions, lookup, resample_equirect, solid_angles

ALPHA_FLOOR = 1e-3
#: Max elements of one (output texels x source texels) weight matrix (float32): ~32 MB each, a few alive at once.
CHUNK_ELEMENTS = 8 * 1024 * 1024


@dataclass
class PrefilteredEnv:
    """levels[k]: (3, h_k, w_k) float32 radiance prefiltered at roughness[k]; roughness: (L,) = linspace(0, 1, L)."""

    levels: list[Tensor]
    roughness: Tensor

    @property
    def num_levels(self) -> int:
        return len(self.levels)


def ggx_ndf_from_cos(cos_rl: Tensor, alpha: float) -> Tensor:
    """GGX D(h) (1/sr) with n = r, from cos(r, l) of the light direction (any shape)."""
    a2 = max(alpha, ALPHA_FLOOR) ** 2
    cos_h2 = (0.5 * (1.0 + cos_rl)).clamp(0.0, 1.0)  # (r . h)^2 for h = normalize(r + l)
    return a2 / (math.pi * (cos_h2 * (a2 - 1.0) + 1.0) ** 2)


def prefilter_level(source: Tensor, height: int, width: int, alpha: float) -> Tensor:
    """Prefilter ``source`` (3, Hs, Ws) into a (3, height, width) level for GGX ``alpha`` (chunked quadrature)."""
    hs, ws = source.shape[1:]
    src_dirs = equirect_directions(hs, ws, device=source.device).reshape(-1, 3)  # (S, 3)
    src_omega = solid_angles(hs, ws).to(source.device).expand(hs, ws).reshape(-1)  # (S,)
    src_rad = source.reshape(3, -1).transpose(0, 1)  # (S, 3)
    out_dirs = equirect_directions(height, width, device=source.device).reshape(-1, 3)  # (N, 3)
    chunk = max(1, CHUNK_ELEMENTS // src_dirs.shape[0])
    out = []
    for start in range(0, out_dirs.shape[0], chunk):
        cos_rl = out_dirs[start:start + chunk] @ src_dirs.T  # (c, S)
        weight = ggx_ndf_from_cos(cos_rl, alpha) * cos_rl.clamp_min(0.0) * src_omega
        out.append((weight @ src_rad) / weight.sum(dim=1, keepdim=True).clamp_min(1e-30))
    return torch.cat(out).transpose(0, 1).reshape(3, height, width).contiguous()


def level_shape(k: int, base_height: int, min_height: int = 8) -> tuple[int, int]:
    """(rows, cols) of level k: base_height x 2 base_height for k = 0, else max(base_height / 2^k, min_height)
    rows (never more than base_height) x twice that."""
    rows = base_height if k == 0 else min(max(base_height // (2 ** k), min_height), base_height)
    return rows, 2 * rows


def prefilter_ggx(image: Tensor, num_levels: int = 6, base_height: int = 64, min_height: int = 8) -> PrefilteredEnv:
    """Env radiance (3, H, W) -> :class:`PrefilteredEnv` with ``num_levels`` levels (deterministic).

    Level 0 is ``image`` area-downsampled (or bilinearly upsampled if smaller) to base_height x 2 base_height.
    Level k > 0 integrates an area-downsampled copy at twice its own resolution (capped at the input size).
    Memory stays below ~200 MB (chunks of the weight matrix). Gradients flow to ``image``.

    Texel values match Karis' importance-sampled GGX prefilter to ~1% (tests/render/test_prefilter.py); between
    texels the coarse rough levels are bilinear, so near a small bright sun a lookup at roughness ~0.6 can be
    ~10% off with the default 8-row minimum. Raise ``min_height`` (e.g. 16 or 32) when that matters; the cost
    grows with (rows of the level)^2 x (rows of its source)^2.
    """
    if not isinstance(image, Tensor) or image.ndim != 3 or image.shape[0] != 3:
        raise NeuralRenderError(f"prefilter_ggx: image must be (3, H, W), got {getattr(image, 'shape', image)}")
    if num_levels < 2 or base_height < 2 or min_height < 2:
        raise NeuralRenderError(f"prefilter_ggx: need num_levels, base_height and min_height >= 2, got "
                                f"{num_levels}, {base_height}, {min_height}")
    image = image.to(torch.float32)
    roughness = torch.linspace(0.0, 1.0, num_levels, dtype=torch.float32, device=image.device)
    levels = [resample_equirect(image, *level_shape(0, base_height, min_height))]
    for k in range(1, num_levels):
        rows, cols = level_shape(k, base_height, min_height)
        src_rows = min(2 * rows, image.shape[1])
        source = resample_equirect(image, src_rows, max(2, round(src_rows * image.shape[2] / image.shape[1])))
        alpha = float(roughness[k]) ** 2
        levels.append(prefilter_level(source, rows, cols, alpha))
    return PrefilteredEnv(levels=levels, roughness=roughness)


def sample_prefiltered(pref: PrefilteredEnv, dirs: Tensor, roughness: Tensor | float) -> Tensor:
    """Prefiltered radiance (..., 3) for reflection directions (..., 3) and perceptual roughness (...) in [0, 1].

    Bilinear lookup in the two levels around roughness * (L - 1), linearly blended; differentiable w.r.t.
    ``dirs``, ``roughness`` (inside (0, 1)) and the level images. ``roughness`` broadcasts against dirs[..., 0].
    """
    if not isinstance(dirs, Tensor) or dirs.ndim < 1 or dirs.shape[-1] != 3:
        raise NeuralRenderError(f"sample_prefiltered: directions must be (..., 3), got {getattr(dirs, 'shape', dirs)}")
    count = pref.num_levels
    rough = torch.as_tensor(roughness, dtype=dirs.dtype, device=dirs.device)
    try:
        rough = torch.broadcast_to(rough, dirs.shape[:-1])
    except RuntimeError as err:
        raise NeuralRenderError(f"sample_prefiltered: roughness {tuple(rough.shape)} does not broadcast to "
                                f"{tuple(dirs.shape[:-1])}") from err
    level_pos = rough.clamp(0.0, 1.0) * (count - 1)
    lower = torch.floor(level_pos).detach().long().clamp(0, count - 2)
    frac = (level_pos - lower.to(level_pos.dtype)).unsqueeze(-1)
    values = torch.stack([lookup(level, dirs) for level in pref.levels])  # (L, ..., 3)
    index = lower.unsqueeze(0).unsqueeze(-1).expand(1, *dirs.shape)
    low = torch.gather(values, 0, index)[0]
    high = torch.gather(values, 0, index + 1)[0]
    return (1.0 - frac) * low + frac * high
