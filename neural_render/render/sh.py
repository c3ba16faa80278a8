"""Real spherical harmonics up to order 2 (9 coefficients) and irradiance (Ramamoorthi & Hanrahan 2001).

Basis order, written directly in world axes (x, y, z) of a unit direction:
    0: c0                  1: c1 y        2: c1 z        3: c1 x
    4: c2 x y              5: c2 y z      6: c20 (3 z^2 - 1)      7: c2 x z      8: c22 (x^2 - y^2)
with c0 = 1 / (2 sqrt(pi)), c1 = sqrt(3 / (4 pi)), c2 = sqrt(15 / pi) / 2, c20 = sqrt(5 / pi) / 4,
c22 = sqrt(15 / pi) / 4. It is orthonormal on the sphere; which axis plays "z" does not matter for irradiance
because the clamped-cosine kernel is zonal (convolution only scales each band l by A_l).

Irradiance E(n) = int L(l) max(n . l, 0) dl = sum_lm A_l L_lm Y_lm(n) with A_0 = pi, A_1 = 2 pi / 3, A_2 = pi / 4;
a Lambertian surface of albedo a then has outgoing radiance a E / pi. Truncating at order 2 keeps the irradiance
of natural skies within a few percent (R&H report errors below 3% on average and about 9% at most).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from neural_render.errors import NeuralRenderError

NUM_SH_COEFFS = 9
_C0 = 0.5 / math.sqrt(math.pi)
_C1 = math.sqrt(3.0 / (4.0 * math.pi))
_C2 = 0.5 * math.sqrt(15.0 / math.pi)
_C20 = 0.25 * math.sqrt(5.0 / math.pi)
_C22 = 0.25 * math.sqrt(15.0 / math.pi)
#: Clamped-cosine convolution factor per coefficient (band 0, 1, 1, 1, 2 x 5).
COSINE_LOBE = (math.pi,) + (2.0 * math.pi / 3.0,) * 3 + (math.pi / 4.0,) * 5


def sh_basis(dirs: Tensor) -> Tensor:
    """Unit directions (..., 3) -> real SH basis values (..., 9) in the order of the module docstring."""
    if not isinstance(dirs, Tensor) or dirs.ndim < 1 or dirs.shape[-1] != 3:
        raise NeuralRenderError(f"sh_basis: directions must be (..., 3), got {getattr(dirs, 'shape', type(dirs))}")
    x, y, z = dirs.unbind(-1)
    return torch.stack([
        torch.full_like(x, _C0),
        _C1 * y, _C1 * z, _C1 * x,
        _C2 * x * y, _C2 * y * z, _C20 * (3.0 * z * z - 1.0), _C2 * x * z, _C22 * (x * x - y * y),
    ], dim=-1)


def sh_pixel_integrals(height: int, width: int, dtype=torch.float64, device=None) -> Tensor:
    """(H, W, 9): exact integral of each basis function over each lat-long pixel, int_pixel Y_k(l) dl.

    Closed form in mu = cos(theta) and phi (every basis function is a polynomial in x, y, z), so projecting a
    piecewise-constant env is exact: a constant env has exactly zero coefficients beyond band 0.
    """
    mu = torch.cos(torch.arange(height + 1, dtype=torch.float64, device=device) * (math.pi / height))
    phi = torch.arange(width + 1, dtype=torch.float64, device=device) * (2.0 * math.pi / width)
    sin_mu = torch.sqrt((1.0 - mu * mu).clamp_min(0.0))

    def rows(f):  # int over the row of f(mu) d mu, mu decreasing with the row index
        v = f(mu)
        return v[:-1] - v[1:]

    def cols(f):
        v = f(phi)
        return v[1:] - v[:-1]

    t_1 = rows(lambda m: m)
    t_c = rows(lambda m: 0.5 * m * m)
    t_s = rows(lambda m: 0.5 * (m * sin_mu + torch.asin(m.clamp(-1.0, 1.0))))
    t_ss = rows(lambda m: m - m ** 3 / 3.0)
    t_cs = rows(lambda m: -(sin_mu ** 3) / 3.0)
    t_cc = rows(lambda m: m ** 3 / 3.0)
    p_1 = cols(lambda p: p)
    p_s = cols(lambda p: -torch.cos(p))
    p_c = cols(lambda p: torch.sin(p))
    p_ss = cols(lambda p: 0.5 * p - 0.25 * torch.sin(2.0 * p))
    p_cc = cols(lambda p: 0.5 * p + 0.25 * torch.sin(2.0 * p))
    p_sc = cols(lambda p: 0.5 * torch.sin(p) ** 2)

    def outer(t, p):
        return t[:, None] * p[None, :]

    # x = sin(t) sin(p), y = cos(t), z = -sin(t) cos(p), d(omega) = d mu d phi
    area, x, y, z = outer(t_1, p_1), outer(t_s, p_s), outer(t_c, p_1), -outer(t_s, p_c)
    xy, yz, xz = outer(t_cs, p_s), -outer(t_cs, p_c), -outer(t_ss, p_sc)
    xx, yy, zz = outer(t_ss, p_ss), outer(t_cc, p_1), outer(t_ss, p_cc)
    out = torch.stack([_C0 * area, _C1 * y, _C1 * z, _C1 * x, _C2 * xy, _C2 * yz, _C20 * (3.0 * zz - area),
                       _C2 * xz, _C22 * (xx - yy)], dim=-1)
    return out.to(dtype)


def sh_project(image: Tensor) -> Tensor:
    """Equirect radiance (3, H, W) -> SH radiance coefficients (9, 3): L_k = sum_pixels L int_pixel Y_k dl.

    The env is treated as piecewise constant over its pixels and each basis function is integrated exactly over
    each pixel (:func:`sh_pixel_integrals`), so a constant env projects exactly onto band 0.
    """
    if not isinstance(image, Tensor) or image.ndim != 3 or image.shape[0] != 3:
        raise NeuralRenderError(f"sh_project: image must be (3, H, W), got {getattr(image, 'shape', type(image))}")
    h, w = image.shape[1:]
    weights = sh_pixel_integrals(h, w, dtype=image.dtype, device=image.device)  # (H, W, 9)
    return torch.einsum("hwk,chw->kc", weights, image)


def sh_irradiance(coeffs: Tensor, normals: Tensor) -> Tensor:
    """SH radiance coefficients (9, 3) and unit normals (..., 3) -> irradiance (..., 3) in W/m^2-like units.

    E(n) = int L(l) max(n . l, 0) dl; constant radiance L gives exactly pi L. Values can dip slightly below zero
    for very peaky lighting (order-2 ringing); they are returned unclamped so the function stays linear.
    """
    if not isinstance(coeffs, Tensor) or coeffs.shape != (NUM_SH_COEFFS, 3):
        raise NeuralRenderError(f"sh_irradiance: coeffs must be (9, 3), got {getattr(coeffs, 'shape', type(coeffs))}")
    lobe = torch.tensor(COSINE_LOBE, dtype=coeffs.dtype, device=coeffs.device)
    return sh_basis(normals).to(coeffs.dtype) @ (coeffs * lobe[:, None])
