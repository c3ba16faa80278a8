"""Sampling a DiffusionRenderer checkpoint (inverse or forward) as a ``diffusers.DiffusionPipeline``.

A minimal pure-torch sampler around the modules :func:`load_diffusion_renderer` gives: the reference pipeline's
conditioning (VAE latents of the inputs, pass id or env tokens, SVD micro-conditioning), its Euler loop (the
folder's ``EulerDiscreteScheduler``), its classifier-free guidance for the forward renderer (zero G-buffer
latents and zero env tokens unconditional) and its chunked temporal decode. Given the same initial noise through
``latents=`` it reproduces the reference's output (tests/diffusion_renderer/). One window of frames at a time:
long videos, other aspect ratios and env projection are the toolkit's pipelines' job.

Inputs are (B, T, 3, H, W) float tensors in [0, 1], in the encoding DiffusionRenderer was trained on (8-bit
frame values / 255: sRGB video, its G-buffer images, its env encodings; see DiffusionRendererSettings); H and W
must be multiples of the latent size rule (VAE factor x 2^(UNet levels - 1)). Output ``frames``: (B, T, 3, H, W)
in [0, 1] ("pt"), (B, T, H, W, 3) numpy ("np"), or the final latents (B, T, C, h, w) ("latent").
Difference from the reference, on purpose: each sample's frames are decoded on their own (the reference decodes
the flattened batch, so with B > 1 a chunk could mix two videos' frames); for B = 1 the two agree.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from diffusers import DiffusionPipeline
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from neural_render.errors import NeuralRenderError
from neural_render.models.diffusion_renderer.checkpoint import (
    DiffusionRendererSettings,
    load_diffusion_renderer,
)
from neural_render.models.diffusion_renderer.env_encoder import encode_env
from neural_render.models.diffusion_renderer.unet_context import PASS_IDS

log = logging.getLogger(__name__)
OUTPUT_TYPES = ("pt", "np", "latent")


@dataclass
class DiffusionRendererPipelineOutput(BaseOutput):
    """frames: (B, T, 3, H, W) in [0, 1] ("pt"), (B, T, H, W, 3) numpy ("np") or latents (B, T, C, h, w)."""

    frames: torch.Tensor | np.ndarray


class DiffusionRendererPipeline(DiffusionPipeline):
    """vae (AutoencoderKLTemporalDecoder), unet (DiffusionRendererUNet), scheduler (EulerDiscreteScheduler),
    env_encoder (EnvEncoder, forward only); ``settings``: the checkpoint kind's reference settings."""

    model_cpu_offload_seq = "env_encoder->unet->vae"

    def __init__(self, vae, unet, scheduler, env_encoder=None, settings: DiffusionRendererSettings | None = None):
        super().__init__()
        self.register_modules(vae=vae, unet=unet, scheduler=scheduler, env_encoder=env_encoder)
        kind = "forward" if env_encoder is not None else "inverse"
        self.settings = settings or DiffusionRendererSettings(kind=kind, guidance_scale=1.2 if env_encoder else 1.0)
        if self.settings.kind != kind:
            raise NeuralRenderError(f"settings are for a {self.settings.kind} renderer, the modules make a {kind} one")
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)

    @classmethod
    def from_diffusion_renderer(cls, folder, lora: bool | None = None, lora_scale: float | None = None,
                                dtype: torch.dtype = torch.float32, device=None) -> DiffusionRendererPipeline:
        """Load a DiffusionRenderer folder (see :func:`load_diffusion_renderer`) into this pipeline."""
        ckpt = load_diffusion_renderer(folder, lora=lora, lora_scale=lora_scale, dtype=dtype, device=device)
        return cls(vae=ckpt.vae, unet=ckpt.unet, scheduler=ckpt.scheduler, env_encoder=ckpt.env_encoder,
                   settings=ckpt.settings)

    # -- inputs ----------------------------------------------------------------------------------------------
    @property
    def size_multiple(self) -> int:
        return self.vae_scale_factor * 2 ** (len(self.unet.down_blocks) - 1)

    def _image(self, name: str, x, shape: tuple | None = None, multiple: int | None = None) -> torch.Tensor:
        """Validated (B, T, 3, H, W) in [0, 1] -> [-1, 1] on the UNet's device and dtype."""
        if not torch.is_tensor(x) or x.dim() != 5 or x.shape[2] != 3:
            got = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
            raise NeuralRenderError(f"{name}: expected a (B, T, 3, H, W) tensor, got {got}")
        if shape is not None and tuple(x.shape[:2]) != shape:
            raise NeuralRenderError(f"{name}: batch x frames {tuple(x.shape[:2])} != {shape}")
        multiple = multiple or self.size_multiple
        if x.shape[-2] % multiple or x.shape[-1] % multiple:
            raise NeuralRenderError(f"{name}: {x.shape[-2]}x{x.shape[-1]} px is not a multiple of {multiple}")
        x = x.to(torch.float32)
        if not bool(torch.isfinite(x).all()) or float(x.min()) < 0 or float(x.max()) > 1:
            raise NeuralRenderError(f"{name}: values must be finite and within [0, 1]")
        return (x * 2 - 1).to(self.unet.device, self.unet.dtype)

    def _latents_of(self, images: torch.Tensor, chunk: int | None) -> torch.Tensor:
        """(B, T, 3, H, W) in [-1, 1] -> latent mode (B, T, C, h, w), x scaling_factor when scale_cond_latents.

        The VAE encoder works per frame; ``chunk`` frames at a time (None: all, as the reference does) changes
        the result only at float rounding level."""
        flat = images.flatten(0, 1)
        step = chunk or len(flat)
        z = torch.cat([self.vae.encode(flat[i:i + step]).latent_dist.mode() for i in range(0, len(flat), step)])
        if self.settings.scale_cond_latents:
            z = z * self.vae.config.scaling_factor
        return z.reshape(*images.shape[:2], *z.shape[1:])

    def _pass_ids(self, passes, batch: int) -> torch.Tensor:
        items = [passes] if isinstance(passes, (str, int)) else list(passes)
        ids = []
        for p in items:
            if isinstance(p, str):
                if p not in PASS_IDS:
                    raise NeuralRenderError(f"unknown pass {p!r} (one of {sorted(PASS_IDS)})")
                p = PASS_IDS[p]
            ids.append(int(p))
        if len(ids) == 1:
            ids = ids * batch
        if len(ids) != batch:
            raise NeuralRenderError(f"{len(ids)} passes given for a batch of {batch}")
        return torch.tensor(ids, dtype=torch.long, device=self.unet.device)

    def _decode(self, latents: torch.Tensor, chunk: int) -> torch.Tensor:
        """(B, T, C, h, w) -> (B, T, 3, H, W) in [-1, 1]; each sample's frames decode ``chunk`` at a time."""
        out = []
        for sample in latents:
            z = (1 / self.vae.config.scaling_factor) * sample  # the reference's rounding
            out.append(torch.cat([self.vae.decode(z[i:i + chunk], num_frames=len(z[i:i + chunk])).sample
                                  for i in range(0, len(z), chunk)]))
        return torch.stack(out)

    # -- sampling --------------------------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(
        self,
        video: torch.Tensor | None = None,
        passes: str | int | Sequence[str | int] = "basecolor",
        gbuffers: dict[str, torch.Tensor] | None = None,
        env: dict[str, torch.Tensor] | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        decode_chunk_size: int | None = None,
        encode_chunk_size: int | None = None,
        output_type: str = "pt",
        return_dict: bool = True,
    ):
        """Inverse: ``video`` (B, T, 3, H, W) and ``passes`` (a name / id, or one per sample) -> that G-buffer.
        Forward: ``gbuffers`` (basecolor, normal, depth, roughness, metallic, each (B, T, 3, H, W)) and ``env``
        (env_ldr, env_log, env_nrm, each (B, T, 3, He, We)) -> the rendered video. ``latents``: initial noise
        (B, T, C, h, w), unit variance (scaled by the scheduler's initial sigma here, as in the reference);
        otherwise drawn with ``generator``. Defaults for steps, guidance and decode chunks: ``self.settings``;
        ``encode_chunk_size`` bounds the frames the VAE encodes at once (default all, as the reference)."""
        s = self.settings
        if output_type not in OUTPUT_TYPES:
            raise NeuralRenderError(f"output_type {output_type!r} is not one of {OUTPUT_TYPES}")
        steps = int(num_inference_steps or s.num_inference_steps)
        guidance = float(s.guidance_scale if guidance_scale is None else guidance_scale)
        chunk = int(decode_chunk_size or s.decode_chunk_size)
        if steps < 1 or chunk < 1:
            raise NeuralRenderError("num_inference_steps and decode_chunk_size must be >= 1")
        device, dtype = self.unet.device, self.unet.dtype
        context, tokens = None, None
        if s.kind == "inverse":
            if video is None or gbuffers is not None or env is not None:
                raise NeuralRenderError("an inverse DiffusionRenderer takes video= (and passes=), not gbuffers/env")
            rgb = self._image("video", video)
            batch, frames = rgb.shape[:2]
            cond = self._latents_of(rgb, encode_chunk_size)
            context = self._pass_ids(passes, batch)
            width = self.unet.config.cross_attention_dim
            width = width if isinstance(width, int) else width[0]
            tokens = torch.zeros(batch, 1, 1, width, device=device, dtype=dtype)  # no image token ('skip' mode)
        else:
            if video is not None or not gbuffers or not env:
                raise NeuralRenderError("a forward DiffusionRenderer takes gbuffers= and env=, not video=")
            missing = [k for k in s.gbuffers if k not in gbuffers] + [k for k in s.env_labels if k not in env]
            extra = sorted(set(gbuffers) - set(s.gbuffers)) + sorted(set(env) - set(s.env_labels))
            if missing or extra:
                raise NeuralRenderError(f"forward inputs: missing {missing}, unknown {extra}")
            first = gbuffers[s.gbuffers[0]]
            shape = tuple(first.shape[:2]) if torch.is_tensor(first) else None
            images = [self._image(k, gbuffers[k], shape) for k in s.gbuffers]
            batch, frames = images[0].shape[:2]
            cond = torch.cat([self._latents_of(x, encode_chunk_size) for x in images], dim=2)
            env_images = {k: self._image(k, env[k], (batch, frames), self.vae_scale_factor) for k in s.env_labels}
            tokens = encode_env(self.vae, self.env_encoder, env_images, encode_chunk_size)
        cfg = guidance > 1.0
        time_ids = s.added_time_ids(batch).to(device, dtype)
        if cfg:
            cond = torch.cat([torch.zeros_like(cond), cond])
            tokens = [torch.cat([torch.zeros_like(t), t]) for t in tokens] if isinstance(tokens, list) \
                else torch.cat([torch.zeros_like(tokens), tokens])
            time_ids = torch.cat([time_ids, time_ids])
            context = None if context is None else torch.cat([context, context])

        self.scheduler.set_timesteps(steps, device=device)
        shape = (batch, frames, int(self.vae.config.latent_channels), *cond.shape[-2:])
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        elif tuple(latents.shape) != shape:
            raise NeuralRenderError(f"latents of shape {tuple(latents.shape)}, expected {shape}")
        latents = latents.to(device, dtype) * self.scheduler.init_noise_sigma
        for t in self.scheduler.timesteps:
            model_in = torch.cat([latents] * 2) if cfg else latents
            model_in = torch.cat([self.scheduler.scale_model_input(model_in, t), cond], dim=2)
            pred = self.unet(model_in, t, tokens, time_ids, input_context=context).sample
            if cfg:
                uncond, conditioned = pred.chunk(2)
                pred = uncond + guidance * (conditioned - uncond)
            latents = self.scheduler.step(pred, t, latents).prev_sample
        log.debug("DiffusionRenderer %s: %d steps, guidance %g", s.kind, steps, guidance)

        if output_type == "latent":
            frames_out = latents
        else:
            frames_out = (self._decode(latents, chunk).float() * 0.5 + 0.5).clamp(0, 1)
            if output_type == "np":
                frames_out = frames_out.permute(0, 1, 3, 4, 2).cpu().numpy()
        self.maybe_free_model_hooks()
        if not return_dict:
            return (frames_out,)
        return DiffusionRendererPipelineOutput(frames=frames_out)
