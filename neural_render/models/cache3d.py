"""Editable 3D cache of a clip (Real2SAM2Real): entities = triangle meshes with a rigid pose per frame.

An entity is a :class:`neural_render.raster.Mesh` (object-space geometry + :class:`Material`) whose ``to_world`` is
always stored per frame, (T, 4, 4) float32, with a (T,) ``visible`` flag. Entities come from

* mesh files (:meth:`Cache3D.add_mesh_file`, OBJ/GLB/PLY/... through trimesh, centred with largest extent 1),
* ready meshes (:meth:`Cache3D.add`), e.g. an object to insert,
* a clip's G-buffers (:meth:`Cache3D.lift`): the masked pixels of one reference frame are back-projected with their
  depth (planar ``-z_cam``, scene units) to world points, neighbouring pixels are joined into triangles unless their
  depths jump, the G-buffer normals become the vertex normals (turned to world space) and the basecolor / roughness
  / metallic of that frame become "nearest" textures addressed by pixel uv. Lifted entities are STATIC (identity
  pose every frame): the reference frame's surface, seen again from every camera of the clip.

Edits (each returns the cache, so they chain; ``frames`` None = every frame, else an index sequence / slice):
``move`` (translate by an offset in world units), ``rotate`` (yaw/pitch/roll in degrees or a 3x3 matrix, about a
pivot), ``scale`` (uniform factor about a pivot), ``remove``, ``duplicate`` (copy, optionally moved), ``add``
(insert). The pivot defaults to the entity's bounding-box centre at each frame. An edit left-multiplies the pose,
``to_world[t] <- E_t @ to_world[t]``, computed in float64 and rounded once to float32.

:meth:`Cache3D.render` rasterizes every visible entity per frame with :func:`neural_render.raster.rasterize`
(Mitsuba ray casting on CPU, nvdiffrast on CUDA) into camera-space normal maps, masks, depth and entity ids.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass

import torch
from torch import Tensor

from neural_render.errors import NeuralRenderError
from neural_render.raster import Material, Mesh
from neural_render.types import Camera, GBuffer

SOURCES = ("mesh", "file", "lifted")


@dataclass
class CacheEntity:
    """name: unique label; mesh: geometry + material, ``to_world`` (T, 4, 4), ``visible`` (T,); source: SOURCES."""

    name: str
    mesh: Mesh
    source: str = "mesh"


@dataclass
class CacheRender:
    """Per-frame render of a cache (B = camera batch, T frames).

    normal: (B, T, 3, H, W) unit camera-space normals (OpenGL axes), 0 where no entity;
    mask: (B, T, 1, H, W) 1 on entity pixels; depth: (B, T, 1, H, W) planar depth in scene units, 0 = none;
    entity_id: (B, T, 1, H, W) int64, k > 0 = ``names[k - 1]``, 0 = background; names: rendered entity names.
    """

    normal: Tensor
    mask: Tensor
    depth: Tensor
    entity_id: Tensor
    names: list[str]

    def entity_mask(self, name: str) -> Tensor:
        """(B, T, 1, H, W) float32 mask of one entity's visible pixels."""
        if name not in self.names:
            raise NeuralRenderError(f"entity {name!r} was not rendered (rendered: {self.names})")
        return (self.entity_id == self.names.index(name) + 1).to(torch.float32)


def translation(offset) -> Tensor:
    """(4, 4) float64 translation by ``offset`` (3,)."""
    m = torch.eye(4, dtype=torch.float64)
    m[:3, 3] = torch.as_tensor(offset, dtype=torch.float64).reshape(3)
    return m


def placement(position=(0.0, 0.0, 0.0), scale: float = 1.0, rotation: Tensor | None = None) -> Tensor:
    """(4, 4) float32 object-to-world: ``T(position) @ R @ S(scale)`` (R (3, 3), identity by default)."""
    m = torch.eye(4, dtype=torch.float64)
    rot = torch.eye(3, dtype=torch.float64) if rotation is None else torch.as_tensor(rotation, dtype=torch.float64)
    m[:3, :3] = rot * float(scale)
    m[:3, 3] = torch.as_tensor(position, dtype=torch.float64).reshape(3)
    return m.to(torch.float32)


def _rotation(rotation) -> Tensor:
    """(yaw, pitch, roll) degrees or a (3, 3) matrix -> (3, 3) float64 orthonormal."""
    r = torch.as_tensor(rotation, dtype=torch.float64)
    if r.shape == (3,):
        from neural_render.render.rotation import euler_to_matrix
        r = euler_to_matrix(float(r[0]), float(r[1]), float(r[2]), dtype=torch.float64)
    if r.shape != (3, 3) or not bool(torch.isfinite(r).all()):
        raise NeuralRenderError(f"rotation must be (yaw, pitch, roll) degrees or a 3x3 matrix, got {tuple(r.shape)}")
    if not torch.allclose(r @ r.T, torch.eye(3, dtype=torch.float64), atol=1e-5):
        raise NeuralRenderError("rotation matrix is not orthonormal")
    return r


def _check_vector(value, what: str) -> Tensor:
    v = torch.as_tensor(value, dtype=torch.float64).reshape(-1)
    if v.shape != (3,) or not bool(torch.isfinite(v).all()):
        raise NeuralRenderError(f"{what} must be 3 finite numbers, got {value!r}")
    return v


class Cache3D:
    """Ordered set of :class:`CacheEntity` for a clip of ``num_frames`` frames (see module doc)."""

    def __init__(self, num_frames: int):
        if int(num_frames) < 1:
            raise NeuralRenderError(f"a cache needs num_frames >= 1, got {num_frames}")
        self.num_frames = int(num_frames)
        self.entities: dict[str, CacheEntity] = {}

    # ------------------------------------------------------------------ access
    @property
    def names(self) -> list[str]:
        return list(self.entities)

    def __len__(self) -> int:
        return len(self.entities)

    def __contains__(self, name: str) -> bool:
        return name in self.entities

    def entity(self, name: str) -> CacheEntity:
        if name not in self.entities:
            raise NeuralRenderError(f"no entity {name!r} in the cache (has {self.names})")
        return self.entities[name]

    def copy(self) -> Cache3D:
        """Deep copy (edits on the copy never touch this cache)."""
        return copy.deepcopy(self)

    def _new_name(self, base: str) -> str:
        if base not in self.entities:
            return base
        k = 1
        while f"{base}_{k}" in self.entities:
            k += 1
        return f"{base}_{k}"

    # ------------------------------------------------------------------ adding
    def add(self, mesh: Mesh, name: str | None = None, source: str = "mesh") -> str:
        """Insert a mesh (static (4, 4) or per-frame (T, 4, 4) pose, optional (T,) visibility); returns its name."""
        if not isinstance(mesh, Mesh):
            raise NeuralRenderError(f"cache entities are neural_render.raster.Mesh objects, got {type(mesh).__name__}")
        if source not in SOURCES:
            raise NeuralRenderError(f"entity source must be one of {SOURCES}, got {source!r}")
        mesh.check_frames(self.num_frames)
        name = self._new_name(mesh.name) if name is None else str(name)
        if name in self.entities:
            raise NeuralRenderError(f"entity {name!r} already exists in the cache")
        t = self.num_frames
        to_world = mesh.to_world if mesh.to_world.ndim == 3 else mesh.to_world.expand(t, 4, 4)
        visible = torch.ones(t, dtype=torch.bool) if mesh.visible is None else mesh.visible
        stored = Mesh(mesh.vertices, mesh.faces, mesh.normals, mesh.uvs, mesh.material, to_world.clone(),
                      visible.clone(), name=name)
        self.entities[name] = CacheEntity(name, stored, source)
        return name

    def add_mesh_file(self, path: str | os.PathLike, material: Material | None = None, position=(0.0, 0.0, 0.0),
                      scale: float = 1.0, rotation=None, name: str | None = None) -> str:
        """Load a mesh file (:func:`neural_render.synth.shapes.load_mesh_file`: centred, largest extent 1), place it
        with ``placement(position, scale, rotation)`` on every frame; returns the entity name. Bad files raise
        :class:`NeuralRenderError` naming the file."""
        from neural_render.synth.shapes import load_mesh_file

        if not float(scale) > 0:
            raise NeuralRenderError(f"scale must be > 0, got {scale}")
        geometry = load_mesh_file(path)
        rot = None if rotation is None else _rotation(rotation)
        material = material if material is not None else Material(0.8, 0.5, 0.0)
        label = name if name is not None else self._new_name(os.path.splitext(os.path.basename(os.fspath(path)))[0])
        mesh = Mesh(geometry.vertices, geometry.faces, geometry.normals, geometry.uvs, material,
                    placement(_check_vector(position, "position"), scale, rot), name=label)
        return self.add(mesh, label, source="file")

    def lift(self, gbuffer: GBuffer, camera: Camera, mask: Tensor, name: str = "lifted", frame: int = 0,
             batch: int = 0, max_depth_jump: float = 0.1) -> str:
        """Back-project the masked pixels of ``frame`` into a static world-space mesh entity; returns its name.

        gbuffer: needs ``depth`` (metric, scene units) and ``normal``; basecolor / roughness / metallic are used
        when present. mask: (B, T, 1, H, W) selecting the entity (> 0.5) on top of the G-buffer's own mask/depth.
        max_depth_jump: neighbouring pixels are joined only when their depths differ by less than this fraction
        of their depth (silhouette edges are not bridged). Raises if fewer than one triangle can be built.
        """
        mesh = self._lifted_mesh(gbuffer, camera, mask, name, frame, batch, max_depth_jump)
        if mesh is None:
            raise NeuralRenderError(f"lift {name!r}: the mask selects no connected surface (need >= 1 triangle)")
        return self.add(mesh, name, source="lifted")

    def _lifted_mesh(self, gbuffer: GBuffer, camera: Camera, mask: Tensor, name: str, frame: int, batch: int,
                     max_depth_jump: float) -> Mesh | None:
        """The mesh :meth:`lift` adds (None when no triangle can be built)."""
        if gbuffer.depth is None or gbuffer.normal is None:
            raise NeuralRenderError("lifting an entity needs the G-buffer's depth and normal passes")
        b, t, h, w = gbuffer.shape
        if not (0 <= frame < t and 0 <= batch < b) or (camera.height, camera.width) != (h, w):
            raise NeuralRenderError(f"lift: frame {frame} / batch {batch} / camera size do not fit the G-buffer "
                                    f"(B={b}, T={t}, {h}x{w})")
        depth = gbuffer.depth[batch, frame, 0].to(torch.float64)
        valid = (mask[batch, frame, 0] > 0.5) & (depth > 0)
        if gbuffer.mask is not None:
            valid &= gbuffer.mask[batch, frame, 0] > 0.5
        rays = camera.ray_directions()[batch, 0].to(torch.float64)  # (3, H, W) unit, z < 0
        points_cam = rays * (depth / -rays[2])  # planar depth -> point on the ray
        c2w = camera.camera_to_world[batch, frame].to(torch.float64)
        points = (points_cam.permute(1, 2, 0) @ c2w[:3, :3].T + c2w[:3, 3]).reshape(-1, 3)
        normals_cam = gbuffer.normal[batch, frame].to(torch.float64).permute(1, 2, 0)
        towards_camera = -rays.permute(1, 2, 0)
        length = normals_cam.norm(dim=-1, keepdim=True)
        normals_cam = torch.where(length > 1e-6, normals_cam / length.clamp_min(1e-12), towards_camera)
        normals = (normals_cam @ c2w[:3, :3].T).reshape(-1, 3)
        index = torch.full((h, w), -1, dtype=torch.int64)
        index[valid] = torch.arange(int(valid.sum()))
        d = depth

        def joined(a: tuple, c: tuple) -> Tensor:
            da, dc = d[a], d[c]
            return (torch.abs(da - dc) < max_depth_jump * torch.minimum(da, dc)) & valid[a] & valid[c]

        s = (slice(0, h - 1), slice(0, w - 1))
        right, down, diag = (slice(0, h - 1), slice(1, w)), (slice(1, h), slice(0, w - 1)), (slice(1, h), slice(1, w))
        # counter-clockwise as seen by the camera (image rows grow downwards): (i,j), (i+1,j), (i,j+1)
        upper = joined(s, down) & joined(s, right) & joined(down, right)
        lower = joined(down, diag) & joined(diag, right) & joined(down, right)
        faces = torch.cat([torch.stack([index[s][upper], index[down][upper], index[right][upper]], 1),
                           torch.stack([index[down][lower], index[diag][lower], index[right][lower]], 1)])
        if faces.shape[0] < 1:
            return None
        used = torch.zeros(int(valid.sum()), dtype=torch.bool)
        used[faces.reshape(-1)] = True
        remap = torch.cumsum(used, 0) - 1
        faces = remap[faces]
        flat = valid.reshape(-1).nonzero()[:, 0][used]
        rows, cols = flat // w, flat % w
        uvs = torch.stack([(cols + 0.5) / w, (rows + 0.5) / h], 1)

        def texture(x: Tensor | None, default: float) -> Tensor | float:
            return default if x is None else x[batch, frame].clamp(0, 1).contiguous()

        material = Material(texture(gbuffer.basecolor, 0.8), texture(gbuffer.roughness, 0.5),
                            texture(gbuffer.metallic, 0.0), filter="nearest", name=f"{name}_lifted")
        return Mesh(points[flat].to(torch.float32), faces, torch.nn.functional.normalize(normals[flat], dim=1),
                    uvs.to(torch.float32), material, torch.eye(4), name=name)

    def lift_frames(self, gbuffer: GBuffer, camera: Camera, mask: Tensor, name: str = "scene", batch: int = 0,
                    max_depth_jump: float = 0.1) -> list[str]:
        """Lift the masked pixels of EVERY frame (:meth:`lift`), each as its own entity visible only in its frame
        (the scene as the camera sees it at that instant: a moving camera reveals different parts). Frames that
        give no triangle add nothing. Returns the new names (``name_t<frame>``)."""
        names = []
        for frame in range(self.num_frames):
            mesh = self._lifted_mesh(gbuffer, camera, mask, f"{name}_t{frame}", frame, batch, max_depth_jump)
            if mesh is not None:
                mesh.visible = torch.arange(self.num_frames) == frame
                names.append(self.add(mesh, mesh.name, source="lifted"))
        return names

    # ------------------------------------------------------------------ edits
    def _frames(self, frames) -> list[int]:
        all_frames = list(range(self.num_frames))
        if frames is None:
            return all_frames
        chosen = all_frames[frames] if isinstance(frames, slice) else [int(f) for f in frames]
        bad = [f for f in chosen if not 0 <= f < self.num_frames]
        if bad:
            raise NeuralRenderError(f"frames {bad} outside [0, {self.num_frames})")
        return chosen

    def centre(self, name: str, frame: int) -> Tensor:
        """World-space centre (3,) float64 of the entity's object-space bounding box at ``frame``."""
        mesh = self.entity(name).mesh
        lo, hi = mesh.vertices.amin(0).to(torch.float64), mesh.vertices.amax(0).to(torch.float64)
        m = mesh.transform(frame)
        return m[:3, :3] @ ((lo + hi) / 2) + m[:3, 3]

    def transform(self, name: str, matrix_of_frame, frames=None) -> Cache3D:
        """Left-multiply the pose of ``frames`` by ``matrix_of_frame(t)`` ((4, 4) float64; see module doc)."""
        mesh = self.entity(name).mesh
        to_world = mesh.to_world.clone()
        for f in self._frames(frames):
            edit = torch.as_tensor(matrix_of_frame(f), dtype=torch.float64)
            to_world[f] = (edit @ mesh.transform(f)).to(torch.float32)
        mesh.to_world = to_world
        mesh.validate()
        return self

    def move(self, name: str, offset, frames=None) -> Cache3D:
        """Translate by ``offset`` (3,) world units."""
        m = translation(_check_vector(offset, "offset"))
        return self.transform(name, lambda f: m, frames)

    def _about_pivot(self, name: str, linear: Tensor, pivot, frames) -> Cache3D:
        fixed = None if pivot is None else _check_vector(pivot, "pivot")

        def matrix(f: int) -> Tensor:
            p = self.centre(name, f) if fixed is None else fixed
            m = torch.eye(4, dtype=torch.float64)
            m[:3, :3] = linear
            return translation(p) @ m @ translation(-p)

        return self.transform(name, matrix, frames)

    def rotate(self, name: str, rotation, pivot=None, frames=None) -> Cache3D:
        """Rotate by (yaw, pitch, roll) degrees or a (3, 3) matrix about ``pivot`` (default: bounding-box centre)."""
        return self._about_pivot(name, _rotation(rotation), pivot, frames)

    def scale(self, name: str, factor: float, pivot=None, frames=None) -> Cache3D:
        """Uniform scale by ``factor`` > 0 about ``pivot`` (default: bounding-box centre)."""
        if not float(factor) > 0:
            raise NeuralRenderError(f"scale factor must be > 0, got {factor}")
        return self._about_pivot(name, torch.eye(3, dtype=torch.float64) * float(factor), pivot, frames)

    def set_visible(self, name: str, visible: bool, frames=None) -> Cache3D:
        mesh = self.entity(name).mesh
        flags = mesh.visible.clone()
        flags[self._frames(frames)] = bool(visible)
        mesh.visible = flags
        return self

    def remove(self, name: str) -> Cache3D:
        self.entity(name)
        del self.entities[name]
        return self

    def duplicate(self, name: str, new_name: str | None = None, offset=(0.0, 0.0, 0.0)) -> str:
        """Copy an entity (geometry shared by value), moved by ``offset``; returns the new name."""
        src = self.entity(name)
        new_name = self._new_name(name) if new_name is None else new_name
        m = src.mesh
        added = self.add(Mesh(m.vertices, m.faces, m.normals, m.uvs, copy.deepcopy(m.material), m.to_world.clone(),
                              m.visible.clone(), name=new_name), new_name, src.source)
        if any(float(v) != 0.0 for v in _check_vector(offset, "offset")):
            self.move(added, offset)
        return added

    # ------------------------------------------------------------------ rendering
    def meshes(self, names=None) -> list[Mesh]:
        """The entities' meshes in cache order (``names`` restricts and orders them)."""
        chosen = self.names if names is None else list(names)
        return [self.entity(n).mesh for n in chosen]

    def rasterize(self, camera: Camera, backend: str = "auto", names=None) -> tuple[GBuffer | None, Tensor | None,
                                                                                   list[str]]:
        """Full G-buffer (all passes, materials included) + entity ids (B, T, 1, H, W) of the entities (all, or
        ``names``) for every frame of ``camera``; (None, None, names) when no entity is visible in any frame."""
        from neural_render.raster import rasterize

        if not isinstance(camera, Camera):
            raise NeuralRenderError(f"render needs a neural_render.types.Camera, got {type(camera).__name__}")
        if camera.num_frames != self.num_frames:
            raise NeuralRenderError(f"camera has {camera.num_frames} frames, the cache {self.num_frames}")
        chosen = self.names if names is None else list(names)
        meshes = self.meshes(chosen)
        if not any(bool(m.visible.any()) for m in meshes):
            return None, None, chosen
        gbuffer, ids = rasterize(meshes, camera, backend=backend, return_ids=True)
        return gbuffer, ids, chosen

    def render(self, camera: Camera, backend: str = "auto", names=None) -> CacheRender:
        """Rasterize entities (all, or ``names``) for every frame of ``camera`` (see :class:`CacheRender`)."""
        gbuffer, ids, chosen = self.rasterize(camera, backend, names)
        return render_of(gbuffer, ids, chosen, camera)


def render_of(gbuffer: GBuffer | None, ids: Tensor | None, names: list[str], camera: Camera) -> CacheRender:
    """:class:`CacheRender` from the output of :meth:`Cache3D.rasterize` (zeros when ``gbuffer`` is None)."""
    if gbuffer is None:
        b, t, h, w = camera.intrinsics.shape[0], camera.num_frames, camera.height, camera.width
        z = torch.zeros(b, t, 1, h, w)
        return CacheRender(torch.zeros(b, t, 3, h, w), z, z.clone(), torch.zeros(b, t, 1, h, w, dtype=torch.int64),
                           list(names))
    return CacheRender(gbuffer.normal * gbuffer.mask, gbuffer.mask, gbuffer.depth, ids, list(names))
