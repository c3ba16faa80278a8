"""nvdiffrast G-buffer backend (CUDA only; nvdiffrast is not a dependency and is never emulated on CPU).

Same output conventions as the Mitsuba backend (see raster/mitsuba_backend.py): rasterisation samples pixel
centres, row 0 is the top row, depth is planar ``-z_cam`` (perspective-correct interpolation of camera-space
positions), normals are interpolated vertex normals in camera space (flipped on back-facing triangles), materials
are evaluated with :func:`neural_render.raster.material.sample_texture` from the interpolated uv, mask / object id
from the triangle id. No anti-aliasing (crisp G-buffers).

Projection from pinhole intrinsics (OpenGL camera looking along -Z, clip w = -z):
``x_clip = 2 fx / W x + (1 - 2 cx / W) z``, ``y_clip = 2 fy / H y + (2 cy / H - 1) z`` (NDC +y = image top),
``z_clip = -(f + n) / (f - n) z - 2 f n / (f - n)``. nvdiffrast writes NDC y = -1 to row 0, so rows are flipped.
"""

from __future__ import annotations

import torch
from torch import Tensor

from neural_render.errors import NeuralRenderError
from neural_render.raster.mesh import Mesh
from neural_render.types import Camera


def nvdiffrast_available() -> tuple[bool, str]:
    """(usable, reason): CUDA present and ``nvdiffrast.torch`` importable."""
    if not torch.cuda.is_available():
        return False, "CUDA is not available (the nvdiffrast backend needs an NVIDIA GPU)"
    try:
        import nvdiffrast.torch  # noqa: F401
    except Exception as err:  # ImportError, or a failed CUDA plugin build
        return False, f"nvdiffrast cannot be imported ({err}); pip install nvdiffrast"
    return True, ""


def projection_matrix(intrinsics: Tensor, width: int, height: int, near: float, far: float) -> Tensor:
    """(4,) (fx, fy, cx, cy) -> (4, 4) camera-space (OpenGL) to clip-space matrix (see module doc)."""
    fx, fy, cx, cy = (float(v) for v in intrinsics)
    p = torch.zeros(4, 4, dtype=torch.float32)
    p[0, 0], p[0, 2] = 2 * fx / width, 1 - 2 * cx / width
    p[1, 1], p[1, 2] = 2 * fy / height, 2 * cy / height - 1
    p[2, 2], p[2, 3] = -(far + near) / (far - near), -2 * far * near / (far - near)
    p[3, 2] = -1.0
    return p


def rasterize_nvdiffrast(meshes: list[Mesh], camera: Camera, near: float = 1e-2, far: float = 1e3,
                         device: str | torch.device = "cuda") -> dict[str, Tensor]:
    """G-buffer passes (B, T, C, H, W) on CPU + ``object_id`` (B, T, 1, H, W) int64, like the Mitsuba backend."""
    ok, reason = nvdiffrast_available()
    if not ok:
        raise NeuralRenderError(f"nvdiffrast backend unavailable: {reason}")
    import nvdiffrast.torch as dr

    ctx = dr.RasterizeCudaContext(device=device)
    b, t = camera.camera_to_world.shape[:2]
    h, w = camera.height, camera.width
    frames = []
    for bi in range(b):
        proj = projection_matrix(camera.intrinsics[bi], w, h, near, far).to(device)
        clip = []
        for ti in range(t):
            clip.append(_frame(dr, ctx, meshes, camera.camera_to_world[bi, ti], proj, h, w, ti, device))
        frames.append(clip)
    return {k: torch.stack([torch.stack([f[k] for f in c]) for c in frames]).cpu() for k in frames[0][0]}


def _frame(dr, ctx, meshes: list[Mesh], c2w: Tensor, proj: Tensor, h: int, w: int, frame: int,
           device) -> dict[str, Tensor]:
    w2c = torch.linalg.inv(c2w.to(torch.float64))
    positions, normals, uvs, faces, owners = [], [], [], [], []
    offset = 0
    for index, mesh in enumerate(meshes):
        if not mesh.is_visible(frame):
            continue
        verts, nrm = mesh.world_geometry(frame)
        positions.append((verts.to(torch.float64) @ w2c[:3, :3].T + w2c[:3, 3]).to(torch.float32))
        normals.append((nrm.to(torch.float64) @ w2c[:3, :3].T).to(torch.float32))
        uvs.append(mesh.uvs)
        faces.append(mesh.faces + offset)
        owners.append(torch.full((mesh.faces.shape[0],), index, dtype=torch.int64))
        offset += verts.shape[0]
    channels = {"mask": 1, "depth": 1, "normal": 3, "basecolor": 3, "roughness": 1, "metallic": 1}
    out = {k: torch.zeros(c, h, w, device=device) for k, c in channels.items()}
    out["object_id"] = torch.zeros(1, h, w, dtype=torch.int64, device=device)
    if not positions:
        return out
    pos_cam = torch.cat(positions).to(device)
    tri = torch.cat(faces).to(device=device, dtype=torch.int32)
    owner = torch.cat(owners).to(device)
    clip_pos = torch.cat([pos_cam, torch.ones_like(pos_cam[:, :1])], 1) @ proj.T
    rast, _ = dr.rasterize(ctx, clip_pos[None].contiguous(), tri, resolution=[h, w])
    attrs = torch.cat([pos_cam, torch.cat(normals).to(device), torch.cat(uvs).to(device)], 1)[None].contiguous()
    interp, _ = dr.interpolate(attrs, rast, tri)
    rast, interp = rast[0].flip(0), interp[0].flip(0)  # row 0 = top of the image
    tri_id = rast[..., 3].round().to(torch.int64) - 1  # -1 = no triangle
    hit = tri_id >= 0
    if not bool(hit.any()):
        return out
    p_cam, n_cam, uv = interp[hit][:, 0:3], interp[hit][:, 3:6], interp[hit][:, 6:8]
    tri_hit = tri_id[hit]
    corners = pos_cam[tri[tri_hit].long()]  # (N, 3, 3)
    face_n = torch.linalg.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0], dim=1)
    back = (face_n * p_cam).sum(1) > 0  # the camera sits at the origin: p_cam is the view ray
    n_cam = torch.nn.functional.normalize(torch.where(back[:, None], -n_cam, n_cam), dim=1)
    mesh_index = owner[tri_hit]
    out["mask"][0][hit] = 1.0
    out["depth"][0][hit] = -p_cam[:, 2]
    out["normal"].permute(1, 2, 0)[hit] = n_cam
    out["object_id"][0][hit] = mesh_index + 1
    for m in torch.unique(mesh_index).tolist():
        rows = (mesh_index == m).nonzero()[:, 0]
        values = meshes[m].material.evaluate(uv[rows].float())
        for name, value in values.items():
            target = out[name].permute(1, 2, 0)  # view (H, W, C)
            flat_index = hit.nonzero()[rows]
            target[flat_index[:, 0], flat_index[:, 1]] = value.to(device)
    return out
