"""Fine-tuning a DiffusionRenderer checkpoint (inverse or forward) on this toolkit's clip folders.

    neural-render fit --config configs/trainer/ddp_gpu.yaml \\
        --config configs/task/diffusion_renderer_inverse_lora.yaml \\
        --backbone.init_args.folder checkpoints/diffusion_renderer-inverse-svd \\
        --data.init_args.train_dir data_cache/my_clips --export_dir out/dr_inverse_lora

* backbone: :func:`make_backbone` loads the folder (:func:`load_diffusion_renderer`) and prepares its UNet for
  ``mode`` "lora" (peft; only the LoRA trains: a new adapter of ``lora_rank`` on the attention projections, or the
  folder's own "real" LoRA when it has one) or "full" (every UNet weight trains; a folder LoRA stays frozen at its
  scale), with gradient checkpointing and bf16 autocast switchable. The VAE, scheduler and env encoder of the
  folder travel with the backbone to the task.
* denoiser: :class:`~neural_render.models.denoiser.Denoiser` ``kind: edm`` (sigma_data 1): SVD's formulation, the
  one the folder's Euler scheduler samples (models/diffusion_renderer/backbone.py says why they agree).
* data: :class:`~neural_render.data.diffusion_renderer_data.DiffusionRendererDataModule` (RGB + G-buffers, + env
  map and per-frame poses for the forward renderer).

Targets and conditions are built exactly as the sampler reads them (pipelines/diffusion_renderer*.py): latents are
the checkpoint VAE's ``latent_dist.mode()`` of the [0, 1] images mapped to [-1, 1]; the target (and the forward
G-buffer condition) x the VAE's scaling factor, the inverse RGB condition unscaled. Inverse: every sample trains one
pass, drawn uniformly from ``passes`` (validation cycles through them), selected by its pass id. Forward: the five
G-buffer latents, and env tokens from the projected env map (the env encoder trains in full mode); with probability
``uncond_prob`` a sample gets zero G-buffer latents and zero env tokens (the unconditional input of the sampler's
classifier-free guidance). :meth:`DiffusionRendererTask.export` writes the DiffusionRenderer layout
(models/diffusion_renderer/export.py) that ``load_diffusion_renderer`` and the commands' ``--model`` read back.
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor

from neural_render.errors import NeuralRenderError
from neural_render.models.backbone import VideoBackbone
from neural_render.models.diffusion_renderer.unet_context import PASS_IDS
from neural_render.tasks.base import DiffusionSystem
from neural_render.types.gbuffer import PREDICTED_PASSES, depth_scale_of

MODES = ("lora", "full")


class _Source:
    """What a backbone built by :func:`make_backbone` carries for the task (not a module: never registered twice)."""

    def __init__(self, folder, checkpoint, mode: str, lora_scale: float, lora_trained: bool):
        self.folder, self.checkpoint, self.mode = folder, checkpoint, mode
        self.lora_scale, self.lora_trained = float(lora_scale), bool(lora_trained)


def make_backbone(folder: str, mode: str = "lora", lora_rank: int | None = None, lora_scale: float | None = None,
                  lora_targets: list[str] | None = None, gradient_checkpointing: bool = False,
                  autocast_dtype: str | None = None) -> VideoBackbone:
    """YAML-friendly factory (``backbone: class_path: neural_render.tasks.diffusion_renderer.make_backbone``).

    folder: a DiffusionRenderer inverse or forward folder. mode: "lora" | "full" (module doc). lora_rank: rank of a
    NEW adapter (default 16; must match the folder's LoRA when it has one); lora_scale: run-time scale of the LoRA
    in training and the default when the export is loaded (default: the folder's, else the reference's 0.25);
    lora_targets: layer names a new adapter adapts (default q / k / v / out of every attention).
    """
    from neural_render.models.diffusion_renderer.backbone import DiffusionRendererBackbone
    from neural_render.models.diffusion_renderer.checkpoint import DEFAULT_LORA_SCALE, load_diffusion_renderer
    from neural_render.models.diffusion_renderer.lora import DEFAULT_TARGETS, add_lora, is_lora_parameter, read_lora

    if mode not in MODES:
        raise NeuralRenderError(f"mode must be one of {MODES}, got {mode!r}")
    ckpt = load_diffusion_renderer(folder, lora=None, lora_scale=lora_scale)
    unet = ckpt.unet.train()  # loaded in eval mode; Lightning keeps the modes it finds
    unet.requires_grad_(mode == "full")
    scale = ckpt.settings.lora_scale if ckpt.lora_layers else (DEFAULT_LORA_SCALE if lora_scale is None
                                                               else float(lora_scale))
    if ckpt.lora_layers and lora_rank is not None:
        ranks = {int(p["lora_A"].shape[0]) for p in read_lora(ckpt.folder / "lora" / "pytorch_lora_weights"
                                                               ".safetensors").values()}
        if ranks != {int(lora_rank)}:
            raise NeuralRenderError(f"lora_rank {lora_rank}: the folder's LoRA has rank {sorted(ranks)} and is the "
                                    "one trained (set lora_rank to null)", folder)
    if mode == "lora" and not ckpt.lora_layers:
        add_lora(unet, int(lora_rank or 16), scale, tuple(lora_targets or DEFAULT_TARGETS))
    for name, param in unet.named_parameters():
        if is_lora_parameter(name):
            param.requires_grad_(mode == "lora")
    backbone = DiffusionRendererBackbone(unet, ckpt.settings, autocast_dtype)
    if gradient_checkpointing:
        backbone.enable_gradient_checkpointing()
    object.__setattr__(backbone, "dr_source", _Source(ckpt.folder, ckpt, mode, scale, mode == "lora"))
    return backbone


class DiffusionRendererTask(DiffusionSystem):
    """Fine-tunes the folder :func:`make_backbone` loaded (module doc). Other args: :class:`DiffusionSystem`.

    passes: inverse passes to train (default the five); uncond_prob: forward classifier-free-guidance dropout;
    train_env_encoder: whether the forward env encoder trains (default: in full mode only); env_resolution:
    (h, w) of the env encodings (default: the sampler's for the frame size); export_dtype: "float32" | "float16" |
    "bfloat16" for the written weights.
    """

    def __init__(self, *args, passes: list[str] | None = None, uncond_prob: float = 0.0,
                 train_env_encoder: bool | None = None, env_resolution: list[int] | None = None,
                 export_dtype: str = "float32", **kwargs):
        backbone = kwargs.get("backbone", args[0] if args else None)
        source = getattr(backbone, "dr_source", None)
        if source is None:
            raise NeuralRenderError("DiffusionRendererTask needs the backbone of "
                                    "neural_render.tasks.diffusion_renderer.make_backbone")
        denoiser = kwargs.get("denoiser", args[1] if len(args) > 1 else None)
        if getattr(denoiser, "kind", None) != "edm" or float(getattr(denoiser, "sigma_data", 0)) != 1.0:
            raise NeuralRenderError("a DiffusionRenderer UNet trains with Denoiser(kind='edm', sigma_data=1.0): the "
                                    "formulation its Euler scheduler samples")
        if kwargs.get("codec", args[2] if len(args) > 2 else None) is not None:
            raise NeuralRenderError("leave codec empty: the checkpoint's own VAE encodes")
        if float(kwargs.get("cond_dropout", 0.0)) > 0:
            raise NeuralRenderError("use uncond_prob (zero latents AND zero env tokens), not cond_dropout")
        ckpt = source.checkpoint
        self._kind = ckpt.kind
        passes = list(passes or PREDICTED_PASSES)
        if self._kind == "inverse" and (not passes or any(p not in PREDICTED_PASSES for p in passes)):
            raise NeuralRenderError(f"passes must be among {list(PREDICTED_PASSES)}, got {passes}")
        if not 0.0 <= float(uncond_prob) <= 1.0:
            raise NeuralRenderError(f"uncond_prob must be in [0, 1], got {uncond_prob}")
        train_env = (source.mode == "full") if train_env_encoder is None else bool(train_env_encoder)
        if ckpt.env_encoder is not None:
            ckpt.env_encoder.requires_grad_(train_env).train(train_env)
        object.__setattr__(self, "_env_encoder_to_register", ckpt.env_encoder)
        super().__init__(*args, **kwargs)
        self.save_hyperparameters(ignore=["backbone", "denoiser", "codec", "pass_embedding"])
        self.vae = ckpt.vae.requires_grad_(False).eval()
        self.passes, self.uncond_prob, self.train_env = passes, float(uncond_prob), train_env
        self.env_resolution = None if env_resolution is None else (int(env_resolution[0]), int(env_resolution[1]))
        self.export_dtype = export_dtype
        self.stride = int(2 ** (len(self.vae.config.block_out_channels) - 1)) * int(self.backbone.spatial_multiple)

    def _select_trainable(self, patterns):
        self.env_encoder = self.__dict__.pop("_env_encoder_to_register", None)
        return super()._select_trainable(patterns)

    def train(self, mode: bool = True):
        super().train(mode)
        if getattr(self, "vae", None) is not None:
            self.vae.eval()  # frozen, never in training mode
        if getattr(self, "env_encoder", None) is not None and not getattr(self, "train_env", True):
            self.env_encoder.eval()
        return self

    # ------------------------------------------------------------------ batches
    @torch.no_grad()
    def _latents(self, images: Tensor, scaled: bool) -> Tensor:
        """(B, T, 3, H, W) in [0, 1] -> VAE latent mode (B, T, C, h, w), x scaling_factor when ``scaled``."""
        flat = (images.flatten(0, 1) * 2.0 - 1.0).to(self.vae.dtype)
        z = self.vae.encode(flat).latent_dist.mode()
        z = z * self.vae.config.scaling_factor if scaled else z
        return z.reshape(*images.shape[:2], *z.shape[1:]).float()

    def _pick(self, batch: int) -> list[str]:
        if self.training and torch.is_grad_enabled():
            gen = self._generator()
            draws = torch.randint(len(self.passes), (batch,), generator=gen, device=gen.device).tolist()
            return [self.passes[i] for i in draws]
        return [self.passes[i % len(self.passes)] for i in range(batch)]

    def make_batch(self, batch: dict) -> tuple[Tensor, Tensor | None, Tensor | None, dict]:
        from neural_render.pipelines.diffusion_renderer_values import pass_to_model, video_to_model

        for key in ("rgb", "gbuffer") + (("camera", "env") if self._kind == "forward" else ()):
            if key not in batch:
                raise NeuralRenderError(f"a DiffusionRenderer {self._kind} batch needs {key!r}, got {sorted(batch)}")
        rgb = batch["rgb"].to(self.device)
        gbuffer = batch["gbuffer"].map(lambda x: x.to(self.device))
        b, t, _, h, w = rgb.shape
        if h % self.stride or w % self.stride:
            raise NeuralRenderError(f"frames of {w}x{h} px are not multiples of the checkpoint's stride {self.stride} "
                                    "(set the data's size / crop)")
        scale = depth_scale_of(gbuffer.depth, gbuffer.mask)
        if self._kind == "inverse":
            names = self._pick(b)
            target = torch.cat([pass_to_model(n, gbuffer.passes[n][i:i + 1], scale[i:i + 1], h, w)
                                for i, n in enumerate(names)])
            x0 = self._latents(target, scaled=True)
            cond = self._latents(video_to_model(rgb, h, w), scaled=False)
            ids = torch.tensor([PASS_IDS[n] for n in names], device=self.device)
            return x0, cond, None, {"added": {"pass_ids": ids}}
        x0 = self._latents(video_to_model(rgb, h, w), scaled=True)
        cond = torch.cat([self._latents(pass_to_model(n, gbuffer.passes[n], scale, h, w), scaled=True)
                          for n in self.backbone.dr_settings.gbuffers], dim=2)
        tokens = self._env_tokens(batch, (h, w))
        if self.uncond_prob > 0 and self.training and torch.is_grad_enabled():
            gen = self._generator()
            keep = (torch.rand(b, generator=gen, device=gen.device) >= self.uncond_prob).to(self.device)
            cond = cond * keep.view(-1, 1, 1, 1, 1).to(cond.dtype)
            tokens = [tok * keep.view(-1, 1, 1, 1).to(tok.dtype) for tok in tokens]
        return x0, cond, None, {"added": {"env_tokens": tokens}}

    def _env_tokens(self, batch: dict, frame: tuple[int, int]) -> list[Tensor]:
        from neural_render.models.diffusion_renderer.env_encoder import encode_env
        from neural_render.pipelines.diffusion_renderer_env import env_encodings, shared_pose
        from neural_render.pipelines.diffusion_renderer_values import env_shape
        from neural_render.types import EnvMap

        settings = self.backbone.dr_settings
        factor = int(2 ** (len(self.vae.config.block_out_channels) - 1))
        eh, ew = self.env_resolution or env_shape(frame, min(settings.height, settings.width),
                                                  settings.env_resolution, factor)
        poses = batch["camera"].camera_to_world.to(self.device)
        poses = poses[:, :1] if shared_pose(poses) else poses
        images, rotations = batch["env"]["image"].to(self.device), batch["env"]["rotation"].to(self.device)
        per_clip = [env_encodings(EnvMap(images[i].float(), rotations[i].float()), poses[i:i + 1], eh, ew)
                    for i in range(images.shape[0])]
        encodings = {k: torch.cat([p[k] for p in per_clip]) for k in per_clip[0]}
        with contextlib.nullcontext() if self.train_env else torch.no_grad():
            return [tok.float() for tok in encode_env(self.vae, self.env_encoder, encodings)]

    # ------------------------------------------------------------------ export
    def export(self, directory, use_ema: bool = True) -> None:
        """Write the DiffusionRenderer folder (models/diffusion_renderer/export.py), EMA weights by default."""
        from neural_render.models.diffusion_renderer.export import export_folder

        source = self.backbone.dr_source
        env_trained = bool(self.train_env and self.env_encoder is not None)
        info = {"kind": self._kind, "mode": source.mode, "global_step": int(self.global_step),
                "lora_scale": source.lora_scale, "env_encoder_trained": env_trained,
                "passes": self.passes if self._kind == "inverse" else None, "ema": bool(use_ema and self.ema)}
        with self.ema_weights() if use_ema else contextlib.nullcontext():
            export_folder(directory, source.folder, self.backbone.unet, self.env_encoder,
                          unet_trained=source.mode == "full", env_encoder_trained=env_trained,
                          lora_trained=source.lora_trained, lora_scale=source.lora_scale, info=info,
                          dtype=self.export_dtype)
