"""Camera model and THE coordinate conventions of the project (tested in tests/test_types.py).

World space
    Right-handed, +Y up, scene units (metres by default).
Camera space (OpenGL convention, used for camera-space normals and env encodings)
    +X right, +Y up, +Z towards the viewer; the camera looks along -Z.
    ``depth`` is the camera-space z distance in front of the camera: ``depth = -z_cam > 0``
    (planar depth, not ray length).
Image space
    Row 0 at the top, column 0 at the left; pixel (row i, col j) has its centre at
    ``(u, v) = (j + 0.5, i + 0.5)`` in pixels. A camera-space point (x, y, z) projects to
    ``u = cx + fx * x / -z``, ``v = cy - fy * y / -z``.
Poses
    ``camera_to_world`` (B, T, 4, 4) maps homogeneous camera-space points to world space.
Mitsuba
    A Mitsuba sensor looks along its local +Z with +X to the left; :func:`to_mitsuba_to_world`
    converts (flip X and Z).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from neural_render.errors import NeuralRenderError

#: Diagonal that maps OpenGL camera axes to Mitsuba sensor axes (and back; it is its own inverse).
GL_TO_MITSUBA = (-1.0, 1.0, -1.0)


def look_at(eye, target, up=(0.0, 1.0, 0.0)) -> Tensor:
    """Camera-to-world (..., 4, 4) for a camera at ``eye`` looking at ``target`` (OpenGL axes)."""
    eye, target, up = (torch.as_tensor(v, dtype=torch.float32) for v in (eye, target, up))
    eye, target = torch.broadcast_tensors(eye, target)
    back = torch.nn.functional.normalize(eye - target, dim=-1)  # +Z points away from the target
    right = torch.linalg.cross(up.expand_as(back), back, dim=-1)
    if bool((right.norm(dim=-1) < 1e-8).any()):
        raise NeuralRenderError("look_at: view direction is parallel to the up vector")
    right = torch.nn.functional.normalize(right, dim=-1)
    true_up = torch.linalg.cross(back, right, dim=-1)
    m = torch.zeros(eye.shape[:-1] + (4, 4))
    m[..., :3, 0], m[..., :3, 1], m[..., :3, 2], m[..., :3, 3] = right, true_up, back, eye
    m[..., 3, 3] = 1.0
    return m


def to_mitsuba_to_world(camera_to_world: Tensor) -> Tensor:
    """OpenGL camera-to-world (..., 4, 4) -> Mitsuba sensor ``to_world`` (..., 4, 4)."""
    flip = torch.diag(torch.tensor(GL_TO_MITSUBA + (1.0,), dtype=camera_to_world.dtype))
    return camera_to_world @ flip


def intrinsics_from_fov(fov_x_degrees: float, width: int, height: int) -> Tensor:
    """Pinhole intrinsics (4,) = (fx, fy, cx, cy) in pixels for a horizontal field of view, square pixels."""
    fx = 0.5 * width / math.tan(math.radians(fov_x_degrees) / 2.0)
    return torch.tensor([fx, fx, width / 2.0, height / 2.0], dtype=torch.float32)


@dataclass
class Camera:
    """Pinhole cameras for a batch of videos.

    intrinsics:      (B, 4) float32 (fx, fy, cx, cy) in pixels, constant over a clip.
    camera_to_world: (B, T, 4, 4) float32 per-frame poses (OpenGL camera axes, see module doc).
    width, height:   image size in pixels.
    """

    intrinsics: Tensor
    camera_to_world: Tensor
    width: int
    height: int

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        k, c2w = self.intrinsics, self.camera_to_world
        if k.ndim != 2 or k.shape[-1] != 4:
            raise NeuralRenderError(f"camera intrinsics must be (B, 4), got {tuple(k.shape)}")
        if c2w.ndim != 4 or c2w.shape[-2:] != (4, 4) or c2w.shape[0] != k.shape[0]:
            raise NeuralRenderError(f"camera_to_world must be (B, T, 4, 4) with B={k.shape[0]}, got {tuple(c2w.shape)}")
        if not (torch.isfinite(k).all() and torch.isfinite(c2w).all()):
            raise NeuralRenderError("camera contains NaN or inf")
        if bool((k[:, :2] <= 0).any()) or self.width <= 0 or self.height <= 0:
            raise NeuralRenderError("camera focal lengths and image size must be positive")
        rot = c2w[..., :3, :3].to(torch.float64)
        eye = torch.eye(3, dtype=torch.float64)
        if not torch.allclose(rot @ rot.transpose(-1, -2), eye.expand_as(rot), atol=1e-4):
            raise NeuralRenderError("camera_to_world rotation part is not orthonormal")

    @property
    def num_frames(self) -> int:
        return self.camera_to_world.shape[1]

    @classmethod
    def from_fov(cls, fov_x_degrees: float, width: int, height: int, camera_to_world: Tensor) -> "Camera":
        """Same horizontal FOV for every clip; ``camera_to_world`` (B, T, 4, 4)."""
        k = intrinsics_from_fov(fov_x_degrees, width, height).expand(camera_to_world.shape[0], 4).clone()
        return cls(k, camera_to_world.to(torch.float32), width, height)

    def ray_directions(self) -> Tensor:
        """Unit camera-space directions from the eye through each pixel centre: (B, 1, 3, H, W)."""
        dev = self.intrinsics.device
        v, u = torch.meshgrid(torch.arange(self.height, device=dev, dtype=torch.float32) + 0.5,
                              torch.arange(self.width, device=dev, dtype=torch.float32) + 0.5, indexing="ij")
        fx, fy, cx, cy = (self.intrinsics[:, i, None, None] for i in range(4))
        d = torch.stack([(u - cx) / fx, -(v - cy) / fy, -torch.ones_like(u).expand_as(fx * u)], dim=1)
        return torch.nn.functional.normalize(d, dim=1)[:, None]

    def rotations(self) -> Tensor:
        """Camera-to-world rotations (B, T, 3, 3)."""
        return self.camera_to_world[..., :3, :3]

    def slice_frames(self, start: int, stop: int) -> "Camera":
        return Camera(self.intrinsics, self.camera_to_world[:, start:stop], self.width, self.height)
