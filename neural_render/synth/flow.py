"""Ground-truth forward optical flow (frame t -> t+1, pixels) from known geometry and motion, occlusion-aware.

For a pixel centre p = (j + 0.5, i + 0.5) of frame t showing object k (object id k = mesh index + 1):
back-project with the planar depth, X_cam = ((u - cx) / fx * z, -(v - cy) / fy * z, -z); to world with the
camera of frame t; carry the point rigidly with the object, X' = M_k(t+1) M_k(t)^-1 X; into camera t+1; project.
Background pixels (env at infinity) move with the camera rotation only. ``flow = p' - p`` (x right, y down).

``valid`` = 1 where the point is seen again at t+1: it projects in front of the camera and inside the image, the
pixel containing p' shows the same object id at t+1 and (for surfaces) its depth agrees with the carried point's
depth within 1% + the local depth step to the neighbouring pixels of that object (slope allowance). Otherwise
(occluded, out of view, object vanished, last frame) valid = 0; the geometric flow is still stored where defined
(0 where not).
"""

from __future__ import annotations

import torch
from torch import Tensor

from neural_render.types import Camera

RELATIVE_DEPTH_TOLERANCE = 0.01


def _local_depth_step(depth: Tensor, ids: Tensor) -> Tensor:
    """(H, W) largest |depth difference| to 4-neighbours with the same id (0 where none)."""
    step = torch.zeros_like(depth)
    padded_d = torch.nn.functional.pad(depth[None, None], (1, 1, 1, 1), mode="replicate")[0, 0]
    padded_i = torch.nn.functional.pad(ids[None, None].float(), (1, 1, 1, 1), value=-1)[0, 0]
    h, w = depth.shape
    for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
        nd = padded_d[dy:dy + h, dx:dx + w]
        same = padded_i[dy:dy + h, dx:dx + w] == ids.float()
        step = torch.maximum(step, torch.where(same, (nd - depth).abs(), torch.zeros_like(depth)))
    return step


def forward_flow(depth: Tensor, object_id: Tensor, camera: Camera, meshes) -> tuple[Tensor, Tensor]:
    """depth (T, 1, H, W), object_id (T, 1, H, W) int64, camera (B = 1), meshes (id k -> meshes[k - 1]).

    Returns flow (T, 2, H, W) float32 pixels and valid (T, 1, H, W) float32 (see module doc).
    """
    t_count, _, h, w = depth.shape
    flow = torch.zeros(t_count, 2, h, w)
    valid = torch.zeros(t_count, 1, h, w)
    fx, fy, cx, cy = (float(v) for v in camera.intrinsics[0].to(torch.float64))
    v_pix, u_pix = torch.meshgrid(torch.arange(h, dtype=torch.float64) + 0.5,
                                  torch.arange(w, dtype=torch.float64) + 0.5, indexing="ij")
    c2w = camera.camera_to_world[0].to(torch.float64)
    for t in range(t_count - 1):
        z = depth[t, 0].to(torch.float64)
        ids = object_id[t, 0]
        cam_pts = torch.stack([(u_pix - cx) / fx * z, -(v_pix - cy) / fy * z, -z], -1)  # (H, W, 3)
        world = cam_pts @ c2w[t, :3, :3].T + c2w[t, :3, 3]
        ray = torch.stack([(u_pix - cx) / fx, -(v_pix - cy) / fy, -torch.ones_like(u_pix)], -1)
        moved = torch.zeros_like(world)
        defined = torch.zeros(h, w, dtype=torch.bool)
        w2c_next = torch.linalg.inv(c2w[t + 1])
        background = ids == 0
        d_world = ray[background] @ c2w[t, :3, :3].T
        moved_cam_bg = d_world @ w2c_next[:3, :3].T  # directions: rotation only
        for k in torch.unique(ids[~background]).tolist():
            mesh = meshes[k - 1]
            sel = ids == k
            if not mesh.is_visible(t + 1):
                continue
            carry = mesh.transform(t + 1) @ torch.linalg.inv(mesh.transform(t))
            moved[sel] = world[sel] @ carry[:3, :3].T + carry[:3, 3]
            defined[sel] = True
        next_cam = moved @ w2c_next[:3, :3].T + w2c_next[:3, 3]
        next_cam[background] = moved_cam_bg
        defined[background] = True
        in_front = next_cam[..., 2] < -1e-9
        ok = defined & in_front
        zc = torch.where(ok, -next_cam[..., 2], torch.ones_like(z))
        u2 = cx + fx * next_cam[..., 0] / zc
        v2 = cy - fy * next_cam[..., 1] / zc
        fl = torch.stack([u2 - u_pix, v2 - v_pix])
        flow[t] = torch.where(ok[None], fl, torch.zeros_like(fl)).to(torch.float32)
        col, row = torch.floor(u2), torch.floor(v2)
        inside = ok & (col >= 0) & (col < w) & (row >= 0) & (row < h)
        ci, ri = col.clamp(0, w - 1).long(), row.clamp(0, h - 1).long()
        next_ids = object_id[t + 1, 0][ri, ci]
        next_depth = depth[t + 1, 0].to(torch.float64)[ri, ci]
        step = _local_depth_step(depth[t + 1, 0].to(torch.float64), object_id[t + 1, 0])[ri, ci]
        same = next_ids == ids
        depth_ok = background | ((next_depth - zc).abs() <= RELATIVE_DEPTH_TOLERANCE * zc + step)
        valid[t, 0] = (inside & same & depth_ok).to(torch.float32)
    return flow, valid
