"""SynthScene -> Mitsuba 3 scene dict of one frame (the dict that is rendered, nothing else is).

* shapes: one ``mi.Mesh`` per visible mesh (world geometry of that frame, raster/mitsuba_backend.py), keyed
  ``mesh_NNNN`` so hits map back to mesh index / object id; BSDF ``twosided(principled(base_color, roughness,
  metallic))`` with the material's own arrays as ``bitmap`` textures (filter as the material, wrap "repeat",
  ``raw``) or constants;
* emitter: ``envmap`` with the bitmap of :func:`neural_render.render.envmap.mitsuba_compatible_image` and
  ``to_world`` = the env's rotation R, so radiance from world direction d is ``image(R^T d)`` = ``EnvMap.lookup``;
* sensor: ``perspective`` (horizontal fov from fx, to_world from :func:`to_mitsuba_to_world`), ``hdrfilm`` RGB
  float32 with a ``box`` pixel filter (each pixel integrates its own footprint), ``independent`` sampler;
* integrator: ``path`` with ``max_depth`` (and ``hide_emitters`` when the scene hides its emitters from camera
  rays: a black background, generator 2);
* local lights (generator 2, synth/lights.py): ``light_NN`` point / spot emitters, no geometry (absent in scenes
  without lights, whose dict is exactly the one before they existed).

:class:`FrameBuilder` caches the per-clip pieces (env emitter, BSDFs, meshes of objects that do not move) so a
frame dict costs a few milliseconds; the dict it returns is complete and renders the same when loaded again.
:meth:`FrameBuilder.load` also reuses the loaded scene across frames in which no shape changes.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from neural_render.errors import NeuralRenderError
from neural_render.raster.material import Material
from neural_render.raster.mitsuba_backend import mitsuba_mesh, shape_key
from neural_render.render.envmap import mitsuba_compatible_image
from neural_render.types import Camera, EnvMap, to_mitsuba_to_world


def texture_dict(mi, texture: torch.Tensor, filter: str) -> dict | float:
    """Material texture (C, h, w) -> Mitsuba texture: a constant (1x1) or a ``bitmap`` of the same array."""
    c, h, w = texture.shape
    if h == 1 and w == 1:
        values = [float(v) for v in texture.reshape(-1)]
        return {"type": "rgb", "value": values} if c == 3 else values[0]
    array = np.ascontiguousarray(texture.permute(1, 2, 0).numpy().astype(np.float32))
    return {"type": "bitmap", "bitmap": mi.Bitmap(array), "filter_type": filter, "wrap_mode": "repeat", "raw": True}


def material_bsdf(mi, material: Material) -> dict:
    """Scene-dict BSDF of a material: twosided principled with base_color / roughness / metallic."""
    return {"type": "twosided", "bsdf": {
        "type": "principled",
        "base_color": texture_dict(mi, material.basecolor, material.filter),
        "roughness": texture_dict(mi, material.roughness, material.filter),
        "metallic": texture_dict(mi, material.metallic, material.filter)}}


def envmap_emitter(mi, env: EnvMap) -> dict:
    """Scene-dict ``envmap`` emitter showing ``env`` exactly as :meth:`EnvMap.lookup` (rotation included)."""
    bitmap = mi.Bitmap(np.ascontiguousarray(mitsuba_compatible_image(env.image).permute(1, 2, 0).numpy()))
    to_world = np.eye(4)
    to_world[:3, :3] = env.rotation.to(torch.float64).numpy()
    return {"type": "envmap", "bitmap": bitmap, "to_world": mi.ScalarTransform4f(to_world.tolist())}


def sensor_dict(mi, camera: Camera, frame: int, spp: int, batch: int = 0) -> dict:
    """Mitsuba perspective sensor reproducing ``camera`` (centred principal point, square pixels required)."""
    fx, fy, cx, cy = (float(v) for v in camera.intrinsics[batch])
    w, h = camera.width, camera.height
    if abs(fx - fy) > 1e-4 * fx or abs(cx - w / 2) > 1e-4 * w or abs(cy - h / 2) > 1e-4 * h:
        raise NeuralRenderError("the Mitsuba sensor needs square pixels and a centred principal point "
                                f"(got fx={fx}, fy={fy}, cx={cx}, cy={cy} for {w}x{h})")
    fov = math.degrees(2.0 * math.atan(w / (2.0 * fx)))
    to_world = to_mitsuba_to_world(camera.camera_to_world[batch, frame].to(torch.float64)).numpy()
    return {"type": "perspective", "fov": fov, "fov_axis": "x", "near_clip": 1e-3, "far_clip": 1e4,
            "to_world": mi.ScalarTransform4f(to_world.tolist()),
            "film": {"type": "hdrfilm", "width": w, "height": h, "rfilter": {"type": "box"},
                     "pixel_format": "rgb", "component_format": "float32"},
            "sampler": {"type": "independent", "sample_count": int(spp)}}


class FrameBuilder:
    """Builds the scene dict of each frame of one :class:`neural_render.synth.scene.SynthScene`."""

    def __init__(self, mi, scene):
        self.mi = mi
        self.scene = scene
        self.emitter = mi.load_dict(envmap_emitter(mi, scene.env))
        self.bsdfs = [mi.load_dict(material_bsdf(mi, m.material)) for m in scene.meshes]
        self._static: dict[int, object] = {}
        from neural_render.synth.lights import emitter_dict
        self.lights = {f"light_{i:02d}": mi.load_dict(emitter_dict(mi, light))
                       for i, light in enumerate(getattr(scene, "lights", []))}

    def _mesh(self, index: int, frame: int):
        mesh = self.scene.meshes[index]
        moving = mesh.to_world.ndim == 3 and not bool((mesh.to_world == mesh.to_world[:1]).all())
        if moving:
            return mitsuba_mesh(self.mi, mesh, frame, shape_key(index), self.bsdfs[index])
        if index not in self._static:
            self._static[index] = mitsuba_mesh(self.mi, mesh, frame, shape_key(index), self.bsdfs[index])
        return self._static[index]

    def _shapes(self, frame: int) -> dict:
        return {shape_key(i): self._mesh(i, frame) for i, mesh in enumerate(self.scene.meshes)
                if mesh.is_visible(frame)}

    def scene_dict(self, frame: int, shapes: dict | None = None) -> dict:
        """The complete Mitsuba scene dict of ``frame`` (load with ``mi.load_dict``)."""
        s = self.scene
        integrator = {"type": "path", "max_depth": int(s.config.max_depth)}
        if getattr(s, "hide_emitters", False):
            integrator["hide_emitters"] = True
        d = {"type": "scene", "integrator": integrator,
             "sensor": sensor_dict(self.mi, s.camera, frame, s.config.spp), "emitter": self.emitter}
        d.update(self.lights)
        d.update(self._shapes(frame) if shapes is None else shapes)
        return d

    def load(self, frame: int):
        """(loaded scene of ``frame``, seconds spent inside Mitsuba loading it).

        The scene is ``mi.load_dict(scene_dict(frame))``, except that when the shapes are the very objects of the
        previously loaded frame (nothing moved, appeared or vanished) that scene is reused with only the sensor pose
        updated (``mi.traverse``), which skips rebuilding the BVH. It renders bitwise like a fresh load (tested in
        tests/synth/test_render.py).
        """
        import time

        shapes = self._shapes(frame)
        key = tuple((name, id(shape)) for name, shape in shapes.items())
        if getattr(self, "_loaded_key", None) == key:
            to_world = sensor_dict(self.mi, self.scene.camera, frame, 1)["to_world"]
            start = time.perf_counter()
            params = self.mi.traverse(self._loaded)
            params["sensor.to_world"] = to_world
            params.update()
            return self._loaded, time.perf_counter() - start
        scene_dict = self.scene_dict(frame, shapes)
        start = time.perf_counter()
        self._loaded = self.mi.load_dict(scene_dict)
        self._loaded_key = key
        return self._loaded, time.perf_counter() - start
