"""Inverse rendering task: RGB video -> G-buffer passes (DiffusionRenderer per-pass, or Marigold-intrinsics joint).

Batches (:mod:`neural_render.data.inverse_data`): ``rgb`` (B, T, 3, H, W) linear radiance, ``gbuffer``
:class:`GBuffer` with the task's passes (+ ``mask``), optional ``pass_id`` (B,) (per_pass mode: index into
``passes``), ``clip`` / ``start`` (validation picks passes deterministically from them).

* condition: codec latents of :func:`~neural_render.pipelines.inverse_values.rgb_to_model` (rgb) (display sRGB in
  [-1, 1]), concatenated in channels (backbone ``cond_channels`` = codec channels).
* ``per_pass``: target = codec latents of ONE packed pass per sample (:func:`pack_pass`; depth divided by the sample's
  :func:`depth_scale_of`), chosen uniformly at random per sample in training (seeded by noise_seed, rank and
  global step, so a resumed run continues the sequence) and deterministically from (clip, start) in validation;
  the pass embedding's tokens of that pass are the context.
* ``joint``: target = the latents of all passes stacked in channels (backbone latent channels = len(passes) x codec
  channels), no context; one denoising run predicts everything.
* ``skip_passes``: those passes' targets are their latents MINUS the condition latent (the pipeline adds it back);
  with ``skip_filter_sigma`` > 0 minus the latent of the input pixel-filtered by that Gaussian (pixels) instead, so
  the input's per-pixel noise is not part of the base (the condition itself stays unfiltered).
* loss mask: passes in ``masked_passes`` (undefined on background: basecolor, normal, roughness, metallic) are weighted
  by the ``mask`` pass max-pooled to latent cells (:func:`latent_mask`); depth (background = 0 = no surface) and mask
  are trained on every pixel, so predicted depth carries the foreground mask at inference.
* ``basecolor_target``: ``"absolute"`` (the G-buffer's albedo) or ``"input_level"``: the albedo times the per-clip,
  per-channel least-squares scale that best maps it onto the (clamped, linear) input video. Albedo is only defined
  up to such a scale from a video whose lighting level and white balance are unknown (the scale-invariant metric
  says the same); matching it to the input removes that unpredictable global part from the target, so the network
  learns the spatial part: shading, shadows, highlights, noise. Predicted basecolor then has the input's level.
* ``pass_loss_weights``: optional per-pass factors on that loss (e.g. ``{basecolor: 3}``: the albedo correction is a
  small residual whose error the normal and depth blocks would otherwise dominate); missing passes weigh 1.
* ``window_rmse_passes`` (joint mode): those passes' blocks are reduced as the mean over samples of each sample's
  root mean square error (:func:`window_rmse_loss`) instead of entering the pooled mean squared error; the
  evaluation averages per-clip RMSEs, and under an uncertain cue (roughness, metallic) the pooled squared error pays
  for hedged values on clips where the answer is plain (no metal in the clip).

The denoiser kind (flow, edm, single-step x0) is whatever the config injects. :meth:`pipeline` /
:meth:`export` give an :class:`~neural_render.pipelines.inverse.InverseRenderingPipeline` with the mode and passes.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch
from torch import Tensor

from neural_render.errors import NeuralRenderError
from neural_render.pipelines.inverse import DEFAULT_MASK_THRESHOLD, MODES
from neural_render.pipelines.inverse_values import rgb_to_model
from neural_render.render.pixel_filter import pixel_filter
from neural_render.tasks.base import DiffusionSystem, zero_output_layer
from neural_render.types.gbuffer import (
    PASS_CHANNELS,
    PREDICTED_PASSES,
    GBuffer,
    depth_scale_of,
    pack_pass,
)

#: passes undefined on background pixels: their loss is restricted to valid pixels
MASKED_PASSES = ("basecolor", "normal", "roughness", "metallic")


def latent_mask(mask: Tensor, latent_frames: int, height: int, width: int) -> Tensor:
    """Pixel mask (B, T, 1, H, W) -> latent-resolution mask (B, T', 1, h, w): 1 where ANY covered pixel is valid.

    Spatial cells are max-pooled; T' == T keeps frames; T = 1 + f (T' - 1) groups frames causally (Wan VAE: the
    first frame alone, then groups of f); anything else is max-pooled adaptively over time.
    """
    b, t = mask.shape[:2]
    x = (mask > 0.5).float().flatten(0, 1)
    x = torch.nn.functional.adaptive_max_pool2d(x, (height, width)).unflatten(0, (b, t))
    if latent_frames == t:
        return x
    if latent_frames > 1 and (t - 1) % (latent_frames - 1) == 0:
        f = (t - 1) // (latent_frames - 1)
        groups = [x[:, :1]] + [x[:, 1 + f * k: 1 + f * (k + 1)].amax(dim=1, keepdim=True)
                               for k in range(latent_frames - 1)]
        return torch.cat(groups, dim=1)
    y = torch.nn.functional.adaptive_max_pool3d(x.transpose(1, 2), (latent_frames, height, width))
    return y.transpose(1, 2)


#: basecolor training targets (module doc)
BASECOLOR_TARGETS = ("absolute", "input_level")


def window_rmse_loss(err: Tensor, weight: Tensor, rmse_blocks: list[bool]) -> Tensor:
    """Scalar loss from per-element squared errors and weights (B, T, C, h, w), channels in ``len(rmse_blocks)``
    equal blocks (the joint mode's passes). Blocks marked False enter the pooled weighted mean squared error as in
    :meth:`Denoiser.loss`; a block marked True is replaced by its weight share times the mean over samples of
    sqrt(weighted mean squared error of the sample's block) (a sample with no weight in the block adds 0)."""
    c, n = err.shape[2], len(rmse_blocks)
    if n == 0 or c % n:
        raise NeuralRenderError(f"{c} latent channels do not split into {n} pass blocks")

    def block_sums(x: Tensor) -> Tensor:  # (B, T, C, h, w) -> (B, n) sums over each sample's block
        return x.unflatten(2, (n, c // n)).transpose(1, 2).flatten(2).sum(-1)

    total = weight.sum().clamp_min(torch.finfo(err.dtype).tiny)
    per, w = block_sums(err * weight), block_sums(weight.expand_as(err))  # weighted error sums, weights
    rmse = torch.tensor(rmse_blocks, device=err.device)
    pooled = per[:, ~rmse].sum() / total
    rms = (per[:, rmse] / w[:, rmse].clamp_min(torch.finfo(err.dtype).tiny) + 1e-12).sqrt()
    rms = torch.where(w[:, rmse] > 0, rms, torch.zeros_like(rms))
    return pooled + (w[:, rmse].sum(0) / total * rms.mean(0)).sum()


def input_level_albedo(albedo: Tensor, rgb: Tensor, mask: Tensor | None = None) -> Tensor:
    """albedo (B, T, 3, H, W) times the per-clip, per-channel least-squares scale s minimising |s albedo - rgb|^2 over
    valid pixels (rgb: linear radiance, clamped to [0, 1] like the model's input; mask (B, T, 1, H, W) or None).
    Clips with no valid or all-black albedo keep scale 1."""
    from neural_render.metrics.gbuffer import least_squares_scale

    scale = least_squares_scale(albedo.float(), rgb.float().clamp(0.0, 1.0), mask)
    return albedo * torch.where(scale > 0, scale, torch.ones_like(scale))


class InverseTask(DiffusionSystem):
    """DiffusionSystem for video -> G-buffers (module doc).

    mode: "per_pass" | "joint". passes: predicted passes in order (joint: the channel blocks' order).
    masked_passes: passes whose loss is restricted to valid pixels. skip_passes: passes predicted relative to the
    input latent, pixel-filtered first when skip_filter_sigma (pixels) > 0 (module doc). pass_loss_weights:
    {pass: factor > 0} on the loss (module doc). basecolor_target: "absolute" | "input_level" (module doc).
    zero_init_output: zero the backbone's output layer at construction.
    mask_threshold / processing_size / num_steps: stored in exported pipelines (inference defaults). native_size:
    the longer side of the training frames, stored in exported pipelines as their default processing size (None:
    the largest frame side of the training batches seen, kept in checkpoints). Other args:
    :class:`DiffusionSystem`.
    """

    def __init__(self, *args, mode: str = "per_pass", passes: list[str] | tuple[str, ...] = PREDICTED_PASSES,
                 masked_passes: list[str] | tuple[str, ...] = MASKED_PASSES,
                 mask_threshold: float = DEFAULT_MASK_THRESHOLD, processing_size: int | list[int] | None = None,
                 num_steps: int | None = None, skip_passes: list[str] | tuple[str, ...] = (),
                 zero_init_output: bool = False, pass_loss_weights: dict[str, float] | None = None,
                 basecolor_target: str = "absolute", skip_filter_sigma: float = 0.0,
                 window_rmse_passes: list[str] | tuple[str, ...] = (), native_size: int | None = None, **kwargs):
        if zero_init_output:  # before the EMA copies the weights: a fresh model predicts x0 = 0
            zero_output_layer(kwargs.get("backbone", args[0] if args else None))
        super().__init__(*args, **kwargs)
        passes, masked_passes = [str(p) for p in passes], [str(p) for p in masked_passes]
        if mode not in MODES:
            raise NeuralRenderError(f"inverse mode must be one of {MODES}, got {mode!r}")
        if not passes or len(set(passes)) != len(passes) or any(p not in PASS_CHANNELS for p in passes):
            raise NeuralRenderError(f"passes must be unique G-buffer passes {list(PASS_CHANNELS)}, got {passes}")
        if any(p not in PASS_CHANNELS for p in masked_passes):
            raise NeuralRenderError(f"unknown masked_passes {masked_passes}")
        self.mode, self.passes, self.masked_passes = mode, passes, masked_passes
        self.mask_threshold, self.processing_size, self.num_steps = mask_threshold, processing_size, num_steps
        self.skip_passes = [str(p) for p in skip_passes]
        self.skip_filter_sigma = float(skip_filter_sigma)
        weights = {str(k): float(v) for k, v in (pass_loss_weights or {}).items()}
        bad = {k: v for k, v in weights.items() if k not in passes or not v > 0 or v == float("inf")}
        if bad:
            raise NeuralRenderError(f"pass_loss_weights must map passes of {passes} to finite factors > 0, got {bad}")
        self.pass_loss_weights = weights
        if basecolor_target not in BASECOLOR_TARGETS:
            raise NeuralRenderError(f"basecolor_target must be one of {BASECOLOR_TARGETS}, got {basecolor_target!r}")
        self.basecolor_target = basecolor_target
        self.window_rmse_passes = [str(p) for p in window_rmse_passes]
        if any(p not in passes for p in self.window_rmse_passes) or (self.window_rmse_passes and mode != "joint"):
            raise NeuralRenderError(f"window_rmse_passes must name passes of {passes} in joint mode, got "
                                    f"{self.window_rmse_passes} ({mode} mode)")
        self._pass_draw = (-1, 0)  # (global step, draws within it) of the last training pass choice
        self._loaded_step = 0  # global step of a checkpoint loaded outside a Trainer (exported as training info)
        self.native_size = None if native_size is None else int(native_size)
        self._seen_size: int | None = None  # the largest training frame side seen (native size when not given)
        self.pipeline()  # validates codec / backbone / pass embedding against the mode (NeuralRenderError)

    # ------------------------------------------------------------------ inference
    def pipeline(self):
        """An :class:`InverseRenderingPipeline` over this system's live modules (wrap calls in ema_weights)."""
        from neural_render.pipelines.inverse import InverseRenderingPipeline

        trainer = getattr(self, "_trainer", None)
        step = max(int(trainer.global_step) if trainer is not None else 0, self._loaded_step)
        return InverseRenderingPipeline(self.backbone, self.denoiser, self.codec, self.pass_embedding, mode=self.mode,
                                        passes=self.passes, mask_threshold=self.mask_threshold,
                                        processing_size=self.processing_size, num_steps=self.num_steps,
                                        skip_passes=self.skip_passes, skip_filter_sigma=self.skip_filter_sigma,
                                        native_size=self.native_size or self._seen_size,
                                        info={"global_step": step, "task": type(self).__name__})

    # ------------------------------------------------------------------ batches
    def _choose_passes(self, batch: dict, b: int) -> list[int]:
        """Per-sample pass indices into ``self.passes`` (per_pass mode)."""
        if batch.get("pass_id") is not None:
            ids = torch.as_tensor(batch["pass_id"]).reshape(-1).tolist()
            if len(ids) != b or any(not 0 <= int(i) < len(self.passes) for i in ids):
                raise NeuralRenderError(f"pass_id must be {b} indices into {self.passes}, got {ids}")
            return [int(i) for i in ids]
        if not self.training:
            clips, starts = batch.get("clip"), batch.get("start")
            if isinstance(clips, (list, tuple)) and len(clips) == b:
                starts = torch.as_tensor(starts).reshape(-1).tolist() if starts is not None else [0] * b
                return [zlib.crc32(f"{c}:{s}".encode()) % len(self.passes) for c, s in zip(clips, starts)]
            return [i % len(self.passes) for i in range(b)]
        # stateless draw: a function of (noise_seed, rank, global step, call within the step), so a resumed run
        # (restored global step) continues the same pass sequence and ranks draw different passes
        step = int(self.global_step)
        self._pass_draw = (step, self._pass_draw[1] + 1) if self._pass_draw[0] == step else (step, 0)
        seed = np.random.SeedSequence([int(self.hparams.noise_seed), 104_729, int(self.global_rank), step,
                                       self._pass_draw[1]]).generate_state(1)[0]
        generator = torch.Generator().manual_seed(int(seed))
        return torch.randint(0, len(self.passes), (b,), generator=generator).tolist()

    def make_batch(self, batch: dict) -> tuple[Tensor, Tensor, Tensor | None, dict]:
        """Return (x0 (B,T',C,h,w), cond (B,T',Cc,h,w), context (B,L,D) | None, {"loss_mask": ...})."""
        rgb, gbuffer = batch.get("rgb"), batch.get("gbuffer")
        if not torch.is_tensor(rgb) or not isinstance(gbuffer, GBuffer):
            raise NeuralRenderError(f"inverse batch needs 'rgb' (tensor) and 'gbuffer' (GBuffer), got {sorted(batch)}")
        passes = gbuffer.passes
        missing = [p for p in self.passes if p not in passes]
        if missing:
            raise NeuralRenderError(f"inverse batch lacks G-buffer passes {missing}")
        b = rgb.shape[0]
        if self.training:  # the native size of an exported pipeline: the training frames' longer side
            self._seen_size = max(self._seen_size or 0, int(max(rgb.shape[-2:])))
        cond = self.encode(rgb_to_model(rgb))
        base = cond  # what skip passes are predicted relative to
        if self.skip_passes and self.skip_filter_sigma:
            base = self.encode(rgb_to_model(pixel_filter(rgb, self.skip_filter_sigma)))
        depth_scale = None
        if "depth" in self.passes:
            depth_scale = depth_scale_of(passes["depth"], passes.get("mask"))
        mask = passes.get("mask")
        if self.basecolor_target == "input_level" and "basecolor" in self.passes:
            passes = dict(passes, basecolor=input_level_albedo(passes["basecolor"], rgb, mask))
        lat_mask = None
        if mask is not None and any(p in self.masked_passes for p in self.passes):
            lat_mask = latent_mask(mask, cond.shape[1], cond.shape[3], cond.shape[4])  # (B, T', 1, h, w)
        if self.mode == "joint":
            x0 = torch.cat([self.encode(pack_pass(p, passes[p], depth_scale)) - (base if p in self.skip_passes else 0)
                            for p in self.passes], dim=2)
            masks = {}
            if lat_mask is not None or self.pass_loss_weights:
                c = x0.shape[2] // len(self.passes)
                blocks = [self._pass_loss_mask(p, lat_mask, cond).expand(-1, -1, c, -1, -1) for p in self.passes]
                masks["loss_mask"] = torch.cat(blocks, dim=2)
            return x0, cond, None, masks
        index = self._choose_passes(batch, b)
        names = [self.passes[i] for i in index]
        packed = torch.cat([pack_pass(n, passes[n][i:i + 1], None if depth_scale is None else depth_scale[i:i + 1])
                            for i, n in enumerate(names)])
        x0 = self.encode(packed)
        skip = torch.tensor([n in self.skip_passes for n in names], device=x0.device).view(-1, 1, 1, 1, 1)
        x0 = torch.where(skip, x0 - base, x0)
        context = self.embed_context(self.pass_embedding.ids(names, device=self.device))
        masks = {}
        if lat_mask is not None or self.pass_loss_weights:
            masks["loss_mask"] = torch.cat([self._pass_loss_mask(n, lat_mask, cond)[i:i + 1]
                                            for i, n in enumerate(names)])
        return x0, cond, context, masks

    def compute_loss(self, x0, cond, context, generator, masks) -> Tensor:
        if not self.window_rmse_passes:
            return super().compute_loss(x0, cond, context, generator, masks)
        err, weight = self.denoiser.loss_terms(self.backbone, x0, cond, context, generator, **masks)
        return window_rmse_loss(err, weight, [p in self.window_rmse_passes for p in self.passes])

    def _pass_loss_mask(self, name: str, lat_mask: Tensor | None, cond: Tensor) -> Tensor:
        """Loss weights (B, T', 1, h, w) of pass ``name``: the latent mask for masked passes (ones otherwise, or
        without a mask pass) times the pass's loss weight."""
        base = lat_mask if lat_mask is not None and name in self.masked_passes else torch.ones_like(cond[:, :, :1])
        return base * self.pass_loss_weights.get(name, 1.0)

    # ------------------------------------------------------------------ hooks
    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        self._loaded_step = int(checkpoint.get("global_step", 0) or 0)
        self._seen_size = checkpoint.get("inverse_seen_size", self._seen_size)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["inverse_seen_size"] = self._seen_size

    def on_train_epoch_start(self) -> None:
        """Draw new clip windows each epoch (ClipDataset.set_epoch; workers are re-created per epoch)."""
        loader = getattr(self.trainer, "train_dataloader", None)
        dataset = getattr(loader, "dataset", None)
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(int(self.current_epoch))
