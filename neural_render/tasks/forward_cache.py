"""Forward rendering with 3D-cache injection (Real2SAM2Real): :class:`ForwardTask` + a :class:`CacheInjection`.

Batches are forward batches (data/forward_data.py) plus ``cache_normal`` (B, T, 3, H, W) and ``cache_mask``
(B, T, 1, H, W): the stand-in cache render of one object of the clip (:class:`CacheForwardDataset`). The task adds
``added = {"token_add": injection(codec(cache normals), mask, strength)}`` to the backbone call of the loss; in
training the cache is degraded by :func:`~neural_render.models.cache_injection.perturb_cache_render` (dilation,
shift, normal noise) and dropped entirely (mask 0 = no injection) for a ``1 - cache_prob`` share of the samples, so
the model renders correctly with and without a cache and trusts it softly. Injections with ``shadow_residual``
also pass ``x0_add`` (the gained blocked light of the cache's shadow, :meth:`CacheInjection.x0_add`) to the loss.

Minimally invasive fine-tuning of a trained forward model: by default only ``injection.*`` and the backbone's LoRA
(``backbone.*lora_*``, when the backbone has one: :func:`pretrained_forward_backbone` with ``lora_rank`` > 0) train.

Data without 3D ground truth: the stand-in cache render is the masked camera-space normal map of one object taken
from the synthetic G-buffers of the clip (or of the synthetic clip a "real" stand-in was made from: degraded or
inverse-rendered G-buffers as the condition, exact object normals as the cache); see :class:`CacheForwardDataset`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from neural_render.data.forward_data import ForwardClipDataset, ForwardDataModule
from neural_render.errors import NeuralRenderError
from neural_render.models.backbone import VideoBackbone
from neural_render.models.cache_injection import (
    SHADOW_REGION,
    TRAINABLE_PATTERNS,
    CacheInjection,
    area_pool,
    blocked_light_latents,
    pack_cache_normals,
    pack_cache_shadow,
    perturb_cache_render,
    soft_dilate,
    temporal_pool,
)
from neural_render.models.codec import LatentCodec
from neural_render.models.denoiser import Denoiser
from neural_render.tasks.forward import ForwardTask

DEFAULT_PERTURB = {"max_dilation": 2, "max_shift": 2, "noise_std": 0.15, "probability": 0.5}


class ForwardCacheTask(ForwardTask):
    """ForwardTask whose backbone also receives the cache injection (module docstring).

    injection: {"mask_dilation": int, "strength": float} for a fresh zero-initialised projection, or
        {"pretrained": folder} to continue from a saved one. cache_prob: share of training samples that get a cache.
    perturb: keyword arguments of perturb_cache_render (training only). region_weight: the loss weight of a latent
        element is 1 + region_weight * (soft mask of the cached object, the injection's falloff included), so the
        fine-tuning concentrates on the object and its surroundings (shadows), where insertion is judged.
    Other arguments: :class:`ForwardTask`.
    """

    def __init__(self, *args, injection: dict | None = None, cache_prob: float = 0.8, perturb: dict | None = None,
                 region_weight: float = 0.0, **kwargs):
        if not 0.0 <= cache_prob <= 1.0:
            raise NeuralRenderError(f"cache_prob must be in [0, 1], got {cache_prob}")
        if not region_weight >= 0.0:
            raise NeuralRenderError(f"region_weight must be >= 0, got {region_weight}")
        backbone = kwargs.get("backbone", args[0] if args else None)
        codec = kwargs.get("codec", args[2] if len(args) > 2 else None)
        if backbone is None:
            raise NeuralRenderError("ForwardCacheTask needs the backbone")
        module = _build_injection(backbone, codec, dict(injection or {}))
        object.__setattr__(self, "_injection_to_register", module)
        if kwargs.get("trainable") is None:
            from neural_render.models.lora import lora_adapter_names
            kwargs["trainable"] = [TRAINABLE_PATTERNS[0]] + ([TRAINABLE_PATTERNS[1]] if lora_adapter_names(backbone)
                                                            else [])
        super().__init__(*args, **kwargs)
        self.save_hyperparameters(ignore=["backbone", "denoiser", "codec", "pass_embedding"])
        self.cache_prob = float(cache_prob)
        self.region_weight = float(region_weight)
        self.perturb = {**DEFAULT_PERTURB, **dict(perturb or {})}
        unknown = set(self.perturb) - set(DEFAULT_PERTURB)
        if unknown:
            raise NeuralRenderError(f"unknown perturb settings {sorted(unknown)}; known {sorted(DEFAULT_PERTURB)}")

    def _select_trainable(self, patterns):
        module = self.__dict__.pop("_injection_to_register", None)
        if module is not None:
            self.injection = module
        return super()._select_trainable(patterns)

    # ------------------------------------------------------------------ batches
    def cache_token_add(self, normal: Tensor, mask: Tensor, strength: float | Tensor | None = None,
                        shadow: Tensor | None = None, light: Tensor | None = None) -> Tensor:
        """Cache render (B,T,3,H,W) / (B,T,1,H,W) (+ shadow (B,T,1,H,W) for shadow injections, + light (B,T,3,H,W),
        the split-sum prior, for shadow_light ones) -> token_add (B,T'',D,h',w') (codec frozen, projection trained)."""
        latents = self.encode(pack_cache_normals(normal, mask))
        shadow_latents = None
        if shadow is not None:
            shadow_latents = self.encode(pack_cache_shadow(shadow, self.injection.light_of(light)))
        return self.injection(latents, mask, strength, shadow_latents, shadow)

    def make_batch(self, batch: dict) -> tuple[Tensor, Tensor | None, Tensor | None, dict]:
        x0, cond, context, masks = super().make_batch(batch)
        if "cache_normal" not in batch or "cache_mask" not in batch:
            return x0, cond, context, masks
        normal = batch["cache_normal"].to(self.device).float()
        mask = batch["cache_mask"].to(self.device).float()
        shadow = None
        if self.injection.config.shadow:
            if "cache_shadow" not in batch:
                raise NeuralRenderError("a shadow injection needs cache_shadow in the batch (data shadow: true)")
            shadow = batch["cache_shadow"].to(self.device).float()
        if self.training and torch.is_grad_enabled():
            gen = self._generator()
            normal, mask = perturb_cache_render(normal, mask, gen, **self.perturb)
            keep = (torch.rand(mask.shape[0], generator=gen, device=gen.device) < self.cache_prob).to(mask)
            mask = mask * keep.view(-1, 1, 1, 1, 1)
            normal = normal * mask
            shadow = None if shadow is None else shadow * keep.view(-1, 1, 1, 1, 1)
        masks = dict(masks or {})
        light = None
        if self.injection.needs_light:
            if "prior" not in batch:
                raise NeuralRenderError("shadow_light / shadow_residual injections need the split-sum prior in the "
                                        "batch (with_prior)")
            light = batch["prior"].to(self.device).float()
        masks["added"] = {"token_add": self.cache_token_add(normal, mask, shadow=shadow, light=light)}
        if self.injection.config.shadow_residual:
            with torch.no_grad():
                blocked = blocked_light_latents(self.encode, shadow, light)
            masks["x0_add"] = self.injection.x0_add(blocked)
        if self.region_weight > 0:
            t_lat, h, w = x0.shape[1], x0.shape[3], x0.shape[4]
            region = mask if shadow is None else torch.maximum(mask, (shadow > SHADOW_REGION).to(mask))
            soft = soft_dilate(area_pool(temporal_pool(region, t_lat), (t_lat, h, w)), self.injection.mask_dilation)
            masks["loss_mask"] = 1.0 + self.region_weight * soft
        return x0, cond, context, masks

    # ------------------------------------------------------------------ export
    def pipeline(self):
        from neural_render.pipelines.insert import CacheForwardPipeline

        return CacheForwardPipeline(self.backbone, self.denoiser, self.codec, self.pass_embedding,
                                    forward_config=self.forward_config(), domain_shifters=self.domain_shifters,
                                    injection=self.injection)


def _build_injection(backbone, codec, settings: dict) -> CacheInjection:
    pretrained = settings.pop("pretrained", None)
    known = ("mask_dilation", "strength", "shadow", "shadow_light", "received_shadow", "shadow_residual")
    unknown = set(settings) - set(known)
    if unknown:
        raise NeuralRenderError(f"unknown injection settings {sorted(unknown)} ({', '.join(known)}, pretrained)")
    if pretrained:
        return CacheInjection.from_pretrained(pretrained)
    channels = codec.latent_channels if codec is not None else backbone.latent_channels
    return CacheInjection.for_backbone(backbone, channels, **settings)


# ---------------------------------------------------------------------------------------------- model factories
def pretrained_forward_backbone(model_dir: str, lora_rank: int = 8, lora_alpha: float | None = None,
                                lora_targets: list[str] | None = None) -> VideoBackbone:
    """YAML factory: the backbone of a trained forward pipeline folder (e.g. data/models/forward_tiny) + a fresh LoRA
    (``lora_rank`` > 0; B zero-initialised, base frozen). Its domain shifters, if any, are loaded by the task
    (``domain_shifter: {pretrained: <model_dir>/domain_shifters}``)."""
    from neural_render.pipelines.forward import ForwardPipeline

    backbone = ForwardPipeline.from_pretrained(model_dir).backbone
    backbone.train()
    backbone.requires_grad_(False)
    if lora_rank:
        from neural_render.models.lora import add_lora
        add_lora(backbone, rank=lora_rank, alpha=lora_alpha, target_modules=lora_targets)
    return backbone


def pretrained_forward_codec(model_dir: str) -> LatentCodec:
    """YAML factory: the codec of a forward pipeline folder."""
    from neural_render.pipelines.forward import ForwardPipeline

    codec = ForwardPipeline.from_pretrained(model_dir).codec
    if codec is None:
        raise NeuralRenderError("the forward pipeline has no codec", model_dir)
    return codec


def pretrained_forward_denoiser(model_dir: str) -> Denoiser:
    """YAML factory: the denoiser of a forward pipeline folder."""
    from neural_render.pipelines.forward import ForwardPipeline

    return ForwardPipeline.from_pretrained(model_dir).denoiser


# ---------------------------------------------------------------------------------------------------------- data
class CacheForwardDataset(Dataset):
    """Forward items (``base``) + the stand-in cache render of one random object of the window.

    The object ids and exact normals come from the synthetic clip the item was read from, or, when that clip has no
    object ids (a "real" stand-in / inverse-labelled copy), from the clip of the same folder name under
    ``source_roots``. Objects other than the ground that cover >= ``min_pixels`` pixels on average are candidates;
    clips without any give an empty cache (mask 0). Items need full frames (``base.crop`` None).
    Adds ``cache_normal`` (1, T, 3, H, W) (exact normals * mask) and ``cache_mask`` (1, T, 1, H, W).

    shadow: also ``cache_shadow`` (1, T, 1, H, W): :func:`~neural_render.raster.shadow.env_occlusion` of the picked
    object's mesh (the synthetic source scene redrawn by :func:`~neural_render.synth.dataset.regenerate_scene`,
    exact per-frame pose) over the geometry of the ITEM's clip: its depth and normals, which for a "real" stand-in
    are the degraded / inverse-rendered ones (relative depth brought to scene units by the median ratio to the
    source's depth), so the shadow is as imperfect as at inference, where the scene geometry is estimated too.
    Computed once per (clip, object) and kept. env_rows: the env resolution of env_occlusion.
    received_shadow: on the object's own pixels the map is instead the light the scene and the object block from
    them (:func:`~neural_render.raster.shadow.mutual_occlusion`), the scene lifted frame by frame
    (:meth:`~neural_render.models.cache3d.Cache3D.lift_frames`) from a G-buffer WITHOUT the object, as at
    inference: the redrawn scene minus the object rasterized (synthetic clips), or the item's own geometry minus the
    object's pixels (stand-ins; the surface the object hides is missing there).
    """

    def __init__(self, base: ForwardClipDataset, source_roots: list[str] | None = None, min_pixels: int = 12,
                 seed: int = 0, shadow: bool = False, env_rows: int = 16, received_shadow: bool = False):
        if base.crop is not None or base.size is not None:
            raise NeuralRenderError("CacheForwardDataset needs full frames (crop and size None) to align object ids")
        self.base, self.min_pixels, self.seed = base, int(min_pixels), int(seed)
        self.source_roots = [Path(r) for r in (source_roots or [])]
        self.shadow, self.env_rows = bool(shadow), int(env_rows)
        if received_shadow and not shadow:
            raise NeuralRenderError("received_shadow needs shadow=True")
        self.received_shadow = bool(received_shadow)
        self._sources: dict[str, tuple] = {}
        self._shadows: dict[tuple[str, int], Tensor] = {}

    def __len__(self) -> int:
        return len(self.base)

    def set_epoch(self, epoch: int) -> None:
        self.base.set_epoch(epoch)

    def _source(self, clip: str) -> tuple:
        """(object ids (T, H, W) int64, normals (T, 3, H, W), ground ids set) of the synthetic source clip."""
        if clip in self._sources:
            return self._sources[clip]
        from neural_render.io.clip import read_clip, read_meta
        from neural_render.synth.dataset import OBJECT_ID_FILE, read_object_ids

        candidates = [Path(clip)] + [root / Path(clip).name for root in self.source_roots]
        source = next((c for c in candidates if (c / OBJECT_ID_FILE.format(0)).is_file()), None)
        if source is None:
            raise NeuralRenderError("no object ids for this clip (not synthetic, and no same-named clip under "
                                    f"{[str(r) for r in self.source_roots]})", clip)
        meta = read_meta(source)
        ids = torch.from_numpy(np.stack([read_object_ids(source, t) for t in range(meta.num_frames)])).long()
        normals = read_clip(source, passes=["normal", "mask"], rgb=False).gbuffer.normal[0]
        objects = meta.extra.get("synth", {}).get("objects", [])
        ground = {int(o["id"]) for o in objects if o.get("kind") == "ground"}
        self._sources[clip] = (ids.reshape(meta.num_frames, *ids.shape[-2:]), normals, ground, source)
        return self._sources[clip]

    def _shadow(self, clip: str, object_id: int) -> Tensor:
        """(T, 1, H, W) shadow of object ``object_id`` of the source scene over the geometry of ``clip``."""
        key = (clip, int(object_id))
        if key in self._shadows:
            return self._shadows[key]
        from neural_render.io.clip import read_clip, read_clip_envmap
        from neural_render.raster.shadow import env_occlusion
        from neural_render.synth.dataset import regenerate_scene

        source = self._source(clip)[3]
        scene = regenerate_scene(source)
        own = read_clip(clip, passes=["normal", "depth", "mask"], rgb=False).gbuffer
        depth = own.depth
        if Path(clip).resolve() != Path(source).resolve():
            exact = read_clip(source, passes=["depth", "mask"], rgb=False).gbuffer.depth
            both = (exact > 0) & (depth > 0)
            if not bool(both.any()):
                raise NeuralRenderError("no pixel with depth in both the clip and its synthetic source", clip)
            depth = depth * (exact[both] / depth[both]).median()
        env = read_clip_envmap(source)
        surface = (depth > 0).float() if own.mask is None else own.mask
        obj = [scene.meshes[int(object_id) - 1]]
        if not self.received_shadow:
            shadow = env_occlusion(obj, scene.camera, depth, own.normal, surface, env, self.env_rows)[0]
        else:
            shadow = self._mutual_shadow(scene, clip, source, object_id, obj, depth, own.normal, surface, env)
        self._shadows[key] = shadow
        return shadow

    def _mutual_shadow(self, scene, clip: str, source, object_id: int, obj: list, depth: Tensor, normal: Tensor,
                       surface: Tensor, env) -> Tensor:
        """(T, 1, H, W) :func:`mutual_occlusion` of object ``object_id`` (mesh list ``obj``) and its scene (class
        docstring)."""
        from neural_render.models.cache3d import Cache3D
        from neural_render.raster import rasterize
        from neural_render.raster.shadow import mutual_occlusion
        from neural_render.types import GBuffer

        t = scene.camera.num_frames
        on_object = (self._source(clip)[0] == int(object_id)).reshape(1, t, 1, *depth.shape[-2:])
        lifted = Cache3D(t)
        others = [m for i, m in enumerate(scene.meshes) if i != int(object_id) - 1]
        if Path(clip).resolve() != Path(source).resolve():
            without = GBuffer(normal=normal, depth=depth, mask=surface * ~on_object)
        elif others:
            without = rasterize(others, scene.camera)
            without = GBuffer(normal=without.normal, depth=without.depth, mask=(without.depth > 0).float())
        else:  # the object alone: no scene to shadow it
            without = None
        if without is not None:
            lifted.lift_frames(without, scene.camera, without.mask)
        return mutual_occlusion(obj, lifted.meshes(), scene.camera, depth, normal, surface, on_object.float(), env,
                                self.env_rows)[0]

    def __getitem__(self, index: int) -> dict:
        item = self.base[index]
        ids, normals, ground, _ = self._source(item["clip"])
        t = item["rgb"].shape[1]
        span = slice(item["start"], item["start"] + (t - 1) * self.base.frame_stride + 1, self.base.frame_stride)
        window_ids, window_normals = ids[span], normals[span]
        values, counts = torch.unique(window_ids, return_counts=True)
        choices = [int(v) for v, c in zip(values, counts) if int(v) > 0 and int(v) not in ground
                   and float(c) / t >= self.min_pixels]
        mask = torch.zeros(1, t, 1, *window_ids.shape[-2:])
        shadow = torch.zeros_like(mask)
        if choices:
            state = np.random.SeedSequence([self.seed, self.base.epoch, int(index), 0xCAC4E]).generate_state(1)[0]
            pick = choices[int(np.random.default_rng(int(state)).integers(len(choices)))]
            mask = (window_ids == pick).float()[None, :, None]
            if self.shadow:
                shadow = self._shadow(item["clip"], pick)[span][None]
        item["cache_mask"] = mask
        item["cache_normal"] = window_normals[None] * mask
        if self.shadow:
            item["cache_shadow"] = shadow
        return item


class CacheForwardDataModule(ForwardDataModule):
    """:class:`ForwardDataModule` whose datasets are wrapped in :class:`CacheForwardDataset`.

    source_roots: synthetic dataset folders where "real" stand-in clips find their object ids (same folder names);
    default: the synthetic ``train_roots``. min_pixels, shadow, env_rows, received_shadow: see
    :class:`CacheForwardDataset`.
    """

    def __init__(self, *args, source_roots: list[str] | str | None = None, min_pixels: int = 12,
                 shadow: bool = False, env_rows: int = 16, received_shadow: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        roots = source_roots if source_roots is not None else self.train_roots
        self.source_roots = [roots] if isinstance(roots, (str, os.PathLike)) else list(roots)
        self.min_pixels = int(min_pixels)
        self.shadow, self.env_rows, self.received_shadow = bool(shadow), int(env_rows), bool(received_shadow)

    def setup(self, stage: str | None = None) -> None:
        if self.train_sets and isinstance(self.train_sets[0], CacheForwardDataset):
            return
        super().setup(stage)

        def wrap(ds):
            return CacheForwardDataset(ds, self.source_roots, self.min_pixels, self.seed, self.shadow,
                                       self.env_rows, self.received_shadow)

        self.train_sets = [wrap(ds) for ds in self.train_sets]
        if self.val_set is not None:
            self.val_set = wrap(self.val_set)
