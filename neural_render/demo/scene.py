"""A small analytic demo scene: three spheres on a ground disk, seen by an orbiting camera.

Geometry is ray-cast exactly (no meshes), so the G-buffers are exact: three spheres from
:func:`neural_render.render.analytic.sphere_gbuffer` plus a ground disk, depth-composited.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from neural_render.types import Camera, GBuffer, composite_nearest, look_at

#: (centre, radius, linear basecolor, roughness, metallic) — a rough red dielectric, polished gold, a glossy white.
SPHERES = (
    ((-0.75, 0.35, 0.0), 0.35, (0.60, 0.08, 0.05), 0.55, 0.0),
    ((0.0, 0.45, -0.35), 0.45, (1.00, 0.77, 0.34), 0.18, 1.0),
    ((0.78, 0.30, 0.15), 0.30, (0.80, 0.80, 0.80), 0.30, 0.0),
)
GROUND = ((0.35, 0.33, 0.30), 0.85, 0.0, 2.2)  # basecolor, roughness, metallic, disk radius


@dataclass
class DemoScene:
    camera: Camera
    gbuffer: GBuffer  # (1, T, C, H, W)
    object_ids: torch.Tensor  # (1, T, 1, H, W) long: 0 background, 1 ground, 2.. spheres


def orbit_camera(num_frames: int, width: int, height: int, degrees: float = 70.0, fov: float = 45.0) -> Camera:
    """Camera orbiting the origin at 3.4 m, 1.3 m high, sweeping ``degrees`` of yaw over the clip."""
    angles = torch.linspace(-degrees / 2, degrees / 2, num_frames) * math.pi / 180
    eyes = torch.stack([3.4 * torch.sin(angles), torch.full_like(angles, 1.3), 3.4 * torch.cos(angles)], dim=-1)
    c2w = look_at(eyes, torch.tensor([0.0, 0.3, 0.0]).expand_as(eyes))
    return Camera.from_fov(fov, width, height, c2w[None])


def ground_gbuffer(camera: Camera, basecolor, roughness: float, metallic: float, radius: float) -> GBuffer:
    """Exact G-buffer of the disk y = 0, |xz| <= radius (world), for every frame of ``camera``."""
    rays = camera.ray_directions()  # (B, 1, 3, H, W) camera space
    rot = camera.rotations()  # (B, T, 3, 3)
    origin = camera.camera_to_world[..., :3, 3]  # (B, T, 3)
    world = torch.einsum("btij,bjhw->btihw", rot, rays[:, 0])
    t = -origin[..., 1, None, None] / world[:, :, 1].clamp(max=-1e-8)  # hit distance along the unit ray
    hit = origin[..., :, None, None] + t[:, :, None] * world
    valid = (world[:, :, 1] < -1e-6) & (hit[:, :, 0] ** 2 + hit[:, :, 2] ** 2 <= radius ** 2)
    mask = valid[:, :, None].float()
    depth = (t[:, :, None] * -rays[:, :, 2:3]) * mask  # planar depth = t * (-d_z)
    up_cam = rot[..., 1, :]  # world +Y in camera space = row 1 of R_c2w (R^T e_y)
    normal = up_cam[..., :, None, None].expand_as(world) * mask
    return GBuffer(basecolor=_constant(basecolor, mask), normal=normal, depth=depth,
                   roughness=_constant([roughness], mask), metallic=_constant([metallic], mask), mask=mask)


def _constant(values, mask: torch.Tensor) -> torch.Tensor:
    """Per-channel constant ``values`` (C,) inside ``mask`` (B, T, 1, H, W) -> (B, T, C, H, W)."""
    return torch.tensor(values, dtype=torch.float32).reshape(1, 1, -1, 1, 1) * mask


def demo_scene(num_frames: int = 24, width: int = 128, height: int = 128) -> DemoScene:
    from neural_render.render.analytic import sphere_gbuffer

    camera = orbit_camera(num_frames, width, height)
    base, rough, metal, radius = GROUND
    layers = [ground_gbuffer(camera, base, rough, metal, radius)]
    for centre, r, color, roughness, metallic in SPHERES:
        layers.append(sphere_gbuffer(camera, centre, r, color, roughness, metallic))
    gbuffer, winner = composite_nearest(*layers, return_index=True)
    ids = (winner + 1) * (gbuffer.mask > 0.5)
    return DemoScene(camera, gbuffer.validate("demo scene"), ids.long())
