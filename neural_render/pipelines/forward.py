"""Forward rendering pipeline: G-buffers (any subset) + camera + env map -> RGB video (linear), windowed.

    pipe = ForwardPipeline.from_pretrained("data/models/forward_tiny")
    out = pipe(gbuffer, camera, envmap)                 # out.rgb (B, T, 3, H, W) linear in [0, 1]

Inputs are prepared exactly like training inputs (:func:`neural_render.models.conditioning.prepare_forward_inputs`):
missing passes are zeros with presence 0, env encodings are per-frame camera-space (the env's rotation and every
frame's camera pose included), the optional split-sum prior is shaded from the given passes. Long videos are
denoised in overlapping latent windows blended at every step (:mod:`neural_render.pipelines.windows`); the
condition is encoded once for the whole clip. ``window`` / ``overlap`` of a call count VIDEO frames (as in every
pipeline; converted to latent frames for the codec, :func:`~neural_render.pipelines.windows.latent_window`); the
defaults are the model's ``forward_config`` ``window`` / ``overlap``, which the training task records in LATENT frames
(the same numbers for codecs without temporal compression, e.g. every shipped model). Frames whose size is not a
multiple of the model's spatial step are edge-padded at the bottom / right and cropped back.

Realiz3D inference: every block uses ``domain`` ("real" by default); ``reassign_blocks`` > 0 with
``reassign_steps`` > 0 puts the first blocks on e_synthetic during the first sampling steps.

Folder: the base pipeline folder (pipelines/folder.py) + ``forward_config.json`` (+ ``domain_shifters/``), loaded by
:meth:`ForwardPipeline.from_pretrained`, ``load_pipeline`` or diffusers' ``DiffusionPipeline.from_pretrained``.
``render`` is the earlier name of ``__call__`` (kept as an alias).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers.utils import BaseOutput
from torch import Tensor

import neural_render.models.domain_shifter  # noqa: F401 - a component module diffusers' loader finds in sys.modules
from neural_render.devices import move_to_device
from neural_render.errors import NeuralRenderError
from neural_render.pipelines.base import (
    VideoDiffusionPipeline,
    check_output_type,
    make_generator,
    step_callback,
    to_output_type,
)
from neural_render.types import Camera, EnvMap, GBuffer

CONFIG_NAME = "forward_config.json"
SHIFTERS_FOLDER = "domain_shifters"


@dataclass
class ForwardOutput(BaseOutput):
    """rgb: (B, T, 3, H, W) linear radiance in [0, 1] (display-referred model); latents: (B, T', C, h, w) sampled
    (the residual when the model is residual); prior: (B, T, 3, H, W) split-sum render fed to the model (after the
    model's pixel filter, forward_config ``prior_filter_sigma``), or None."""

    rgb: Tensor
    latents: Tensor
    prior: Tensor | None = None


class ForwardPipeline(VideoDiffusionPipeline):
    """See module docstring. forward_config: {"with_prior", "residual", "window", "overlap", ...}; domain_shifters:
    Realiz3D DomainShifters (attached to the backbone here) or None."""

    _optional_components = [*VideoDiffusionPipeline._optional_components, "domain_shifters"]
    SETTINGS_FILE = CONFIG_NAME
    SETTINGS_REQUIRED = True
    WHAT = "a forward pipeline"

    def __init__(self, backbone, denoiser, codec=None, pass_embedding=None, forward_config: dict | None = None,
                 domain_shifters=None, lora=None):
        super().__init__(backbone, denoiser, codec, pass_embedding, lora)
        self.forward_config = dict(forward_config) if forward_config is not None else None
        self.register_modules(domain_shifters=domain_shifters)
        if domain_shifters is not None and not domain_shifters.attached:
            domain_shifters.attach(backbone)

    # ------------------------------------------------------------------ helpers
    def _config(self) -> dict:
        if self.forward_config is None:
            raise NeuralRenderError("this pipeline has no forward_config; load it with ForwardPipeline.from_pretrained")
        return self.forward_config

    @property
    def spatial_step(self) -> int:
        """Frame sizes must be multiples of this (codec factor x backbone spatial multiple)."""
        factor = self.codec.spatial_factor if self.codec is not None else 1
        return int(factor * self.backbone.spatial_multiple)

    def _encode(self, video: Tensor) -> Tensor:
        return video if self.codec is None else self.codec.encode(video.to(self.device))

    def latent_windows(self, window: int | None, overlap: int | None) -> tuple[int, int]:
        """(window, overlap) in latent frames: a call's VIDEO frames converted, else the model's config (latent)."""
        from neural_render.pipelines.windows import latent_window

        config = self._config()
        f = int(getattr(self.codec, "temporal_factor", 1)) if self.codec is not None else 1
        lw = int(config.get("window", 8)) if not window else latent_window(int(window), 0, f)[0]
        if overlap is None:
            lo = int(config.get("overlap", lw // 2))
        else:
            lo = latent_window(max(int(window or 1), 1), int(overlap), f)[1]
        return lw, min(lo, lw - 1)

    # ------------------------------------------------------------------ persistence
    def settings(self) -> dict:
        """``forward_config.json``."""
        return self._config()

    def apply_settings(self, settings: dict, source: Path) -> None:
        self.forward_config = dict(settings)

    # ------------------------------------------------------------------ inference
    def render(self, gbuffer: GBuffer, camera: Camera, env: EnvMap | None, *args, **kwargs):
        """The earlier name of :meth:`__call__` (same arguments), kept for existing callers."""
        return self(gbuffer, camera, env, *args, **kwargs)

    @torch.no_grad()
    def __call__(self, gbuffer: GBuffer, camera: Camera, env: EnvMap | None, num_steps: int = 1,
                 generator: torch.Generator | None = None, domain: str = "real", reassign_blocks: int = 0,
                 reassign_steps: int = 0, window: int | None = None, overlap: int | None = None,
                 depth_scale: Tensor | float | None = None, progress: bool = False, seed: int | None = None,
                 output_type: str = "pt", callback_on_step_end=None,
                 callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",), return_dict: bool = True):
        """Render (B, T, 3, H, W) linear RGB from any subset of the forward passes (see module docstring).

        gbuffer: passes (B, T, C, H, W) (mask ignored). camera: B clips, T frames, H x W. env: EnvMap (rotation
        included) or None (no lighting condition). num_steps: sampler steps (1 suffices for the x0 kind).
        generator: noise generator of the sampler, or ``seed`` (default: seeded with 0, so renders are deterministic).
        window / overlap: VIDEO frames per window (default from the model's config; window >= T = one window).
        output_type, callback_on_step_end, return_dict: pipelines/base.py. Returns :class:`ForwardOutput`.
        """
        from neural_render.models.conditioning import (
            display_unpack,
            forward_cond_channels,
            forward_condition,
            prepare_forward_inputs,
        )
        from neural_render.pipelines.windows import plan_windows, windowed_sample

        check_output_type(output_type)
        config = self._config()
        with_prior = bool(config.get("with_prior", False))
        if not isinstance(gbuffer, GBuffer) or not isinstance(camera, Camera):
            raise NeuralRenderError("render needs a GBuffer and a Camera")
        if env is not None and not isinstance(env, EnvMap):
            raise NeuralRenderError(f"env must be an EnvMap or None, got {type(env).__name__}")
        h, w = gbuffer.shape[2:]
        gbuffer, camera = _pad(gbuffer, camera, self.spatial_step)
        inputs = prepare_forward_inputs(gbuffer, camera, env, with_prior, depth_scale=depth_scale)
        inputs = move_to_device(inputs, self.device)
        prior_filter_sigma = float(config.get("prior_filter_sigma", 0.0))
        if inputs.get("prior") is not None and prior_filter_sigma:  # filtered once: condition and returned prior
            from neural_render.render.pixel_filter import pixel_filter
            inputs["prior"] = pixel_filter(inputs["prior"], prior_filter_sigma)
        cond, prior_latents = forward_condition(self._encode, inputs, with_prior)
        latent_channels = self.backbone.latent_channels
        if cond.shape[2] != self.backbone.cond_channels:
            expected = forward_cond_channels(latent_channels, with_prior)
            raise NeuralRenderError(f"condition has {cond.shape[2]} channels but the backbone takes "
                                    f"{self.backbone.cond_channels} (expected {expected})")
        shape = (cond.shape[0], cond.shape[1], latent_channels, cond.shape[3], cond.shape[4])
        window, overlap = self.latent_windows(window, overlap)
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

        generator = make_generator(generator, seed, 0)
        callback = step_callback(self, callback_on_step_end, callback_on_step_end_tensor_inputs)
        latents = windowed_sample(self.denoiser, predict_x0, shape, spans, num_steps, generator=generator,
                                  device=self.device, progress=progress, desc="forward", callback=callback)
        if self.domain_shifters is not None:
            self.domain_shifters.set_state(None)
        full = latents + prior_latents if config.get("residual", False) else latents
        video = full if self.codec is None else self.codec.decode(full)
        rgb = display_unpack(video)[..., :h, :w].float().cpu()
        prior = inputs.get("prior")
        prior = None if prior is None or inputs["prior_present"].sum() == 0 else prior[..., :h, :w].cpu()
        out = ForwardOutput(rgb=to_output_type(rgb, output_type), latents=to_output_type(latents.cpu(), output_type),
                            prior=to_output_type(prior, output_type))
        return out if return_dict else out.to_tuple()

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
