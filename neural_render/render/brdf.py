"""Metallic-roughness microfacet BRDF (UE4 / glTF style) and the split-sum DFG lookup table (pure functions).

Parameters
    basecolor (..., 3) linear in [0, 1]; roughness (..., 1) or (...,) perceptual in [0, 1] with GGX
    ``alpha = roughness ** 2``; metallic (..., 1) or (...,) in [0, 1].
    Specular reflectance at normal incidence ``F0 = lerp(0.04, basecolor, metallic)``.
BRDF (units 1/sr)
    ``f(v, l) = (1 - metallic) * basecolor / pi * w_d  +  D(h) G2(v, l) F(v.h) / (4 (n.v) (n.l))``
    with GGX ``D``, height-correlated Smith ``G2`` and Schlick ``F``. ``w_d = 1`` gives the plain sum;
    passing ``specular_albedo = F0 * A + B`` (see :func:`specular_albedo`) gives ``w_d = 1 - specular_albedo``,
    the energy-conserving mix used by :func:`neural_render.render.shade.shade` (a white dielectric under a
    uniform sky then reflects exactly the sky radiance).
Split-sum LUT
    :func:`brdf_lut` integrates ``A = int (1 - Fc) G_vis`` and ``B = int Fc G_vis`` (``Fc = (1 - v.h)^5``) by GGX
    importance sampling (visible normals) over a Hammersley sequence, so ``int f_spec cos = F0 * A + B``.
    Texel ``[i, j]`` sits at ``n_dot_v = i / (S - 1)``, ``roughness = j / (S - 1)`` (the grid includes both ends,
    so roughness 0 and 1 are exact; the ``n_dot_v = 0`` row is evaluated at ``n_dot_v = 1e-3``); lookups are
    bilinear, clamped to [0, 1].

Directions n, v, l are unit vectors (..., 3), all pointing away from the surface.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

DIELECTRIC_F0 = 0.04
#: Smallest GGX alpha used anywhere (alpha = 0 is a delta distribution; this keeps every term finite).
MIN_ALPHA = 1e-4
#: Smallest cosine used in denominators.
MIN_COSINE = 1e-4
#: n.v at which the first LUT row is evaluated (the n.v -> 0 limit is finite but the formula divides by n.v).
LUT_MIN_N_DOT_V = 1e-3


def _scalar_channel(x: Tensor | float, like: Tensor) -> Tensor:
    """Accept (...,), (..., 1) or a float and return (..., 1) broadcastable against ``like`` (..., 3)."""
    x = torch.as_tensor(x, dtype=like.dtype, device=like.device)
    if x.ndim == 0:
        return x.reshape(1)
    if x.shape[-1] != 1 or x.ndim < like.ndim:
        x = x[..., None]
    return x


def roughness_to_alpha(roughness: Tensor) -> Tensor:
    """Perceptual roughness -> GGX alpha = roughness^2, clamped to >= MIN_ALPHA."""
    return (roughness * roughness).clamp_min(MIN_ALPHA)


def ggx_ndf(n_dot_h: Tensor, alpha: Tensor | float) -> Tensor:
    """GGX / Trowbridge-Reitz normal distribution D(h) (1/sr), normalised so int D (n.h) dw = 1."""
    a2 = torch.as_tensor(alpha, dtype=n_dot_h.dtype, device=n_dot_h.device).clamp_min(MIN_ALPHA) ** 2
    c = n_dot_h.clamp(0.0, 1.0)
    denom = (1.0 - c) * (1.0 + c) + c * c * a2  # = c^2 (a2 - 1) + 1 without cancellation at c -> 1
    return torch.where(n_dot_h > 0, a2 / (math.pi * denom * denom), torch.zeros_like(denom))


def _lambda_root(n_dot_x: Tensor, alpha: Tensor | float) -> Tensor:
    """sqrt(alpha^2 + (1 - alpha^2) (n.x)^2), the common factor of the Smith terms."""
    a2 = torch.as_tensor(alpha, dtype=n_dot_x.dtype, device=n_dot_x.device).clamp_min(MIN_ALPHA) ** 2
    c = n_dot_x.clamp(0.0, 1.0)
    return torch.sqrt(a2 + (1.0 - a2) * c * c)


def smith_g1_ggx(n_dot_x: Tensor, alpha: Tensor | float) -> Tensor:
    """Smith masking G1 for GGX, in [0, 1] (0 for directions below the surface)."""
    c = n_dot_x.clamp(0.0, 1.0)
    return torch.where(n_dot_x > 0, 2.0 * c / (c + _lambda_root(n_dot_x, alpha)).clamp_min(MIN_COSINE),
                       torch.zeros_like(c))


def smith_g2(n_dot_v: Tensor, n_dot_l: Tensor, alpha: Tensor | float) -> Tensor:
    """Height-correlated Smith masking-shadowing G2 for GGX, in [0, 1]."""
    cv, cl = n_dot_v.clamp(0.0, 1.0), n_dot_l.clamp(0.0, 1.0)
    denom = cv * _lambda_root(n_dot_l, alpha) + cl * _lambda_root(n_dot_v, alpha)
    g = 2.0 * cv * cl / denom.clamp_min(MIN_COSINE * MIN_COSINE)
    return torch.where((n_dot_v > 0) & (n_dot_l > 0), g, torch.zeros_like(g))


def fresnel_schlick(f0: Tensor, v_dot_h: Tensor) -> Tensor:
    """Schlick Fresnel ``F0 + (1 - F0) (1 - v.h)^5``; ``f0`` (..., 3), ``v_dot_h`` (..., 1) or broadcastable."""
    fc = (1.0 - v_dot_h.clamp(0.0, 1.0)) ** 5
    return f0 + (1.0 - f0) * fc


def f0_from_metallic(basecolor: Tensor, metallic: Tensor | float) -> Tensor:
    """Specular reflectance at normal incidence (..., 3): 0.04 for dielectrics, basecolor for metals."""
    m = _scalar_channel(metallic, basecolor)
    return DIELECTRIC_F0 * (1.0 - m) + basecolor * m


def specular_albedo(f0: Tensor, lut_terms: tuple[Tensor, Tensor]) -> Tensor:
    """Directional albedo of the specular lobe ``F0 * A + B`` (..., 3); ``lut_terms`` = (A, B), each (...)."""
    a, b = lut_terms
    return f0 * a[..., None] + b[..., None]


def _dot(a: Tensor, b: Tensor) -> Tensor:
    return (a * b).sum(dim=-1, keepdim=True)


def eval_brdf(n: Tensor, v: Tensor, l: Tensor, basecolor: Tensor, roughness: Tensor | float,
              metallic: Tensor | float, specular_albedo: Tensor | None = None) -> Tensor:
    """BRDF value f(v, l) (..., 3) in 1/sr (no cosine factor); 0 when v or l is below the surface.

    n, v, l: (..., 3) unit; basecolor (..., 3); roughness, metallic (..., 1), (...,) or float.
    ``specular_albedo`` (..., 3) optional: when given, diffuse is weighted by ``1 - specular_albedo``
    (energy-conserving mix matching the split-sum shader); otherwise Lambert and GGX are simply added.
    """
    rough = _scalar_channel(roughness, basecolor)
    metal = _scalar_channel(metallic, basecolor)
    alpha = roughness_to_alpha(rough)
    n_dot_v, n_dot_l = _dot(n, v), _dot(n, l)
    h = torch.nn.functional.normalize(v + l, dim=-1, eps=1e-12)
    n_dot_h, v_dot_h = _dot(n, h), _dot(v, h)
    f0 = f0_from_metallic(basecolor, metal)
    d = ggx_ndf(n_dot_h, alpha)
    g = smith_g2(n_dot_v, n_dot_l, alpha)
    spec = d * g * fresnel_schlick(f0, v_dot_h) / (4.0 * n_dot_v.clamp_min(MIN_COSINE) * n_dot_l.clamp_min(MIN_COSINE))
    diffuse = basecolor * (1.0 - metal) / math.pi
    if specular_albedo is not None:
        diffuse = diffuse * (1.0 - specular_albedo)
    valid = (n_dot_v > 0) & (n_dot_l > 0)
    return torch.where(valid, diffuse + spec, torch.zeros_like(spec))


# ----------------------------------------------------------------------------------------- sampling helpers
def hammersley(num_samples: int, device=None, dtype=torch.float64) -> Tensor:
    """Hammersley point set (N, 2) in [0, 1)^2: (i / N, radical inverse base 2 of i)."""
    i = torch.arange(num_samples, device=device, dtype=torch.int64)
    bits = torch.zeros_like(i, dtype=dtype)
    scale = 0.5
    x = i.clone()
    for _ in range(32):
        bits = bits + (x & 1).to(dtype) * scale
        x = x >> 1
        scale *= 0.5
    return torch.stack([i.to(dtype) / num_samples, bits], dim=-1)


def sample_ggx_vndf(v_local: Tensor, alpha: Tensor, u: Tensor) -> Tensor:
    """Heitz 2018 visible-normal sample: v_local (..., 3) with v.z > 0, alpha (...,), u (..., 2) -> h (..., 3).

    The reflected direction ``l = 2 (v.h) h - v`` then has pdf ``G1(v) D(h) / (4 n.v)``.
    """
    a = alpha.clamp_min(MIN_ALPHA)
    vh = torch.nn.functional.normalize(torch.stack([a * v_local[..., 0], a * v_local[..., 1], v_local[..., 2]], -1),
                                       dim=-1)
    len_sq = vh[..., 0] ** 2 + vh[..., 1] ** 2
    inv_len = torch.rsqrt(len_sq.clamp_min(1e-20))
    t1 = torch.where((len_sq > 1e-20)[..., None],
                     torch.stack([-vh[..., 1] * inv_len, vh[..., 0] * inv_len, torch.zeros_like(len_sq)], -1),
                     torch.tensor([1.0, 0.0, 0.0], dtype=vh.dtype, device=vh.device).expand_as(vh))
    t2 = torch.linalg.cross(vh, t1, dim=-1)
    r = torch.sqrt(u[..., 0])
    phi = 2.0 * math.pi * u[..., 1]
    p1, p2 = r * torch.cos(phi), r * torch.sin(phi)
    s = 0.5 * (1.0 + vh[..., 2])
    p2 = (1.0 - s) * torch.sqrt((1.0 - p1 * p1).clamp_min(0.0)) + s * p2
    p3 = torch.sqrt((1.0 - p1 * p1 - p2 * p2).clamp_min(0.0))
    nh = p1[..., None] * t1 + p2[..., None] * t2 + p3[..., None] * vh
    return torch.nn.functional.normalize(
        torch.stack([a * nh[..., 0], a * nh[..., 1], nh[..., 2].clamp_min(0.0)], -1), dim=-1)


# --------------------------------------------------------------------------------------------- split-sum LUT
def brdf_lut(size: int = 32, num_samples: int = 256, device=None) -> Tensor:
    """Split-sum DFG table (size, size, 2) float32: [..., 0] = scale A, [..., 1] = bias B.

    Indexed ``[n_dot_v, roughness]`` at ``i / (size - 1)`` (see module doc). Computed deterministically in float64
    by GGX importance sampling (visible normals, Heitz 2018) driven by ``num_samples`` Hammersley points; with the
    default 256 samples every entry is within 0.004 of a 16k-sample table.
    """
    dt = torch.float64
    if size < 2:
        raise ValueError(f"brdf_lut size must be >= 2, got {size}")
    coords = torch.arange(size, device=device, dtype=dt) / (size - 1)
    shape = (size, size, num_samples)
    n_dot_v = coords.clamp_min(LUT_MIN_N_DOT_V)[:, None, None].expand(shape)
    alpha = roughness_to_alpha(coords)[None, :, None].expand(shape)
    u = hammersley(num_samples, device=device, dtype=dt).expand(shape + (2,))
    v = torch.stack([torch.sqrt(1.0 - n_dot_v ** 2), torch.zeros_like(n_dot_v), n_dot_v], dim=-1)
    h = sample_ggx_vndf(v, alpha, u)
    v_dot_h = (v * h).sum(-1)
    n_dot_l = 2.0 * v_dot_h * h[..., 2] - n_dot_v          # l = reflect(-v, h)
    # f_spec cos / pdf with the VNDF pdf G1(v) D / (4 n.v) is F * G2(v, l) / G1(v); 0 when l is below the surface.
    g_vis = torch.where(n_dot_l > 0, smith_g2(n_dot_v, n_dot_l, alpha) / smith_g1_ggx(n_dot_v, alpha),
                        torch.zeros_like(n_dot_l))
    fc = (1.0 - v_dot_h.clamp(0.0, 1.0)) ** 5
    a = ((1.0 - fc) * g_vis).mean(-1)
    b = (fc * g_vis).mean(-1)
    return torch.stack([a, b], dim=-1).to(torch.float32)


def sample_brdf_lut(lut: Tensor, n_dot_v: Tensor, roughness: Tensor) -> tuple[Tensor, Tensor]:
    """Bilinear lookup of :func:`brdf_lut`: n_dot_v, roughness (...) -> (A, B), each (...).

    Differentiable w.r.t. both coordinates (piecewise linear).
    """
    n_dot_v, roughness = torch.broadcast_tensors(n_dot_v, roughness)
    size_v, size_r = lut.shape[0], lut.shape[1]
    lut = lut.to(n_dot_v)

    def axis(x: Tensor, size: int):
        pos = x.clamp(0.0, 1.0) * (size - 1)
        i0 = pos.detach().floor().clamp(max=max(size - 2, 0)).long()
        i1 = (i0 + 1).clamp(max=size - 1)
        return i0, i1, (pos - i0.to(pos.dtype))

    i0, i1, fi = axis(n_dot_v, size_v)
    j0, j1, fj = axis(roughness, size_r)
    fi, fj = fi[..., None], fj[..., None]
    top = lut[i0, j0] * (1.0 - fj) + lut[i0, j1] * fj
    bottom = lut[i1, j0] * (1.0 - fj) + lut[i1, j1] * fj
    out = top * (1.0 - fi) + bottom * fi
    return out[..., 0], out[..., 1]
