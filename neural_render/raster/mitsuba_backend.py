"""Mitsuba 3 G-buffer backend (CPU): one ray per pixel centre through ``mi.Scene.ray_intersect_preliminary``.

Rays are our :meth:`Camera.ray_directions` (pixel centres at +0.5, OpenGL camera axes) turned to world space, so
the G-buffer follows the project conventions exactly and is crisp (no pixel filter, no sampling noise):

* depth  = hit distance along the unit ray x (-d_cam.z): planar camera depth
* normal = Mitsuba's shading normal (``si.sh_frame.n``, interpolated vertex normals) in camera space, flipped when
  the ray hits the back side of the triangle (Mitsuba's winding normal ``si.n`` faces the ray; such surfaces are
  shaded through Mitsuba's ``twosided`` wrapper the same way)
* basecolor / roughness / metallic = the mesh's :class:`Material` evaluated at Mitsuba's own interpolated uv
  (``si.uv``) with Mitsuba's ``bitmap`` addressing, hence exactly the texel values the path tracer uses
* mask = 1 on hits, every pass 0 on background; object id = mesh index + 1 (0 = background)

Works with every variant: vectorised under ``llvm_ad_rgb``; under ``scalar_rgb`` one Python call per pixel
(surface interactions are only computed for rays that hit; nothing is evaluated on missed rays).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from neural_render.errors import NeuralRenderError
from neural_render.raster.mesh import Mesh
from neural_render.types import Camera

SHAPE_PREFIX = "mesh_"


def shape_key(index: int) -> str:
    """Scene-dict key (and Mitsuba shape id) of mesh ``index``."""
    return f"{SHAPE_PREFIX}{index:04d}"


def _as_mitsuba_array(template, array: np.ndarray):
    """Build an array of the same Dr.Jit type as ``template`` (variant independent) from a flat numpy array."""
    return type(template)(np.ascontiguousarray(array).ravel())


def mitsuba_mesh(mi, mesh: Mesh, frame: int, key: str, bsdf=None):
    """A ``mi.Mesh`` holding ``mesh``'s world geometry at ``frame`` (float32, see Mesh.world_geometry).

    bsdf: an instantiated Mitsuba BSDF (``mi.load_dict(...)``) or None for Mitsuba's default.
    """
    verts, normals = mesh.world_geometry(frame)
    props = mi.Properties()
    if bsdf is not None:
        props["bsdf"] = bsdf
    shape = mi.Mesh(key, verts.shape[0], mesh.faces.shape[0], props=props, has_vertex_normals=True,
                    has_vertex_texcoords=True)
    params = mi.traverse(shape)
    for name, array in (("vertex_positions", verts.numpy()), ("faces", mesh.faces.numpy().astype(np.uint32)),
                        ("vertex_normals", normals.numpy()), ("vertex_texcoords", mesh.uvs.numpy())):
        params[name] = _as_mitsuba_array(params[name], array)
    params.update()
    return shape


def shape_mesh_indices(scene) -> list[int]:
    """For each shape of a loaded scene (Mitsuba's order, = ``shape_index`` of hits) the mesh index it holds."""
    out = []
    for shape in scene.shapes():
        sid = shape.id()
        if not sid.startswith(SHAPE_PREFIX):
            raise NeuralRenderError(f"scene shape {sid!r} was not built by neural_render.raster (ids {SHAPE_PREFIX}N)")
        out.append(int(sid[len(SHAPE_PREFIX):]))
    return out


def _cast_vectorised(mi, scene, origin: np.ndarray, dirs: np.ndarray) -> dict[str, np.ndarray]:
    """One JIT kernel for all rays. The origin is opaque and the direction arrays come from torch's 64-byte aligned
    allocator, so the kernel's IR is identical for every frame and scene: compiled once, then a cache hit
    (a literal origin or numpy's varying alignment would force a recompile, ~0.1 s, every frame)."""
    import drjit as dr

    o = mi.Point3f(*[dr.opaque(mi.Float, float(c)) for c in origin])
    columns = torch.from_numpy(np.ascontiguousarray(dirs, dtype=np.float32)).T.contiguous()
    d = mi.Vector3f(mi.Float(columns[0]), mi.Float(columns[1]), mi.Float(columns[2]))
    ray = mi.Ray3f(o, d)
    pi = scene.ray_intersect_preliminary(ray, coherent=True)
    valid = pi.is_valid()
    si = pi.compute_surface_interaction(ray, active=valid)
    n, g = si.sh_frame.n, si.n
    fields = {"valid": valid, "t": si.t, "u": si.uv.x, "v": si.uv.y, "nx": n.x, "ny": n.y, "nz": n.z,
              "gx": g.x, "gy": g.y, "gz": g.z, "shape": pi.shape_index}
    dr.eval(*fields.values())
    out = {k: np.array(v) for k, v in fields.items()}
    return {"valid": out["valid"].astype(bool), "t": out["t"], "uv": np.stack([out["u"], out["v"]], 1),
            "normal": np.stack([out["nx"], out["ny"], out["nz"]], 1),
            "geo_normal": np.stack([out["gx"], out["gy"], out["gz"]], 1), "shape": out["shape"].astype(np.int64)}


def _cast_scalar(mi, scene, origin: np.ndarray, dirs: np.ndarray) -> dict[str, np.ndarray]:
    n = dirs.shape[0]
    valid = np.zeros(n, bool)
    t = np.zeros(n, np.float32)
    uv = np.zeros((n, 2), np.float32)
    normal = np.zeros((n, 3), np.float32)
    geo_normal = np.zeros((n, 3), np.float32)
    shape = np.zeros(n, np.int64)
    o = mi.Point3f(*(float(c) for c in origin))
    for k in range(n):
        ray = mi.Ray3f(o, mi.Vector3f(*(float(c) for c in dirs[k])))
        pi = scene.ray_intersect_preliminary(ray)
        if not pi.is_valid():
            continue  # never build a surface interaction (or touch a BSDF) for a missed ray
        si = pi.compute_surface_interaction(ray)
        valid[k] = True
        t[k] = si.t
        uv[k] = (si.uv[0], si.uv[1])
        normal[k] = (si.sh_frame.n[0], si.sh_frame.n[1], si.sh_frame.n[2])
        geo_normal[k] = (si.n[0], si.n[1], si.n[2])
        shape[k] = pi.shape_index
    return {"valid": valid, "t": t, "uv": uv, "normal": normal, "geo_normal": geo_normal, "shape": shape}


def camera_rays(camera: Camera, batch: int = 0) -> Tensor:
    """(H * W, 3) float64 unit camera-space rays through the pixel centres of clip ``batch`` (row-major)."""
    return camera.ray_directions()[batch, 0].to(torch.float64).permute(1, 2, 0).reshape(-1, 3).contiguous()


def trace_frame(mi, scene, meshes: list[Mesh], camera: Camera, batch: int, frame: int,
                rays_cam: Tensor | None = None) -> dict[str, Tensor]:
    """Ray-cast one frame of one clip through a loaded scene whose shapes were built by :func:`mitsuba_mesh`.

    rays_cam: :func:`camera_rays` of the camera (computed when None; pass it to reuse it across frames).
    Returns per-pixel tensors (H, W, ...): ``mask`` (1) float, ``depth`` (1), ``normal`` (3) camera space,
    ``basecolor`` (3), ``roughness`` (1), ``metallic`` (1), ``object_id`` (1) int64, all 0 on background.
    """
    h, w = camera.height, camera.width
    c2w = camera.camera_to_world[batch, frame].to(torch.float64)
    rot, origin = c2w[:3, :3], c2w[:3, 3]
    if rays_cam is None:
        rays_cam = camera_rays(camera, batch)
    dirs_world = torch.nn.functional.normalize(rays_cam @ rot.T, dim=1)
    cast = _cast_scalar if mi.variant().startswith("scalar") else _cast_vectorised
    hits = cast(mi, scene, origin.numpy(), dirs_world.to(torch.float32).numpy())
    valid = torch.from_numpy(hits["valid"])
    index_of_shape = torch.tensor(shape_mesh_indices(scene), dtype=torch.int64)
    n_pix = h * w
    out = {"mask": torch.zeros(n_pix, 1), "depth": torch.zeros(n_pix, 1), "normal": torch.zeros(n_pix, 3),
           "basecolor": torch.zeros(n_pix, 3), "roughness": torch.zeros(n_pix, 1), "metallic": torch.zeros(n_pix, 1),
           "object_id": torch.zeros(n_pix, 1, dtype=torch.int64)}
    if bool(valid.any()):
        sel = valid.nonzero()[:, 0]
        mesh_index = index_of_shape[torch.from_numpy(hits["shape"])[sel]]
        t = torch.from_numpy(hits["t"])[sel].to(torch.float64)
        out["mask"][sel] = 1.0
        out["depth"][sel, 0] = (t * -rays_cam[sel, 2]).to(torch.float32)
        normal_world = torch.from_numpy(hits["normal"])[sel].to(torch.float64)
        face_normal = torch.from_numpy(hits["geo_normal"])[sel].to(torch.float64)  # Mitsuba's winding normal
        back = (face_normal * dirs_world[sel]).sum(1) > 0
        normal_world = torch.where(back[:, None], -normal_world, normal_world)
        out["normal"][sel] = torch.nn.functional.normalize(normal_world @ rot, dim=1).to(torch.float32)
        out["object_id"][sel, 0] = mesh_index + 1
        uv = torch.from_numpy(hits["uv"])[sel]
        flush = mi.variant().startswith("llvm")
        for m in torch.unique(mesh_index).tolist():
            rows = (mesh_index == m).nonzero()[:, 0]
            values = meshes[m].material.evaluate(uv[rows], flush_denormals=flush)
            for name, value in values.items():
                out[name][sel[rows]] = value
    return {k: v.reshape(h, w, -1) for k, v in out.items()}


def rasterize_mitsuba(meshes: list[Mesh], camera: Camera) -> tuple[dict[str, Tensor], str]:
    """G-buffer passes (B, T, C, H, W) + ``object_id`` (B, T, 1, H, W) int64 for every frame; also the variant used."""
    from neural_render.render.mitsuba_variant import select_mitsuba_variant

    mi = select_mitsuba_variant()
    b, t = camera.camera_to_world.shape[:2]
    frames: list[list[dict[str, Tensor]]] = []
    for bi in range(b):
        clip = []
        for ti in range(t):
            shapes = {shape_key(i): mitsuba_mesh(mi, m, ti, shape_key(i)) for i, m in enumerate(meshes)
                      if m.is_visible(ti)}
            if shapes:
                scene = mi.load_dict({"type": "scene", **shapes})
                clip.append(trace_frame(mi, scene, meshes, camera, bi, ti))
            else:
                clip.append(empty_frame(camera.height, camera.width))
        frames.append(clip)
    names = frames[0][0].keys()
    out = {k: torch.stack([torch.stack([f[k] for f in clip]) for clip in frames]).permute(0, 1, 4, 2, 3).contiguous()
           for k in names}
    return out, mi.variant()


def empty_frame(height: int, width: int) -> dict[str, Tensor]:
    """All-background frame in the layout of :func:`trace_frame`."""
    channels = {"mask": 1, "depth": 1, "normal": 3, "basecolor": 3, "roughness": 1, "metallic": 1}
    out = {k: torch.zeros(height, width, c) for k, c in channels.items()}
    out["object_id"] = torch.zeros(height, width, 1, dtype=torch.int64)
    return out
