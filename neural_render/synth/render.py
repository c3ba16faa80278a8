"""Render a generated clip: Mitsuba path-traced RGB, exact G-buffers, object ids and forward optical flow.

For every frame one scene dict is built (synth/mitsuba_scene.py) and loaded once (or, when no shape changed since
the previous frame, the previous scene gets the new sensor pose: same pixels, no BVH rebuild); the loaded scene is
path-traced (``mi.render(scene, spp=config.spp, seed=frame_seed)``; the RGB stored is exactly that image, no
post-processing) and ray-cast at pixel centres for the G-buffer (raster/mitsuba_backend.py).

Timings: ``render_seconds`` is the raw Mitsuba render time of the frames = ``mi.load_dict`` of the frame's scene
dict (or the sensor update) + ``mi.render`` + reading its pixels (what a bare Mitsuba script rendering these frames
must do);
``path_trace_seconds`` is the ``mi.render`` part alone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from neural_render.types import GBuffer

GBUFFER_PASSES = ("basecolor", "normal", "depth", "roughness", "metallic", "mask")


@dataclass
class RenderedClip:
    """rgb (1, T, 3, H, W) linear; gbuffer (1, T, C, H, W); object_id (1, T, 1, H, W) int64 (0 = background);
    flow (1, T, 2, H, W) forward flow t -> t+1 in pixels (x right, y down); flow_valid (1, T, 1, H, W) in {0, 1};
    render_seconds: raw Mitsuba time (scene load + path tracing); path_trace_seconds: mi.render alone;
    variant: Mitsuba variant used."""

    rgb: Tensor
    gbuffer: GBuffer
    object_id: Tensor
    flow: Tensor
    flow_valid: Tensor
    render_seconds: float
    path_trace_seconds: float
    variant: str


def render_frame_rgb(mi, loaded_scene, spp: int, seed: int) -> tuple[np.ndarray, float]:
    """Path-trace one loaded scene -> ((H, W, 3) float32 linear RGB, seconds spent)."""
    start = time.perf_counter()
    image = np.array(mi.render(loaded_scene, spp=int(spp), seed=int(seed)), dtype=np.float32)
    return image, time.perf_counter() - start


def render_clip(scene, on_frame=None, with_rgb: bool = True) -> RenderedClip:
    """Render every frame of a :class:`neural_render.synth.scene.SynthScene`.

    on_frame: optional callback ``on_frame(frame_index)`` after each frame (progress bars).
    with_rgb: False skips path tracing (G-buffers, ids and flow only; rgb is zeros).
    """
    from neural_render.raster.mitsuba_backend import camera_rays, empty_frame, trace_frame
    from neural_render.render.mitsuba_variant import select_mitsuba_variant
    from neural_render.synth.flow import forward_flow
    from neural_render.synth.mitsuba_scene import FrameBuilder

    mi = select_mitsuba_variant()
    builder = FrameBuilder(mi, scene)
    cam = scene.camera
    t_count, h, w = cam.num_frames, cam.height, cam.width
    rgb = torch.zeros(1, t_count, 3, h, w)
    frames = []
    rays = camera_rays(cam)
    raw = path_trace = 0.0
    for t in range(t_count):
        loaded, seconds = builder.load(t)  # mi.load_dict of the frame's scene dict (or a sensor update)
        raw += seconds
        if with_rgb:
            image, seconds = render_frame_rgb(mi, loaded, scene.config.spp, scene.frame_seeds[t])
            rgb[0, t] = torch.from_numpy(image).permute(2, 0, 1)
            raw += seconds
            path_trace += seconds
        if any(m.is_visible(t) for m in scene.meshes):
            frames.append(trace_frame(mi, loaded, scene.meshes, cam, 0, t, rays))
        else:
            frames.append(empty_frame(h, w))
        if on_frame is not None:
            on_frame(t)
    passes = {k: torch.stack([f[k] for f in frames]).permute(0, 3, 1, 2)[None].contiguous() for k in frames[0]}
    ids = passes.pop("object_id")
    gbuffer = GBuffer(**{k: passes[k] for k in GBUFFER_PASSES})
    flow, valid = forward_flow(gbuffer.depth[0], ids[0], cam, scene.meshes)
    return RenderedClip(rgb, gbuffer, ids, flow[None], valid[None], raw, path_trace, mi.variant())
