"""The demo's steps on one clip: inverse rendering -> relight under two env maps -> material edit -> object insertion.

All videos are (1, T, 3, H, W) float32 linear radiance; G-buffers (1, T, C, H, W) as in ``neural_render.types``
(normals camera space, OpenGL axes; depth RELATIVE from the inverse model, 1 = farthest visible surface; the clip's
``depth_scale`` (metres of relative depth 1) makes it metric for the insertion).

Renderer: with a forward model (``forward`` given) relight and edit go through the neural
:class:`~neural_render.pipelines.relight.RelightPipeline` and insertion through
:func:`~neural_render.pipelines.insert.insert_object` (differential blend; with the 3D-cache injection when the
renderer carries a cache model, ``Renderer.insert_forward``, else without); without one the
estimated G-buffers are shaded by the classical split-sum shader (``render/shade.py``) and the object is pasted by
:func:`~neural_render.pipelines.insert.naive_composite`. Relighting uses the clip's per-frame cameras, so the new
env map stays fixed in the world while the camera moves. The edit and the insertion keep the clip's own light (its
env map with its rotation) and keep the input video outside the edited / inserted pixels.

Clip-specific choices come from ``meta.extra["demo"]`` (written by scripts/make_demo_clip.py): ``edit_object_id``
(object ids in ``frames/object_id_%06d.exr``) and ``insert`` {"at": [x, y, z] metres, "scale": metres}. A clip
without them (any other clip folder) gets fallbacks from the estimated G-buffers (:func:`edit_mask`,
:func:`insert_spot`). The shipped REAL clips (scripts/make_real_demo_clips.py) carry ``size`` [w, h] (the clip is
area-resized to it on loading, so every step runs there: 64x48, the forward model's native size), ``inverse_model``
(the shipped inverse model used when the command names none: inverse_v2, which handles real footage; the default
inverse_tiny's mask drops most of the real table) and ``source`` (how the input row of the contact sheet describes
the clip; default "path traced").
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from neural_render.errors import NeuralRenderError
from neural_render.types import Camera, EnvMap, GBuffer

#: the material edit: polished gold (linear basecolor, roughness, metallic in [0, 1])
EDIT = {"basecolor": (1.0, 0.71, 0.29), "roughness": 0.1, "metallic": 1.0}
EDIT_LABEL = "polished gold (metallic 1, roughness 0.1)"
#: the inserted object: a glossy red sphere (icosphere mesh made with trimesh.creation)
INSERT_MATERIAL = {"basecolor": (0.80, 0.04, 0.03), "roughness": 0.25, "metallic": 0.0}
INSERT_LABEL = "glossy red sphere"


@dataclass
class DemoClip:
    """video (1, T, 3, H, W) linear; camera (B=1, T frames); fps; env: the clip's own light (rotated) or None;
    object_ids (1, T, 1, H, W) long or None; settings: meta.extra["demo"] ({} when absent); depth_scale: metres of
    relative depth 1 (None when unknown); name: folder name."""

    video: Tensor
    camera: Camera
    fps: float
    env: EnvMap | None
    object_ids: Tensor | None
    settings: dict
    depth_scale: float | None
    name: str


@dataclass
class DemoResult:
    """gbuffer: the inverse estimate; relit: {env name: video}; edited / inserted: videos; edit_mask / insert_mask
    (1, T, 1, H, W) float; renderer: human-readable renderer name; notes: things the user should know;
    insert_renderer: what rendered the insertion when it differs from ``renderer`` (the cache injection), else None."""

    gbuffer: GBuffer
    relit: dict[str, Tensor]
    edited: Tensor
    edit_mask: Tensor
    edit_target: str
    inserted: Tensor
    insert_mask: Tensor
    renderer: str
    notes: list[str] = field(default_factory=list)
    insert_renderer: str | None = None


def load_demo_clip(path: str | Path, frames: int | None = None) -> DemoClip:
    """Read a clip folder's rgb, cameras, env map, object ids and demo settings (first ``frames`` frames)."""
    import numpy as np

    from neural_render.io import read_clip, read_clip_envmap, read_meta
    from neural_render.synth.dataset import OBJECT_ID_FILE, read_object_ids

    path = Path(path)
    meta = read_meta(path)
    if frames is not None and not 2 <= frames:
        raise NeuralRenderError(f"--frames must be >= 2, got {frames}")
    clip = read_clip(path, frames=slice(0, frames), passes=[])
    if clip.rgb is None:
        raise NeuralRenderError("the demo clip has no rgb", path)
    t = clip.rgb.shape[1]
    ids = None
    if all((path / OBJECT_ID_FILE.format(i)).is_file() for i in range(t)):
        ids = torch.from_numpy(np.stack([read_object_ids(path, i) for i in range(t)]))[None]
    settings = dict((meta.extra or {}).get("demo") or {})
    video, camera = clip.rgb, clip.camera
    if "size" in settings:
        video, camera = _resized(video, camera, settings["size"], path)
        if ids is not None:
            ids = torch.nn.functional.interpolate(ids[0].float(), size=video.shape[-2:], mode="nearest").long()[None]
    return DemoClip(video, camera, float(meta.fps), read_clip_envmap(path, meta), ids, settings,
                    meta.depth_scale, path.name)


def _resized(video: Tensor, camera: Camera, size, path: Path) -> tuple[Tensor, Camera]:
    """The clip area-resized to ``size`` [w, h] (its demo setting; same aspect ratio) and its camera to match."""
    b, t, c, h, w = video.shape
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and 0 < v for v in size)):
        raise NeuralRenderError(f"demo setting size must be [width, height], got {size!r}", path)
    new_w, new_h = size
    if abs(new_w / new_h - w / h) > 0.02 * w / h:
        raise NeuralRenderError(f"demo setting size {new_w}x{new_h} changes the clip's aspect ratio ({w}x{h})", path)
    small = torch.nn.functional.interpolate(video.reshape(b * t, c, h, w), size=(new_h, new_w), mode="area")
    scale = torch.tensor([new_w / w, new_h / h, new_w / w, new_h / h], dtype=camera.intrinsics.dtype)
    return small.reshape(b, t, c, new_h, new_w), Camera(camera.intrinsics * scale, camera.camera_to_world, new_w,
                                                        new_h)


class Renderer:
    """Renders G-buffers under an env map: the neural forward pipeline (``forward``) or the split-sum shader."""

    def __init__(self, forward=None, label: str = "classical split-sum shader", seed: int = 0, insert_forward=None):
        self.forward, self.label, self.seed = forward, label, seed
        #: a CacheForwardPipeline with a trained cache injection for the insertion (None: ``forward``, no injection)
        self.insert_forward = insert_forward

    @property
    def neural(self) -> bool:
        return self.forward is not None

    @property
    def insert_label(self) -> str | None:
        """What renders the insertion when it is not ``label`` alone (the 3D-cache injection), else None."""
        return None if self.insert_forward is None else f"{self.label} + 3D-cache injection"

    def relight(self, video: Tensor, gbuffer: GBuffer, camera: Camera, envs: list[EnvMap]) -> list[Tensor]:
        """One (1, T, 3, H, W) render of ``gbuffer`` per env map."""
        if self.neural:
            from neural_render.pipelines.relight import RelightPipeline

            return RelightPipeline(None, self.forward).relight(video, envs, camera=camera, gbuffer=gbuffer,
                                                               seed=self.seed).videos
        from neural_render.render.shade import prepare_ibl, shade

        return [shade(gbuffer, camera, prepare_ibl(env)) for env in envs]

    def edit(self, video: Tensor, gbuffer: GBuffer, camera: Camera, env: EnvMap, mask: Tensor) -> Tensor:
        """The video with :data:`EDIT` applied inside ``mask`` (1, T, 1, H, W), rendered under ``env``."""
        if self.neural:
            from neural_render.pipelines.relight import RelightPipeline

            return RelightPipeline(None, self.forward).edit(video, mask, EDIT, env, camera=camera, gbuffer=gbuffer,
                                                            seed=self.seed).video
        from neural_render.pipelines.relight import apply_material_edit
        from neural_render.render.shade import prepare_ibl, shade

        rendered = shade(apply_material_edit(gbuffer, mask, EDIT), camera, prepare_ibl(env))
        return mask * rendered + (1.0 - mask) * video.clamp(0.0, 1.0)


def edit_mask(clip: DemoClip, gbuffer: GBuffer) -> tuple[Tensor, str]:
    """(1, T, 1, H, W) float mask of the edited object and a description.

    With object ids: the id in the demo settings (else the largest object, id >= 2). Without: the nearest 30 % of the
    estimated foreground per frame (relative depth <= its 30th percentile; a depth-based segment).
    """
    if clip.object_ids is not None:
        ids = clip.object_ids
        target = clip.settings.get("edit_object_id")
        if target is None:
            counts = torch.bincount(ids.flatten())
            counts[:2] = 0
            target = int(counts.argmax())
        mask = (ids == int(target)).float()
        if bool(mask.any()):
            return mask, f"object {int(target)} (clip object ids)"
    fg = (gbuffer.mask > 0.5) if gbuffer.mask is not None else gbuffer.depth > 0
    depth = gbuffer.depth
    masks = []
    for t in range(depth.shape[1]):
        values = depth[0, t][fg[0, t]]
        if values.numel() == 0:
            masks.append(torch.zeros_like(depth[0, t]))
            continue
        masks.append(((depth[0, t] <= torch.quantile(values, 0.3)) & fg[0, t]).float())
    return torch.stack(masks)[None], "nearest 30 % of the estimated surface (no object ids)"


def insert_spot(clip: DemoClip, gbuffer: GBuffer) -> tuple[list[float], float]:
    """(at: world position in metres of the object's centre, scale: its largest extent in metres).

    From the demo settings when present; else the estimated surface under pixel (0.7 W, 0.75 H) of the middle
    frame, pulled 30 % towards the camera, sized to ~20 % of the image width.
    """
    if "insert" in clip.settings:
        spec = clip.settings["insert"]
        return [float(v) for v in spec["at"]], float(spec["scale"])
    from neural_render.pipelines.insert import DEFAULT_DEPTH_SCALE

    cam = clip.camera
    t, h, w = cam.num_frames // 2, cam.height, cam.width
    y, x = int(0.75 * h), int(0.7 * w)
    relative = float(gbuffer.depth[0, t, 0, y, x]) if gbuffer.depth is not None else 0.0
    z = 0.7 * (relative if relative > 0 else 0.5) * (clip.depth_scale or DEFAULT_DEPTH_SCALE)
    ray = cam.ray_directions()[0, 0, :, y, x]
    point = cam.camera_to_world[0, t, :3, :3] @ (ray / -ray[2] * z) + cam.camera_to_world[0, t, :3, 3]
    fx = float(cam.intrinsics[0, 0])
    return [float(v) for v in point], 0.2 * z * w / fx


def sphere_mesh(folder: Path) -> Path:
    """A unit icosphere (trimesh.creation, subdivisions 3: 642 vertices) written as OBJ into ``folder``."""
    import trimesh

    path = folder / "sphere.obj"
    trimesh.creation.icosphere(subdivisions=3, radius=0.5).export(path)
    return path


def insert(renderer: Renderer, clip: DemoClip, gbuffer: GBuffer, env: EnvMap,
           notes: list[str]) -> tuple[Tensor, Tensor]:
    """Insert :data:`INSERT_LABEL` into the clip under ``env`` -> (video, visible object mask (1, T, 1, H, W))."""
    from neural_render.pipelines.insert import (
        DEFAULT_DEPTH_SCALE,
        InsertedObject,
        anchored_depth_scale,
        check_in_front,
        composite_object,
        insert_object,
        metric_scene_gbuffer,
        naive_composite,
        object_cache,
    )
    from neural_render.raster import Material

    at, scale = insert_spot(clip, gbuffer)
    depth_scale = clip.depth_scale or DEFAULT_DEPTH_SCALE
    if "insert" in clip.settings and gbuffer.depth is not None:
        # the object rests on the ground: its lowest point is a known ground point, which pins the estimated
        # (relative) depth to metres there (the clip's depth_scale is the true max depth, not the estimate's)
        anchored = anchored_depth_scale(clip.camera, gbuffer.depth, [at[0], at[1] - scale / 2, at[2]])
        depth_scale = anchored or depth_scale
    material = Material(INSERT_MATERIAL["basecolor"], INSERT_MATERIAL["roughness"], INSERT_MATERIAL["metallic"])
    with tempfile.TemporaryDirectory(prefix="neural_render_demo_") as tmp:
        obj = InsertedObject(str(sphere_mesh(Path(tmp))), material, tuple(at), scale, name="sphere")
        check_in_front(clip.camera, at, "demo insert")
        obj_gbuffer, ids, _ = object_cache(obj, clip.camera.num_frames).rasterize(clip.camera, "auto")
        if obj_gbuffer is None or not bool((ids > 0).any()):
            raise NeuralRenderError("the demo object is outside the view in every frame", clip.name)
        # the tiny inverse model's relative depth is only roughly metric: when it hides most of an object that
        # stands on the ground in front of the scene, the depth test is dropped (and the summary says so)
        _, visible = composite_object(metric_scene_gbuffer(gbuffer, depth_scale), obj_gbuffer, ids)
        shown = float(visible.sum()) / float((ids > 0).sum())
        if shown < 0.5:
            notes.append(f"insert: the estimated depth hides {100 * (1 - shown):.0f} % of the object; inserted "
                         "without occlusion")
            depth_scale = 1e3 * depth_scale
        if renderer.insert_forward is not None:  # the 3D cache injected (its shadows cast and received)
            out = insert_object(renderer.insert_forward, clip.video, clip.camera, env, obj, gbuffer,
                                depth_scale=depth_scale, inject=True, seed=renderer.seed)
            return out.rgb, out.object_mask
        if renderer.neural:
            out = insert_object(renderer.forward, clip.video, clip.camera, env, obj, gbuffer,
                                depth_scale=depth_scale, inject=False, seed=renderer.seed)
            return out.rgb, out.object_mask
        merged, visible = composite_object(metric_scene_gbuffer(gbuffer, depth_scale), obj_gbuffer, ids)
        return naive_composite(clip.video, merged, clip.camera, env, visible), visible


def run_demo(clip: DemoClip, inverse, renderer: Renderer, envs: dict[str, EnvMap], seed: int = 0) -> DemoResult:
    """Every step on ``clip`` with the loaded inverse pipeline and ``renderer``; ``envs``: {name: EnvMap} (two)."""
    notes: list[str] = []
    # the demo clip (128x96) is processed at its own size, as before native-size processing became the commands'
    # default (issue #21): at 2x the model's native 64 px this model's normals and depth are visibly sharper
    # (compared by eye on the shipped clip: box and cylinder outlines survive, blurred away at 64 px)
    size = tuple(int(v) for v in clip.video.shape[-2:])
    gbuffer = inverse(clip.video, seed=seed, progress=False, processing_size=size).gbuffer
    relit = dict(zip(envs, renderer.relight(clip.video, gbuffer, clip.camera, list(envs.values()))))
    own = clip.env
    if own is None:
        own = next(iter(envs.values()))
        notes.append(f"the clip names no env map: edit and insert use {next(iter(envs))}")
    mask, target = edit_mask(clip, gbuffer)
    edited = renderer.edit(clip.video, gbuffer, clip.camera, own, mask)
    inserted, insert_mask = insert(renderer, clip, gbuffer, own, notes)
    return DemoResult(gbuffer, relit, edited, mask, target, inserted, insert_mask, renderer.label, notes,
                      renderer.insert_label)
