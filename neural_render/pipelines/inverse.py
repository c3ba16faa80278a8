"""Inverse rendering pipeline: RGB video (any length, any size) -> G-buffer video (DiffusionRenderer / Marigold style).

Model (trained by :class:`neural_render.tasks.inverse.InverseTask`): the condition is the codec latent of the input
video in display space, :func:`rgb_to_model` (linear radiance -> sRGB of clamp(x, 0, 1) -> [-1, 1]; an sRGB video
file decoded to linear and back gives its original pixels), concatenated to the noisy latent in channels. Two modes:

* ``per_pass``: the latent is ONE packed pass (:func:`neural_render.types.gbuffer.pack_pass`); the pass embedding's
  context tokens say which. Predicting k passes is k denoising runs sharing the encoded condition.
* ``joint``: the latents of all passes are stacked in channels (``len(passes) x codec channels``), one run.

``skip_passes`` (e.g. basecolor): the model predicts these passes RELATIVE to the condition latent (target = pass
latent - input latent; the pipeline adds the input back). Albedo = input / shading, so the residual is smooth and
the input's full-resolution texture reaches the output through the (exact, for pixel unshuffle) codec.
``skip_filter_sigma`` > 0: the base added back is the latent of the input pixel-filtered at the processing size
(:func:`neural_render.render.pixel_filter.pixel_filter`, Gaussian of that many pixels) instead of the input itself, so
per-pixel Monte-Carlo / sensor noise of the input does not pass straight into the albedo (the network still sees the
unfiltered input as its condition and can restore sharp texture edges).

Depth is trained normalised per clip window (depth / max visible depth, :func:`depth_scale_of`), so predicted depth is
RELATIVE: 1 = the farthest visible surface, 0 = no surface. ``depth_scale`` (default 1) multiplies it back to units.
Mask (:func:`~neural_render.pipelines.inverse_values.assemble_gbuffer`): a predicted ``mask`` pass, else relative
depth > ``mask_threshold`` (background is trained to depth 0; depth is predicted for the mask even when not
requested); background pixels are 0 in every pass unless ``zero_background=False``; normals are re-normalised.

Any size: frames are resized (bilinear, antialiased: kornia) to a processing size whose sides are multiples of
:attr:`InverseRenderingPipeline.stride` (codec spatial factor x backbone spatial multiple), outputs resized back.
The processing size is, first found: the call's ``processing_size``, the folder's ``processing_size``, the model's
``native_size`` (the longer side of its training frames, like Marigold's processing resolution: the model sees
objects at the scale it was trained on, and a 4000x3000 video costs what a 64x48 one does) and, for folders that
record none, the input size.
A side smaller than the stride is an error. Any length: overlapping windows blended in latent space at every
denoising step (:mod:`neural_render.pipelines.windows`); conditions are encoded and outputs decoded chunk by chunk,
so peak memory grows with length only by the latents (and the returned G-buffer; :meth:`stream` avoids holding it).
Codecs with temporal compression (Wan VAE, T = 1 + 4k) encode/decode the whole video (they are causal and stream
internally); video frames are padded by repeating the last frame and cropped back.

Folder: a :class:`VideoDiffusionPipeline` folder plus ``inverse_config.json`` (mode, passes, mask threshold,
processing size, native size, default steps, training info); folders without it (plain ``DiffusionSystem.export``)
load with the mode inferred from the channel counts.

Call (diffusers conventions, :mod:`neural_render.pipelines.base`): ``generator`` (one generator for every pass) or
``seed`` (per-pass generators seeded ``seed + 7919 * pass index``; default seed 0), ``output_type`` ("pt" | "np"),
``callback_on_step_end`` (per sampling run: once per pass in per_pass mode), ``return_dict``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
from diffusers.utils import BaseOutput
from torch import Tensor

from neural_render.errors import NeuralRenderError
from neural_render.pipelines.base import VideoDiffusionPipeline, check_output_type, step_callback, to_output_type
from neural_render.pipelines.defaults import INVERSE_OVERLAP, INVERSE_WINDOW
from neural_render.pipelines.frame_size import processing_shape, resize_video
from neural_render.pipelines.inverse_values import assemble_gbuffer, depth_scales, rgb_to_model
from neural_render.pipelines.windows import Span, fit_windows, video_span, windowed_sample
from neural_render.render.pixel_filter import checked_sigma, pixel_filter
from neural_render.types.gbuffer import (
    PASS_CHANNELS,
    PREDICTED_PASSES,
    GBuffer,
    unpack_pass,
)

INVERSE_CONFIG = "inverse_config.json"
MODES = ("per_pass", "joint")
DEFAULT_MASK_THRESHOLD = 0.02


@dataclass
class InverseRenderingOutput(BaseOutput):
    """gbuffer: requested passes (+ mask) (B, T, C, H, W) at the input size, background zeroed; depth is relative
    x ``depth_scale`` (B,); processing_size: (h, w) the model ran at; windows: [start, stop) spans in video frames;
    latents: {pass: (B, T', C, h, w)} when ``return_latents``. With ``output_type="np"`` gbuffer is {pass: array}
    and the tensors are numpy arrays."""

    gbuffer: GBuffer
    depth_scale: Tensor
    processing_size: tuple[int, int]
    windows: list[Span] = field(default_factory=list)
    latents: dict[str, Tensor] | None = None


@dataclass
class _Plan:
    batch: int
    frames: int                 # video frames T
    padded_frames: int          # video frames after padding for a temporal codec
    latent_frames: int          # T' of the condition (after latent padding for the backbone frame rule)
    size: tuple[int, int]       # input (H, W)
    proc: tuple[int, int]       # processing (h, w) in pixels
    latent_hw: tuple[int, int]
    spans: list[Span]           # in latent frames
    run_passes: list[str]       # passes the model is run for
    out_passes: list[str]       # passes returned (without mask)
    zero_background: bool = True  # set the passes to 0 outside the predicted mask


class InverseRenderingPipeline(VideoDiffusionPipeline):
    """Video -> G-buffers (module doc). Components as :class:`VideoDiffusionPipeline`; settings:

    mode: "per_pass" | "joint" | None (inferred: latent channels == codec channels -> per_pass, else joint).
    passes: model passes in order (per_pass default: the pass embedding's names; joint: the 5 predicted passes,
    + mask for 6 blocks). mask_threshold: relative depth above which a pixel is foreground. processing_size: default
    for ``__call__``. native_size: the longer side of the frames the model was trained on (the default processing
    size when ``processing_size`` is None; None: unknown, the input size is used). num_steps: default steps (None: 1
    for the x0 denoiser, else 20). info: training info (``global_step``; 0 means UNTRAINED).
    """

    SETTINGS_FILE = INVERSE_CONFIG
    SETTINGS_KEYS = frozenset({"mode", "passes", "mask_threshold", "processing_size", "num_steps", "skip_passes",
                               "skip_filter_sigma", "native_size", "info"})
    WHAT = "an inverse rendering pipeline"

    def __init__(self, backbone, denoiser, codec=None, pass_embedding=None, mode: str | None = None,
                 passes: Sequence[str] | None = None, mask_threshold: float = DEFAULT_MASK_THRESHOLD,
                 processing_size: int | Sequence[int] | None = None, num_steps: int | None = None,
                 info: dict | None = None, skip_passes: Sequence[str] | None = (), skip_filter_sigma: float = 0.0,
                 native_size: int | None = None, lora=None):
        super().__init__(backbone, denoiser, codec, pass_embedding, lora)
        self.configure(mode=mode, passes=passes, mask_threshold=mask_threshold, processing_size=processing_size,
                       num_steps=num_steps, info=info, skip_passes=skip_passes, skip_filter_sigma=skip_filter_sigma,
                       native_size=native_size)

    # ------------------------------------------------------------------ configuration
    def configure(self, mode=None, passes=None, mask_threshold=DEFAULT_MASK_THRESHOLD, processing_size=None,
                  num_steps=None, info=None, skip_passes=(), skip_filter_sigma=0.0, native_size=None, source=None
                  ) -> InverseRenderingPipeline:
        """Set and validate the inverse settings against the components (NeuralRenderError naming ``source``)."""
        codec, backbone = self.codec, self.backbone
        if codec is None:
            raise NeuralRenderError("the inverse pipeline needs a latent codec", source)
        c = int(codec.latent_channels)
        if int(backbone.cond_channels) != c:
            raise NeuralRenderError(f"backbone cond_channels {backbone.cond_channels} != codec channels {c} "
                                    f"(the condition is one encoded video)", source)
        if mode is None:
            mode = "per_pass" if backbone.latent_channels == c else "joint"
        if mode not in MODES:
            raise NeuralRenderError(f"mode must be one of {MODES}, got {mode!r}", source)
        if mode == "per_pass" and getattr(self.pass_embedding, "names", None) is None:
            raise NeuralRenderError("per_pass mode needs a pass embedding (its tokens select the pass)", source)
        if passes is None:
            if mode == "per_pass":
                passes = [n for n in self.pass_embedding.names if n in PASS_CHANNELS]
            else:
                passes = list(PREDICTED_PASSES) + (["mask"] if backbone.latent_channels == 6 * c else [])
        passes = [str(p) for p in passes]
        if not passes or len(set(passes)) != len(passes) or any(p not in PASS_CHANNELS for p in passes):
            raise NeuralRenderError(f"passes must be unique G-buffer passes {list(PASS_CHANNELS)}, got {passes}",
                                    source)
        blocks = 1 if mode == "per_pass" else len(passes)
        if backbone.latent_channels != blocks * c:
            raise NeuralRenderError(f"{mode} mode over {passes} needs backbone latent channels {blocks} x {c}, got "
                                    f"{backbone.latent_channels}", source)
        if mode == "per_pass" and any(p not in self.pass_embedding.names for p in passes):
            raise NeuralRenderError(f"the pass embedding names {self.pass_embedding.names}, not all of {passes}",
                                    source)
        if not 0.0 < float(mask_threshold) < 1.0:
            raise NeuralRenderError(f"mask_threshold must be in (0, 1), got {mask_threshold}", source)
        if num_steps is not None and int(num_steps) < 1:
            raise NeuralRenderError(f"num_steps must be >= 1, got {num_steps}", source)
        if native_size is not None and (isinstance(native_size, bool) or not isinstance(native_size, int)
                                        or native_size < self.stride):
            raise NeuralRenderError(f"native_size must be an integer >= the model stride {self.stride} (the longer "
                                    f"side of the training frames) or null, got {native_size!r}", source)
        skip_passes = [str(p) for p in (skip_passes or ())]
        if any(p not in passes or PASS_CHANNELS[p] != 3 for p in skip_passes):
            raise NeuralRenderError(f"skip_passes must be 3-channel passes among {passes}, got {skip_passes}", source)
        self.mode, self.passes, self.mask_threshold = mode, passes, float(mask_threshold)
        self.skip_passes = skip_passes
        self.skip_filter_sigma = checked_sigma(skip_filter_sigma, "skip_filter_sigma", source)
        self.processing_size = (None if processing_size is None else
                                int(processing_size) if isinstance(processing_size, int) else
                                tuple(int(s) for s in processing_size))
        self.num_steps = None if num_steps is None else int(num_steps)
        self.native_size = None if native_size is None else int(native_size)
        self.info = dict(info or {})
        return self

    def default_processing_size(self) -> int | tuple[int, int] | None:
        """What a call without ``processing_size`` processes at: the folder's ``processing_size``, else the model's
        ``native_size`` (longer side), else None (the input size)."""
        return self.processing_size if self.processing_size is not None else self.native_size

    def processing_shape(self, height: int, width: int, processing_size=None) -> tuple[int, int]:
        """The (h, w) a (height, width) video is processed at for ``processing_size`` (None: the default)."""
        size = processing_size if processing_size is not None else self.default_processing_size()
        return processing_shape(height, width, self.stride, size)

    def inverse_config(self) -> dict:
        size = self.processing_size
        return {"mode": self.mode, "passes": list(self.passes), "mask_threshold": self.mask_threshold,
                "processing_size": list(size) if isinstance(size, tuple) else size, "native_size": self.native_size,
                "num_steps": self.num_steps,
                "skip_passes": list(self.skip_passes), "skip_filter_sigma": self.skip_filter_sigma, "info": self.info}

    # ------------------------------------------------------------------ persistence
    def settings(self) -> dict:
        """``inverse_config.json`` (written by ``save_pretrained``, read by ``from_pretrained``)."""
        return self.inverse_config()

    @classmethod
    def accepts_folder_of(cls, folder_cls: type) -> bool:
        """Any pipeline folder: a plain ``DiffusionSystem.export`` folder loads with the mode inferred."""
        return issubclass(folder_cls, VideoDiffusionPipeline)

    # ------------------------------------------------------------------ planning
    def _plan(self, video: Tensor, passes, processing_size, window: int, overlap: int, mask: bool,
              zero_background: bool = True) -> _Plan:
        if not torch.is_tensor(video) or video.ndim != 5 or video.shape[2] != 3:
            raise NeuralRenderError(f"video must be a (B, T, 3, H, W) tensor, got {tuple(getattr(video, 'shape', ()))}")
        if not video.is_floating_point():
            raise NeuralRenderError(f"video must be float (linear radiance), got {video.dtype}")
        b, t, _, h, w = video.shape
        if b < 1 or t < 1:
            raise NeuralRenderError(f"video has no frames (shape {tuple(video.shape)})")
        out_passes = list(self.passes) if passes is None else [str(p) for p in passes]
        unknown = [p for p in out_passes if p not in self.passes and p != "mask"]
        if unknown or not out_passes:
            raise NeuralRenderError(f"passes {unknown or out_passes} not predicted by this model (it predicts "
                                    f"{self.passes})")
        out_passes = [p for p in self.passes if p in out_passes and p != "mask"]
        run = set(out_passes)
        if mask or "mask" in (passes or ()):
            run.add("mask" if "mask" in self.passes else "depth" if "depth" in self.passes else None)
        run.discard(None)
        proc = self.processing_shape(h, w, processing_size)
        padded, latent_t, spans = fit_windows(t, self.codec, self.backbone.frame_rule, window, overlap)
        return _Plan(b, t, padded, latent_t, (h, w), proc, (proc[0] // self.codec.spatial_factor,
                     proc[1] // self.codec.spatial_factor), spans, [p for p in self.passes if p in run], out_passes,
                     bool(zero_background))

    def _video_span(self, plan: _Plan, a: int, c: int) -> Span:
        return video_span(a, c, int(getattr(self.codec, "temporal_factor", 1)), plan.frames)

    # ------------------------------------------------------------------ condition
    @torch.no_grad()
    def _resized(self, video: Tensor, plan: _Plan) -> Tensor:
        """The video on the pipeline's device at the processing size, resized chunk by chunk as :meth:`_condition`
        does (so encoding it gives the same latents)."""
        (ph, pw), device = plan.proc, self.device
        if tuple(video.shape[-2:]) == (ph, pw) and video.device == device and video.dtype == torch.float32:
            return video
        temporal = int(getattr(self.codec, "temporal_factor", 1)) != 1
        chunk = plan.frames if temporal else max(b - a for a, b in plan.spans)
        out = torch.empty((plan.batch, plan.frames, 3, ph, pw), dtype=torch.float32, device=device)
        for a in range(0, plan.frames, chunk):
            out[:, a:a + chunk] = resize_video(video[:, a:a + chunk].to(device, torch.float32), ph, pw)
        return out

    @torch.no_grad()
    def _condition(self, video: Tensor, plan: _Plan, filter_sigma: float = 0.0) -> Tensor:
        """(B, T', Cc, h, w) condition latents, encoded chunk by chunk for frame-independent codecs; with
        ``filter_sigma`` > 0 of the video pixel-filtered at the processing size (the skip passes' base)."""
        device, (ph, pw) = self.device, plan.proc

        def encode(frames: Tensor) -> Tensor:
            frames = resize_video(frames.to(device, torch.float32), ph, pw)
            return self.codec.encode(rgb_to_model(pixel_filter(frames, filter_sigma)))

        if int(getattr(self.codec, "temporal_factor", 1)) == 1:
            chunk = max(b - a for a, b in plan.spans)
            cond = None
            for a in range(0, plan.frames, chunk):
                z = encode(video[:, a:a + chunk])
                if cond is None:
                    cond = z.new_empty((plan.batch, plan.frames, *z.shape[2:]))
                cond[:, a:a + z.shape[1]] = z
        else:
            frames = video
            if plan.padded_frames > plan.frames:
                frames = torch.cat([video, video[:, -1:].expand(-1, plan.padded_frames - plan.frames, -1, -1, -1)], 1)
            cond = encode(frames)
        if cond.shape[1] < plan.latent_frames:
            cond = torch.cat([cond, cond[:, -1:].expand(-1, plan.latent_frames - cond.shape[1], -1, -1, -1)], 1)
        return cond

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample_latents(self, video: Tensor, passes: Sequence[str] | None = None, num_steps: int | None = None,
                       processing_size=None, window: int = INVERSE_WINDOW, overlap: int = INVERSE_OVERLAP,
                       generator: torch.Generator | None = None, seed: int | None = 0, progress: bool = False,
                       guidance_scale: float = 1.0, mask: bool = True, zero_background: bool = True,
                       callback=None) -> tuple[dict[str, Tensor], _Plan]:
        """Denoised latents {pass: (B, T', C, h, w)} of the passes the request needs, and the plan. callback: the
        ``callback(step, sigma, x)`` of :func:`~neural_render.pipelines.windows.windowed_sample`, per sampling run."""
        plan = self._plan(video, passes, processing_size, window, overlap, mask, zero_background)
        steps = int(num_steps or self.default_steps())
        if self.skip_filter_sigma and any(p in plan.run_passes for p in self.skip_passes):
            video = self._resized(video, plan)  # resized once for both encodings (condition and skip base)
        cond = self._condition(video, plan)
        c = int(self.codec.latent_channels)
        h, w = plan.latent_hw
        device = self.device

        def run(channels: int, context: Tensor | None, gen, desc: str) -> Tensor:
            def predict(x_window: Tensor, level: Tensor, a: int, b: int) -> Tensor:
                return self.denoiser.guided_x0(self.backbone, x_window, level, cond[:, a:b], context, guidance_scale)

            return windowed_sample(self.denoiser, predict, (plan.batch, plan.latent_frames, channels, h, w),
                                   plan.spans, steps, generator=gen, device=device, progress=progress, desc=desc,
                                   callback=callback)

        def gen_for(index: int):
            if generator is not None:
                return generator
            return torch.Generator().manual_seed(int(seed or 0) + 7919 * index)

        latents: dict[str, Tensor] = {}
        if self.mode == "joint":
            z = run(len(self.passes) * c, None, gen_for(0), "joint")
            for i, name in enumerate(self.passes):
                if name in plan.run_passes:
                    latents[name] = z[:, :, i * c:(i + 1) * c]
        else:
            for name in plan.run_passes:
                ids = self.pass_embedding.ids([name] * plan.batch, device=device)
                latents[name] = run(c, self.pass_embedding(ids), gen_for(self.passes.index(name)), name)
        skipped = [name for name in self.skip_passes if name in latents]
        if skipped:  # the model predicted these passes relative to the (pixel-filtered) input video's latents
            base = self._condition(video, plan, self.skip_filter_sigma) if self.skip_filter_sigma else cond
            for name in skipped:
                latents[name] = latents[name] + base
        return latents, plan

    # ------------------------------------------------------------------ decoding
    @torch.no_grad()
    def decode_chunks(self, latents: dict[str, Tensor], plan: _Plan, depth_scale=None
                      ) -> Iterator[tuple[int, int, GBuffer]]:
        """Yield (start, stop, GBuffer chunk (B, stop - start, C, H, W) on the CPU) in video frames, decoding
        ``latents`` chunk by chunk (whole for temporal codecs), resized to the input size, unpacked and masked."""
        scale = depth_scales(depth_scale, plan.batch)
        f = int(getattr(self.codec, "temporal_factor", 1))
        chunk = max(b - a for a, b in plan.spans) if f == 1 else plan.latent_frames
        (height, width) = plan.size
        for a in range(0, plan.latent_frames, chunk):
            c = min(plan.latent_frames, a + chunk)
            start, stop = self._video_span(plan, a, c)
            if stop <= start:
                continue
            values = {}
            for name, z in latents.items():
                pixels = self.codec.decode(z[:, a:c])[:, :stop - start].float().cpu()
                packed = resize_video(pixels, height, width).clamp(-1.0, 1.0)
                values[name] = unpack_pass(name, packed, 1.0)  # depth: relative, scaled in _finish
            yield start, stop, self._finish(values, plan, scale)

    def _finish(self, values: dict[str, Tensor], plan: _Plan, scale: Tensor) -> GBuffer:
        return assemble_gbuffer(values, plan.out_passes, scale, self.mask_threshold, plan.zero_background)

    # ------------------------------------------------------------------ entry points
    def stream(self, video: Tensor, depth_scale=None, **kwargs) -> Iterator[tuple[int, int, GBuffer]]:
        """Like :meth:`__call__` (same keywords but ``return_latents``) yielding (start, stop, GBuffer chunk) in video
        frames, so the full output is never held in memory."""
        with torch.no_grad():
            latents, plan = self.sample_latents(video, **kwargs)
        yield from self.decode_chunks(latents, plan, depth_scale)

    @torch.no_grad()
    def __call__(self, video: Tensor, passes: Sequence[str] | None = None, num_steps: int | None = None,
                 processing_size=None, window: int = INVERSE_WINDOW, overlap: int = INVERSE_OVERLAP,
                 generator: torch.Generator | None = None, seed: int | None = None, progress: bool = True,
                 guidance_scale: float = 1.0, mask: bool = True, depth_scale=None, return_latents: bool = False,
                 zero_background: bool = True, output_type: str = "pt", callback_on_step_end=None,
                 callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",), return_dict: bool = True):
        """Estimate G-buffers of ``video`` (B, T, 3, H, W) linear float32 (any T >= 1, H, W >= :attr:`stride`).

        passes: subset of :attr:`passes` (default all); num_steps: sampler steps (default :meth:`default_steps`);
        processing_size: int (longer side) | (h, w) | None (:meth:`default_processing_size`: the folder's processing
        size, else the model's native size, else the input size); window / overlap: video frames per window
        and overlap (converted to latent frames, fitted to the codec and backbone frame rules); generator, or seed
        (per-pass seeds ``seed + 7919 * pass index``; neither: seed 0); mask: add the foreground mask (see module
        doc); zero_background: set every pass to 0 outside that mask (default; False keeps the predicted values);
        depth_scale: (B,) or float multiplying the relative depth (default 1); output_type, callback_on_step_end,
        return_dict: module doc. Returns :class:`InverseRenderingOutput`.
        """
        check_output_type(output_type)
        callback = step_callback(self, callback_on_step_end, callback_on_step_end_tensor_inputs)
        latents, plan = self.sample_latents(video, passes, num_steps, processing_size, window, overlap, generator,
                                            0 if seed is None else seed, progress, guidance_scale, mask,
                                            zero_background, callback)
        out: dict[str, Tensor] = {}
        for start, stop, chunk in self.decode_chunks(latents, plan, depth_scale):
            for name, x in chunk.passes.items():
                if name not in out:
                    out[name] = torch.empty((plan.batch, plan.frames, *x.shape[2:]), dtype=torch.float32)
                out[name][:, start:stop] = x
        windows = [self._video_span(plan, a, c) for a, c in plan.spans]
        result = InverseRenderingOutput(to_output_type(GBuffer(**out), output_type),
                                        to_output_type(depth_scales(depth_scale, plan.batch), output_type), plan.proc,
                                        windows, to_output_type(latents, output_type) if return_latents else None)
        return result if return_dict else result.to_tuple()
