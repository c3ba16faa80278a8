"""Object insertion with the 3D cache: inverse render -> rasterize the object -> depth composite -> forward render with
the cache injected (Real2SAM2Real), and the forward pipeline that carries the injection.

:class:`CacheForwardPipeline` is a :class:`~neural_render.pipelines.forward.ForwardPipeline` plus a
:class:`~neural_render.models.cache_injection.CacheInjection` (component and folder ``cache_injection``, also
reachable as ``injection``); ``pipe(..., cache=(normal, mask), strength=s)`` (or its alias ``render``) adds the
injection to the backbone's tokens in every latent window (and its shadow residual, if any, to each window's x0
prediction). Without a cache, with strength 0 or without an injection module it renders exactly like the plain
forward pipeline.

:func:`insert_object` (used by ``neural-render insert`` and ``neural-render eval insert``):

1. scene G-buffer: given (e.g. the exact passes of a synthetic clip) or estimated by the inverse pipeline; its depth
   is RELATIVE (1 = farthest visible surface) and becomes metric with ``depth_scale`` (the clip meta's, or a guess);
2. the object (mesh file + constant material + position / scale / rotation) becomes a :class:`Cache3D` entity and
   is rasterized per frame with the clip's cameras; it must be in front of the camera in at least one frame and
   visible in at least one (else :class:`NeuralRenderError`);
3. its G-buffer is depth-composited into the scene's (:func:`neural_render.types.composite_nearest`);
4. the forward model renders the composited G-buffer under the env map with the cache render injected (normals +
   mask of the object; for injections trained with shadows also the object's shadow map, the share of the env's
   light its mesh blocks at each pixel of the composited scene, :func:`neural_render.raster.shadow.env_occlusion`,
   and for ``received_shadow`` ones on the object's own pixels the share the scene and the object block,
   :func:`~neural_render.raster.shadow.mutual_occlusion`; the scene there is ``received_from``: the plane the object
   stands on (default) or the scene G-buffer lifted per frame, :func:`receiving_scene`; injections with
   ``shadow_residual`` also subtract the light that map blocks from the split-sum prior, times their learned gain,
   from the predicted x0: :meth:`~neural_render.models.cache_injection.CacheInjection.x0_add`),
   and, for ``blend="differential"``, also the scene alone; the output is the input video plus
   the difference of the two renders (the object's shadow and reflections, Debevec-style differential rendering),
   with the object's own pixels taken from the render (``blend="full"`` returns the render as is).

:func:`naive_composite` is the classical baseline: the split-sum shader's render of the composited G-buffer
pasted over the video on the object's pixels (no shadow, nothing else changes).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.utils import BaseOutput
from torch import Tensor

from neural_render.errors import NeuralRenderError
from neural_render.models.cache3d import Cache3D, CacheRender, render_of
from neural_render.models.cache_injection import (
    CacheInjection,
    blocked_light_latents,
    pack_cache_normals,
    pack_cache_shadow,
    token_frames,
)
from neural_render.pipelines.forward import ForwardPipeline
from neural_render.raster import Material
from neural_render.types import Camera, EnvMap, GBuffer, composite_nearest

INJECTION_FOLDER = "cache_injection"
BLENDS = ("differential", "full")
RECEIVED_FROM = ("lifted", "support")
#: relative depth 1 = this many scene units when a plain video gives no depth scale
DEFAULT_DEPTH_SCALE = 10.0
NEAR = 1e-3


class CacheForwardPipeline(ForwardPipeline):
    """ForwardPipeline + cache injection (module docstring). ``injection`` (the ``cache_injection`` component) None =
    plain forward rendering; ``injection=`` is the earlier keyword for ``cache_injection=``."""

    _optional_components = [*ForwardPipeline._optional_components, "cache_injection"]
    WHAT = "a cache-injection forward pipeline"

    def __init__(self, backbone, denoiser, codec=None, pass_embedding=None, forward_config: dict | None = None,
                 domain_shifters=None, injection: CacheInjection | None = None, lora=None,
                 cache_injection: CacheInjection | None = None):
        if injection is not None and cache_injection is not None:
            raise NeuralRenderError("give injection or cache_injection, not both")
        super().__init__(backbone, denoiser, codec, pass_embedding, forward_config, domain_shifters, lora)
        self.register_modules(cache_injection=cache_injection if injection is None else injection)
        self._token_add: Tensor | None = None
        self._x0_add: Tensor | None = None

    @property
    def injection(self) -> CacheInjection | None:
        """The cache injection module (the ``cache_injection`` component) or None."""
        return self.cache_injection

    @injection.setter
    def injection(self, module: CacheInjection | None) -> None:
        self.cache_injection = module

    @classmethod
    def accepts_folder_of(cls, folder_cls: type) -> bool:
        """Any forward pipeline folder (a plain one loads without an injection)."""
        return issubclass(folder_cls, ForwardPipeline)

    @torch.no_grad()
    def token_add(self, normal: Tensor, mask: Tensor, strength: float | Tensor | None = None,
                  shadow: Tensor | None = None, light: Tensor | None = None) -> Tensor:
        """Cache render (B,T,3,H,W) normals / (B,T,1,H,W) mask (+ (B,T,1,H,W) shadow map for an injection trained
        with shadows; + (B,T,3,H,W) light, the split-sum prior, for shadow_light ones) -> token_add over the whole
        clip (zero-padded like the G-buffer to the model's spatial step)."""
        return self._cache_terms(normal, mask, strength, shadow, light)[0]

    def _cache_terms(self, normal: Tensor, mask: Tensor, strength=None, shadow: Tensor | None = None,
                     light: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """(token_add, x0_add or None): :meth:`token_add` and the injection's shadow residual over the whole clip."""
        if self.injection is None:
            raise NeuralRenderError("this forward pipeline has no cache injection (train one or use inject=False)")
        h, w = normal.shape[-2:]
        ph, pw = (-h) % self.spatial_step, (-w) % self.spatial_step

        def pad(x: Tensor) -> Tensor:
            return (F.pad(x.float(), (0, pw, 0, ph)) if ph or pw else x.float()).to(self.device)

        normal, mask = pad(normal), pad(mask)
        latents = self._encode(pack_cache_normals(normal, mask))
        shadow_latents, blocked = None, None
        if shadow is not None and self.injection.config.shadow:  # a missing map is refused by the injection
            shadow, light = pad(shadow), None if light is None else pad(light)
            shadow_latents = self._encode(pack_cache_shadow(shadow, self.injection.light_of(light)))
            if self.injection.config.shadow_residual:
                blocked = blocked_light_latents(self._encode, shadow, light)
        else:
            shadow = None
        token_add = self.injection(latents, mask, strength, shadow_latents, shadow)
        return token_add, self.injection.x0_add(blocked, strength)

    @torch.no_grad()
    def __call__(self, gbuffer: GBuffer, camera: Camera, env: EnvMap | None, *args,
                 cache: tuple | CacheRender | None = None, strength: float | Tensor | None = None, **kwargs):
        """ForwardPipeline.__call__ (same arguments) + ``cache``: a CacheRender or (normal, mask[, shadow[, light]]) of
        the clip, injected with ``strength`` (default: the injection's configured strength)."""
        if isinstance(cache, CacheRender):
            cache = (cache.normal, cache.mask)
        terms = (None, None) if cache is None else self._cache_terms(cache[0], cache[1], strength, *cache[2:4])
        self._token_add, self._x0_add = terms
        try:
            return super().__call__(gbuffer, camera, env, *args, **kwargs)
        finally:
            self._token_add, self._x0_add = None, None

    def window_added(self, start: int, stop: int) -> dict | None:
        if self._token_add is None:
            return None
        return {"token_add": self._token_add[:, token_frames(self.backbone, start, stop)]}

    def window_x0_add(self, start: int, stop: int) -> Tensor | None:
        return None if self._x0_add is None else self._x0_add[:, start:stop]


# --------------------------------------------------------------------------------------------------- insertion
@dataclass
class InsertedObject:
    """mesh_path: OBJ/GLB/PLY/... (centred, largest extent 1 after loading); material; at: (3,) world position of the
    mesh centre; scale: largest extent in scene units; rotation: (yaw, pitch, roll) degrees."""

    mesh_path: str
    material: Material
    at: tuple[float, float, float]
    scale: float = 1.0
    rotation: tuple[float, float, float] = (0.0, 0.0, 0.0)
    name: str = "inserted"


@dataclass
class InsertionOutput(BaseOutput):
    """rgb: (1,T,3,H,W) final video (linear); render: forward render WITH the object; background: render of the scene
    alone (differential blend) or None; object_mask: (1,T,1,H,W) visible object pixels; gbuffer: composited G-buffer
    (metric depth); scene_gbuffer: the scene's G-buffer (metric depth); cache: the 3D cache; cache_render: its render;
    depth_scale: scene units of relative depth 1."""

    rgb: Tensor
    render: Tensor
    background: Tensor | None
    object_mask: Tensor
    gbuffer: GBuffer
    scene_gbuffer: GBuffer
    cache: Cache3D
    cache_render: CacheRender
    depth_scale: float


def check_in_front(camera: Camera, at, source: str | None = None) -> Tensor:
    """(T,) bool: ``at`` (3,) world point in front of the camera per frame; raises if it is behind in every frame."""
    c2w = camera.camera_to_world[0].to(torch.float64)
    p = torch.as_tensor(at, dtype=torch.float64).reshape(3)
    z = torch.einsum("tij,tj->ti", torch.linalg.inv(c2w[:, :3, :3]), p[None] - c2w[:, :3, 3])[:, 2]
    front = z < -NEAR
    if not bool(front.any()):
        raise NeuralRenderError(f"object position {[float(v) for v in p]} is behind the camera in every frame "
                                f"(camera-space z = {float(z.min()):.3g} .. {float(z.max()):.3g}; the camera looks "
                                "along its -Z)", source)
    return front


def object_cache(obj: InsertedObject, num_frames: int) -> Cache3D:
    """A cache holding the object (loaded with the project's mesh loader; bad files raise NeuralRenderError)."""
    cache = Cache3D(num_frames)
    rotation = obj.rotation if any(float(a) != 0.0 for a in obj.rotation) else None
    cache.add_mesh_file(obj.mesh_path, obj.material, obj.at, obj.scale, rotation, name=obj.name)
    return cache


def anchored_depth_scale(camera: Camera, depth: Tensor, point) -> float | None:
    """Metres per unit of estimated RELATIVE depth, anchored at a known world point (e.g. where the object rests).

    camera: the clip's Camera (B=1, T frames); depth: (1, T, 1, H, W) estimated relative depth; point: (3,) world
    metres. Per frame: the point's true planar depth / the estimated depth (median of 3 x 3 pixels) where it
    projects; the median over frames where it is in view with depth > 0.02. None when no frame qualifies.
    """
    c2w = camera.camera_to_world[0].float()  # (T, 4, 4)
    fx, fy, cx, cy = camera.intrinsics[0].tolist()
    h, w = camera.height, camera.width
    offset = torch.as_tensor(point, dtype=torch.float32)[None] - c2w[:, :3, 3]
    local = torch.einsum("tji,tj->ti", c2w[:, :3, :3], offset)
    ratios = []
    for t in range(local.shape[0]):
        z = -float(local[t, 2])
        if z <= 1e-3:
            continue
        u = round(fx * float(local[t, 0]) / z + cx - 0.5)
        v = round(cy - fy * float(local[t, 1]) / z - 0.5)
        if not (1 <= u < w - 1 and 1 <= v < h - 1):
            continue
        est = float(depth[0, t, 0, v - 1:v + 2, u - 1:u + 2].median())
        if est > 0.02:
            ratios.append(z / est)
    return float(torch.tensor(ratios).median()) if ratios else None


def ground_contact(obj: InsertedObject) -> list[float]:
    """World point (3,) below the object's centre at the height of its lowest vertex (as placed in frame 0): where an
    object standing on a horizontal ground touches it (the anchor of :func:`anchored_depth_scale`)."""
    mesh = next(iter(object_cache(obj, 1).entities.values())).mesh
    m = mesh.to_world.reshape(-1, 4, 4)[0]
    world = mesh.vertices.float() @ m[:3, :3].T + m[:3, 3]
    return [float(obj.at[0]), float(world[:, 1].min()), float(obj.at[2])]


def metric_scene_gbuffer(scene: GBuffer, depth_scale: float) -> GBuffer:
    """Relative depth (1 = farthest visible surface) -> scene units; mask derived from depth when absent."""
    if scene.depth is None:
        raise NeuralRenderError("the scene G-buffer needs a depth pass to composite the object")
    mask = scene.mask if scene.mask is not None else (scene.depth > 0).float()
    return scene.replace(depth=scene.depth * float(depth_scale), mask=mask)


def composite_object(scene: GBuffer, obj_gbuffer: GBuffer, ids: Tensor) -> tuple[GBuffer, Tensor]:
    """Depth-composite (metric) -> (G-buffer, visible object mask (B,T,1,H,W))."""
    names = [n for n in ("basecolor", "normal", "depth", "roughness", "metallic", "mask")
             if getattr(scene, n) is not None]
    obj = GBuffer(**{n: getattr(obj_gbuffer, n) for n in names})
    merged, winner = composite_nearest(scene, obj, return_index=True)
    visible = ((winner == 1) & (ids > 0)).float()
    return merged, visible


def receiving_scene(received_from: str, scene: GBuffer, camera: Camera, obj: InsertedObject) -> list:
    """The scene meshes that shadow the inserted object: ``lifted``, the scene G-buffer (metric depth) lifted frame by
    frame (:meth:`Cache3D.lift_frames`: everything the camera sees, as exact as the G-buffer); ``support``, only the
    horizontal plane the object stands on (through :func:`ground_contact`, the assumption
    :func:`anchored_depth_scale` makes too): robust to the noise of an estimated depth map, blind to other occluders.
    ``support`` is the default: with the inverse renderer's depth it did better on the object's pixels on a
    validation insertion set (``scripts/make_insert_eval_data.py --seed 4100``, not the test set)."""
    if received_from == "support":
        from neural_render.raster import Mesh
        from neural_render.synth.shapes import ground_quad

        g = ground_quad(1.0e3, 1.0)
        pose = torch.eye(4)
        pose[1, 3] = ground_contact(obj)[1]
        return [Mesh(g.vertices, g.faces, g.normals, g.uvs, obj.material, pose, name="support")]
    lifted = Cache3D(camera.num_frames)
    lifted.lift_frames(scene, camera, scene.mask)
    return lifted.meshes()


def naive_composite(video: Tensor, gbuffer: GBuffer, camera: Camera, env: EnvMap, object_mask: Tensor) -> Tensor:
    """Classical baseline: split-sum render of the composited G-buffer on the object's pixels, the video elsewhere."""
    from neural_render.models.conditioning import shade_prior

    shaded = shade_prior(gbuffer, camera, env)
    return torch.where(object_mask > 0.5, shaded, video)


def insert_object(forward: ForwardPipeline, video: Tensor, camera: Camera, env: EnvMap, obj: InsertedObject,
                  scene_gbuffer: GBuffer, depth_scale: float | None = None, inject: bool = True,
                  strength: float | None = None, blend: str = "differential", seed: int = 0, backend: str = "auto",
                  received_from: str = "support", **render_options) -> InsertionOutput:
    """Insert ``obj`` into ``video`` (1,T,3,H,W linear) seen by ``camera`` under ``env`` (module docstring, steps 2-4).

    scene_gbuffer: the scene's passes with RELATIVE depth (inverse renderer output, or exact passes divided by
    their depth scale); depth_scale: scene units of relative depth 1 (None: :data:`DEFAULT_DEPTH_SCALE`).
    inject: inject the cache (needs a CacheForwardPipeline with an injection). strength: injection strength.
    received_from: for ``received_shadow`` injections, what shadows the object (:func:`receiving_scene`).
    seed: sampling seed of every render. render_options: ForwardPipeline.render options (num_steps, window, overlap,
    domain, reassign_blocks, reassign_steps, progress).
    """
    if blend not in BLENDS:
        raise NeuralRenderError(f"blend must be one of {BLENDS}, got {blend!r}")
    if received_from not in RECEIVED_FROM:
        raise NeuralRenderError(f"received_from must be one of {RECEIVED_FROM}, got {received_from!r}")
    b, t, h, w = scene_gbuffer.shape
    if b != 1 or video.shape != (1, t, 3, h, w) or (camera.num_frames, camera.height, camera.width) != (t, h, w):
        raise NeuralRenderError(f"video {tuple(video.shape)}, camera (T={camera.num_frames}, {camera.height}x"
                                f"{camera.width}) and G-buffer (B={b}, T={t}, {h}x{w}) must describe one clip")
    check_in_front(camera, obj.at, obj.mesh_path)
    cache = object_cache(obj, t)
    obj_gbuffer, ids, names = cache.rasterize(camera, backend)
    if obj_gbuffer is None or not bool((ids > 0).any()):
        raise NeuralRenderError("the object is outside the view in every frame", obj.mesh_path)
    scale = float(depth_scale) if depth_scale is not None else DEFAULT_DEPTH_SCALE
    scene = metric_scene_gbuffer(scene_gbuffer, scale)
    merged, visible = composite_object(scene, obj_gbuffer, ids)
    if not bool(visible.any()):
        raise NeuralRenderError("the object is hidden behind the scene in every frame", obj.mesh_path)
    cache_render = render_of(obj_gbuffer, ids, names, camera)
    kwargs = dict(render_options)
    if inject:
        if not isinstance(forward, CacheForwardPipeline) or forward.injection is None:
            raise NeuralRenderError("inject=True needs a forward model with a cache injection (cache_injection/)")
        # the injection sees the object where it is visible: occluded parts are not part of the rendered cache
        shadow = None
        if forward.injection.config.received_shadow:  # + on the object: what the scene (lifted) and it hide of the env
            from neural_render.raster.shadow import mutual_occlusion

            shadow = mutual_occlusion(cache.meshes(), receiving_scene(received_from, scene, camera, obj), camera,
                                      merged.depth, merged.normal, merged.mask, visible, env)
        elif forward.injection.config.shadow:  # what the object's 3D mesh hides of the env, over the composited scene
            from neural_render.raster.shadow import env_occlusion

            shadow = env_occlusion(cache.meshes(), camera, merged.depth, merged.normal, merged.mask, env)
        light = None
        if forward.injection.needs_light:  # the light the shadow takes away: of the split-sum prior
            from neural_render.models.conditioning import shade_prior

            light = shade_prior(merged, camera, env)
        kwargs.update(cache=(cache_render.normal * visible, visible, shadow, light), strength=strength)
    rendered = forward.render(merged, camera, env, generator=torch.Generator().manual_seed(int(seed)), **kwargs).rgb
    background = None
    if blend == "full":
        out = rendered
    else:
        background = forward.render(scene, camera, env, generator=torch.Generator().manual_seed(int(seed)),
                                    **render_options).rgb
        out = torch.where(visible > 0.5, rendered, (video + rendered - background).clamp_min(0.0))
    return InsertionOutput(out, rendered, background, visible, merged, scene, cache, cache_render, scale)


def choose_depth_scale(given, clip_scale, scene, camera, obj, meta) -> tuple[float | None, str]:
    """(depth scale or None for the pipeline's default, how it was chosen), in this order: ``given`` (the user's
    --depth-scale), ``clip_scale`` (exact clip passes), the scale that puts the estimated (relative) depth at the
    object's ground contact, the clip meta's scale, else None."""
    if given:
        return float(given), "--depth-scale"
    if clip_scale:
        return float(clip_scale), "the clip's passes"
    anchored = anchored_depth_scale(camera, scene.depth, ground_contact(obj))
    if anchored:
        return anchored, "anchored at the object's ground contact"
    if meta is not None and meta.depth_scale:
        return float(meta.depth_scale), "the clip's meta"
    return None, f"default {DEFAULT_DEPTH_SCALE:g}"
