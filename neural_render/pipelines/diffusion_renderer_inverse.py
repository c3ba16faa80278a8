"""Inverse rendering with a DiffusionRenderer checkpoint, in this toolkit's layout: video -> GBuffer.

    pipe = load_for_command("diffusion_renderer-inverse-svd", "inverse")   # pipelines/diffusion_renderer.py
    out = pipe(video)               # video (B, T, 3, H, W) linear float32, any T, any H x W
    out.gbuffer                     # GBuffer at the input size: basecolor, normal, depth, roughness, metallic, mask

What the toolkit adds around the released model (:class:`~.diffusion_renderer.DiffusionRendererPipeline` does the
sampling): any length (overlapping windows, default 24 frames with 6 shared, blended at every Euler step), any
aspect ratio (processing size from :func:`~.diffusion_renderer_values.processing_shape`, outputs resized back) and
the toolkit's units (:mod:`.diffusion_renderer_values`). One sampling run per pass, as in the reference (the pass
id selects the G-buffer); the video's condition latents are encoded once and shared by every pass. Per-pass noise
comes from ``generator`` (one for every pass) or from generators seeded ``seed + 7919 * pass index`` (default seed
0), as the toolkit's inverse pipeline does. Depth is relative (1 = the farthest visible surface of the clip) times
``depth_scale``. DiffusionRenderer predicts no mask: the returned ``mask`` is 1 everywhere (every pixel is a
surface), so ``zero_background`` changes nothing.

Attributes read by the commands (``neural-render inverse`` / ``autolabel``, the relight pipeline): ``mode``,
``passes``, ``native_size`` (512: the shorter side the model was trained at), ``processing_size`` (the default of
calls without one; None: the reference's rule),
``info``, ``is_trained``, ``default_steps()``, ``default_processing_size()``, ``processing_shape(h, w, size)``,
``stride`` (64).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
from torch import Tensor

from neural_render.errors import NeuralRenderError
from neural_render.pipelines.diffusion_renderer_command import DiffusionRendererCommandPipeline
from neural_render.pipelines.diffusion_renderer_values import pass_from_model, processing_shape, video_to_model
from neural_render.pipelines.inverse import InverseRenderingOutput
from neural_render.pipelines.windows import plan_windows
from neural_render.types import GBuffer
from neural_render.types.gbuffer import PREDICTED_PASSES

#: the reference inference config's overlap (frames shared by neighbouring 24-frame windows)
DEFAULT_OVERLAP = 6


def check_video(video, source: str | None = None) -> None:
    """(B, T, 3, H, W) floating-point, finite (NeuralRenderError otherwise)."""
    if not torch.is_tensor(video) or video.ndim != 5 or video.shape[2] != 3 or not video.is_floating_point():
        got = tuple(video.shape) if torch.is_tensor(video) else type(video).__name__
        raise NeuralRenderError(f"video must be a float (B, T, 3, H, W) tensor of linear radiance, got {got}", source)
    if min(video.shape[:2]) < 1 or min(video.shape[-2:]) < 1:
        raise NeuralRenderError(f"video has no frames or pixels (shape {tuple(video.shape)})", source)
    if not bool(torch.isfinite(video).all()):
        raise NeuralRenderError("video holds NaN or inf", source)


def depth_scales(depth_scale, batch: int) -> Tensor:
    """None | float | (B,) -> (B,) float32 positive scales (NeuralRenderError otherwise)."""
    scale = torch.ones(batch) if depth_scale is None else torch.as_tensor(depth_scale, dtype=torch.float32).cpu()
    if scale.numel() not in (1, batch) or not bool((scale > 0).all()):
        raise NeuralRenderError(f"depth_scale must be one or {batch} positive numbers, got {scale.tolist()}")
    return scale.reshape(-1).expand(batch).clone()


def as_output_type(value, output_type: str):
    """Tensors (also in GBuffers, dicts, lists) -> numpy for "np"; unchanged for "pt"."""
    if output_type not in ("pt", "np"):
        raise NeuralRenderError(f"output_type must be 'pt' or 'np', got {output_type!r}")
    if output_type == "pt" or value is None:
        return value
    if torch.is_tensor(value):
        return value.detach().float().cpu().numpy()
    if isinstance(value, GBuffer):
        return {k: as_output_type(v, output_type) for k, v in value.passes.items()}
    if isinstance(value, dict):
        return {k: as_output_type(v, output_type) for k, v in value.items()}
    if isinstance(value, list):
        return [as_output_type(v, output_type) for v in value]
    return value


def as_tuple(output) -> tuple:
    """The fields of an output dataclass in order (``return_dict=False``)."""
    return tuple(getattr(output, f.name) for f in dataclasses.fields(output))


class DiffusionRendererInversePipeline(DiffusionRendererCommandPipeline):
    """Video -> G-buffers with a DiffusionRenderer inverse checkpoint (module doc). ``renderer``: a
    :class:`~neural_render.pipelines.diffusion_renderer.DiffusionRendererPipeline` of an inverse folder."""

    mode = "per_pass"
    KIND = "inverse"

    def __init__(self, renderer, window: int | None = None, overlap: int = DEFAULT_OVERLAP,
                 num_steps: int | None = None, info: dict | None = None, processing_size=None):
        super().__init__()
        self._setup(renderer, window, overlap, num_steps, info, processing_size)
        self.passes = list(PREDICTED_PASSES)  # the reference's ids 0..4 (diffuse_albedo is not a toolkit pass)

    def default_processing_size(self):
        return self.processing_size if self.processing_size is not None else self.native_size

    def processing_shape(self, height: int, width: int, processing_size=None) -> tuple[int, int]:
        """(h, w) a (height, width) video runs at: None = shorter side ``native_size``; N = longer side; (h, w)."""
        size = processing_size if processing_size is not None else self.processing_size
        return processing_shape(height, width, self.stride, self.native_size, size)

    # -- inference -------------------------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(self, video: Tensor, passes: Sequence[str] | None = None, num_steps: int | None = None,
                 processing_size=None, window: int | None = None, overlap: int | None = None,
                 generator: torch.Generator | None = None, seed: int | None = None, progress: bool = False,
                 guidance_scale: float | None = None, mask: bool = True, depth_scale=None,
                 return_latents: bool = False, zero_background: bool = True, output_type: str = "pt",
                 callback_on_step_end=None, callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
                 return_dict: bool = True, decode_chunk_size: int | None = None):
        """G-buffers of ``video`` (B, T, 3, H, W) linear float32 at its own size (module doc).

        passes: subset of :attr:`passes` (default all; ``mask`` may be named); num_steps: Euler steps (default 20);
        processing_size: None (shorter side 512, the reference's rule) | N (longer side) | (h, w); window /
        overlap: frames per window and shared (default 24 / 6); generator or seed; guidance_scale: default 1 (no
        guidance, as the reference); depth_scale: (B,) or float multiplying the relative depth; return_latents:
        also return {pass: latents}; output_type "pt" | "np"; decode_chunk_size: frames the VAE decodes (and
        encodes) at once (default 8). Returns :class:`~neural_render.pipelines.inverse.InverseRenderingOutput`."""
        if callback_on_step_end is not None:
            raise NeuralRenderError("callback_on_step_end is not supported by the DiffusionRenderer pipelines")
        as_output_type(None, output_type)
        check_video(video)
        b, t, _, h, w = video.shape
        wanted = list(self.passes) if passes is None else [str(p) for p in passes]
        unknown = [p for p in wanted if p not in self.passes and p != "mask"]
        if unknown or not wanted:
            raise NeuralRenderError(f"passes {unknown or wanted} not predicted by this model (it predicts "
                                    f"{self.passes})")
        run = [p for p in self.passes if p in wanted]
        scale = depth_scales(depth_scale, b)
        steps = int(num_steps or self.default_steps())
        window = int(window or self.window)
        overlap = self.overlap if overlap is None else int(overlap)
        if window < 1 or not 0 <= overlap < window:
            raise NeuralRenderError(f"need window >= 1 and 0 <= overlap < window, got {window}, {overlap}")
        if steps < 1:
            raise NeuralRenderError(f"num_steps must be >= 1, got {steps}")
        ph, pw = self.processing_shape(h, w, processing_size)
        chunk = int(decode_chunk_size or self.renderer.settings.decode_chunk_size)
        r = self.renderer
        cond = r.encode_inverse(video_to_model(video.to(r.device), ph, pw), encode_chunk_size=chunk)
        tokens = r.empty_tokens(b)
        out, latents = {}, {}
        for name in run:
            gen = generator if generator is not None else torch.Generator().manual_seed(
                int(seed or 0) + 7919 * self.passes.index(name))
            z = r.denoise(cond, tokens, r.pass_ids(name, b), steps, guidance_scale, gen, None, window, overlap,
                          progress)
            out[name] = pass_from_model(name, r.decode(z, chunk).cpu(), h, w, scale)
            if return_latents:
                latents[name] = z.float().cpu()
        if mask or "mask" in wanted:
            out["mask"] = torch.ones(b, t, 1, h, w)
        spans = plan_windows(t, window, overlap)
        result = InverseRenderingOutput(as_output_type(GBuffer(**out), output_type), as_output_type(scale, output_type),
                                        (ph, pw), spans, as_output_type(latents, output_type) if return_latents
                                        else None)
        return result if return_dict else as_tuple(result)
