"""Relighting and material editing of a video: inverse renderer -> (new env | edited G-buffers) -> forward renderer.

    pipe = RelightPipeline.from_pretrained()                     # shipped inverse_tiny + forward_tiny
    out = pipe(video, [env_a, env_b])                            # out.videos[k]: (1, T, 3, H, W) linear
    edit = pipe.edit(video, mask, {"roughness": 0.1, "basecolor": (0.6, 0.05, 0.01)}, env)

A ``diffusers.DiffusionPipeline`` whose components are the two pipelines. ``__call__`` decomposes the video
(B, T, 3, H, W) linear radiance once (the inverse pipeline's G-buffers incl. its mask; depth is relative, which the
forward model normalises away) unless G-buffers are given, then renders it under each env map of ``envs`` (none:
decomposition only) with the forward pipeline using the clip's camera (identity poses for a plain video: a static
camera looking along -Z, so the env rotation alone places the light); ``decompose`` and ``relight`` are the earlier
names, kept as aliases of it. Material edits (:func:`apply_material_edit`)
set basecolor / roughness / metallic inside a soft mask (mask in [0, 1] blends old and new values); the result is
rendered under ``env`` and, with ``keep_outside`` (default), composited over the input video outside the mask, so
unedited pixels stay exactly the input.

Sampling settings: ``num_steps`` goes to both models (None: each its own default, e.g. 1 for the toolkit's x0
forward model, 20 Euler steps for a DiffusionRenderer one); ``processing_size`` is the inverse model's and, for a
forward model that takes one (DiffusionRenderer's), the forward model's too (the toolkit's renders at the input
size); ``window`` / ``overlap`` are the inverse model's (None: its own defaults, 16 / 8 for the toolkit's, 24 / 6
for DiffusionRenderer's); the forward model uses its own.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from diffusers import DiffusionPipeline
from diffusers.utils import BaseOutput
from torch import Tensor

from neural_render.errors import NeuralRenderError
from neural_render.pipelines.base import check_output_type, make_generator, to_output_type
from neural_render.pipelines.forward_options import forward_options
from neural_render.types import Camera, EnvMap, GBuffer

EDITABLE = {"basecolor": 3, "roughness": 1, "metallic": 1}


@dataclass
class RelightOutput(BaseOutput):
    """gbuffer: the inverse estimate (B, T, C, H, W) (or the given G-buffers); videos: one (B, T, 3, H, W) linear
    render per env map (empty without env maps); processing_size: (h, w) the inverse model ran at (None when the
    G-buffers were given)."""

    gbuffer: GBuffer
    videos: list[Tensor]
    processing_size: tuple[int, int] | None = None


@dataclass
class EditOutput(BaseOutput):
    """gbuffer: estimate; edited: edited G-buffer; rendered: forward render of ``edited`` (B, T, 3, H, W) linear;
    video: ``rendered`` composited over the input outside the mask (== rendered without keep_outside);
    processing_size: (h, w) the inverse model ran at (None when the G-buffers were given)."""

    gbuffer: GBuffer
    edited: GBuffer
    rendered: Tensor
    video: Tensor
    processing_size: tuple[int, int] | None = None


def check_video(video: Tensor, source: str | None = None) -> None:
    if not isinstance(video, Tensor) or video.ndim != 5 or video.shape[2] != 3 or video.dtype != torch.float32:
        shape = tuple(video.shape) if isinstance(video, Tensor) else type(video).__name__
        raise NeuralRenderError(f"video must be float32 (B, T, 3, H, W), got {shape}", source)
    if not bool(torch.isfinite(video).all()) or float(video.min()) < 0:
        raise NeuralRenderError("video must hold finite non-negative linear radiance", source)


def static_camera(video: Tensor, fov_x_degrees: float = 60.0) -> Camera:
    """Identity poses (a static camera at the origin looking along -Z) for a (B, T, 3, H, W) video."""
    b, t, _, h, w = video.shape
    return Camera.from_fov(fov_x_degrees, w, h, torch.eye(4).repeat(b, t, 1, 1))


def check_mask(mask: Tensor, video: Tensor, source: str | None = None) -> Tensor:
    """Edit mask (B or 1, T or 1, 1, H, W) in [0, 1] matching the video's size -> broadcast (B, T, 1, H, W)."""
    b, t, _, h, w = video.shape
    if not isinstance(mask, Tensor) or mask.ndim != 5 or mask.shape[2] != 1:
        shape = tuple(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__
        raise NeuralRenderError(f"mask must be (B, T, 1, H, W), got {shape}", source)
    if tuple(mask.shape[-2:]) != (h, w):
        raise NeuralRenderError(f"mask is {mask.shape[-1]}x{mask.shape[-2]} but the video is {w}x{h}", source)
    if mask.shape[0] not in (1, b) or mask.shape[1] not in (1, t):
        raise NeuralRenderError(f"mask has {mask.shape[1]} frames, the video {t} (use 1 frame for all)", source)
    if not bool(torch.isfinite(mask).all()) or float(mask.min()) < 0 or float(mask.max()) > 1:
        raise NeuralRenderError("mask values must lie in [0, 1]", source)
    return mask.float().expand(b, t, 1, h, w)


def apply_material_edit(gbuffer: GBuffer, mask: Tensor, edits: Mapping[str, float | Sequence[float]]) -> GBuffer:
    """Set passes inside ``mask`` (B, T, 1, H, W) in [0, 1]: new = mask * value + (1 - mask) * old.

    edits: {"basecolor": (r, g, b) linear in [0, 1], "roughness": x, "metallic": x}; unknown names, wrong
    lengths or values outside [0, 1] raise NeuralRenderError. Passes absent from ``gbuffer`` are created from
    the value inside the mask and 0 outside (their presence then tells the forward model they are given).
    """
    if not edits:
        raise NeuralRenderError("no material edit given (use basecolor, roughness and/or metallic)")
    b, t, h, w = gbuffer.shape
    if tuple(mask.shape) != (b, t, 1, h, w):
        raise NeuralRenderError(f"mask {tuple(mask.shape)} does not match the G-buffer {(b, t, 1, h, w)}")
    changes = {}
    for name, value in edits.items():
        if name not in EDITABLE:
            raise NeuralRenderError(f"cannot edit {name!r}; editable: {sorted(EDITABLE)}")
        values = [float(v) for v in (value if isinstance(value, (list, tuple)) else [value])]
        if len(values) == 1 and EDITABLE[name] == 3:
            values = values * 3
        if len(values) != EDITABLE[name] or not all(0.0 <= v <= 1.0 for v in values):
            raise NeuralRenderError(f"{name} needs {EDITABLE[name]} value(s) in [0, 1], got {value!r}")
        target = torch.tensor(values, dtype=torch.float32).view(1, 1, -1, 1, 1)
        old = getattr(gbuffer, name)
        old = torch.zeros(b, t, EDITABLE[name], h, w) if old is None else old
        changes[name] = mask * target + (1.0 - mask) * old
    return gbuffer.replace(**changes)


class RelightPipeline(DiffusionPipeline):
    """Inverse + forward pipelines (module docstring). ``inverse``: InverseRenderingPipeline (None: G-buffers must be
    given); ``forward``: ForwardPipeline (None: decomposition only)."""

    _optional_components = ["inverse", "forward"]

    def __init__(self, inverse=None, forward=None):
        super().__init__()
        self.register_modules(inverse=inverse, forward=forward)

    def to(self, device) -> RelightPipeline:
        for pipe in (self.inverse, self.forward):
            if pipe is not None:
                pipe.to(device)
        return self

    @classmethod
    def from_pretrained(cls, inverse_dir: str | os.PathLike | None = None, forward_dir: str | os.PathLike | None = None,
                        device: str | torch.device | None = None) -> RelightPipeline:
        """Load both pipelines (defaults: the shipped data/models/inverse_tiny and data/models/forward_tiny)."""
        from neural_render.data_assets import data_dir
        from neural_render.pipelines.forward import ForwardPipeline
        from neural_render.pipelines.inverse import InverseRenderingPipeline

        inverse_dir = inverse_dir or data_dir() / "models" / "inverse_tiny"
        forward_dir = forward_dir or data_dir() / "models" / "forward_tiny"
        return cls(InverseRenderingPipeline.from_pretrained(inverse_dir, device=device),
                   ForwardPipeline.from_pretrained(forward_dir, device=device))

    @torch.no_grad()
    def __call__(self, video: Tensor, envs: Sequence[EnvMap] | None = None, camera: Camera | None = None,
                 gbuffer: GBuffer | None = None, generator: torch.Generator | None = None, seed: int | None = None,
                 domain: str = "real", window: int | None = None, overlap: int | None = None,
                 progress: bool = False, processing_size=None, output_type: str = "pt",
                 return_dict: bool = True, num_steps: int | None = None):
        """Decompose ``video`` (unless ``gbuffer`` is given) and render it under every env map of ``envs``.

        video: (B, T, 3, H, W) float32 linear radiance; envs: EnvMaps (None or empty: decomposition only); camera:
        the clip's Camera (default :func:`static_camera`); generator or seed (default 0): the inverse model's noise,
        and each render's is a generator seeded with the same seed (a given generator is used as is, in turn);
        window / overlap: VIDEO frames of the inverse model's windows (None: its defaults); processing_size: the
        inverse model's (int longer side | (h, w) | None = its native size, else the input's) and that of a forward
        model that takes one; num_steps: both models' steps (None: each its own). Returns :class:`RelightOutput`.
        """
        check_output_type(output_type)
        check_video(video)
        envs = list(envs or [])
        if not all(isinstance(e, EnvMap) for e in envs):
            raise NeuralRenderError("relight needs EnvMaps")
        if envs:
            if self.forward is None:
                raise NeuralRenderError("this relight pipeline has no forward model")
            camera = static_camera(video) if camera is None else camera
            _check_camera(camera, video)
        proc = None
        if gbuffer is None:
            if self.inverse is None:
                raise NeuralRenderError("this relight pipeline has no inverse model: pass the G-buffers")
            windows = {k: v for k, v in (("window", window), ("overlap", overlap)) if v is not None}
            out = self.inverse(video, generator=generator, seed=None if generator is not None else (seed or 0),
                               progress=progress, processing_size=processing_size, num_steps=num_steps, **windows)
            gbuffer, proc = out.gbuffer, out.processing_size
        _check_gbuffer(gbuffer, video)
        videos = []
        if envs:
            options = forward_options(self.forward, num_steps, processing_size)
            videos = [self.forward(gbuffer, camera, env, generator=make_generator(generator, seed, 0), domain=domain,
                                   progress=progress, **options).rgb for env in envs]
        result = RelightOutput(to_output_type(gbuffer, output_type), to_output_type(videos, output_type), proc)
        return result if return_dict else result.to_tuple()

    def decompose(self, video: Tensor, seed: int = 0, window: int | None = None,
                  overlap: int | None = None, progress: bool = False, processing_size=None,
                  num_steps: int | None = None) -> GBuffer:
        """Estimated G-buffers (B, T, C, H, W) of a linear video, mask included (at the input size; the model runs at
        ``processing_size``: int longer side | (h, w) | None = the inverse model's native size, else the input's).
        The earlier name of ``self(video, seed=..., ...).gbuffer`` (kept as an alias)."""
        return self(video, seed=seed, window=window, overlap=overlap, progress=progress,
                    processing_size=processing_size, num_steps=num_steps).gbuffer

    def relight(self, video: Tensor, envs: Sequence[EnvMap], camera: Camera | None = None,
                gbuffer: GBuffer | None = None, seed: int = 0, domain: str = "real",
                progress: bool = False, processing_size=None, num_steps: int | None = None) -> RelightOutput:
        """Render ``video`` under every env map of ``envs`` (decomposing it once unless ``gbuffer`` is given, the
        inverse model running at ``processing_size``, see :meth:`decompose`; ``num_steps`` and ``processing_size``
        as in ``__call__``). The earlier name of ``__call__`` with at least one env map (kept as an alias)."""
        if not envs or not all(isinstance(e, EnvMap) for e in envs):
            check_video(video)
            raise NeuralRenderError("relight needs at least one EnvMap")
        return self(video, envs, camera=camera, gbuffer=gbuffer, seed=seed, domain=domain, progress=progress,
                    processing_size=processing_size, num_steps=num_steps)

    def edit(self, video: Tensor, mask: Tensor, edits: Mapping[str, float | Sequence[float]], env: EnvMap,
             camera: Camera | None = None, keep_outside: bool = True, gbuffer: GBuffer | None = None, seed: int = 0,
             domain: str = "real", progress: bool = False, processing_size=None,
             num_steps: int | None = None) -> EditOutput:
        """Decompose (unless ``gbuffer`` is given; the inverse model at ``processing_size``, see :meth:`decompose`),
        edit the materials inside ``mask`` and re-render under ``env`` (``num_steps`` and ``processing_size`` as in
        ``__call__``)."""
        check_video(video)
        mask = check_mask(mask, video)
        camera = static_camera(video) if camera is None else camera
        _check_camera(camera, video)
        decomposed = self(video, gbuffer=gbuffer, seed=seed, progress=progress, processing_size=processing_size,
                          num_steps=num_steps)
        gbuffer, proc = decomposed.gbuffer, decomposed.processing_size
        edited = apply_material_edit(gbuffer, mask, edits)
        rendered = self.forward(edited, camera, env, generator=torch.Generator().manual_seed(seed), domain=domain,
                                progress=progress, **forward_options(self.forward, num_steps, processing_size)).rgb
        composite = mask * rendered + (1.0 - mask) * video.clamp(0.0, 1.0) if keep_outside else rendered
        return EditOutput(gbuffer, edited, rendered, composite, proc)


def _check_gbuffer(gbuffer: GBuffer, video: Tensor) -> None:
    if gbuffer.shape != (video.shape[0], video.shape[1], video.shape[3], video.shape[4]):
        raise NeuralRenderError(f"G-buffer (B, T, H, W) = {gbuffer.shape} does not match the video "
                                f"{(video.shape[0], video.shape[1], video.shape[3], video.shape[4])}")


def _check_camera(camera: Camera, video: Tensor) -> None:
    b, t, _, h, w = video.shape
    if (camera.intrinsics.shape[0], camera.num_frames, camera.height, camera.width) != (b, t, h, w):
        raise NeuralRenderError(f"camera (B={camera.intrinsics.shape[0]}, T={camera.num_frames}, {camera.width}x"
                                f"{camera.height}) does not match the video (B={b}, T={t}, {w}x{h})")
