"""DiffusionRenderer's lighting condition from an HDR :class:`EnvMap` and per-frame camera poses, in pure torch.

The forward renderer sees the sky per frame in CAMERA space, as three (H, W) images in [0, 1] (no nvdiffrast, no
cube map: a bilinear lookup of the equirect image, :func:`neural_render.render.envmap.env_lookup`):

* pixel (i, j) shows the radiance arriving from the camera-space direction
  ``e(i, j) = (sin t_i sin p_j, cos t_i, sin t_i cos p_j)`` with ``p_j = pi ((2 j + 1) / W - 1)`` (pixel centres)
  and ``t_i = pi (1 / H + i (1 - 2 / H) / (H - 1))`` (the reference's row grid: first and last rows at 1/H and
  1 - 1/H of the way from the zenith, not at pixel centres). Camera axes are OpenGL's (+X right, +Y up, +Z towards
  the viewer), so the image centre shows the light coming from behind the camera, the light that falls on the
  surfaces facing it. (The reference builds this grid by flipping a latitude-longitude grid in both axes and
  negating it; it is NOT :func:`~neural_render.render.envmap.camera_space_directions`, which puts the view direction
  -Z at the centre.)
* that direction is turned to world space by each frame's camera-to-world rotation, ``d = R_c2w e``, and looked up
  in the env map with its rotation (``EnvMap.rotated(yaw, pitch, roll)``). The reference looks ``d`` up in a cube
  map built from the lat-long image after its default 180-degree roll; that roll together with its lat-long
  mapping is exactly this toolkit's equirect convention (types/envmap.py), so an HDR file lights the scene the
  same way in both. Like :func:`~neural_render.render.envmap.camera_space_env`, an env image larger than the
  encoding is first area-averaged down to at most (H, W), so a small sun is box-filtered, not point-sampled.
* ``env_ldr`` = sRGB(Reinhard(L, max 16)), ``env_log`` = sRGB(log1p(L) / log1p(10000)) (render/tonemap.py, clamped
  to [0, 1]) and ``env_nrm`` = e * 0.5 + 0.5 (the same for every frame).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from neural_render.errors import NeuralRenderError
from neural_render.render.envmap import env_lookup, resample_equirect
from neural_render.render.tonemap import env_ldr, env_log
from neural_render.types.envmap import EnvMap

#: the forward renderer's env encodings, in its env encoder's order
ENV_LABELS = ("env_ldr", "env_log", "env_nrm")


def encoding_directions(height: int, width: int, device=None) -> Tensor:
    """(H, W, 3) float32 unit camera-space direction of every encoding pixel (module doc)."""
    if height < 2 or width < 1:
        raise NeuralRenderError(f"env encodings need at least 2 rows and 1 column, got {height}x{width}")
    rows = torch.arange(height, dtype=torch.float64, device=device)
    cols = torch.arange(width, dtype=torch.float64, device=device)
    theta = math.pi * (1.0 / height + rows * (1.0 - 2.0 / height) / (height - 1))
    phi = math.pi * ((2.0 * cols + 1.0) / width - 1.0)
    t, p = torch.meshgrid(theta, phi, indexing="ij")
    d = torch.stack([torch.sin(t) * torch.sin(p), torch.cos(t), torch.sin(t) * torch.cos(p)], dim=-1)
    return d.to(torch.float32)


def _check(env: EnvMap, camera_to_world: Tensor, height: int, width: int) -> None:
    if not isinstance(env, EnvMap):
        raise NeuralRenderError(f"the forward DiffusionRenderer needs an EnvMap, got {type(env).__name__}")
    if not torch.is_tensor(camera_to_world) or camera_to_world.ndim != 4 or camera_to_world.shape[-2:] != (4, 4):
        shape = tuple(camera_to_world.shape) if torch.is_tensor(camera_to_world) else type(camera_to_world).__name__
        raise NeuralRenderError(f"camera_to_world must be (B, T, 4, 4), got {shape}")
    if not bool(torch.isfinite(camera_to_world).all()):
        raise NeuralRenderError("camera_to_world holds NaN or inf")
    if height < 2 or width < 1:
        raise NeuralRenderError(f"env encoding size must be at least 2x1, got {height}x{width}")


def projected_env(env: EnvMap, camera_to_world: Tensor, height: int, width: int) -> Tensor:
    """Linear radiance (B, T, 3, H, W) of the sky seen in each frame's camera space (module doc).

    env: the HDR env map (its rotation included); camera_to_world: (B, T, 4, 4) OpenGL camera-to-world poses."""
    _check(env, camera_to_world, height, width)
    small = (min(env.height, height), min(env.width, width))
    source = env if small == (env.height, env.width) else EnvMap(resample_equirect(env.image, *small), env.rotation,
                                                                 env.name)
    device = env.image.device
    rot = camera_to_world[..., :3, :3].to(device=device, dtype=torch.float32)
    d_world = torch.einsum("btij,hwj->bthwi", rot, encoding_directions(height, width, device))
    return env_lookup(source, d_world).permute(0, 1, 4, 2, 3).contiguous()


def env_encodings(env: EnvMap, camera_to_world: Tensor, height: int, width: int) -> dict[str, Tensor]:
    """{"env_ldr", "env_log", "env_nrm"}: each (B, T, 3, H, W) float32 in [0, 1], the forward renderer's input."""
    radiance = projected_env(env, camera_to_world, height, width)
    b, t = radiance.shape[:2]
    nrm = (encoding_directions(height, width, radiance.device) * 0.5 + 0.5).permute(2, 0, 1)
    return {"env_ldr": env_ldr(radiance).clamp(0.0, 1.0), "env_log": env_log(radiance).clamp(0.0, 1.0),
            "env_nrm": nrm.expand(b, t, 3, height, width).contiguous()}


def shared_pose(camera_to_world: Tensor) -> bool:
    """True when every frame of every clip has the rotation of its first frame (the encodings are then the same for
    all frames and one frame suffices)."""
    rot = camera_to_world[..., :3, :3]
    return bool((rot == rot[:, :1]).all())
