"""Lightning core: :class:`DiffusionSystem`, the base LightningModule every task (toy, inverse, forward, sim2real)
subclasses.

The system does not build its parts: the backbone (:class:`~neural_render.models.backbone.VideoBackbone`), the latent
codec, the :class:`~neural_render.models.denoiser.Denoiser` and an optional pass embedding are injected (from YAML by
``neural-render fit`` via jsonargparse ``class_path``/``init_args``). Subclasses implement only :meth:`make_batch`,
turning a data batch into ``(x0 latents (B,T,C,h,w), cond (B,T,Cc,h,w) | None, context (B,L,D) | None, masks)``.

What the base provides: the training loss through the one Denoiser (with optional condition dropout for CFG), an EMA
of the trainable weights (used for validation and export, stored in checkpoints), AdamW with linear warmup, selection
of the trainable parameters by name patterns (e.g. only LoRA), logging, and :meth:`export` to a pipeline folder.
Gradient clipping, precision, strategy (ddp/fsdp), devices and nodes are Trainer configuration.
"""

from __future__ import annotations

import contextlib
import fnmatch

import lightning.pytorch as pl
import torch
from torch import Tensor

from neural_render.errors import NeuralRenderError
from neural_render.models.backbone import VideoBackbone
from neural_render.models.codec import LatentCodec
from neural_render.models.denoiser import Denoiser, drop_condition
from neural_render.models.ema import ExponentialMovingAverage

MASK_KEYS = ("loss_mask", "clean_frames", "timestep_mask", "added", "x0_add")


def make_backbone(kind: str = "wan", config: dict | None = None, pretrained_dir: str | None = None,
                  cond_channels: int = 0, tiny: bool = False, seed: int | None = 0,
                  autocast_dtype: str | None = None, gradient_checkpointing: bool = False,
                  lora_rank: int = 0, lora_alpha: float | None = None,
                  lora_targets: list[str] | None = None) -> VideoBackbone:
    """YAML-friendly backbone factory (``class_path: neural_render.tasks.base.make_backbone``).

    Wraps :func:`neural_render.models.backbone.build_backbone` (kind "svd" | "wan", diffusers ``config`` overrides,
    local ``pretrained_dir``, ``cond_channels`` zero-init expansion, ``tiny`` CPU configs, init ``seed``), then
    optionally enables gradient checkpointing and injects a LoRA adapter (``lora_rank`` > 0; base weights frozen).
    """
    from neural_render.models.backbone import build_backbone

    options = {} if autocast_dtype is None else {"autocast_dtype": autocast_dtype}
    backbone = build_backbone(kind, config=config, pretrained_dir=pretrained_dir, cond_channels=cond_channels,
                              tiny=tiny, seed=None if pretrained_dir is not None else seed, **options)
    if gradient_checkpointing:
        backbone.enable_gradient_checkpointing()
    if lora_rank:
        from neural_render.models.lora import add_lora

        add_lora(backbone, rank=lora_rank, alpha=lora_alpha, target_modules=lora_targets)
    return backbone


def make_vae_codec(pretrained_dir: str, subfolder: str | None = "vae", chunk_size: int | None = None) -> LatentCodec:
    """YAML-friendly VAE codec factory (``class_path: neural_render.tasks.base.make_vae_codec``): a diffusers VAE
    (SVD temporal-decoder, image AutoencoderKL or Wan) from a LOCAL folder, ``<dir>/<subfolder>`` or ``<dir>``."""
    from neural_render.models.codec import DiffusersVAECodec

    return DiffusersVAECodec.from_pretrained(pretrained_dir, subfolder=subfolder, chunk_size=chunk_size)


def zero_output_layer(backbone) -> None:
    """Zero the backbone's last layer (SVD ``conv_out``, Wan ``proj_out``): a fresh residual model then outputs
    exactly its prior (the classical render) and learns only the correction."""
    layer = {"svd": lambda: backbone.unet.conv_out, "wan": lambda: backbone.transformer.proj_out}.get(
        getattr(backbone, "kind", None))
    if layer is None:
        raise NeuralRenderError("zero_init_output needs an svd or wan backbone")
    with torch.no_grad():
        for param in layer().parameters():
            param.zero_()


class LinearWarmup:
    """LR factor for LambdaLR: (step + 1) / warmup_steps for the first ``warmup_steps`` steps, then 1."""

    def __init__(self, warmup_steps: int):
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step: int) -> float:
        if self.warmup_steps <= 0:
            return 1.0
        return min(1.0, (step + 1) / self.warmup_steps)


class DiffusionSystem(pl.LightningModule):
    """Base LightningModule. Subclasses implement :meth:`make_batch`.

    Args:
        backbone: a VideoBackbone (noisy, timestep, cond, context, added) -> prediction, all (B,T,C,h,w).
        denoiser: preconditioning + loss + sampler.
        codec: latent codec with ``encode(x (B,T,3,H,W) in [-1,1])`` / ``decode(z)``; frozen; None = data are latents.
        pass_embedding: optional module ids (B,) -> context tokens (B,L,D); trained with the backbone by default.
        lr, weight_decay, betas: AdamW (no decay on 1-D parameters: biases, norms, embeddings' scales).
        warmup_steps: linear LR warmup over this many optimiser steps.
        trainable: fnmatch patterns over parameter names (``backbone.*lora_*``, ``pass_embedding.*``); None = every
            parameter of backbone and pass embedding that requires grad at construction (so LoRA-frozen bases stay
            frozen).
        ema_decay: EMA decay of the trainable weights (None = no EMA); ema_warmup: (1+n)/(10+n) ramp.
        cond_dropout: probability of zeroing the condition per sample (classifier-free guidance training);
            drop_context: also zero the context tokens when dropping.
        noise_seed: seed of the training noise generator (offset per rank, so ranks draw different noise).
    """

    def __init__(self, backbone: VideoBackbone, denoiser: Denoiser, codec: torch.nn.Module | None = None,
                 pass_embedding: torch.nn.Module | None = None, lr: float = 1e-4, weight_decay: float = 0.01,
                 betas: tuple[float, float] = (0.9, 0.999), warmup_steps: int = 0, trainable: list[str] | None = None,
                 ema_decay: float | None = 0.999, ema_warmup: bool = True, cond_dropout: float = 0.0,
                 drop_context: bool = False, noise_seed: int = 0):
        super().__init__()
        self.save_hyperparameters(ignore=["backbone", "denoiser", "codec", "pass_embedding"])
        if not isinstance(denoiser, Denoiser):
            raise NeuralRenderError(f"denoiser must be a Denoiser, got {type(denoiser).__name__}")
        if not 0.0 <= cond_dropout <= 1.0:
            raise NeuralRenderError(f"cond_dropout must be in [0, 1], got {cond_dropout}")
        self.backbone = backbone
        self.denoiser = denoiser
        self.codec = codec
        self.pass_embedding = pass_embedding
        if isinstance(codec, torch.nn.Module):
            codec.requires_grad_(False).eval()
        self.trainable_names = self._select_trainable(trainable)
        self.ema = (ExponentialMovingAverage(self.trainable_named_parameters(), ema_decay, ema_warmup)
                    if ema_decay is not None else None)
        self.run_config: str | None = None  # full YAML of the run, set by `neural-render fit`, saved in checkpoints
        self._noise_generator: torch.Generator | None = None

    # ------------------------------------------------------------------ parameters
    def _select_trainable(self, patterns: list[str] | None) -> list[str]:
        named = [(n, p) for n, p in self.named_parameters() if not n.startswith("codec.")]
        if patterns is None:
            chosen = [n for n, p in named if p.requires_grad]
        else:
            chosen = [n for n, _ in named if any(fnmatch.fnmatchcase(n, pat) for pat in patterns)]
            unused = [pat for pat in patterns if not any(fnmatch.fnmatchcase(n, pat) for n, _ in named)]
            if unused:
                raise NeuralRenderError(f"trainable patterns match no parameter: {unused} "
                                        f"(names look like {[n for n, _ in named[:3]]})")
        if not chosen:
            raise NeuralRenderError("no trainable parameters selected")
        keep = set(chosen)
        for name, param in self.named_parameters():
            param.requires_grad_(name in keep)
        return chosen

    def trainable_named_parameters(self) -> list[tuple[str, torch.nn.Parameter]]:
        keep = set(self.trainable_names)
        return [(n, p) for n, p in self.named_parameters() if n in keep]

    @contextlib.contextmanager
    def ema_weights(self):
        """Context in which the trainable parameters hold their EMA values (no-op without EMA)."""
        if self.ema is None:
            yield
            return
        with self.ema.swapped(self.trainable_named_parameters()):
            yield

    def train(self, mode: bool = True):
        super().train(mode)
        if isinstance(self.codec, torch.nn.Module):
            self.codec.eval()  # frozen codec never runs in training mode
        return self

    # ------------------------------------------------------------------ batch helpers for subclasses
    @torch.no_grad()
    def encode(self, video: Tensor) -> Tensor:
        """Pixels (B,T,3,H,W) in [-1,1] -> latents (B,T',C,h,w) with the frozen codec (identity without one)."""
        if self.codec is None:
            return video
        return self.codec.encode(video)

    def embed_context(self, ids: Tensor | None) -> Tensor | None:
        """Pass/task ids (B,) long -> context tokens (B,L,D) from the pass embedding (None without one)."""
        if self.pass_embedding is None or ids is None:
            return None
        return self.pass_embedding(torch.as_tensor(ids, device=self.device).long().reshape(-1))

    def make_batch(self, batch) -> tuple[Tensor, Tensor | None, Tensor | None, dict]:
        """Return (x0 (B,T,C,h,w), cond (B,T,Cc,h,w) | None, context (B,L,D) | None, masks).

        masks: dict with any of ``loss_mask`` (broadcastable to x0), ``clean_frames`` (B,T) bool,
        ``timestep_mask`` (B,T) bool (True = noised), ``added`` (backbone hook dict).
        """
        raise NotImplementedError(f"{type(self).__name__} must implement make_batch")

    def compute_loss(self, x0: Tensor, cond: Tensor | None, context: Tensor | None, generator: torch.Generator,
                     masks: dict) -> Tensor:
        """Hook: the scalar loss of one batch (``make_batch``'s outputs); default the Denoiser's weighted mean
        squared error."""
        return self.denoiser.loss(self.backbone, x0, cond, context, generator=generator, **masks)

    def _generator(self) -> torch.Generator:
        if self._noise_generator is None or self._noise_generator.device != self.device:
            seed = int(self.hparams.noise_seed) + 1_000_003 * int(self.global_rank)
            self._noise_generator = torch.Generator(device=self.device).manual_seed(seed)
            restored = getattr(self, "_restored_noise_state", None)
            if restored is not None:  # resuming: continue the noise stream where the checkpoint left it
                self._noise_generator.set_state(restored)
                self._restored_noise_state = None
        return self._noise_generator

    def _checked(self, batch):
        x0, cond, context, masks = self.make_batch(batch)
        masks = dict(masks or {})
        unknown = set(masks) - set(MASK_KEYS)
        if unknown:
            raise NeuralRenderError(f"make_batch returned unknown mask keys {sorted(unknown)}; allowed {MASK_KEYS}")
        return x0, cond, context, masks

    # ------------------------------------------------------------------ Lightning hooks
    def training_step(self, batch, batch_idx: int) -> Tensor:
        x0, cond, context, masks = self._checked(batch)
        p = float(self.hparams.cond_dropout)
        if p > 0 and (cond is not None or (context is not None and self.hparams.drop_context)):
            gen = self._generator()
            cond, dropped, _ = drop_condition(cond, context if self.hparams.drop_context else None, p, gen)
            context = dropped if self.hparams.drop_context else context
        loss = self.compute_loss(x0, cond, context, self._generator(), masks)
        trainer = getattr(self, "_trainer", None)  # None when called outside a Trainer (tests, debugging)
        if trainer is not None:
            self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=False, batch_size=x0.shape[0])
            if trainer.optimizers:
                self.log("train/lr", trainer.optimizers[0].param_groups[0]["lr"], on_step=True, on_epoch=False,
                         batch_size=x0.shape[0])
        return loss

    def validation_step(self, batch, batch_idx: int) -> Tensor:
        x0, cond, context, masks = self._checked(batch)
        gen = torch.Generator(device=self.device).manual_seed(int(self.hparams.noise_seed) + 7919 * (batch_idx + 1))
        loss = self.compute_loss(x0, cond, context, gen, masks)
        self.log("val/loss", loss, prog_bar=True, sync_dist=True, batch_size=x0.shape[0])
        return loss

    def on_validation_epoch_start(self) -> None:
        if self.ema is not None:
            self._ema_context = self.ema_weights()
            self._ema_context.__enter__()

    def on_validation_epoch_end(self) -> None:
        ctx = getattr(self, "_ema_context", None)
        if ctx is not None:
            self._ema_context = None
            ctx.__exit__(None, None, None)

    def optimizer_step(self, *args, **kwargs):
        out = super().optimizer_step(*args, **kwargs)
        if self.ema is not None:
            self.ema.update(self.trainable_named_parameters())
        return out

    def configure_optimizers(self):
        params = [p for _, p in self.trainable_named_parameters()]
        decay = [p for p in params if p.ndim >= 2]
        no_decay = [p for p in params if p.ndim < 2]
        groups = [{"params": decay, "weight_decay": float(self.hparams.weight_decay)},
                  {"params": no_decay, "weight_decay": 0.0}]
        optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=float(self.hparams.lr),
                                      betas=tuple(self.hparams.betas))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, LinearWarmup(self.hparams.warmup_steps))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.ema is not None:
            checkpoint["ema"] = self.ema.state_dict()
        if self.run_config is not None:
            checkpoint["run_config"] = self.run_config
        state = self._generator().get_state()
        trainer = getattr(self, "_trainer", None)
        # every rank draws its own noise: keep all ranks' streams (this hook runs on every rank)
        states = self.all_gather(state) if trainer is not None and trainer.world_size > 1 else state[None]
        checkpoint["noise_generator_states"] = states.cpu()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if self.ema is not None and "ema" in checkpoint:
            self.ema.load_state_dict(checkpoint["ema"])
        states = checkpoint.get("noise_generator_states")
        if states is not None and int(self.global_rank) < len(states):
            self._noise_generator = None
            self._restored_noise_state = states[int(self.global_rank)].contiguous()
        self.run_config = checkpoint.get("run_config", self.run_config)

    # ------------------------------------------------------------------ inference / export
    @torch.no_grad()
    def sample(self, shape: tuple[int, ...], cond: Tensor | None = None, context: Tensor | None = None,
               **kwargs) -> Tensor:
        """Latents (B,T,C,h,w) from the current weights; kwargs go to :meth:`Denoiser.sample`."""
        return self.denoiser.sample(self.backbone, shape, cond, context, device=self.device, **kwargs)

    def pipeline(self):
        """An inference pipeline over this system's (live) modules; wrap calls in :meth:`ema_weights` for EMA."""
        from neural_render.pipelines.base import VideoDiffusionPipeline

        return VideoDiffusionPipeline(self.backbone, self.denoiser, self.codec, self.pass_embedding)

    def export(self, directory, use_ema: bool = True) -> None:
        """Write a pipeline folder (save_pretrained of every component) with the EMA weights by default."""
        from neural_render.pipelines.base import export

        export(self, directory, use_ema=use_ema)
