"""Forward rendering pipeline: G-buffers (any subset) + camera + env map -> RGB video (linear), windowed.

    pipe = ForwardPipeline.from_pretrained("data/models/forward_tiny")
    out = pipe.render(gbuffer, camera, envmap)          # out.rgb (B, T, 3, H, W) linear in [0, 1]

Inputs are prepared exactly like training inputs (:func:`neural_render.models.conditioning.prepare_forward_inputs`):
missing passes are zeros with presence 0, env encodings are per-frame camera-space (the env's rotation and every
frame's camera pose included), the optional split-sum prior is shaded from the given passes. Long videos are
denoised in overlapping latent windows blended at every step (:mod:`neural_render.pipelines.windows`); the
condition is encoded once for the whole clip. Frames whose size is not a multiple of the model's spatial step are
edge-padded at the bottom / right and cropped back.

Realiz3D inference: every block uses ``domain`` ("real" by default); ``reassign_blocks`` > 0 with
``reassign_steps`` > 0 puts the first blocks on e_synthetic during the first sampling steps.

Folder: the base pipeline folder (pipelines/base.py) + ``forward_config.json`` (+ ``domain_shifters/``). Load it with
:meth:`ForwardPipeline.from_pretrained` (the generic ``load_pipeline`` does not read the forward extras).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from neural_render.errors import NeuralRenderError
from neural_render.pipelines.base import VideoDiffusionPipeline
from neural_render.types import Camera, EnvMap, GBuffer

CONFIG_NAME = "forward_config.json"
SHIFTERS_FOLDER = "domain_shifters"


@dataclass
class ForwardOutput:
    """rgb: (B, T, 3, H, W) linear radiance in [0, 1] (display-referred model); latents: (B, T', C, h, w) sampled
    (the residual when the model is residual); prior: (B, T, 3, H, W) split-sum render fed to the model (after the
    model's pixel filter, forward_config ``prior_filter_sigma``), or None."""

    rgb: Tensor
    latents: Tensor
    prior: Tensor | None = None


class ForwardPipeline(VideoDiffusionPipeline):
    """See module docstring. forward_config: {"with_prior", "residual", "window", "overlap", ...}."""

    def __init__(self, backbone, denoiser, codec=None, pass_embedding=None, forward_config: dict | None = None,
                 domain_shifters=None):
        super().__init__(backbone, denoiser, codec, pass_embedding)
        self.forward_config = dict(forward_config) if forward_config is not None else None
        self.domain_shifters = domain_shifters
        if domain_shifters is not None and not domain_shifters.attached:
            domain_shifters.attach(backbone)

    # ------------------------------------------------------------------ helpers
    def _config(self) -> dict:
        if self.forward_config is None:
            raise NeuralRenderError("this pipeline has no forward_config; load it with ForwardPipeline.from_pretrained")
        return self.forward_config

    def to(self, device):
        super().to(device)
        if self.domain_shifters is not None:
            self.domain_shifters.to(device)
        return self

    def eval(self):
        super().eval()
        if self.domain_shifters is not None:
            self.domain_shifters.eval()
        return self

    @property
    def spatial_step(self) -> int:
        """Frame sizes must be multiples of this (codec factor x backbone spatial multiple)."""
        factor = self.codec.spatial_factor if self.codec is not None else 1
        return int(factor * self.backbone.spatial_multiple)

    def _encode(self, video: Tensor) -> Tensor:
        return video if self.codec is None else self.codec.encode(video.to(self.device))

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def render(self, gbuffer: GBuffer, camera: Camera, env: EnvMap | None, num_steps: int = 1,
               generator: torch.Generator | None = None, domain: str = "real", reassign_blocks: int = 0,
               reassign_steps: int = 0, window: int | None = None, overlap: int | None = None,
               depth_scale: Tensor | float | None = None, progress: bool = False) -> ForwardOutput:
        """Render (B, T, 3, H, W) linear RGB from any subset of the forward passes (see module docstring).

        gbuffer: passes (B, T, C, H, W) (mask ignored). camera: B clips, T frames, H x W. env: EnvMap (rotation
        included) or None (no lighting condition). num_steps: sampler steps (1 suffices for the x0 kind).
        generator: noise generator of the sampler (default: seeded with 0, so renders are deterministic).
        window / overlap: latent frames per window (default from the model's config; window >= T = one window).
        """
        from neural_render.models.conditioning import (
            display_unpack,
            forward_cond_channels,
            forward_condition,
            prepare_forward_inputs,
        )
        from neural_render.pipelines.windows import plan_windows, windowed_sample

        config = self._config()
        with_prior = bool(config.get("with_prior", False))
        if not isinstance(gbuffer, GBuffer) or not isinstance(camera, Camera):
            raise NeuralRenderError("render needs a GBuffer and a Camera")
        if env is not None and not isinstance(env, EnvMap):
            raise NeuralRenderError(f"env must be an EnvMap or None, got {type(env).__name__}")
        h, w = gbuffer.shape[2:]
        gbuffer, camera = _pad(gbuffer, camera, self.spatial_step)
        inputs = prepare_forward_inputs(gbuffer, camera, env, with_prior, depth_scale=depth_scale)
        inputs = _to(inputs, self.device)
        prior_filter_sigma = float(config.get("prior_filter_sigma", 0.0))
        if inputs.get("prior") is not None and prior_filter_sigma:  # filtered once: condition and returned prior
            from neural_render.render.pixel_filter import pixel_filter
            inputs["prior"] = pixel_filter(inputs["prior"], prior_filter_sigma)
        cond, prior_latents = forward_condition(self._encode, inputs, with_prior)
        latent_channels = self.backbone.latent_channels
        if cond.shape[2] != self.backbone.cond_channels:
            raise NeuralRenderError(f"condition has {cond.shape[2]} channels but the backbone takes "
                                    f"{self.backbone.cond_channels} (expected {forward_cond_channels(latent_channels, with_prior)})")
        shape = (cond.shape[0], cond.shape[1], latent_channels, cond.shape[3], cond.shape[4])
        window = int(window or config.get("window", 8))
        overlap = int(config.get("overlap", window // 2) if overlap is None else overlap)
        overlap = min(overlap, window - 1)
        spans = plan_windows(shape[1], window, overlap)
        sigmas = self.denoiser.sampling_sigmas(num_steps).to(self.device)

        def predict_x0(x_window: Tensor, sigma: Tensor, start: int, stop: int) -> Tensor:
            if self.domain_shifters is not None:
                step = int((sigmas[:-1] - sigma[0, 0]).abs().argmin())
                self.domain_shifters.set_state(self._domains(x_window.shape[0], domain, reassign_blocks,
                                                             step < reassign_steps))
            x0 = self.denoiser.guided_x0(self.backbone, x_window, sigma, cond[:, start:stop], None,
                                         added=self.window_added(start, stop))
            extra = self.window_x0_add(start, stop)
            return x0 if extra is None else x0 + extra.to(x0)

        generator = torch.Generator().manual_seed(0) if generator is None else generator
        latents = windowed_sample(self.denoiser, predict_x0, shape, spans, num_steps, generator=generator,
                                  device=self.device, progress=progress, desc="forward")
        if self.domain_shifters is not None:
            self.domain_shifters.set_state(None)
        full = latents + prior_latents if config.get("residual", False) else latents
        video = full if self.codec is None else self.codec.decode(full)
        rgb = display_unpack(video)[..., :h, :w].float().cpu()
        prior = inputs.get("prior")
        return ForwardOutput(rgb=rgb, latents=latents.cpu(),
                             prior=None if prior is None or inputs["prior_present"].sum() == 0
                             else prior[..., :h, :w].cpu())

    def window_added(self, start: int, stop: int) -> dict | None:
        """Backbone ``added`` hook dict for latent frames [start, stop) of the render in progress (None: no hook;
        the cache-injection pipeline, pipelines/insert.py, returns its ``token_add`` window)."""
        return None

    def window_x0_add(self, start: int, stop: int) -> Tensor | None:
        """A known term added to the x0 prediction of latent frames [start, stop) (None: nothing; the cache-injection
        pipeline returns its shadow residual there)."""
        return None

    def _domains(self, batch: int, domain: str, reassign_blocks: int, early_step: bool) -> Tensor:
        from neural_render.models.domain_shifter import SYNTHETIC, domain_ids

        ids = domain_ids(domain, batch, self.domain_shifters.num_blocks)
        if early_step and reassign_blocks > 0:
            ids[:, : int(reassign_blocks)] = SYNTHETIC
        return ids

    # ------------------------------------------------------------------ persistence
    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Base pipeline folder + forward_config.json (+ domain_shifters/), written atomically as one folder."""
        from neural_render.io.atomic import atomic_dir

        config = self._config()
        with atomic_dir(directory) as tmp:
            self._keep_records(directory, tmp)
            super().save_pretrained(tmp)
            Path(tmp, CONFIG_NAME).write_text(json.dumps(config, indent=2))
            if self.domain_shifters is not None:
                self.domain_shifters.save_pretrained(Path(tmp) / SHIFTERS_FOLDER)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, device: str | torch.device | None = None):
        root = Path(directory)
        pipe = super().from_pretrained(root, device=None)
        if not isinstance(pipe, ForwardPipeline):
            raise NeuralRenderError(f"not a forward pipeline folder (it holds a {type(pipe).__name__})", root)
        path = root / CONFIG_NAME
        try:
            pipe.forward_config = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise NeuralRenderError(f"not a forward pipeline folder: cannot read {CONFIG_NAME}: {err}", path) from None
        if not isinstance(pipe.forward_config, dict):
            raise NeuralRenderError(f"{CONFIG_NAME} must hold a JSON object", path)
        if (root / SHIFTERS_FOLDER).is_dir():
            from neural_render.models.domain_shifter import DomainShifters

            pipe.domain_shifters = DomainShifters.from_pretrained(root / SHIFTERS_FOLDER).attach(pipe.backbone)
        if device is not None:
            pipe.to(device)
        return pipe.eval()


def _pad(gbuffer: GBuffer, camera: Camera, step: int) -> tuple[GBuffer, Camera]:
    """Edge-pad passes at the bottom / right to multiples of ``step``; the camera keeps its intrinsics."""
    b, t, h, w = gbuffer.shape
    ph, pw = (-h) % step, (-w) % step
    if ph == 0 and pw == 0:
        return gbuffer, camera

    def pad(x: Tensor) -> Tensor:
        return F.pad(x.reshape(b * t, x.shape[2], h, w), (0, pw, 0, ph), mode="replicate").reshape(
            b, t, x.shape[2], h + ph, w + pw)

    return gbuffer.map(pad), Camera(camera.intrinsics, camera.camera_to_world, w + pw, h + ph)


def _to(inputs: dict, device) -> dict:
    out = {}
    for key, value in inputs.items():
        if isinstance(value, Tensor):
            out[key] = value.to(device)
        elif isinstance(value, GBuffer):
            out[key] = value.map(lambda x: x.to(device))
        elif isinstance(value, dict):
            out[key] = {k: v.to(device) for k, v in value.items()}
        else:
            out[key] = value
    return out
