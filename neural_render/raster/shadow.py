"""How much of the environment's diffuse light a set of meshes blocks at each pixel of a clip (3D-cache shadows).

For every pixel with a surface (world point p and unit normal n from a G-buffer's planar depth and camera-space
normal) :func:`env_occlusion` returns

    O(p) = sum_k w_k(n) V_k(p) / sum_k w_k(n),   w_k(n) = Y(L_k) * Omega_k * max(0, n . d_k),

the share of the irradiance from the env map that the meshes block: d_k are the centres of the cells of the env
map area-averaged to ``env_rows`` x ``2 * env_rows`` (its rotation applied; L_k the cell's mean radiance, Y the
Rec. 709 luminance, Omega_k its solid angle) and V_k(p) = 1 when the ray p + eps n + s d_k (s > 0) hits a mesh. O is
0 where nothing is blocked (or no surface / no light), 1 where the meshes hide every lit direction. This is the
classical differential-rendering shadow term (Debevec 1998) for the diffuse part, in units of "fraction of light".

Rays are culled against each mesh's bounding sphere in torch and the rest cast with Mitsuba 3 (``ray_test``:
vectorised under ``llvm_ad_rgb``; one call per candidate ray under the ``scalar_rgb`` fallback, which is slow for
large frames but exact). Pure function of its inputs: no globals, nothing cached between calls.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from neural_render.errors import NeuralRenderError
from neural_render.raster.mesh import check_meshes
from neural_render.types import Camera, EnvMap

#: Rec. 709 luminance weights
LUMINANCE = (0.2126, 0.7152, 0.0722)


def env_directions(env: EnvMap, rows: int = 16) -> tuple[Tensor, Tensor]:
    """(K, 3) world directions of the cells of ``env`` area-averaged to rows x 2 rows, and (K,) their light
    weights luminance x solid angle (K = 2 rows^2; rotation applied)."""
    from neural_render.render.envmap import (
        bake,
        equirect_directions,
        resample_equirect,
        solid_angles,
    )

    if int(rows) < 2:
        raise NeuralRenderError(f"env_rows must be >= 2, got {rows}")
    baked = bake(env)  # rotation folded into the image
    small = resample_equirect(baked.image.float(), int(rows), 2 * int(rows))  # (3, r, 2r)
    lum = torch.einsum("c,chw->hw", torch.tensor(LUMINANCE), small).clamp_min(0.0)
    weight = lum * solid_angles(int(rows), 2 * int(rows))
    dirs = equirect_directions(int(rows), 2 * int(rows))  # (r, 2r, 3)
    return dirs.reshape(-1, 3).to(torch.float64), weight.reshape(-1).to(torch.float64)


def surface_points(camera: Camera, depth: Tensor, normal: Tensor, batch: int, frame: int
                   ) -> tuple[Tensor, Tensor]:
    """World points (H*W, 3) and world unit normals (H*W, 3), float64, of one frame. depth (B,T,1,H,W) planar
    (scene units), normal (B,T,3,H,W) camera space."""
    from neural_render.raster.mitsuba_backend import camera_rays

    rays = camera_rays(camera, batch)
    z = depth[batch, frame, 0].to(torch.float64).reshape(-1, 1)
    p_cam = rays * z / (-rays[:, 2:3]).clamp_min(1e-9)
    c2w = camera.camera_to_world[batch, frame].to(torch.float64)
    rot, origin = c2w[:3, :3], c2w[:3, 3]
    n_cam = normal[batch, frame].to(torch.float64).permute(1, 2, 0).reshape(-1, 3)
    return p_cam @ rot.T + origin, torch.nn.functional.normalize(n_cam @ rot.T, dim=1)


def _sphere_candidates(points: Tensor, dirs: Tensor, spheres: list[tuple[Tensor, float]]) -> Tensor:
    """(N, K) bool: the ray from point n along direction k can meet one of the bounding spheres (centre, radius)."""
    hit = torch.zeros(points.shape[0], dirs.shape[0], dtype=torch.bool)
    for centre, radius in spheres:
        v = centre[None] - points  # (N, 3)
        along = v @ dirs.T  # (N, K): distance along the ray to the closest approach
        dist2 = (v * v).sum(1, keepdim=True) - along ** 2
        inside = (v * v).sum(1, keepdim=True) <= radius ** 2
        hit |= (dist2 <= radius ** 2) & ((along > 0) | inside)
    return hit


def _ray_test(mi, scene, origins: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """(N,) bool: ray i hits a shape of ``scene``."""
    if origins.shape[0] == 0:
        return np.zeros(0, bool)
    if mi.variant().startswith("scalar"):
        out = np.zeros(origins.shape[0], bool)
        for i in range(origins.shape[0]):
            ray = mi.Ray3f(mi.Point3f(*(float(c) for c in origins[i])), mi.Vector3f(*(float(c) for c in dirs[i])))
            out[i] = bool(scene.ray_test(ray))
        return out
    import drjit as dr

    o = torch.from_numpy(np.ascontiguousarray(origins, dtype=np.float32)).T.contiguous()
    d = torch.from_numpy(np.ascontiguousarray(dirs, dtype=np.float32)).T.contiguous()
    ray = mi.Ray3f(mi.Point3f(mi.Float(o[0]), mi.Float(o[1]), mi.Float(o[2])),
                   mi.Vector3f(mi.Float(d[0]), mi.Float(d[1]), mi.Float(d[2])))
    hit = scene.ray_test(ray)
    dr.eval(hit)
    return np.array(hit).astype(bool)


def env_occlusion(meshes, camera: Camera, depth: Tensor, normal: Tensor, mask: Tensor, env: EnvMap,
                  env_rows: int = 16, offset: float = 1e-3) -> Tensor:
    """Share of the env's diffuse light blocked by ``meshes`` at each surface pixel (module docstring).

    meshes: sequence of :class:`Mesh` (per-frame placement and visibility respected); camera: B clips x T frames;
    depth (B,T,1,H,W) planar scene units, normal (B,T,3,H,W) camera space, mask (B,T,1,H,W) surface pixels (only
    those are computed); env: the clip's env map (world space). offset: ray origins move off the surface along
    the normal by offset x (1 + depth) scene units (no self-hits on the surface itself).
    Returns (B, T, 1, H, W) float32 in [0, 1].
    """
    from neural_render.raster.mitsuba_backend import mitsuba_mesh, shape_key
    from neural_render.render.mitsuba_variant import select_mitsuba_variant

    b, t, h, w = camera.camera_to_world.shape[0], camera.num_frames, camera.height, camera.width
    for name, x, c in (("depth", depth, 1), ("normal", normal, 3), ("mask", mask, 1)):
        if tuple(x.shape) != (b, t, c, h, w):
            raise NeuralRenderError(f"env_occlusion: {name} must be {(b, t, c, h, w)}, got {tuple(x.shape)}")
    meshes = check_meshes(meshes, t) if len(meshes) else []
    dirs, weight = env_directions(env, env_rows)
    out = torch.zeros(b, t, 1, h, w)
    if not meshes or float(weight.sum()) <= 0.0:
        return out
    mi = select_mitsuba_variant()
    for ti in range(t):
        visible = [(i, m) for i, m in enumerate(meshes) if m.is_visible(ti)]
        if not visible:
            continue
        spheres = []
        for _, m in visible:
            verts = m.world_geometry(ti)[0].to(torch.float64)
            lo, hi = verts.min(0).values, verts.max(0).values
            centre = (lo + hi) / 2
            spheres.append((centre, float((verts - centre).norm(dim=1).max()) * 1.001 + 1e-6))
        scene = mi.load_dict({"type": "scene", **{shape_key(i): mitsuba_mesh(mi, m, ti, shape_key(i))
                                                   for i, m in visible}})
        for bi in range(b):
            points, normals = surface_points(camera, depth, normal, bi, ti)
            on = mask[bi, ti, 0].reshape(-1) > 0.5
            cos = (normals @ dirs.T).clamp_min(0.0) * on[:, None]  # (N, K)
            lit = cos * weight[None]
            total = lit.sum(1)
            z = depth[bi, ti, 0].reshape(-1).to(torch.float64)
            origins = points + normals * (offset * (1.0 + z))[:, None]
            cand = _sphere_candidates(origins, dirs, spheres) & (lit > 0)
            rows, cols = cand.nonzero(as_tuple=True)
            hit = torch.from_numpy(_ray_test(mi, scene, origins[rows].numpy(), dirs[cols].numpy()))
            blocked = torch.zeros_like(total)
            blocked.index_add_(0, rows[hit], lit[rows[hit], cols[hit]])
            frac = torch.where(total > 0, blocked / total.clamp_min(1e-30), torch.zeros_like(total))
            out[bi, ti, 0] = frac.clamp(0.0, 1.0).reshape(h, w).to(torch.float32)
    return out


def mutual_occlusion(object_meshes, scene_meshes, camera: Camera, depth: Tensor, normal: Tensor, mask: Tensor,
                     object_mask: Tensor, env: EnvMap, env_rows: int = 16) -> Tensor:
    """The shadow an object and its scene cast on EACH OTHER, as one map (B, T, 1, H, W) in [0, 1].

    On the scene's pixels (``mask`` and not ``object_mask``): :func:`env_occlusion` of ``object_meshes`` (the light
    the object takes from the scene). On the object's visible pixels (``object_mask``): :func:`env_occlusion` of
    ``scene_meshes`` + ``object_meshes`` (the light the scene, e.g. a ground it stands on or a wall beside it, and
    the object itself take from the object). depth / normal / mask: the composited G-buffer (planar scene units,
    camera-space normals); the scene meshes are typically lifted from the scene's own G-buffer, one per frame
    (:meth:`~neural_render.models.cache3d.Cache3D.lift_frames`).
    """
    on_object = object_mask > 0.5
    cast = env_occlusion(object_meshes, camera, depth, normal, mask * ~on_object, env, env_rows)
    received = env_occlusion([*scene_meshes, *object_meshes], camera, depth, normal, on_object.float(), env, env_rows)
    return torch.where(on_object, received, cast)


__all__ = ["env_directions", "env_occlusion", "mutual_occlusion", "surface_points"]
