"""Rasterizer backends behind one function: meshes + camera -> exact G-buffer.

``rasterize(meshes, camera, backend="auto") -> GBuffer`` with passes (B, T, C, H, W) float32 following
:mod:`neural_render.types.gbuffer` (basecolor, camera-space normal, planar depth, roughness, metallic, mask;
background 0 everywhere). Backends:

* ``"mitsuba"`` (CPU, the default): one ray per pixel centre through Mitsuba 3's ray intersector
  (raster/mitsuba_backend.py); works with ``llvm_ad_rgb`` and the ``scalar_rgb`` fallback.
* ``"nvdiffrast"``: CUDA rasterisation (raster/nvdiffrast_backend.py), only when CUDA and nvdiffrast import;
  otherwise :class:`NeuralRenderError`. Never emulated on CPU.
* ``"auto"``: nvdiffrast when usable, else mitsuba.

Meshes (:class:`Mesh`) carry a :class:`Material` and per-frame placement (motion, visibility); the camera's
T frames are rendered for each of its B clips.
"""

from __future__ import annotations

from torch import Tensor

from neural_render.errors import NeuralRenderError
from neural_render.raster.material import Material, sample_texture
from neural_render.raster.mesh import Mesh, check_meshes
from neural_render.types import Camera, GBuffer

BACKENDS = ("auto", "mitsuba", "nvdiffrast")

__all__ = ["BACKENDS", "Material", "Mesh", "rasterize", "resolve_backend", "sample_texture"]


def resolve_backend(backend: str = "auto") -> str:
    """The concrete backend ``rasterize`` would use for ``backend`` ("mitsuba" or "nvdiffrast")."""
    if backend not in BACKENDS:
        raise NeuralRenderError(f"unknown rasterizer backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "auto":
        from neural_render.raster.nvdiffrast_backend import nvdiffrast_available
        return "nvdiffrast" if nvdiffrast_available()[0] else "mitsuba"
    return backend


def rasterize(meshes, camera: Camera, backend: str = "auto", return_ids: bool = False):
    """Exact G-buffer of ``meshes`` seen by ``camera``: GBuffer with (B, T, C, H, W) passes.

    meshes: sequence of :class:`Mesh` (index i gets object id i + 1); camera: B clips x T frames.
    return_ids: also return the object id map (B, T, 1, H, W) int64 (0 = background).
    """
    if not isinstance(camera, Camera):
        raise NeuralRenderError(f"rasterize needs a neural_render.types.Camera, got {type(camera).__name__}")
    meshes = check_meshes(meshes, camera.num_frames)
    name = resolve_backend(backend)
    if name == "mitsuba":
        from neural_render.raster.mitsuba_backend import rasterize_mitsuba
        passes, _ = rasterize_mitsuba(meshes, camera)
    else:
        from neural_render.raster.nvdiffrast_backend import rasterize_nvdiffrast
        passes = rasterize_nvdiffrast(meshes, camera)
    ids: Tensor = passes.pop("object_id")
    gbuffer = GBuffer(**passes)
    return (gbuffer, ids) if return_ids else gbuffer
