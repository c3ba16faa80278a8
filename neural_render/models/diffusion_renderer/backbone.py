"""A DiffusionRenderer UNet as a toolkit :class:`~neural_render.models.backbone.VideoBackbone` (for training).

The toolkit's :class:`~neural_render.models.denoiser.Denoiser` of kind ``"edm"`` (sigma_data 1) is exactly Stable
Video Diffusion's formulation that DiffusionRenderer samples with (the folder's Euler scheduler: v-prediction,
``c_in = 1 / sqrt(sigma^2 + 1)``, continuous timesteps ``0.25 ln sigma``), so the toolkit's loss and its training
loop (:class:`~neural_render.tasks.base.DiffusionSystem`) train the released UNet as it is sampled. This adapter
maps the one backbone interface onto the UNet:

    noisy ++ cond (channels)  -> ``sample`` (B, T, in_channels, h, w): [noise | RGB latent] (inverse) or
                                 [noise | basecolor, normal, depth, roughness, metallic latents] (forward)
    timestep (B,)             -> the UNet's timestep (one level per clip; per-frame levels are refused)
    added["pass_ids"] (B,)    -> ``input_context`` (the pass / context table), inverse
    added["env_tokens"]       -> ``encoder_hidden_states``: a list per UNet level of (B, 1 | T, N_l, C_l), forward;
                                 without it one zero token per sample (the inverse renderer's input)
    added_time_ids            -> the checkpoint settings' SVD micro-conditioning (fps - 1, 127, 0)

``context`` (B, L, D) is not used (DiffusionRenderer has no prompt tokens). Persistence is the DiffusionRenderer
folder layout (tasks/diffusion_renderer.py exports it), not the toolkit's backbone folder.
"""

from __future__ import annotations

import torch

from neural_render.errors import NeuralRenderError
from neural_render.models.backbone.base import FrameRule, VideoBackbone, parse_autocast_dtype


class DiffusionRendererBackbone(VideoBackbone):
    """``unet``: a :class:`DiffusionRendererUNet`; ``settings``: the checkpoint's
    :class:`~neural_render.models.diffusion_renderer.checkpoint.DiffusionRendererSettings`; ``autocast_dtype``:
    None | "bfloat16" | "float16" (forward under torch.autocast, outputs float32)."""

    kind = "diffusion_renderer"
    ADDED_KEYS = ("pass_ids", "env_tokens")
    SUBFOLDER = "unet"
    MODEL_CLASS = "UNetCustomSpatioTemporalConditionModel"
    INPUT_LAYER = "conv_in"

    def __init__(self, unet, settings, autocast_dtype: str | torch.dtype | None = None):
        super().__init__()
        cfg = unet.config
        self.unet = unet
        self.dr_settings = settings
        self.latent_channels = int(cfg.out_channels)
        self.cond_channels = int(cfg.in_channels) - self.latent_channels
        self.base_in_channels = int(cfg.in_channels)  # the folder's conv_in already takes noise + condition
        self.context_dim = None
        self.spatial_multiple = 2 ** (len(cfg.block_out_channels) - 1)
        self.frame_rule = FrameRule(description="any T >= 1 latent frames")
        self.token_dim = int(cfg.block_out_channels[0])
        self.autocast_dtype = parse_autocast_dtype(autocast_dtype)
        width = cfg.cross_attention_dim
        self._token_width = int(width if isinstance(width, int) else width[0])

    @property
    def model(self):
        return self.unet

    def token_grid(self, num_frames: int, height: int, width: int) -> tuple[int, int, int]:
        return (num_frames, height, width)

    def enable_gradient_checkpointing(self) -> None:
        self.unet.enable_gradient_checkpointing()

    def disable_gradient_checkpointing(self) -> None:
        self.unet.disable_gradient_checkpointing()

    def save_pretrained(self, save_directory, **kwargs) -> None:
        raise NeuralRenderError("a DiffusionRenderer backbone is saved as a DiffusionRenderer folder: use "
                                "DiffusionRendererTask.export", save_directory)

    def _forward(self, noisy, timestep, cond, context, added):
        b = noisy.shape[0]
        if timestep.ndim == 2:
            if not bool((timestep == timestep[:, :1]).all()):
                raise NeuralRenderError("the DiffusionRenderer UNet takes one noise level per clip, not per frame")
            timestep = timestep[:, 0]
        sample = noisy if cond is None else torch.cat([noisy, cond.to(noisy.dtype)], dim=2)
        tokens = added.get("env_tokens")
        if tokens is None:
            tokens = noisy.new_zeros(b, 1, 1, self._token_width)
        time_ids = self.dr_settings.added_time_ids(b).to(noisy.device)
        return self.unet(sample, timestep, tokens, time_ids, input_context=added.get("pass_ids"),
                         return_dict=False)[0]
