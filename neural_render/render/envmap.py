"""Equirectangular environment maps: direction <-> uv, lookup, camera-space re-projection, encodings (pure functions;
:class:`~neural_render.types.envmap.EnvMap` is the plain data they compute on).

Convention (see :mod:`neural_render.types.envmap`; the direction mapping is Mitsuba 3's ``envmap``):
a unit direction d = (x, y, z) has
    u = atan2(x, -z) / (2 pi) wrapped into [0, 1)      v = acos(y) / pi in [0, 1]   (+Y up, v = 0 at the zenith)
and pixel (row i, col j) of an (H, W) image is centred at ((j + 0.5) / W, (i + 0.5) / H). Lookups are bilinear
between pixel centres, wrapping in u and clamped in v.

Mitsuba's texel placement differs in one detail: its ``envmap`` puts row i at v = i / (H - 1) (rows run pole to
pole) while columns sit at pixel centres like ours. :func:`mitsuba_compatible_image` turns an image into the bitmap
for which Mitsuba's ``envmap`` evaluates exactly our :func:`lookup` (tested in tests/render/test_envmap.py).

Camera-space encodings use the same layout in camera axes (OpenGL: +X right, +Y up, the camera looks along -Z), so
the camera's forward direction (-Z) sits at u = 0 (the left/right seam) and its back (+Z) at the image centre.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from neural_render.errors import NeuralRenderError
from neural_render.render.tonemap import env_ldr, env_log
from neural_render.types.envmap import EnvMap


def _check_image(image: Tensor, what: str = "env image") -> None:
    if not isinstance(image, Tensor) or image.ndim != 3 or image.shape[0] != 3 or min(image.shape[1:]) < 1:
        shape = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
        raise NeuralRenderError(f"{what} must be a (3, H, W) tensor, got {shape}")


def _check_dirs(dirs: Tensor, last: int = 3, what: str = "directions") -> None:
    if not isinstance(dirs, Tensor) or dirs.ndim < 1 or dirs.shape[-1] != last:
        shape = tuple(dirs.shape) if isinstance(dirs, Tensor) else type(dirs).__name__
        raise NeuralRenderError(f"{what} must have a last dimension of {last}, got {shape}")


def dir_to_uv(dirs: Tensor) -> Tensor:
    """Directions (..., 3) (any non-zero length) -> equirect uv (..., 2), u in [0, 1), v in [0, 1].

    Gradients are finite everywhere except exactly at the poles, where u is undefined (treated as u = 0).
    """
    _check_dirs(dirs)
    x, y, z = dirs.unbind(-1)
    rho2 = x * x + z * z
    off_pole = rho2 > 1e-30
    # atan2(x, -z) and atan2(rho, y) with the singular point (x = z = 0) replaced by a harmless constant
    u = torch.atan2(torch.where(off_pole, x, torch.zeros_like(x)), torch.where(off_pole, -z, torch.ones_like(z)))
    u = u / (2.0 * math.pi)
    u = u - torch.floor(u)
    u = torch.where(u >= 1.0, torch.zeros_like(u), u)  # floor rounding can leave exactly 1.0
    rho = torch.sqrt(torch.where(off_pole, rho2, torch.full_like(rho2, 1e-30)))
    v = torch.atan2(rho, y) / math.pi
    return torch.stack([u, v], dim=-1)


def uv_to_dir(uv: Tensor) -> Tensor:
    """Equirect uv (..., 2) -> unit directions (..., 3): (sin phi sin theta, cos theta, -cos phi sin theta)."""
    _check_dirs(uv, 2, "uv")
    phi = uv[..., 0] * (2.0 * math.pi)
    theta = uv[..., 1] * math.pi
    s = torch.sin(theta)
    return torch.stack([torch.sin(phi) * s, torch.cos(theta), -torch.cos(phi) * s], dim=-1)


def pixel_centre_uv(height: int, width: int, device=None, dtype=torch.float32) -> Tensor:
    """(H, W, 2) uv of every pixel centre: ((j + 0.5) / W, (i + 0.5) / H)."""
    v = (torch.arange(height, device=device, dtype=torch.float64) + 0.5) / height
    u = (torch.arange(width, device=device, dtype=torch.float64) + 0.5) / width
    vv, uu = torch.meshgrid(v, u, indexing="ij")
    return torch.stack([uu, vv], dim=-1).to(dtype)


def equirect_directions(height: int, width: int, device=None) -> Tensor:
    """(H, W, 3) float32 unit direction at each pixel centre."""
    return uv_to_dir(pixel_centre_uv(height, width, device, torch.float64)).to(torch.float32)


def solid_angles(height: int, width: int) -> Tensor:
    """(H, 1) float32 steradians of one pixel in each row (exact for the lat-long cell; rows sum to 4 pi)."""
    edges = torch.arange(height + 1, dtype=torch.float64) * (math.pi / height)
    band = torch.cos(edges[:-1]) - torch.cos(edges[1:])  # integral of sin(theta) over the row
    return (band * (2.0 * math.pi / width)).to(torch.float32)[:, None]


def lookup(image: Tensor, dirs: Tensor) -> Tensor:
    """Bilinear radiance lookup: image (3, H, W), directions (..., 3) -> (..., 3).

    Wraps in u, clamps in v; differentiable w.r.t. both ``image`` and ``dirs``. The result has the promoted dtype
    of the two inputs and lives on the image's device.
    """
    _check_image(image)
    _check_dirs(dirs)
    dtype = torch.promote_types(image.dtype, dirs.dtype)
    img = image.to(dtype)
    h, w = img.shape[1:]
    batch = dirs.shape[:-1]
    uv = dir_to_uv(dirs.to(device=img.device, dtype=dtype).reshape(-1, 3))
    padded = torch.cat([img[:, :, -1:], img, img[:, :, :1]], dim=2)  # (3, H, W + 2): one wrap column each side
    x = uv[:, 0] * w + 0.5  # pixel coordinate in the padded image (centre of padded column k at x = k)
    y = uv[:, 1] * h - 0.5
    gx = x / (w + 1) * 2.0 - 1.0
    gy = y / (h - 1) * 2.0 - 1.0 if h > 1 else torch.zeros_like(y)
    grid = torch.stack([gx, gy], dim=-1)[None, None]  # (1, 1, N, 2)
    out = F.grid_sample(padded[None], grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out[0, :, 0].transpose(0, 1).reshape(*batch, 3)


def env_lookup(env: EnvMap, directions: Tensor) -> Tensor:
    """World directions (..., 3) -> radiance (..., 3) of ``env`` with its rotation applied (bilinear :func:`lookup`
    of the image at R^T d)."""
    return lookup(env.image, directions @ env.rotation.to(directions))  # row-vector form of R^T d


def bake(env: EnvMap, height: int | None = None, width: int | None = None) -> EnvMap:
    """The rotated sky resampled into a new (3, height, width) image (default: the env's size) with identity
    rotation."""
    h = height or env.height
    w = width or env.width
    dirs = equirect_directions(h, w, device=env.image.device)  # (H, W, 3)
    return EnvMap(env_lookup(env, dirs).permute(2, 0, 1).contiguous(), torch.eye(3), env.name)


def resample_equirect(image: Tensor, height: int, width: int) -> Tensor:
    """(3, H, W) -> (3, height, width): area average when shrinking both axes, else bilinear :func:`lookup`."""
    _check_image(image)
    if height < 1 or width < 1:
        raise NeuralRenderError(f"resample size must be positive, got {height}x{width}")
    h, w = image.shape[1:]
    if (height, width) == (h, w):
        return image
    if height <= h and width <= w:
        return F.interpolate(image[None], size=(height, width), mode="area")[0]
    dirs = equirect_directions(height, width, device=image.device)
    return lookup(image, dirs).permute(2, 0, 1).contiguous()


def mitsuba_compatible_image(image: Tensor) -> Tensor:
    """(3, H, W) -> (3, 2H + 1, W) bitmap whose Mitsuba ``envmap`` evaluates exactly like :func:`lookup` on ``image``.

    Mitsuba places row r of an R-row bitmap at v = r / (R - 1). With R = 2H + 1 its rows land on our pole
    (v = 0), each of our row centres (odd r) and the midpoints between them (even r), so its bilinear interpolation
    reproduces ours everywhere (our lookup is constant in v above the first and below the last row centre).
    Feed it as ``mi.Bitmap(result.permute(1, 2, 0).numpy())``.
    """
    _check_image(image)
    rows = [image[:, :1]]
    for i in range(image.shape[1]):
        if i > 0:
            rows.append(0.5 * (image[:, i - 1:i] + image[:, i:i + 1]))
        rows.append(image[:, i:i + 1])
    rows.append(image[:, -1:])
    return torch.cat(rows, dim=1)


def camera_space_directions(height: int, width: int, device=None) -> Tensor:
    """(3, H, W) unit camera-space direction per encoding pixel (OpenGL camera axes).

    The equirect layout turned by 180 degrees about +Y, so the camera's forward direction (-Z) sits at the
    centre of the encoding (u = 0.5, on the horizon row) and its back on the left/right seam: the visible
    part of the sky lines up with the middle of the video frame instead of being split across the seam.
    """
    d = equirect_directions(height, width, device=device)
    flip = torch.tensor([-1.0, 1.0, -1.0], device=d.device, dtype=d.dtype)
    return (d * flip).permute(2, 0, 1).contiguous()


def _check_poses(camera_to_world: Tensor) -> None:
    if not isinstance(camera_to_world, Tensor) or camera_to_world.ndim != 4 or camera_to_world.shape[-2:] != (4, 4):
        shape = tuple(camera_to_world.shape) if isinstance(camera_to_world, Tensor) else type(camera_to_world).__name__
        raise NeuralRenderError(f"camera_to_world must be (B, T, 4, 4), got {shape}")


def camera_space_env(env: EnvMap, camera_to_world: Tensor, height: int, width: int) -> Tensor:
    """The env seen from each frame's camera: (B, T, 3, H, W) linear radiance.

    Pixel (i, j) holds the radiance arriving from camera-space direction d_cam = camera_space_directions()[:, i, j]
    (forward at the centre), i.e. from world direction R_c2w d_cam, looked up through ``env`` (its rotation included).
    An env image larger than (height, width) is first area-averaged down to at most that size, so a small bright sun is
    box-filtered instead of point-sampled: its energy in the encoding stays put as the camera turns (no flicker).
    """
    _check_poses(camera_to_world)
    if height < 1 or width < 1:
        raise NeuralRenderError(f"encoding size must be positive, got {height}x{width}")
    source = env
    small_h, small_w = min(env.height, height), min(env.width, width)
    if (small_h, small_w) != (env.height, env.width):
        source = EnvMap(resample_equirect(env.image, small_h, small_w), env.rotation, env.name)
    device = env.image.device
    rot = camera_to_world[..., :3, :3].to(device=device, dtype=torch.float32)  # (B, T, 3, 3)
    d_cam = camera_space_directions(height, width, device=device).permute(1, 2, 0)  # (H, W, 3)
    d_world = torch.einsum("btij,hwj->bthwi", rot, d_cam)
    radiance = env_lookup(source, d_world)  # (B, T, H, W, 3)
    return radiance.permute(0, 1, 4, 2, 3).contiguous()


def env_encodings(env: EnvMap, camera_to_world: Tensor, height: int, width: int) -> dict[str, Tensor]:
    """DiffusionRenderer's per-frame env condition, each (B, T, 3, H, W) float32.

    ``ldr`` = sRGB(Reinhard(L, max 16)) in [0, 1]; ``log`` = sRGB(log1p(L) / log1p(10000)) in [0, 1];
    ``dir`` = unit camera-space direction per pixel in [-1, 1] (identical for every frame).
    """
    radiance = camera_space_env(env, camera_to_world, height, width)
    b, t = radiance.shape[:2]
    dirs = camera_space_directions(height, width, device=radiance.device)
    return {"ldr": env_ldr(radiance), "log": env_log(radiance),
            "dir": dirs.expand(b, t, 3, height, width).contiguous()}
