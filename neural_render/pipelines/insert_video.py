"""Insert a 3D object into a user's video (what ``neural-render insert`` does; the pipeline is pipelines/insert.py).

The video: a file, a frame folder or a clip folder (io/video_input.py); a clip folder gives cameras, its env map and
a depth scale, a plain video gets a static camera (identity pose, ``fov``) and needs an env map. The scene's
G-buffers come from the inverse model or the clip folder's passes (:func:`scene_gbuffers`); depth scale (scene units
of relative depth 1): pipelines/insert.choose_depth_scale. Every input is read and checked (:func:`check_scale`,
:func:`check_object_footprint`, :func:`check_object_vs_scene`) before the forward model runs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

#: --scale above this many scene units (metres) is refused before any work (1e4: a 10 km object).
MAX_OBJECT_SCALE = 1e4
#: an object smaller than this many pixels across in every frame is refused (it could not be seen).
MIN_OBJECT_PIXELS = 0.5
#: an object over this many times the scene's (metric) depth extent is refused once the scene's depth is known.
MAX_SCENE_RATIO = 100.0


def check_scale(scale: float) -> None:
    """--scale before any work: finite, > 0 and at most :data:`MAX_OBJECT_SCALE` scene units."""
    import math

    from neural_render.errors import NeuralRenderError

    if not (math.isfinite(scale) and 0 < scale <= MAX_OBJECT_SCALE):
        raise NeuralRenderError(f"--scale (the object's largest extent in scene units, metres) must be a finite number "
                                f"in (0, {MAX_OBJECT_SCALE:g}], got {scale:g}")


def check_object_footprint(scale: float, camera, at) -> None:
    """Refuse an object smaller than :data:`MIN_OBJECT_PIXELS` pixels in every frame (cheap: camera only)."""
    import torch

    from neural_render.errors import NeuralRenderError

    c2w = camera.camera_to_world[0].to(torch.float64)
    p = torch.as_tensor(at, dtype=torch.float64).reshape(3)
    z = -torch.einsum("tij,tj->ti", torch.linalg.inv(c2w[:, :3, :3]), p[None] - c2w[:, :3, 3])[:, 2]
    fx = float(camera.intrinsics[0, 0])
    pixels = scale * fx / z[z > 1e-6]
    if pixels.numel() and float(pixels.max()) < MIN_OBJECT_PIXELS:
        raise NeuralRenderError(f"--scale {scale:g} makes the object {float(pixels.max()):.2g} pixels across at its "
                                f"distance ({float(z[z > 1e-6].min()):.3g} scene units at the nearest): smaller than "
                                "a pixel; use a larger --scale or an --at closer to the camera")


def check_object_vs_scene(scale: float, scene, depth_scale: float | None, how: str) -> None:
    """Refuse an object over :data:`MAX_SCENE_RATIO` times the scene's depth extent (metric, after the depth scale)."""
    import math

    from neural_render.errors import NeuralRenderError
    from neural_render.pipelines.insert import DEFAULT_DEPTH_SCALE

    if scene.depth is None:
        return
    depth = scene.depth if scene.mask is None else scene.depth[scene.mask > 0.5]
    extent = float(depth.max()) * (depth_scale or DEFAULT_DEPTH_SCALE) if depth.numel() else 0.0
    if math.isfinite(extent) and extent > 0 and scale > MAX_SCENE_RATIO * extent:
        raise NeuralRenderError(f"--scale {scale:g} is over {MAX_SCENE_RATIO:g} times the scene's depth extent "
                                f"({extent:.3g} scene units, depth scale from {how}): the object would swallow the "
                                "scene; use a smaller --scale (or --depth-scale if the scene's scale is wrong)")


@dataclass
class InsertOptions:
    """What to insert where and how (the options of ``neural-render insert``, same names). video / mesh: paths;
    material: insert's material text (pipelines/material_text.parse_material); at: 'x,y,z' world position of the
    object's centre; scale: its largest extent in scene units; object_rotate / rotate: 'yaw,pitch,roll' degrees of
    the object / env map; envmap: shipped name or file (None: the clip's own); depth_scale: None = choose;
    gbuffers: "inverse" or "clip"; inverse_model / model: hub specs (None: shipped); size: inverse processing size
    text (WxH or N); the rest as pipelines/insert.insert_object."""

    video: str
    mesh: str
    at: str
    material: str = "basecolor=0.8,roughness=0.5,metallic=0"
    scale: float = 1.0
    object_rotate: str = "0,0,0"
    envmap: str | None = None
    rotate: str = "0,0,0"
    fov: float = 60.0
    depth_scale: float | None = None
    gbuffers: str = "inverse"
    inverse_model: str | None = None
    model: str | None = None
    strength: float | None = None
    received_from: str = "support"
    no_inject: bool = False
    blend: str = "differential"
    size: str | None = None
    steps: int = 1
    window: int | None = None
    overlap: int | None = None
    seed: int = 0
    domain: str = "real"
    reassign_blocks: int = 0
    reassign_steps: int = 0
    exposure: float = 0.0
    device: str = "cpu"
    no_progress: bool = False


@dataclass
class InsertReport:
    """result: pipelines/insert.InsertionOutput; video: the input (1, T, 3, H, W) linear; fps; inject: whether the
    cache injection was used; how: where the depth scale came from; inverse: the inverse pipeline (None when the
    clip's passes were used) and inverse_size its processing (h, w); size: the requested inverse size."""

    result: object
    video: object
    fps: float
    inject: bool
    how: str
    inverse: object = None
    inverse_size: tuple | None = None
    size: object = None


def scene_gbuffers(o: InsertOptions, video, meta):
    """(scene GBuffer with relative depth, depth scale or None, inverse pipeline or None, its processing (h, w) or
    None) from the clip folder's passes (``gbuffers == "clip"``) or the inverse renderer."""
    from neural_render import hub
    from neural_render.errors import NeuralRenderError
    from neural_render.pipelines.frame_size import parse_size_arg

    if o.gbuffers == "clip":
        from neural_render.io import read_clip

        if meta is None:
            raise NeuralRenderError("--gbuffers clip needs a clip folder", o.video)
        if "depth" not in meta.passes:
            raise NeuralRenderError("the clip folder has no depth pass (needed to composite the object)", o.video)
        keep = [p for p in ("basecolor", "normal", "depth", "roughness", "metallic", "mask") if p in meta.passes]
        gbuffer = read_clip(o.video, passes=keep, rgb=False).gbuffer
        scale = meta.depth_scale or float(gbuffer.depth.max()) or 1.0
        return gbuffer.replace(depth=gbuffer.depth / scale), scale, None, None
    pipe = hub.load_inverse(o.inverse_model, o.device, option="--inverse-model")
    if not pipe.is_trained:
        log.warning("the inverse model is UNTRAINED: its G-buffers are meaningless")
    result = pipe(video, seed=o.seed, progress=not o.no_progress, processing_size=parse_size_arg(o.size))
    return result.gbuffer, None, pipe, result.processing_size


def insert_into_video(o: InsertOptions) -> InsertReport:
    """Check every input, estimate the scene, insert the object (module doc); the caller writes the outputs."""
    import math

    from neural_render import hub
    from neural_render.errors import NeuralRenderError
    from neural_render.io import read_meta
    from neural_render.io.envmap_input import given_or_clip_env
    from neural_render.io.video_input import read_input
    from neural_render.pipelines.insert import InsertedObject, check_in_front, choose_depth_scale, insert_object
    from neural_render.pipelines.material_text import parse_floats, parse_material
    from neural_render.synth.shapes import load_mesh_file

    check_scale(o.scale)
    if o.depth_scale is not None and not (math.isfinite(o.depth_scale) and o.depth_scale > 0):
        raise NeuralRenderError(f"--depth-scale must be a finite number > 0, got {o.depth_scale:g}")
    if o.strength is not None and not o.strength >= 0:
        raise NeuralRenderError("--strength must be >= 0")
    material = parse_material(o.material)
    at = parse_floats(o.at, 3, "--at")
    rotation = parse_floats(o.object_rotate, 3, "--object-rotate")
    load_mesh_file(o.mesh)  # fail before any heavy work on a mesh that does not load
    video, camera, fps, _ = read_input(o.video, fov=o.fov)
    meta = read_meta(o.video) if (Path(o.video) / "meta.json").is_file() else None
    check_in_front(camera, at, o.mesh)
    check_object_footprint(o.scale, camera, at)
    env = given_or_clip_env(o.envmap, o.rotate, o.video, meta,
                            "no env map: a plain video (or a clip without one) needs --envmap")
    folder, note = hub.resolve_cache_forward(o.model)
    forward = hub.load_cache_forward(folder, o.device)
    inject = not o.no_inject
    if inject and forward.injection is None:
        if o.model is not None:
            raise NeuralRenderError("this forward model has no cache injection (cache_injection/); use --no-inject",
                                    folder)
        inject = False
    if note:
        log.warning(note)
    if inject and forward.injection.is_zero:
        log.warning("the cache injection of this model is untrained (zero): it changes nothing")
    scene, clip_scale, inverse, proc = scene_gbuffers(o, video, meta)
    obj = InsertedObject(str(o.mesh), material, tuple(at), float(o.scale), tuple(rotation))
    depth_scale, how = choose_depth_scale(o.depth_scale, clip_scale, scene, camera, obj, meta)
    check_object_vs_scene(o.scale, scene, depth_scale, how)
    result = insert_object(forward, video, camera, env, obj, scene, depth_scale=depth_scale, inject=inject,
                           strength=o.strength, blend=o.blend, seed=o.seed, num_steps=o.steps,
                           received_from=o.received_from, window=o.window, overlap=o.overlap, domain=o.domain,
                           reassign_blocks=o.reassign_blocks, reassign_steps=o.reassign_steps,
                           progress=not o.no_progress)
    from neural_render.pipelines.frame_size import parse_size_arg

    return InsertReport(result, video, fps, inject, how, inverse, proc, parse_size_arg(o.size))
