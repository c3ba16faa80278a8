"""Sim-to-real inference with the IC-LoRA (RealMaster): rendered video -> realistic video, no anchors needed.

Model (trained by :class:`neural_render.tasks.sim2real.Sim2RealTask`): per window of ``L`` latent frames the
backbone sees ``[reference | target]`` (2L frames, :mod:`neural_render.models.ic_lora`): the reference = codec
latents of the rendered frames in display space (:func:`to_model_space`), clean at sigma 0; the target = the latents
being denoised. ``target`` says what the target latents are: ``"direct"`` the realistic clip's latents, or
``"residual"`` realistic minus reference latents (the output is reference + prediction, so everything the model does
not change is passed through exactly). ``residual_filter_sigma`` > 0 (residual only): the base the residual is
added to is the rendered clip pixel-filtered at the processing size by a Gaussian of that many pixels
(:func:`neural_render.render.pixel_filter.pixel_filter`: the footprint integration of a path tracer's pixel, which
point-sampled game / rasterizer renders lack), while the in-context reference stays the unfiltered render.

Any length: overlapping windows blended in latent space at every denoising step
(:func:`neural_render.pipelines.windows.windowed_sample`); each window's reference is the matching slice of the
rendered latents. A call's ``window`` / ``overlap`` count VIDEO frames (converted for the codec,
:func:`~neural_render.pipelines.windows.latent_window`); the defaults are the model's settings ``window`` /
``overlap``, which the training task records in LATENT frames. Size: frames must be multiples of
:attr:`Sim2RealPipeline.stride` (codec x backbone) unless a ``processing_size`` is given (then frames are resized
to it and back); anything else is a NeuralRenderError.
``strength`` scales the LoRA (peft scale: 0 = base model, 1 = as trained); the scale is restored after the call.

Folder: a :class:`VideoDiffusionPipeline` folder (the LoRA under ``lora/<adapter>/``) + ``sim2real_config.json``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from diffusers.utils import BaseOutput
from torch import Tensor

from neural_render.errors import NeuralRenderError
from neural_render.pipelines.base import (
    VideoDiffusionPipeline,
    check_output_type,
    make_generator,
    step_callback,
    to_output_type,
)
from neural_render.pipelines.frame_size import resize_video
from neural_render.render.pixel_filter import checked_sigma, pixel_filter

SIM2REAL_CONFIG = "sim2real_config.json"
TARGETS = ("direct", "residual")


def to_model_space(rgb: Tensor) -> Tensor:
    """Linear radiance (..., 3, H, W) -> display sRGB of clamp(x, 0, 1) in [-1, 1] (what the models see)."""
    from neural_render.render.tonemap import linear_to_srgb

    return linear_to_srgb(rgb.clamp(0.0, 1.0)) * 2.0 - 1.0


def from_model_space(x: Tensor) -> Tensor:
    """Inverse of :func:`to_model_space` on [-1, 1] (values outside are clamped) -> linear radiance in [0, 1]."""
    from neural_render.render.tonemap import srgb_to_linear

    return srgb_to_linear(((x + 1.0) * 0.5).clamp(0.0, 1.0))


def check_video(video: Tensor, stride: int, processing_size=None, source=None) -> tuple[int, int]:
    """Validate a (B, T, 3, H, W) float video; return the processing (h, w) (see module doc for the size rule)."""
    if not torch.is_tensor(video) or video.ndim != 5 or video.shape[2] != 3 or not video.is_floating_point():
        shape = tuple(getattr(video, "shape", ()))
        raise NeuralRenderError(f"video must be a float (B, T, 3, H, W) tensor, got {shape}",
                                source)
    b, t, _, h, w = video.shape
    if b < 1 or t < 1:
        raise NeuralRenderError(f"video has no frames (shape {tuple(video.shape)})", source)
    if not bool(torch.isfinite(video).all()):
        raise NeuralRenderError("video contains NaN or inf", source)
    if processing_size is None:
        if h < stride or w < stride or h % stride or w % stride:
            raise NeuralRenderError(f"frame size {w}x{h} is not a multiple of the model stride {stride} (codec x "
                                    f"backbone); give a processing size to resize", source)
        return h, w
    ph, pw = (processing_size, processing_size) if isinstance(processing_size, int) else map(int, processing_size)
    if ph < stride or pw < stride or ph % stride or pw % stride:
        raise NeuralRenderError(f"processing size {pw}x{ph} must be a multiple of the model stride {stride}", source)
    return ph, pw


@dataclass
class Sim2RealOutput(BaseOutput):
    """frames: (B, T, 3, H, W) linear radiance in [0, 1] at the input size; windows: [start, stop) spans in video
    frames; processing_size: (h, w) the model ran at; latents: (B, T', C, h, w) output latents when requested."""

    frames: Tensor
    windows: list[tuple[int, int]] = field(default_factory=list)
    processing_size: tuple[int, int] = (0, 0)
    latents: Tensor | None = None


class Sim2RealPipeline(VideoDiffusionPipeline):
    """Rendered -> realistic video with the IC-LoRA (module doc).

    target: "direct" | "residual"; adapter: LoRA adapter name on the backbone (None = no LoRA: strength must be 1);
    num_steps: default sampler steps (None: 1 for the x0 denoiser, else 20); window / overlap: default LATENT
    frames per window and overlap (as trained); processing_size: default (h, w) or None; info: training info
    (``global_step``: 0 means UNTRAINED).
    """

    SETTINGS_FILE = SIM2REAL_CONFIG
    SETTINGS_REQUIRED = True
    SETTINGS_KEYS = frozenset({"target", "adapter", "num_steps", "window", "overlap", "processing_size",
                               "residual_filter_sigma", "info"})
    WHAT = "a sim2real model"

    def __init__(self, backbone, denoiser, codec=None, pass_embedding=None, target: str = "residual",
                 adapter: str | None = None, num_steps: int | None = None, window: int = 8, overlap: int = 2,
                 processing_size: Sequence[int] | None = None, info: dict | None = None,
                 residual_filter_sigma: float = 0.0, lora=None):
        super().__init__(backbone, denoiser, codec, pass_embedding, lora)
        self.configure(target=target, adapter=adapter, num_steps=num_steps, window=window, overlap=overlap,
                       processing_size=processing_size, info=info, residual_filter_sigma=residual_filter_sigma)

    def configure(self, target="residual", adapter=None, num_steps=None, window=8, overlap=2, processing_size=None,
                  info=None, residual_filter_sigma=0.0, source=None) -> Sim2RealPipeline:
        from neural_render.models.lora import lora_adapter_names

        if self.codec is None:
            raise NeuralRenderError("the sim2real pipeline needs a latent codec", source)
        if int(self.codec.latent_channels) != int(self.backbone.latent_channels):
            raise NeuralRenderError(f"codec channels {self.codec.latent_channels} != backbone latent channels "
                                    f"{self.backbone.latent_channels}", source)
        if target not in TARGETS:
            raise NeuralRenderError(f"target must be one of {TARGETS}, got {target!r}", source)
        names = lora_adapter_names(self.backbone)
        if adapter is None and names:
            adapter = names[0]
        if adapter is not None and adapter not in names:
            raise NeuralRenderError(f"backbone has no LoRA adapter {adapter!r} (has {names})", source)
        if int(window) < 1 or not 0 <= int(overlap) < int(window):
            raise NeuralRenderError(f"need window >= 1 and 0 <= overlap < window, got {window}, {overlap}", source)
        if num_steps is not None and int(num_steps) < 1:
            raise NeuralRenderError(f"num_steps must be >= 1, got {num_steps}", source)
        sigma = checked_sigma(residual_filter_sigma, "residual_filter_sigma", source)
        if sigma and target != "residual":
            raise NeuralRenderError(f"residual_filter_sigma applies to the residual target only, got target {target!r}",
                                    source)
        self.target, self.adapter, self.residual_filter_sigma = target, adapter, sigma
        self.num_steps = None if num_steps is None else int(num_steps)
        self.window, self.overlap = int(window), int(overlap)
        self.processing_size = None if processing_size is None else tuple(int(s) for s in processing_size)
        self.info = dict(info or {})
        return self

    def sim2real_config(self) -> dict:
        size = self.processing_size
        return {"target": self.target, "adapter": self.adapter, "num_steps": self.num_steps, "window": self.window,
                "overlap": self.overlap, "processing_size": list(size) if size else None,
                "residual_filter_sigma": self.residual_filter_sigma, "info": self.info}

    # ------------------------------------------------------------------ persistence
    def settings(self) -> dict:
        """``sim2real_config.json``."""
        return self.sim2real_config()

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def encode_video(self, video: Tensor, size: tuple[int, int], filter_sigma: float = 0.0) -> Tensor:
        """Linear video (B, T, 3, H, W) -> reference latents (B, T', C, h, w) at the processing size (pixel-filtered
        there first when ``filter_sigma`` > 0)."""
        frames = pixel_filter(resize_video(video.to(self.device, torch.float32), *size), filter_sigma)
        return self.codec.encode(to_model_space(frames))

    def _latent_windows(self, latent_frames: int, window: int, overlap: int) -> list[tuple[int, int]]:
        from neural_render.pipelines.windows import plan_windows

        rule = self.backbone.frame_rule
        lw = min(window, latent_frames)
        while lw > 1 and not rule(2 * lw):
            lw -= 1
        if not rule(2 * lw) or latent_frames < lw:
            raise NeuralRenderError(f"no window of <= {window} latent frames fits the backbone ({rule.description}) "
                                    f"for a {latent_frames}-frame clip")
        return plan_windows(latent_frames, lw, min(overlap, lw - 1))

    @torch.no_grad()
    def __call__(self, video: Tensor, strength: float = 1.0, num_steps: int | None = None, window: int | None = None,
                 overlap: int | None = None, processing_size=None, generator: torch.Generator | None = None,
                 seed: int | None = None, progress: bool = False, return_latents: bool = False,
                 output_type: str = "pt", callback_on_step_end=None,
                 callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",), return_dict: bool = True):
        """Translate ``video`` (B, T, 3, H, W) linear radiance (rendered) -> :class:`Sim2RealOutput` (realistic).

        window / overlap: VIDEO frames (default: the model's, in latent frames); generator or seed (default 0);
        output_type, callback_on_step_end, return_dict: pipelines/base.py."""
        from neural_render.models.ic_lora import in_context
        from neural_render.models.lora import set_lora_scale
        from neural_render.pipelines.windows import latent_window, video_span, windowed_sample

        check_output_type(output_type)
        callback = step_callback(self, callback_on_step_end, callback_on_step_end_tensor_inputs)

        strength = float(strength)
        if not math.isfinite(strength) or strength < 0:
            raise NeuralRenderError(f"strength must be a finite number >= 0, got {strength}")
        if self.adapter is None and strength != 1.0:
            raise NeuralRenderError("this model has no LoRA adapter: strength must be 1")
        size = check_video(video, self.stride, processing_size if processing_size is not None else self.processing_size)
        reference = self.encode_video(video, size)
        t_lat = reference.shape[1]
        f = int(getattr(self.codec, "temporal_factor", 1))
        lw = self.window if not window else latent_window(int(window), 0, f)[0]
        lo = self.overlap if overlap is None else latent_window(1, int(overlap), f)[1]
        spans = self._latent_windows(t_lat, int(lw), int(lo))
        gen = make_generator(generator, seed, 0)

        def predict(x_window: Tensor, level: Tensor, a: int, c: int) -> Tensor:
            ref = reference[:, a:c]
            sigma = torch.cat([torch.zeros_like(level), level], dim=1)
            x0 = self.denoiser.predict_x0(self.backbone, torch.cat([ref, x_window], dim=1), sigma)
            return x0[:, c - a:]

        if self.adapter is not None:
            set_lora_scale(self.backbone, strength, self.adapter)
        try:
            with in_context(self.backbone):
                latents = windowed_sample(self.denoiser, predict, tuple(reference.shape), spans, self.default_steps()
                                          if num_steps is None else int(num_steps), generator=gen, device=self.device,
                                          progress=progress, desc="sim2real", callback=callback)
        finally:
            if self.adapter is not None:
                set_lora_scale(self.backbone, 1.0, self.adapter)
        if self.target == "residual":
            sigma = self.residual_filter_sigma
            base = self.encode_video(video, size, sigma) if sigma else reference
            out = latents + base
        else:
            out = latents
        frames = self.codec.decode(out)[:, :video.shape[1]].float().cpu()
        frames = from_model_space(resize_video(frames, *video.shape[-2:]))
        windows = [video_span(a, c, f, video.shape[1]) for a, c in spans]
        result = Sim2RealOutput(to_output_type(frames, output_type), windows, size,
                                to_output_type(out, output_type) if return_latents else None)
        return result if return_dict else result.to_tuple()
