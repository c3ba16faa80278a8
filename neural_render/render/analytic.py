"""Exact ray-cast G-buffers of analytic shapes (tests, demo scene, shader baselines).

Rays start at each frame's camera centre and pass through pixel centres (:meth:`Camera.ray_directions`);
intersections are solved in float64 and stored as float32 passes with the conventions of
:mod:`neural_render.types.gbuffer`: camera-space unit normals (OpenGL axes), planar depth ``-z_cam``,
mask 1 where the pixel centre's ray hits the front of the surface (no anti-aliasing). Outside the mask every
pass is 0.
"""

from __future__ import annotations

import torch
from torch import Tensor

from neural_render.errors import NeuralRenderError
from neural_render.types import Camera, GBuffer


def _per_frame_vector(value, camera: Camera, what: str) -> Tensor:
    """(3,) or (B, T, 3) world vector -> (B, T, 3) float64."""
    b, t = camera.camera_to_world.shape[:2]
    x = torch.as_tensor(value, dtype=torch.float64, device=camera.camera_to_world.device)
    if x.shape[-1:] != (3,) or x.ndim not in (1, 3):
        raise NeuralRenderError(f"{what} must be (3,) or (B, T, 3), got {tuple(x.shape)}")
    try:
        return torch.broadcast_to(x, (b, t, 3))
    except RuntimeError as err:
        raise NeuralRenderError(f"{what} {tuple(x.shape)} does not broadcast to (B, T, 3) = {(b, t, 3)}") from err


def _material_pass(value, channels: int, mask: Tensor, what: str) -> Tensor:
    """Constant per-channel material (float or (channels,) sequence) in [0, 1] inside ``mask`` -> (B, T, C, H, W)."""
    x = torch.as_tensor(value, dtype=torch.float32, device=mask.device).reshape(-1)
    if x.numel() == 1:
        x = x.expand(channels)
    if x.numel() != channels:
        raise NeuralRenderError(f"{what} needs 1 or {channels} values, got {x.numel()}")
    if not bool(torch.isfinite(x).all()) or float(x.min()) < 0.0 or float(x.max()) > 1.0:
        raise NeuralRenderError(f"{what} must lie in [0, 1], got {x.tolist()}")
    return x.reshape(1, 1, channels, 1, 1) * mask


def ray_sphere(camera: Camera, center, radius: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Nearest front hit of every pixel ray with a sphere, in float64.

    Returns ``hit`` (B, T, 1, H, W) bool, ``distance`` along the unit ray (B, T, 1, H, W) (0 where no hit),
    world normal (B, T, 3, H, W) (0 where no hit) and the camera-space unit rays (B, 1, 3, H, W).
    A camera inside the sphere sees no hit (back faces are not rendered).
    """
    if not float(radius) > 0.0:
        raise NeuralRenderError(f"sphere radius must be > 0, got {radius}")
    c = _per_frame_vector(center, camera, "sphere center")[..., None, None]  # (B, T, 3, 1, 1)
    rays = camera.ray_directions().to(torch.float64)  # (B, 1, 3, H, W)
    c2w = camera.camera_to_world.to(torch.float64)
    rot, origin = c2w[..., :3, :3], c2w[..., :3, 3, None, None]  # (B, T, 3, 3), (B, T, 3, 1, 1)
    d = torch.einsum("btij,bjhw->btihw", rot, rays[:, 0])  # world unit rays
    oc = origin - c
    b = (d * oc).sum(2, keepdim=True)
    q = (oc * oc).sum(2, keepdim=True) - float(radius) ** 2
    disc = b * b - q
    t = -b - torch.sqrt(disc.clamp_min(0.0))
    hit = (disc >= 0.0) & (t > 0.0) & (q > 0.0)
    t = torch.where(hit, t, torch.zeros_like(t))
    normal = torch.where(hit, (origin + t * d - c) / float(radius), torch.zeros_like(d))
    return hit, t, normal, rays


def sphere_gbuffer(camera: Camera, center, radius: float, basecolor=(0.8, 0.8, 0.8), roughness: float = 0.5,
                   metallic: float = 0.0) -> GBuffer:
    """Exact G-buffer (B, T, C, H, W) of one sphere for every frame of ``camera``.

    center: world position (3,) or per frame (B, T, 3), scene units; radius > 0 in scene units.
    basecolor: linear RGB (3,) or a float; roughness, metallic: floats in [0, 1] (constant over the sphere).
    depth = -z_cam of the hit point (planar), normal = camera-space unit normal, mask = 1 on hits; 0 elsewhere.
    """
    hit, t, normal_world, rays = ray_sphere(camera, center, radius)
    rot = camera.camera_to_world[..., :3, :3].to(torch.float64)
    normal_cam = torch.einsum("btji,btjhw->btihw", rot, normal_world)  # R^T n
    depth = t * -rays[:, :, 2:3]  # planar depth: distance along the unit ray times cos to the optical axis
    mask = hit.to(torch.float32)
    return GBuffer(basecolor=_material_pass(basecolor, 3, mask, "basecolor"),
                   normal=normal_cam.to(torch.float32) * mask,
                   depth=depth.to(torch.float32) * mask,
                   roughness=_material_pass(roughness, 1, mask, "roughness"),
                   metallic=_material_pass(metallic, 1, mask, "metallic"),
                   mask=mask)
