"""Sampling a DiffusionRenderer checkpoint (inverse or forward) as a ``diffusers.DiffusionPipeline``.

A minimal pure-torch sampler around the modules :func:`load_diffusion_renderer` gives: the reference pipeline's
conditioning (VAE latents of the inputs, pass id or env tokens, SVD micro-conditioning), its Euler loop (the
folder's ``EulerDiscreteScheduler``), its classifier-free guidance for the forward renderer (zero G-buffer
latents and zero env tokens unconditional) and its chunked temporal decode. Given the same initial noise through
``latents=`` it reproduces the reference's output (tests/diffusion_renderer/).

:func:`load_for_command` (bottom of this module) loads a folder as the pipeline the toolkit's commands call:
inverse -> :class:`~.diffusion_renderer_inverse.DiffusionRendererInversePipeline` (video -> GBuffer), forward ->
:class:`~.diffusion_renderer_forward.DiffusionRendererForwardPipeline` (GBuffer + camera + EnvMap -> RGB);
:mod:`.diffusion_renderer_hub` registers it with :mod:`neural_render.hub`.

Stages (used by the toolkit-layout pipelines, :mod:`.diffusion_renderer_inverse` and
:mod:`.diffusion_renderer_forward`): ``encode_inverse`` / ``encode_forward`` (condition latents and tokens),
``denoise`` and ``decode``; ``__call__`` chains them.

Any length: with ``window`` / ``overlap`` (frames; the SVD VAE has no temporal compression, so video frames =
latent frames) the frames are covered by overlapping windows (:func:`~neural_render.pipelines.windows.plan_windows`)
and at EVERY Euler step each window is run through the UNet on its own; the per-window predictions are blended into
one full-length prediction with the linear overlap ramps of :class:`~neural_render.pipelines.windows.OverlapBlender`
and one scheduler step moves all latents. The Euler step is affine in the prediction for a fixed sample, so this
equals blending the windows' stepped latents with the same weights, and neighbouring windows start every step from
the same latents (no seams). One window over all frames (the default) is the reference's sampler exactly.

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
from neural_render.pipelines.windows import OverlapBlender, plan_windows, progress_bar

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

    # -- stages --------------------------------------------------------------------------------------------
    def encode_inverse(self, video: torch.Tensor, encode_chunk_size: int | None = None) -> torch.Tensor:
        """Condition latents (B, T, C, h, w) of ``video`` (B, T, 3, H, W) in [0, 1]."""
        return self._latents_of(self._image("video", video), encode_chunk_size)

    def encode_forward(self, gbuffers: dict[str, torch.Tensor], env: dict[str, torch.Tensor],
                       encode_chunk_size: int | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(condition latents (B, T, 5 C, h, w), env tokens per UNet level (B, T_e, N_l, C_l)) of the forward inputs
        (see :meth:`__call__`). Env images may have T_e = 1 frame (one lighting shared by every frame)."""
        s = self.settings
        missing = [k for k in s.gbuffers if k not in gbuffers] + [k for k in s.env_labels if k not in env]
        extra = sorted(set(gbuffers) - set(s.gbuffers)) + sorted(set(env) - set(s.env_labels))
        if missing or extra:
            raise NeuralRenderError(f"forward inputs: missing {missing}, unknown {extra}")
        first = gbuffers[s.gbuffers[0]]
        shape = tuple(first.shape[:2]) if torch.is_tensor(first) else None
        images = [self._image(k, gbuffers[k], shape) for k in s.gbuffers]
        batch, frames = images[0].shape[:2]
        cond = torch.cat([self._latents_of(x, encode_chunk_size) for x in images], dim=2)
        env_frames = env[s.env_labels[0]].shape[1] if torch.is_tensor(env[s.env_labels[0]]) else frames
        env_shape = (batch, 1 if env_frames == 1 else frames)
        env_images = {k: self._image(k, env[k], env_shape, self.vae_scale_factor) for k in s.env_labels}
        return cond, encode_env(self.vae, self.env_encoder, env_images, encode_chunk_size)

    def pass_ids(self, passes, batch: int) -> torch.Tensor:
        """(B,) int64 pass ids: a name / id, or one per sample."""
        return self._pass_ids(passes, batch)

    def empty_tokens(self, batch: int) -> torch.Tensor:
        """The inverse renderer's cross-attention input: one zero token per sample (no image token, 'skip' mode)."""
        width = self.unet.config.cross_attention_dim
        width = width if isinstance(width, int) else width[0]
        return torch.zeros(batch, 1, 1, width, device=self.unet.device, dtype=self.unet.dtype)

    @torch.no_grad()
    def denoise(self, cond: torch.Tensor, tokens, context: torch.Tensor | None = None,
                num_inference_steps: int | None = None, guidance_scale: float | None = None,
                generator=None, latents: torch.Tensor | None = None, window: int | None = None, overlap: int = 0,
                progress: bool = False) -> torch.Tensor:
        """Euler sampling -> latents (B, T, C, h, w), windowed over frames and blended (module doc).

        cond: (B, T, C_cond, h, w); tokens: a tensor or a list per level, each (B, 1 | T, ...); context: (B,) pass
        ids or None; latents: initial unit noise (B, T, C, h, w) or None (drawn with ``generator``); window /
        overlap: frames per window and shared by neighbours (None: one window of every frame)."""
        s = self.settings
        steps = int(num_inference_steps or s.num_inference_steps)
        guidance = float(s.guidance_scale if guidance_scale is None else guidance_scale)
        if steps < 1:
            raise NeuralRenderError("num_inference_steps must be >= 1")
        device, dtype = self.unet.device, self.unet.dtype
        batch, frames = cond.shape[:2]
        spans = plan_windows(frames, int(window or frames), int(overlap) if window else 0)
        cfg = guidance > 1.0
        time_ids = s.added_time_ids(batch).to(device, dtype)
        if cfg:  # unconditional first: zero condition latents, zero tokens (the reference's choice)
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
        pred = torch.empty_like(latents)
        blender = OverlapBlender(pred, spans)
        bar = progress_bar(steps * len(spans), progress, f"DiffusionRenderer {s.kind}")
        try:
            for t in self.scheduler.timesteps:
                scaled = self.scheduler.scale_model_input(latents, t)
                blender.reset()
                for k, (a, b) in enumerate(spans):
                    x = scaled[:, a:b]
                    model_in = torch.cat([torch.cat([x, x]) if cfg else x, cond[:, a:b]], dim=2)
                    out = self.unet(model_in, t, _frames_of(tokens, a, b), time_ids, input_context=context).sample
                    if cfg:
                        uncond, conditioned = out.chunk(2)
                        out = uncond + guidance * (conditioned - uncond)
                    blender.add(k, out)  # the Euler step is affine in the prediction: blended step = blended latents
                    bar.update(1)
                latents = self.scheduler.step(pred, t, latents).prev_sample
        finally:
            bar.close()
        log.debug("DiffusionRenderer %s: %d steps, %d window(s), guidance %g", s.kind, steps, len(spans), guidance)
        return latents

    def decode(self, latents: torch.Tensor, decode_chunk_size: int | None = None) -> torch.Tensor:
        """Latents (B, T, C, h, w) -> frames (B, T, 3, H, W) float32 in [0, 1]."""
        chunk = int(decode_chunk_size or self.settings.decode_chunk_size)
        if chunk < 1:
            raise NeuralRenderError("decode_chunk_size must be >= 1")
        return (self._decode(latents, chunk).float() * 0.5 + 0.5).clamp(0, 1)

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
        window: int | None = None,
        overlap: int = 0,
        progress: bool = False,
        output_type: str = "pt",
        return_dict: bool = True,
    ):
        """Inverse: ``video`` (B, T, 3, H, W) and ``passes`` (a name / id, or one per sample) -> that G-buffer.
        Forward: ``gbuffers`` (basecolor, normal, depth, roughness, metallic, each (B, T, 3, H, W)) and ``env``
        (env_ldr, env_log, env_nrm, each (B, T or 1, 3, He, We)) -> the rendered video. ``latents``: initial noise
        (B, T, C, h, w), unit variance (scaled by the scheduler's initial sigma here, as in the reference);
        otherwise drawn with ``generator``. Defaults for steps, guidance and decode chunks: ``self.settings``;
        ``encode_chunk_size`` bounds the frames the VAE encodes at once (default all, as the reference).
        ``window`` / ``overlap``: frames per temporal window and frames shared by neighbours, blended at every
        step (default: one window of all frames, the reference's behaviour)."""
        if output_type not in OUTPUT_TYPES:
            raise NeuralRenderError(f"output_type {output_type!r} is not one of {OUTPUT_TYPES}")
        if decode_chunk_size is not None and int(decode_chunk_size) < 1:
            raise NeuralRenderError("num_inference_steps and decode_chunk_size must be >= 1")
        context = None
        if self.settings.kind == "inverse":
            if video is None or gbuffers is not None or env is not None:
                raise NeuralRenderError("an inverse DiffusionRenderer takes video= (and passes=), not gbuffers/env")
            cond = self.encode_inverse(video, encode_chunk_size)
            context = self._pass_ids(passes, cond.shape[0])
            tokens = self.empty_tokens(cond.shape[0])
        else:
            if video is not None or not gbuffers or not env:
                raise NeuralRenderError("a forward DiffusionRenderer takes gbuffers= and env=, not video=")
            cond, tokens = self.encode_forward(gbuffers, env, encode_chunk_size)
        latents = self.denoise(cond, tokens, context, num_inference_steps, guidance_scale, generator, latents,
                               window, overlap, progress)
        if output_type == "latent":
            frames_out = latents
        else:
            frames_out = self.decode(latents, decode_chunk_size)
            if output_type == "np":
                frames_out = frames_out.permute(0, 1, 3, 4, 2).cpu().numpy()
        self.maybe_free_model_hooks()
        if not return_dict:
            return (frames_out,)
        return DiffusionRendererPipelineOutput(frames=frames_out)


def _frames_of(tokens, start: int, stop: int):
    """Frames [start, stop) of per-frame tokens (a tensor or a list per level); one-frame tokens are shared."""
    if isinstance(tokens, list):
        return [_frames_of(t, start, stop) for t in tokens]
    return tokens if tokens.dim() < 4 or tokens.shape[1] == 1 else tokens[:, start:stop]


COMMAND_KINDS = ("inverse", "forward")


def load_for_command(folder, kind: str, device=None, dtype: torch.dtype = torch.float32, lora: bool | None = None,
                     lora_scale: float | None = None, window: int | None = None, overlap: int | None = None,
                     processing_size=None, num_steps: int | None = None):
    """A DiffusionRenderer folder as the pipeline the toolkit's commands call.

    kind "inverse": a :class:`~neural_render.pipelines.diffusion_renderer_inverse.DiffusionRendererInversePipeline`
    (``pipe(video, ...) -> .gbuffer``, like InverseRenderingPipeline); kind "forward": a
    :class:`~neural_render.pipelines.diffusion_renderer_forward.DiffusionRendererForwardPipeline`
    (``pipe(gbuffer, camera, env, ...) -> .rgb``, like ForwardPipeline). A folder of the other kind is refused
    (DiffusionRendererCheckpointError naming it, before any weight is read). device / dtype / lora / lora_scale: as
    :func:`load_diffusion_renderer`; window / overlap: default frames per window (24) and shared (6);
    processing_size: default processing size of calls without one (None: shorter side 512, the reference's rule;
    N: longer side; (h, w)); num_steps: default Euler steps of calls without one (None: 20).
    """
    import json
    from pathlib import Path

    from neural_render.models.diffusion_renderer.checkpoint import (
        TRAINING_INFO,
        DiffusionRendererCheckpointError,
        checkpoint_kind,
    )

    if kind not in COMMAND_KINDS:
        raise ValueError(f"kind must be one of {COMMAND_KINDS}, got {kind!r}")
    folder = Path(folder)
    found = checkpoint_kind(folder)
    if found != kind:
        raise DiffusionRendererCheckpointError(
            f"a DiffusionRenderer {found} checkpoint where {'an' if kind == 'inverse' else 'a'} {kind} one is needed "
            f"({'it has' if found == 'forward' else 'it lacks'} env_encoder/)", folder)
    renderer = DiffusionRendererPipeline.from_diffusion_renderer(folder, lora=lora, lora_scale=lora_scale, dtype=dtype,
                                                                 device=device)
    info = {"folder": str(folder), "lora_scale": renderer.settings.lora_scale}
    if (folder / TRAINING_INFO).is_file():
        try:
            info["training"] = json.loads((folder / TRAINING_INFO).read_text())
        except (OSError, ValueError) as e:
            raise DiffusionRendererCheckpointError(f"{TRAINING_INFO} is not readable JSON ({e})", folder) from None
    options = {"window": window, "info": info, "processing_size": processing_size, "num_steps": num_steps,
               **({} if overlap is None else {"overlap": int(overlap)})}
    if kind == "inverse":
        from neural_render.pipelines.diffusion_renderer_inverse import DiffusionRendererInversePipeline

        return DiffusionRendererInversePipeline(renderer, **options)
    from neural_render.pipelines.diffusion_renderer_forward import DiffusionRendererForwardPipeline

    return DiffusionRendererForwardPipeline(renderer, **options)
