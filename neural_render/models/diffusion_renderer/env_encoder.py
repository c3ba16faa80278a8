"""DiffusionRenderer's environment encoder: env encodings -> one cross-attention token map per UNet level.

The forward renderer conditions on the lighting through cross-attention. Per frame, its three camera-space env
encodings (``in_labels``, by default LDR, LOG and DIR, each a 3-channel [-1, 1] image) are VAE-encoded
(``latent_encoder`` true: ``vae.encode(x).latent_dist.mode() * scaling_factor``), concatenated along channels in
``in_labels`` order, and run through a stem and one diffusers ``DownEncoderBlock2D`` per level (the first without
downsampling). Each level's feature map, flattened row-major, is that level's token sequence for the UNet
(:class:`~neural_render.models.diffusion_renderer.unet_context.DiffusionRendererUNet` with
``multi_res_encoder_hidden_states``).

The stem is a 3x3 convolution on latents, or (``latent_encoder`` false, pixel-space input) diffusers'
``ControlNetConditioningEmbedding`` with widths (16, 32, 96, 256). Parameter names and config keys are those of a
DiffusionRenderer ``env_encoder/`` folder, so its state dict loads unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

#: widths of the pixel-space stem (the reference's, fixed, not a config key)
PIXEL_STEM_WIDTHS = (16, 32, 96, 256)
DEFAULT_LABELS = ("env_ldr", "env_log", "env_nrm")


class EnvEncoder(ModelMixin, ConfigMixin):
    """Env-map condition encoder; forward: (N, in_channels, h, w) -> tuple of (N, channels[i], h_i, w_i).

    ``h_0 = h`` and every later level halves the size (3x3 stride-2 convolution, padding 1, so odd sizes round
    up). N is batch x frames: the encoder is per frame.
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        channels: Sequence[int] = (320, 640, 1280, 1280),
        num_res_blocks: int = 2,
        latent_encoder: bool = False,
        in_labels: Sequence[str] = DEFAULT_LABELS,
    ):
        super().__init__()
        from diffusers.models.controlnets.controlnet import (
            ControlNetConditioningEmbedding,
        )
        from diffusers.models.unets.unet_2d_blocks import DownEncoderBlock2D

        channels = tuple(int(c) for c in channels)
        self.in_labels = tuple(in_labels)
        if latent_encoder:
            self.conv_in = nn.Conv2d(in_channels, channels[0], kernel_size=3, padding=1)
        else:
            self.conv_in = ControlNetConditioningEmbedding(
                conditioning_embedding_channels=channels[0], conditioning_channels=in_channels,
                block_out_channels=PIXEL_STEM_WIDTHS)
        widths = (channels[0],) + channels
        self.down_blocks = nn.ModuleList(
            DownEncoderBlock2D(in_channels=widths[i], out_channels=widths[i + 1], num_layers=num_res_blocks,
                               add_downsample=i > 0)
            for i in range(len(channels)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        h = self.conv_in(x)
        maps = []
        for block in self.down_blocks:
            h = block(h)
            maps.append(h)
        return tuple(maps)


def feature_tokens(maps: Sequence[torch.Tensor], batch: int) -> list[torch.Tensor]:
    """Per-level maps (B*T, C, h, w) -> tokens (B, T, h*w, C), row-major over (h, w), frames of one sample in order."""
    out = []
    for m in maps:
        n, c = m.shape[:2]
        if n % batch:
            raise ValueError(f"{n} feature maps do not split into a batch of {batch}")
        out.append(m.flatten(2).transpose(1, 2).reshape(batch, n // batch, -1, c))
    return out


def encode_env(vae, encoder: EnvEncoder, images: dict[str, torch.Tensor],
               chunk: int | None = None) -> list[torch.Tensor]:
    """Env token maps for the UNet, one per level, each (B, T, N_l, C_l).

    images: label -> (B, T, 3, H, W) in [-1, 1], one entry per ``encoder.config.in_labels``; vae: the checkpoint's
    ``AutoencoderKLTemporalDecoder`` (used only when ``latent_encoder``; its encoder is per frame, so ``chunk``
    frames at a time give the same latents as all at once).
    """
    missing = [k for k in encoder.config.in_labels if k not in images]
    if missing:
        raise ValueError(f"env encodings missing: {missing} (the encoder takes {list(encoder.config.in_labels)})")
    first = images[encoder.config.in_labels[0]]
    batch = first.shape[0]
    parts = []
    for label in encoder.config.in_labels:
        x = images[label].flatten(0, 1)
        if encoder.config.latent_encoder:
            step = chunk or x.shape[0]
            x = torch.cat([vae.encode(x[i:i + step]).latent_dist.mode() for i in range(0, x.shape[0], step)])
            x = x * vae.config.scaling_factor
        parts.append(x)
    return feature_tokens(encoder(torch.cat(parts, dim=1)), batch)
