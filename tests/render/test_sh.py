"""Order-2 spherical harmonics: basis, projection and irradiance (Ramamoorthi & Hanrahan 2001)."""

import math

import pytest
import torch

from neural_render.errors import NeuralRenderError
from neural_render.render.envmap import equirect_directions, solid_angles
from neural_render.render.sh import sh_basis, sh_irradiance, sh_pixel_integrals, sh_project


def _normals(n=300, seed=0):
    return torch.nn.functional.normalize(torch.randn(n, 3, generator=torch.Generator().manual_seed(seed)), dim=-1)


def _image_from(fn, h=32, w=64):
    """Env image (3, H, W) from a function of pixel-centre directions (H, W, 3) -> (H, W, 3)."""
    return fn(equirect_directions(h, w)).permute(2, 0, 1).contiguous()


def _brute_force_irradiance(image, normals):
    """sum over pixels of L max(n . l, 0) dOmega: (N, 3)."""
    h, w = image.shape[1:]
    dirs = equirect_directions(h, w).reshape(-1, 3)
    omega = solid_angles(h, w).expand(h, w).reshape(-1)
    return ((normals @ dirs.T).clamp_min(0.0) * omega) @ image.reshape(3, -1).T


def test_basis_is_orthonormal_on_the_sphere():
    h, w = 64, 128
    basis = sh_basis(equirect_directions(h, w).to(torch.float64))  # (H, W, 9)
    omega = solid_angles(h, w).to(torch.float64)  # (H, 1)
    gram = torch.einsum("hwi,hwj,h->ij", basis, basis, omega[:, 0])
    assert torch.allclose(gram, torch.eye(9, dtype=torch.float64), atol=2e-3)


def test_pixel_integrals_match_supersampling():
    h, w, k = 6, 10, 64  # k x k midpoint sub-samples per pixel, uniform in (cos theta, phi) so equal solid angle
    exact = sh_pixel_integrals(h, w)
    sub = (torch.arange(k, dtype=torch.float64) + 0.5) / k
    mu_edges = torch.cos(torch.arange(h + 1, dtype=torch.float64) * math.pi / h)
    mu = (mu_edges[:-1, None] + sub[None, :] * (mu_edges[1:, None] - mu_edges[:-1, None])).reshape(-1)
    phi = ((torch.arange(w, dtype=torch.float64)[:, None] + sub[None, :]) * (2 * math.pi / w)).reshape(-1)
    mm, pp = torch.meshgrid(mu, phi, indexing="ij")
    s = torch.sqrt(1 - mm * mm)
    dirs = torch.stack([s * torch.sin(pp), mm, -s * torch.cos(pp)], dim=-1)
    cell = (mu_edges[:-1] - mu_edges[1:]) * (2 * math.pi / w) / (k * k)  # solid angle of a sub-sample, per row
    numeric = sh_basis(dirs).reshape(h, k, w, k, 9).sum(dim=(1, 3)) * cell[:, None, None]
    assert torch.allclose(exact, numeric, atol=1e-4)
    totals = exact.sum(dim=(0, 1))
    assert math.isclose(float(totals[0]), 4 * math.pi * 0.5 / math.sqrt(math.pi), rel_tol=1e-9)
    assert torch.allclose(totals[1:], torch.zeros(8, dtype=torch.float64), atol=1e-9)


def test_constant_env_gives_pi_times_radiance():
    radiance = torch.tensor([0.5, 1.0, 3.0])
    coeffs = sh_project(radiance[:, None, None].expand(3, 16, 32).contiguous())
    assert torch.allclose(coeffs[1:], torch.zeros(8, 3), atol=1e-5)
    irradiance = sh_irradiance(coeffs, _normals())
    assert torch.allclose(irradiance, math.pi * radiance.expand(300, 3), rtol=1e-5)


def test_linear_env_matches_closed_form():
    # L(l) = a + b . l has bands 0 and 1 only: E(n) = pi a + (2 pi / 3) b . n exactly
    a, b = 2.0, torch.tensor([0.3, -0.8, 0.5])
    img = _image_from(lambda d: (a + d @ b)[..., None].expand(*d.shape[:-1], 3), 48, 96)
    n = _normals()
    expect = (math.pi * a + (2.0 * math.pi / 3.0) * (n @ b))[:, None].expand(-1, 3)
    assert torch.allclose(sh_irradiance(sh_project(img), n), expect, atol=2e-3)


def test_quadratic_env_matches_closed_form():
    # L(l) = (m . l)^2 = 1/3 + 2/3 P2(m . l) has bands 0 and 2 only: E(n) = pi/4 + pi/4 (m . n)^2
    m = torch.nn.functional.normalize(torch.tensor([0.2, 0.9, -0.4]), dim=0)
    img = _image_from(lambda d: ((d @ m) ** 2)[..., None].expand(*d.shape[:-1], 3), 48, 96)
    n = _normals()
    expect = (math.pi / 4.0 * (1.0 + (n @ m) ** 2))[:, None].expand(-1, 3)
    assert torch.allclose(sh_irradiance(sh_project(img), n), expect, atol=2e-3)


def _sky(d):
    """Smooth synthetic sky: horizon-to-zenith gradient, a ground/sky transition and a soft sun lobe."""
    y = d[..., 1:2]
    sun = torch.nn.functional.normalize(torch.tensor([0.4, 0.7, -0.3]), dim=0)
    sky = 0.3 + 0.5 * (0.5 + 0.5 * y) * torch.tensor([0.5, 0.7, 1.0]) + 0.2 * torch.sigmoid(8.0 * y)
    return sky + 10.0 * torch.exp(20.0 * (d @ sun - 1.0))[..., None] * torch.tensor([1.0, 0.9, 0.8])


def test_sky_irradiance_close_to_brute_force():
    # Order-2 SH drops bands >= 3 of the lighting; the clamped cosine attenuates them (A_4 = pi/24) so the
    # error on a smooth sky stays a few percent. Measured here: max error 2.6% of the peak irradiance and
    # 2.3% mean relative error (11% at the dimmest normals); tolerances 4% each.
    img = _image_from(_sky)
    n = _normals(500, seed=1)
    brute = _brute_force_irradiance(img, n)
    approx = sh_irradiance(sh_project(img), n)
    err = (approx - brute).abs()
    assert float(err.max() / brute.max()) < 0.04
    assert float((err / brute).mean()) < 0.04
    # the sun side really is brighter: the comparison is not between two near-constant fields
    assert float(brute.max() / brute.min()) > 3.0


def test_irradiance_is_linear_in_the_coefficients_and_batches():
    g = torch.Generator().manual_seed(3)
    c1, c2 = torch.randn(9, 3, generator=g), torch.randn(9, 3, generator=g)
    n = _normals(24).reshape(2, 3, 4, 3)
    assert sh_irradiance(c1, n).shape == (2, 3, 4, 3)
    assert torch.allclose(sh_irradiance(c1 + 2.0 * c2, n), sh_irradiance(c1, n) + 2.0 * sh_irradiance(c2, n),
                          atol=1e-5)


def test_bad_inputs_raise_project_error():
    with pytest.raises(NeuralRenderError):
        sh_project(torch.rand(4, 8, 16))
    with pytest.raises(NeuralRenderError):
        sh_irradiance(torch.rand(4, 3), _normals(2))
    with pytest.raises(NeuralRenderError):
        sh_basis(torch.rand(5, 2))
