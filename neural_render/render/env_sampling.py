"""Luminance importance sampling of an equirectangular env map (Monte-Carlo references, data engine).

The env is treated as piecewise constant over its lat-long texels. Texel (i, j) is chosen with probability
P_ij proportional to (luminance_ij + floor) * Omega_i, where Omega_i is the texel's exact solid angle (so in uv
space the density is proportional to luminance * sin(theta)); inside the texel the direction is uniform in solid
angle (uniform in phi and cos(theta)). The pdf per steradian is therefore P_ij / Omega_i, constant per texel and
never zero thanks to the floor (a fraction of the mean luminance). ``sample_env`` returns the texel radiance, the
exact integrand of that piecewise-constant env, so ``radiance / pdf`` is nearly constant for bright texels.

Texels are picked with a marginal CDF over rows and a conditional CDF over columns per row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from neural_render.errors import NeuralRenderError
from neural_render.render.envmap import dir_to_uv

#: Rec. 709 / sRGB luminance weights.
LUMINANCE_WEIGHTS = (0.2126, 0.7152, 0.0722)


@dataclass
class EnvSampler:
    """Sampling tables for one env image (plain tensors, CPU or the image's device).

    image:           (3, H, W) float32 radiance the tables were built from.
    pixel_pdf:       (H, W) float64 pdf per steradian of each texel.
    marginal_cdf:    (H + 1,) float64 CDF over rows, 0 ... 1.
    conditional_cdf: (H, W + 1) float64 CDF over columns within each row, 0 ... 1.
    cos_edges:       (H + 1,) float64 cos(theta) at the row boundaries (1 ... -1).
    """

    image: Tensor
    pixel_pdf: Tensor
    marginal_cdf: Tensor
    conditional_cdf: Tensor
    cos_edges: Tensor

    @property
    def height(self) -> int:
        return self.image.shape[1]

    @property
    def width(self) -> int:
        return self.image.shape[2]


def luminance(rgb: Tensor, dim: int = 0) -> Tensor:
    """Rec. 709 luminance along ``dim`` (size 3) of a linear-RGB tensor."""
    weights = torch.tensor(LUMINANCE_WEIGHTS, dtype=rgb.dtype, device=rgb.device)
    return torch.tensordot(rgb.movedim(dim, -1), weights, dims=1)


def build_env_sampler(image: Tensor, relative_floor: float = 1e-3) -> EnvSampler:
    """Tables for importance sampling ``image`` (3, H, W) by luminance.

    ``relative_floor`` times the mean (solid-angle weighted) luminance, plus 1e-12, is added to every texel's
    luminance so no direction has pdf 0 (an all-black env becomes uniform sampling).
    """
    if not isinstance(image, Tensor) or image.ndim != 3 or image.shape[0] != 3 or min(image.shape[1:]) < 1:
        raise NeuralRenderError(f"build_env_sampler: image must be (3, H, W), got {getattr(image, 'shape', image)}")
    if not bool(torch.isfinite(image).all()):
        raise NeuralRenderError("build_env_sampler: env image contains NaN or inf")
    h, w = image.shape[1:]
    device = image.device
    lum = luminance(image.to(torch.float64)).clamp_min(0.0)  # (H, W)
    cos_edges = torch.cos(torch.arange(h + 1, dtype=torch.float64, device=device) * (math.pi / h))
    omega = ((cos_edges[:-1] - cos_edges[1:]) * (2.0 * math.pi / w))[:, None]  # (H, 1) steradians per texel
    mean_lum = float((lum * omega).sum()) / (4.0 * math.pi)
    lum = lum + (relative_floor * mean_lum + 1e-12)
    mass = lum * omega
    prob = mass / mass.sum()  # (H, W) probability of each texel
    row_prob = prob.sum(dim=1)
    zero = torch.zeros(1, dtype=torch.float64, device=device)
    marginal = torch.cat([zero, torch.cumsum(row_prob, 0)])
    marginal = marginal / marginal[-1]
    conditional = torch.cat([zero.expand(h, 1), torch.cumsum(prob, 1)], dim=1)
    conditional = conditional / conditional[:, -1:]
    return EnvSampler(image=image.to(torch.float32), pixel_pdf=prob / omega, marginal_cdf=marginal,
                      conditional_cdf=conditional, cos_edges=cos_edges)


def _texel_of(sampler: EnvSampler, dirs: Tensor) -> tuple[Tensor, Tensor]:
    uv = dir_to_uv(dirs.to(device=sampler.pixel_pdf.device, dtype=torch.float64))
    col = torch.floor(uv[..., 0] * sampler.width).long().clamp(0, sampler.width - 1)
    row = torch.floor(uv[..., 1] * sampler.height).long().clamp(0, sampler.height - 1)
    return row, col


def sample_env(sampler: EnvSampler, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """Draw ``n`` directions: (dirs (n, 3) unit float32, pdf (n,) per steradian float32, radiance (n, 3) float32).

    ``radiance`` is the chosen texel's value; ``pdf`` equals :func:`env_pdf` at the returned directions (up to
    texel-boundary float rounding). Deterministic for a given generator state; draws 4 n uniforms from it.
    """
    if n < 0:
        raise NeuralRenderError(f"sample_env: sample count must be >= 0, got {n}")
    h, w = sampler.height, sampler.width
    device = sampler.pixel_pdf.device
    r = torch.rand(4, n, generator=generator, dtype=torch.float64, device=generator.device).to(device)
    row = torch.searchsorted(sampler.marginal_cdf[1:].contiguous(), r[0], right=True).clamp(0, h - 1)
    # conditional search in one sorted 1D array: row i's CDF values shifted by i lie in (i, i + 1]
    offsets = torch.arange(h, dtype=torch.float64, device=device)[:, None]
    flat = (sampler.conditional_cdf[:, 1:] + offsets).reshape(-1)
    flat_index = torch.searchsorted(flat, row.to(torch.float64) + r[1], right=True)
    col = (flat_index - row * w).clamp(0, w - 1)
    phi = (col.to(torch.float64) + r[2]) * (2.0 * math.pi / w)
    c0, c1 = sampler.cos_edges[row], sampler.cos_edges[row + 1]
    cos_t = c0 + r[3] * (c1 - c0)
    sin_t = torch.sqrt((1.0 - cos_t * cos_t).clamp_min(0.0))
    dirs = torch.stack([torch.sin(phi) * sin_t, cos_t, -torch.cos(phi) * sin_t], dim=-1)
    pdf = sampler.pixel_pdf[row, col]
    radiance = sampler.image[:, row, col].transpose(0, 1)
    return dirs.to(torch.float32), pdf.to(torch.float32), radiance.contiguous()


def env_pdf(sampler: EnvSampler, dirs: Tensor) -> Tensor:
    """pdf per steradian (...,) float32 of :func:`sample_env` at directions (..., 3)."""
    if not isinstance(dirs, Tensor) or dirs.ndim < 1 or dirs.shape[-1] != 3:
        raise NeuralRenderError(f"env_pdf: directions must be (..., 3), got {getattr(dirs, 'shape', dirs)}")
    row, col = _texel_of(sampler, dirs)
    return sampler.pixel_pdf[row, col].to(torch.float32)


def env_radiance(sampler: EnvSampler, dirs: Tensor) -> Tensor:
    """Piecewise-constant (texel) radiance (..., 3) at directions (..., 3): the integrand ``sample_env`` uses."""
    row, col = _texel_of(sampler, dirs)
    return sampler.image[:, row, col].movedim(0, -1)
