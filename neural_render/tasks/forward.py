"""Forward rendering task: G-buffers (any subset) + per-frame env encodings -> RGB video, with Realiz3D domain shifters.

Batches come from :class:`neural_render.data.forward_data.ForwardDataModule` (forward inputs + ``rgb`` + ``domain``).

* x0 = codec(display_pack(rgb)): display sRGB of clamp(rgb, 0, 1) in [-1, 1], encoded (the model renders
  display-referred video; :func:`neural_render.models.conditioning.display_unpack` maps its output back to linear).
* cond = :func:`neural_render.models.conditioning.forward_condition`: five packed G-buffer latents (zeros when missing)
  + five presence channels + LDR / LOG / DIR env encoding latents [+ split-sum prior latents + presence].
* ``residual`` (needs ``with_prior``): the network predicts x0 - prior_latents, i.e. the correction of the classical
  split-sum render (shadows, inter-reflections, occluded sky); where the prior is absent (no normal, no env, control
  dropped) the base is zero and the network predicts the whole image. The pipeline adds the base back.

Realiz3D (``domain_shifter`` = {"rank", "embed_dim", "seed", "pretrained": folder}; see models/domain_shifter.py):

* ``stage="shifters"`` (stage 1): only the shifters train (backbone frozen); the control is dropped for every sample
  (cond zeros, presence 0) and each sample uses its own domain (synthetic / real) in every block.
* ``stage="backbone"`` (stage 2): shifters frozen, backbone trains. Synthetic samples: control kept (per-buffer
  dropout from the data), e_synthetic everywhere. Real samples: control dropped with probability
  ``real_cond_dropout``; e_real, with the first ``reassign_blocks`` blocks reassigned to e_synthetic with probability
  ``reassign_prob``; layer-aware freezing: their gradient does not reach the first ``frozen_blocks`` blocks.
* ``stage="plain"``: no special treatment; shifters (if any) train with everything else, domain per sample.

Trainable defaults per stage (when ``trainable`` is not given): shifters -> ``domain_shifters.*``;
backbone -> ``backbone.*`` (+ ``pass_embedding.*``); plain -> everything that requires grad.

Bringing your own real videos (the "real" domain):

1. ``neural-render autolabel MY_VIDEOS/ --out data_cache/real_autolabel`` (inverse renderer: one clip folder per
   video with its RGB + predicted G-buffers; ``neural-render import`` alone also works, RGB only: real samples drop
   the control by default, so neither G-buffers nor env maps are required);
2. point ``data.init_args.real_roots`` of configs/data/synth_forward_real.yaml at that folder;
3. ``neural-render fit ... --config configs/task/forward.yaml --config configs/task/forward_stage1.yaml`` (export),
   then the same with configs/task/forward_stage2.yaml, loading the stage-1 export (see the YAML comments);
4. render with ``--domain real`` (default), optionally ``--reassign-blocks N --reassign-steps M``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from neural_render.data.forward_data import DOMAINS
from neural_render.devices import move_to_device
from neural_render.errors import NeuralRenderError
from neural_render.models.conditioning import display_pack, forward_cond_channels, forward_condition
from neural_render.tasks.base import DiffusionSystem, zero_output_layer

STAGES = ("plain", "shifters", "backbone")


class ForwardTask(DiffusionSystem):
    """DiffusionSystem for forward rendering (module docstring). Other args: :class:`DiffusionSystem`.

    with_prior: add the split-sum prior to the condition. residual: predict the correction of the prior.
    prior_filter_sigma: pixel filter (pixels, 0 = none) on the split-sum prior (:func:`forward_condition`).
    window / overlap: latent frames per window at inference (stored in the exported pipeline; default: 8 / 4).
    zero_init_output: zero the backbone's output layer at construction (fresh residual model == its prior).
    """

    def __init__(self, *args, with_prior: bool = True, residual: bool = True, stage: str = "plain",
                 domain_shifter: dict | None = None, real_cond_dropout: float = 1.0, reassign_prob: float = 0.5,
                 reassign_blocks: int | None = None, frozen_blocks: int | None = None, window: int = 8,
                 overlap: int = 4, zero_init_output: bool = False, prior_filter_sigma: float = 0.0, **kwargs):
        if stage not in STAGES:
            raise NeuralRenderError(f"stage must be one of {STAGES}, got {stage!r}")
        if residual and not with_prior:
            raise NeuralRenderError("residual=True needs with_prior=True (the residual is taken w.r.t. the prior)")
        for name, p in (("real_cond_dropout", real_cond_dropout), ("reassign_prob", reassign_prob)):
            if not 0.0 <= p <= 1.0:
                raise NeuralRenderError(f"{name} must be in [0, 1], got {p}")
        if stage != "plain" and not domain_shifter:
            raise NeuralRenderError(f"stage {stage!r} needs domain_shifter settings")
        if stage == "backbone" and not (domain_shifter or {}).get("pretrained"):
            raise NeuralRenderError("stage 'backbone' (Realiz3D stage 2) needs domain_shifter.pretrained: the "
                                    "domain_shifters/ folder of a stage-1 export")
        backbone = kwargs.get("backbone", args[0] if args else None)
        if zero_init_output:
            zero_output_layer(backbone)
        shifters = _build_shifters(backbone, domain_shifter) if domain_shifter else None
        object.__setattr__(self, "_shifters_to_register", shifters)  # registered in _select_trainable (before EMA)
        if kwargs.get("trainable") is None and stage != "plain":
            kwargs["trainable"] = ["domain_shifters.*"] if stage == "shifters" else ["backbone.*"]
            if stage == "backbone" and kwargs.get("pass_embedding") is not None:
                kwargs["trainable"].append("pass_embedding.*")
        super().__init__(*args, **kwargs)
        self.save_hyperparameters(ignore=["backbone", "denoiser", "codec", "pass_embedding"])
        if residual and float(self.hparams.cond_dropout) > 0:
            raise NeuralRenderError("cond_dropout (CFG) is not supported with residual=True")
        latent = self.codec.latent_channels if self.codec is not None else self.backbone.latent_channels
        want = forward_cond_channels(latent, with_prior)
        if self.backbone.cond_channels != want:
            raise NeuralRenderError(f"the forward task needs a backbone with cond_channels={want} for {latent} latent "
                                    f"channels (with_prior={with_prior}), got {self.backbone.cond_channels}")
        self.with_prior, self.residual, self.stage = bool(with_prior), bool(residual), stage
        if not 0.0 <= float(prior_filter_sigma) <= 4.0 or (prior_filter_sigma and not with_prior):
            raise NeuralRenderError(f"prior_filter_sigma must be in [0, 4] pixels and needs with_prior, "
                                    f"got {prior_filter_sigma}")
        self.prior_filter_sigma = float(prior_filter_sigma)
        blocks = self.domain_shifters.num_blocks if self.domain_shifters is not None else 0
        self.reassign_blocks = blocks // 2 if reassign_blocks is None else int(reassign_blocks)
        self.frozen_blocks = blocks // 2 if frozen_blocks is None else int(frozen_blocks)
        if not (0 <= self.reassign_blocks <= blocks and 0 <= self.frozen_blocks <= blocks):
            raise NeuralRenderError(f"reassign_blocks / frozen_blocks must be in 0..{blocks}")
        self.window, self.overlap = int(window), int(overlap)

    def _select_trainable(self, patterns):
        shifters = self.__dict__.pop("_shifters_to_register", None)
        self.domain_shifters = shifters
        return super()._select_trainable(patterns)

    # ------------------------------------------------------------------ batches
    def make_batch(self, batch: dict) -> tuple[Tensor, Tensor | None, Tensor | None, dict]:
        for key in ("rgb", "gbuffer", "present", "env", "env_present", "depth_scale"):
            if key not in batch:
                raise NeuralRenderError(f"forward batch needs key {key!r}, got {sorted(batch)}")
        device = self.device
        inputs = move_to_device(batch, device)
        b = inputs["rgb"].shape[0]
        domain = inputs.get("domain")
        domain = torch.zeros(b, dtype=torch.long, device=device) if domain is None else domain.reshape(-1).long()
        real = domain == DOMAINS.index("real")
        keep = torch.ones(b, dtype=torch.bool, device=device)  # control kept per sample
        training = self.training and torch.is_grad_enabled()
        if self.stage == "shifters":
            keep = torch.zeros_like(keep)
        elif self.stage == "backbone" and training and bool(real.any()):
            gen = self._generator()
            draw = torch.rand(b, generator=gen, device=gen.device).to(device)
            keep = ~(real & (draw < float(self.hparams.real_cond_dropout)))
        if not bool(keep.all()):
            k = keep.float()
            inputs["present"] = inputs["present"] * k[:, None]
            inputs["env_present"] = inputs["env_present"] * k
            if "prior_present" in inputs:
                inputs["prior_present"] = inputs["prior_present"] * k
        x0 = self.encode(display_pack(inputs["rgb"]))
        with torch.no_grad():
            cond, prior = forward_condition(self.encode, inputs, self.with_prior, self.prior_filter_sigma)
        if self.residual:
            x0 = x0 - prior
        self._set_domains(domain, real, training)
        return x0, cond, None, {}

    def _set_domains(self, domain: Tensor, real: Tensor, training: bool) -> None:
        shifters = self.domain_shifters
        if shifters is None:
            return
        n = shifters.num_blocks
        ids = domain[:, None].expand(-1, n).clone()
        if self.stage == "backbone" and training:
            from neural_render.models.domain_shifter import reassign_early_blocks
            ids = reassign_early_blocks(ids, real, self.reassign_blocks, float(self.hparams.reassign_prob),
                                        self._generator())
            shifters.set_state(ids, detach_rows=real, frozen_blocks=self.frozen_blocks)
        else:
            shifters.set_state(ids)

    def on_train_epoch_start(self) -> None:
        trainer = getattr(self, "_trainer", None)
        datamodule = getattr(trainer, "datamodule", None) if trainer is not None else None
        if datamodule is not None and hasattr(datamodule, "set_epoch"):
            datamodule.set_epoch(self.current_epoch)

    # ------------------------------------------------------------------ export
    def forward_config(self) -> dict:
        """Settings the inference pipeline needs (stored as forward_config.json)."""
        return {"with_prior": self.with_prior, "residual": self.residual, "prior_filter_sigma": self.prior_filter_sigma,
                "window": self.window,
                "overlap": self.overlap, "stage": self.stage, "info": {"global_step": int(self.global_step)}}

    def pipeline(self):
        from neural_render.pipelines.forward import ForwardPipeline

        return ForwardPipeline(self.backbone, self.denoiser, self.codec, self.pass_embedding,
                               forward_config=self.forward_config(), domain_shifters=self.domain_shifters)


def _build_shifters(backbone, settings: dict):
    from neural_render.models.domain_shifter import DomainShifters

    settings = dict(settings)
    pretrained = settings.pop("pretrained", None)
    unknown = set(settings) - {"rank", "embed_dim", "seed", "init_std", "default_domain", "anchor_synthetic"}
    if unknown:
        raise NeuralRenderError(f"unknown domain_shifter settings {sorted(unknown)}")
    if backbone is None:
        raise NeuralRenderError("domain shifters need the backbone")
    if pretrained:
        return DomainShifters.from_pretrained(pretrained).attach(backbone)
    return DomainShifters.for_backbone(backbone, **settings)
