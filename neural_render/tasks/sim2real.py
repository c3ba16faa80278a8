"""Sim-to-real tasks (RealMaster): the IC-LoRA translator and the anchor-propagation model that makes its pairs.

Batches (:mod:`neural_render.data.sim2real_pairs`): ``rendered``, ``realistic`` (B, T, 3, H, W) linear radiance,
optional ``depth`` (B, T, 1, H, W). Both tasks work in display space (:func:`~neural_render.pipelines.sim2real.
to_model_space`) through the frozen codec; the denoiser kind (flow, edm, x0) is whatever the config injects.

:class:`Sim2RealTask` (IC-LoRA, :mod:`neural_render.models.ic_lora`)
    x0 = [reference | target] along frames: reference = latents of the rendered clip, given clean (``clean_frames``:
    sigma 0, timestep 0, never noised, excluded from the loss), sharing positions with the target (the backbone is
    switched to the in-context layout for good: :func:`~neural_render.models.ic_lora.set_in_context`); target =
    realistic latents (``target="direct"``) or realistic minus reference latents (``"residual"``; with
    ``residual_filter_sigma`` > 0 minus the latents of the rendered clip pixel-filtered by that Gaussian, in pixels,
    while the in-context reference stays unfiltered). No channel
    condition. A peft LoRA of rank ``lora_rank`` on attention q/k/v/out + FFN is added unless the backbone already
    has one; ``train_base`` also trains the base weights (for backbones without pretraining, e.g. the tiny CPU ones).
:class:`PropagationTask` (VACE-style anchor propagation)
    x0 = realistic latents; condition = latents of the control map of the RENDERED clip (Canny edges or depth,
    :func:`~neural_render.pipelines.sim2real_anchors.control_video`) in channels; the first and last latent frames are
    the anchors, given clean and excluded from the loss: the model learns to fill the middle frames.
"""

from __future__ import annotations

import torch
from torch import Tensor

from neural_render.errors import NeuralRenderError
from neural_render.pipelines.sim2real import TARGETS, to_model_space
from neural_render.pipelines.sim2real_anchors import CONDITIONINGS, control_video
from neural_render.tasks.base import DiffusionSystem


def _videos(batch: dict) -> tuple[Tensor, Tensor]:
    rendered, realistic = batch.get("rendered"), batch.get("realistic")
    if not torch.is_tensor(rendered) or not torch.is_tensor(realistic) or rendered.shape != realistic.shape \
            or rendered.ndim != 5 or rendered.shape[2] != 3:
        raise NeuralRenderError("sim2real batch needs 'rendered' and 'realistic' videos (B, T, 3, H, W) of one shape, "
                                f"got keys {sorted(batch)}")
    return rendered, realistic


class _EpochWindows:
    def on_train_epoch_start(self) -> None:
        """New random windows each epoch (PairDataset.set_epoch)."""
        loader = getattr(self.trainer, "train_dataloader", None)
        dataset = getattr(loader, "dataset", None)
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(int(self.current_epoch))


class Sim2RealTask(_EpochWindows, DiffusionSystem):
    """IC-LoRA training (module doc). target: "direct" | "residual"; lora_rank (0 = no LoRA added here),
    lora_alpha, lora_targets: the adapter; train_base: base weights trainable too; residual_filter_sigma: pixels of
    the filter on the residual's base (module doc); window / overlap / num_steps / processing_size: inference
    defaults stored in the exported pipeline. Other args: :class:`DiffusionSystem`."""

    def __init__(self, backbone, denoiser, *args, target: str = "residual", lora_rank: int = 16,
                 lora_alpha: float | None = None, lora_targets: list[str] | None = None, train_base: bool = False,
                 window: int = 8, overlap: int = 2, num_steps: int | None = None,
                 processing_size: list[int] | None = None, residual_filter_sigma: float = 0.0, **kwargs):
        from neural_render.models.ic_lora import DEFAULT_ADAPTER, add_ic_lora, set_in_context
        from neural_render.models.lora import lora_adapter_names

        if target not in TARGETS:
            raise NeuralRenderError(f"target must be one of {TARGETS}, got {target!r}")
        if lora_rank and DEFAULT_ADAPTER not in lora_adapter_names(backbone):
            add_ic_lora(backbone, int(lora_rank), lora_alpha, lora_targets, freeze_base=not train_base)
        elif train_base:
            backbone.requires_grad_(True)
        set_in_context(backbone, True)
        super().__init__(backbone, denoiser, *args, **kwargs)
        self.target, self.window, self.overlap = target, int(window), int(overlap)
        self.num_steps, self.processing_size, self.train_base = num_steps, processing_size, bool(train_base)
        self.residual_filter_sigma = float(residual_filter_sigma)
        self._loaded_step = 0
        self.pipeline()  # validate codec / backbone now (NeuralRenderError)

    def make_batch(self, batch: dict):
        from neural_render.models.ic_lora import ic_sequence

        rendered, realistic = _videos(batch)
        reference = self.encode(to_model_space(rendered))
        real = self.encode(to_model_space(realistic))
        if self.target == "residual" and self.residual_filter_sigma:
            from neural_render.render.pixel_filter import pixel_filter

            target = real - self.encode(to_model_space(pixel_filter(rendered, self.residual_filter_sigma)))
        else:
            target = real - reference if self.target == "residual" else real
        x0, clean = ic_sequence(reference, target)
        return x0, None, None, {"clean_frames": clean}

    def pipeline(self):
        from neural_render.models.ic_lora import DEFAULT_ADAPTER
        from neural_render.models.lora import lora_adapter_names
        from neural_render.pipelines.sim2real import Sim2RealPipeline

        trainer = getattr(self, "_trainer", None)
        step = max(int(trainer.global_step) if trainer is not None else 0, self._loaded_step)
        adapter = DEFAULT_ADAPTER if DEFAULT_ADAPTER in lora_adapter_names(self.backbone) else None
        return Sim2RealPipeline(self.backbone, self.denoiser, self.codec, None, target=self.target, adapter=adapter,
                                num_steps=self.num_steps, window=self.window, overlap=self.overlap,
                                processing_size=self.processing_size, residual_filter_sigma=self.residual_filter_sigma,
                                info={"global_step": step, "task": type(self).__name__,
                                      "train_base": self.train_base})

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        self._loaded_step = int(checkpoint.get("global_step", 0) or 0)


class PropagationTask(_EpochWindows, DiffusionSystem):
    """Anchor propagation training (module doc). conditioning: "edges" | "depth"; canny: (low, high, sigma) or None;
    segment / num_steps: inference defaults stored in the exported pipeline. Other args: :class:`DiffusionSystem`."""

    def __init__(self, backbone, denoiser, *args, conditioning: str = "edges", canny: list[float] | None = None,
                 segment: int = 8, num_steps: int | None = None, **kwargs):
        super().__init__(backbone, denoiser, *args, **kwargs)
        if conditioning not in CONDITIONINGS:
            raise NeuralRenderError(f"conditioning must be one of {CONDITIONINGS}, got {conditioning!r}")
        self.conditioning, self.canny = conditioning, None if canny is None else tuple(float(v) for v in canny)
        self.segment, self.num_steps = int(segment), num_steps
        self._loaded_step = 0
        self.pipeline()

    def make_batch(self, batch: dict):
        rendered, realistic = _videos(batch)
        control = control_video(rendered, batch.get("depth"), self.conditioning, self.canny)
        cond = self.encode(control)
        x0 = self.encode(to_model_space(realistic))
        if x0.shape[1] < 3:
            raise NeuralRenderError(f"propagation training needs >= 3 latent frames (2 anchors + 1), got {x0.shape[1]}")
        clean = torch.zeros(x0.shape[:2], dtype=torch.bool, device=x0.device)
        clean[:, 0] = clean[:, -1] = True
        return x0, cond, None, {"clean_frames": clean}

    def pipeline(self):
        from neural_render.pipelines.sim2real_data import AnchorPropagationPipeline

        trainer = getattr(self, "_trainer", None)
        step = max(int(trainer.global_step) if trainer is not None else 0, self._loaded_step)
        return AnchorPropagationPipeline(self.backbone, self.denoiser, self.codec, None, self.conditioning, self.canny,
                                         self.segment, self.num_steps,
                                         info={"global_step": step, "task": type(self).__name__})

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        self._loaded_step = int(checkpoint.get("global_step", 0) or 0)
