"""Triangle meshes with a material and per-frame rigid placement: the input of every rasterizer backend.

Object space holds the geometry; ``to_world`` places it in world space per frame (a (4, 4) matrix for a static
object or (T, 4, 4) for motion); ``visible`` (T,) bool switches the object on and off per frame (an object that
appears mid-clip). World geometry of frame t is computed in float64 and rounded once to float32, so every backend
(and the Mitsuba scene used for path tracing) sees bit-identical triangles.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from neural_render.errors import NeuralRenderError
from neural_render.raster.material import Material


@dataclass
class Mesh:
    """vertices (V, 3) float32 object space; faces (F, 3) int64 counter-clockwise seen from outside;
    normals (V, 3) unit shading normals; uvs (V, 2) texture coordinates (see raster/material.py);
    to_world (4, 4) or (T, 4, 4) object-to-world (rotation * uniform scale + translation); visible None (always) or
    (T,) bool; name: a label for errors and meta data."""

    vertices: Tensor
    faces: Tensor
    normals: Tensor
    uvs: Tensor
    material: Material
    to_world: Tensor = field(default_factory=lambda: torch.eye(4))
    visible: Tensor | None = None
    name: str = "mesh"

    def __post_init__(self):
        self.vertices = torch.as_tensor(self.vertices, dtype=torch.float32).contiguous()
        self.faces = torch.as_tensor(self.faces, dtype=torch.int64).contiguous()
        self.normals = torch.as_tensor(self.normals, dtype=torch.float32).contiguous()
        self.uvs = torch.as_tensor(self.uvs, dtype=torch.float32).contiguous()
        self.to_world = torch.as_tensor(self.to_world, dtype=torch.float32)
        if self.visible is not None:
            self.visible = torch.as_tensor(self.visible, dtype=torch.bool).reshape(-1)
        self.validate()

    def validate(self) -> "Mesh":
        v, f, n, uv = self.vertices, self.faces, self.normals, self.uvs
        who = f"mesh {self.name!r}"
        if v.ndim != 2 or v.shape[1] != 3 or v.shape[0] < 3:
            raise NeuralRenderError(f"{who}: vertices must be (V >= 3, 3), got {tuple(v.shape)}")
        if f.ndim != 2 or f.shape[1] != 3 or f.shape[0] < 1:
            raise NeuralRenderError(f"{who}: faces must be (F >= 1, 3), got {tuple(f.shape)}")
        if int(f.min()) < 0 or int(f.max()) >= v.shape[0]:
            raise NeuralRenderError(f"{who}: face indices out of range [0, {v.shape[0]})")
        if n.shape != v.shape or uv.shape != (v.shape[0], 2):
            raise NeuralRenderError(f"{who}: normals must be (V, 3) and uvs (V, 2) with V = {v.shape[0]}")
        for name, x in (("vertices", v), ("normals", n), ("uvs", uv)):
            if not bool(torch.isfinite(x).all()):
                raise NeuralRenderError(f"{who}: {name} contain NaN or inf")
        if float((n.norm(dim=1) - 1.0).abs().max()) > 1e-3:
            raise NeuralRenderError(f"{who}: normals must be unit length")
        m = self.to_world
        if m.shape[-2:] != (4, 4) or m.ndim not in (2, 3) or not bool(torch.isfinite(m).all()):
            raise NeuralRenderError(f"{who}: to_world must be a finite (4, 4) or (T, 4, 4), got {tuple(m.shape)}")
        if self.visible is not None and m.ndim == 3 and self.visible.shape[0] != m.shape[0]:
            raise NeuralRenderError(f"{who}: visible has {self.visible.shape[0]} frames, to_world {m.shape[0]}")
        if not isinstance(self.material, Material):
            raise NeuralRenderError(f"{who}: material must be a neural_render.raster.Material")
        return self

    @property
    def num_frames(self) -> int | None:
        """Frames described by to_world / visible, or None for a static always-visible mesh."""
        if self.to_world.ndim == 3:
            return self.to_world.shape[0]
        return None if self.visible is None else self.visible.shape[0]

    def check_frames(self, num_frames: int) -> None:
        n = self.num_frames
        if n is not None and n != num_frames:
            raise NeuralRenderError(f"mesh {self.name!r} describes {n} frames but the camera has {num_frames}")

    def transform(self, frame: int) -> Tensor:
        """Object-to-world (4, 4) float64 at ``frame``."""
        m = self.to_world[frame] if self.to_world.ndim == 3 else self.to_world
        return m.to(torch.float64)

    def is_visible(self, frame: int) -> bool:
        return True if self.visible is None else bool(self.visible[frame])

    def world_geometry(self, frame: int) -> tuple[Tensor, Tensor]:
        """World vertices (V, 3) and unit world normals (V, 3), float32, at ``frame`` (float64 math, rounded once)."""
        m = self.transform(frame)
        lin, offset = m[:3, :3], m[:3, 3]
        verts = self.vertices.to(torch.float64) @ lin.T + offset
        normal_matrix = torch.linalg.inv(lin).T
        normals = torch.nn.functional.normalize(self.normals.to(torch.float64) @ normal_matrix.T, dim=1)
        return verts.to(torch.float32), normals.to(torch.float32)


def check_meshes(meshes, num_frames: int) -> list[Mesh]:
    """Validate a sequence of meshes against a clip length; returns it as a list."""
    meshes = list(meshes)
    if not meshes:
        raise NeuralRenderError("rasterize needs at least one mesh")
    for mesh in meshes:
        if not isinstance(mesh, Mesh):
            raise NeuralRenderError(f"rasterize expects neural_render.raster.Mesh objects, got {type(mesh).__name__}")
        mesh.check_frames(num_frames)
    return meshes
