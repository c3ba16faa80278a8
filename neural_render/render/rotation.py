"""Rotations from yaw/pitch/roll in degrees (pure functions).

World is right-handed with +Y up. ``yaw`` turns about +Y, ``pitch`` about +X, ``roll`` about +Z,
each counter-clockwise when looking down the axis towards the origin. The composed rotation is
``R = Ry(yaw) @ Rx(pitch) @ Rz(roll)`` (roll applied first). ``matrix_to_euler`` inverts it for
|pitch| < 90 degrees.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _as_tensor(x, dtype=torch.float64) -> Tensor:
    return torch.as_tensor(x, dtype=dtype)


def axis_rotation(axis: str, degrees) -> Tensor:
    """Rotation matrix about ``axis`` in {"x","y","z"}; ``degrees`` scalar or (...,) -> (..., 3, 3)."""
    a = torch.deg2rad(_as_tensor(degrees))
    c, s = torch.cos(a), torch.sin(a)
    o, z = torch.ones_like(a), torch.zeros_like(a)
    if axis == "x":
        rows = [[o, z, z], [z, c, -s], [z, s, c]]
    elif axis == "y":
        rows = [[c, z, s], [z, o, z], [-s, z, c]]
    elif axis == "z":
        rows = [[c, -s, z], [s, c, z], [z, z, o]]
    else:
        raise ValueError(f"axis must be x, y or z, got {axis!r}")
    return torch.stack([torch.stack(r, dim=-1) for r in rows], dim=-2)


def euler_to_matrix(yaw=0.0, pitch=0.0, roll=0.0, dtype=torch.float32) -> Tensor:
    """(yaw, pitch, roll) in degrees, scalars or broadcastable (...,) -> rotation (..., 3, 3)."""
    r = axis_rotation("y", yaw) @ axis_rotation("x", pitch) @ axis_rotation("z", roll)
    return r.to(dtype)


def matrix_to_euler(rotation: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Inverse of :func:`euler_to_matrix` for (..., 3, 3) -> (yaw, pitch, roll) in degrees, each (...,).

    R = Ry Rx Rz gives R[1,2] = -sin(pitch), R[0,2] = cos(p) sin(yaw), R[2,2] = cos(p) cos(yaw),
    R[1,0] = cos(p) sin(roll), R[1,1] = cos(p) cos(roll).
    """
    r = rotation.to(torch.float64)
    pitch = torch.asin(torch.clamp(-r[..., 1, 2], -1.0, 1.0))
    yaw = torch.atan2(r[..., 0, 2], r[..., 2, 2])
    roll = torch.atan2(r[..., 1, 0], r[..., 1, 1])
    return tuple(torch.rad2deg(v).to(rotation.dtype) for v in (yaw, pitch, roll))  # type: ignore[return-value]


def is_rotation(matrix: Tensor, atol: float = 1e-4) -> bool:
    """True when ``matrix`` (..., 3, 3) is orthonormal with determinant +1."""
    m = matrix.to(torch.float64)
    eye = torch.eye(3, dtype=torch.float64).expand_as(m)
    return bool(torch.allclose(m @ m.transpose(-1, -2), eye, atol=atol)
                and torch.allclose(torch.linalg.det(m), torch.ones((), dtype=torch.float64), atol=atol))

