"""Inputs of the anchor-propagation pair pipeline: source clips, control maps (edges | depth), image enhancers.

Source clip (:func:`read_source`): a clip folder whose rgb is the RENDERED video (game engine / our renderer), with
any G-buffer passes, camera and env map; or a proxy clip of ``neural-render synth --proxy`` (rendered rgb in
``rendered/``, G-buffers, env and the path-traced rgb in the clip itself).

Control maps (:func:`control_video`), the propagation model's per-frame condition, (B, T, 3, H, W) in [-1, 1]:
``"edges"``: Canny edges (kornia, :func:`neural_render.metrics.edges.canny_edges`) of the rendered frames in
display space, 1 on edges, -1 elsewhere; ``"depth"``: the depth pass / its per-clip scale (farthest visible
surface = 1, no surface = 0) mapped to [-1, 1]. Both repeated over 3 channels (one codec for everything).

Image enhancers (:class:`ImageEnhancer`: ``enhance(source, frames) -> (K, 3, H, W)`` linear radiance) make the
realistic ANCHOR frames. Built in (:func:`make_enhancer`):

* ``forward[:DIR]`` -- the project's forward renderer (:class:`neural_render.pipelines.forward.ForwardPipeline`,
  default ``data/models/forward_tiny``) fed the clip's G-buffers, camera and env map; it renders the whole clip and
  the anchor frames are taken from it. Needs G-buffers and an env map in the source clip.
* ``path-traced`` -- the proxy benchmark's anchor from the data engine: the Mitsuba path-traced frames of a
  ``synth --proxy`` clip (an ORACLE: the ground truth at the anchor frames, used to measure propagation alone).
* ``img2img:DIR`` -- any local diffusers image-to-image pipeline folder (``AutoPipelineForImage2Image``, loaded
  with ``local_files_only``; never downloads), run per anchor frame with a prompt and strength. Not exercised with
  real weights here (none are shipped or downloadable); loading errors are NeuralRenderError.
* ``identity`` -- the rendered frames themselves (ablation / tests).
Plug your own: any object with ``name`` and ``enhance`` passed to
:func:`neural_render.pipelines.sim2real_data.make_pairs`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor

from neural_render.errors import NeuralRenderError
from neural_render.types import Camera, EnvMap, GBuffer

CONDITIONINGS = ("edges", "depth")
RENDERED_DIR = "rendered"
DEFAULT_FORWARD_MODEL = "data/models/forward_tiny"


@dataclass
class SourceClip:
    """rendered: (1, T, 3, H, W) linear; gbuffer: passes or empty; camera; env or None; real: path-traced rgb
    (1, T, 3, H, W) of a proxy clip or None; clip_dir: where it came from; meta: the clip's ClipMeta."""

    rendered: Tensor
    gbuffer: GBuffer
    camera: Camera
    env: EnvMap | None
    real: Tensor | None
    clip_dir: Path
    meta: object

    @property
    def num_frames(self) -> int:
        return int(self.rendered.shape[1])


def read_source(clip_dir: str | os.PathLike) -> SourceClip:
    """Read a rendered clip folder or a ``synth --proxy`` clip (module doc)."""
    from neural_render.io.clip import read_clip, read_clip_envmap

    root = Path(clip_dir)
    clip = read_clip(root)
    env = read_clip_envmap(root, clip.meta) if clip.meta.envmap is not None else None
    if (root / RENDERED_DIR / "meta.json").is_file():
        rendered = read_clip(root / RENDERED_DIR, passes=[]).rgb
        if rendered is None or clip.rgb is None or rendered.shape != clip.rgb.shape:
            raise NeuralRenderError("proxy clip: rendered/ rgb missing or not the size and length of the clip", root)
        return SourceClip(rendered, clip.gbuffer, clip.camera, env, clip.rgb, root, clip.meta)
    if clip.rgb is None:
        raise NeuralRenderError("clip has no rgb (the rendered video to translate)", root)
    return SourceClip(clip.rgb, clip.gbuffer, clip.camera, env, None, root, clip.meta)


# ----------------------------------------------------------------------------------------------- control maps
def control_video(rendered: Tensor, depth: Tensor | None = None, conditioning: str = "edges",
                  canny: tuple[float, float, float] | None = None) -> Tensor:
    """(B, T, 3, H, W) control in [-1, 1] from the rendered clip (module doc). depth: (B, T, 1, H, W) for "depth";
    canny: (low, high, sigma) thresholds of the edge detector (default metrics.edges constants)."""
    from neural_render.metrics.edges import (
        CANNY_HIGH,
        CANNY_LOW,
        CANNY_SIGMA,
        canny_edges,
    )
    from neural_render.render.tonemap import linear_to_srgb

    if conditioning == "edges":
        low, high, sigma = canny if canny is not None else (CANNY_LOW, CANNY_HIGH, CANNY_SIGMA)
        x = canny_edges(linear_to_srgb(rendered.clamp(0.0, 1.0)), low, high, sigma).to(rendered.dtype)
    elif conditioning == "depth":
        from neural_render.types.gbuffer import depth_scale_of

        if depth is None or depth.ndim != 5 or depth.shape[2] != 1 or depth.shape[:2] != rendered.shape[:2] \
                or depth.shape[-2:] != rendered.shape[-2:]:
            raise NeuralRenderError(f"depth conditioning needs a depth pass (B, T, 1, H, W) matching the video "
                                    f"{tuple(rendered.shape)}, got {tuple(getattr(depth, 'shape', ()))}")
        scale = depth_scale_of(depth).view(-1, 1, 1, 1, 1).to(depth.dtype)
        x = (depth / scale).clamp(0.0, 1.0)
    else:
        raise NeuralRenderError(f"conditioning must be one of {CONDITIONINGS}, got {conditioning!r}")
    return (x * 2.0 - 1.0).expand(-1, -1, 3, -1, -1).contiguous()


# ----------------------------------------------------------------------------------------------- enhancers
class ImageEnhancer(Protocol):
    """Makes realistic anchor frames. ``enhance(source, frames)`` -> (len(frames), 3, H, W) linear radiance."""

    name: str

    def enhance(self, source: SourceClip, frames: list[int]) -> Tensor: ...


class IdentityAnchors:
    name = "identity"

    def enhance(self, source: SourceClip, frames: list[int]) -> Tensor:
        return source.rendered[0, frames].clone()


class PathTracedAnchors:
    """ORACLE anchors of the proxy benchmark: the path-traced frames stored by ``synth --proxy``."""

    name = "path-traced"

    def enhance(self, source: SourceClip, frames: list[int]) -> Tensor:
        if source.real is None:
            raise NeuralRenderError("the path-traced anchor enhancer needs a `synth --proxy` clip (rendered/ + "
                                    "path-traced rgb); use --enhancer forward or img2img:DIR", source.clip_dir)
        return source.real[0, frames].clone()


class ForwardRendererAnchors:
    """Anchors rendered by the project's forward renderer from the clip's G-buffers, camera and env map."""

    def __init__(self, model_dir: str | os.PathLike = DEFAULT_FORWARD_MODEL, num_steps: int = 1, seed: int = 0):
        from neural_render.pipelines.forward import ForwardPipeline

        path = Path(model_dir)
        if not path.is_absolute() and not path.exists():
            path = Path(__file__).resolve().parents[2] / model_dir  # shipped model inside the repository
        self.pipeline = ForwardPipeline.from_pretrained(path)
        self.model_dir, self.num_steps, self.seed = path, int(num_steps), int(seed)
        self.name = f"forward:{path}"

    def enhance(self, source: SourceClip, frames: list[int]) -> Tensor:
        if not source.gbuffer.passes:
            raise NeuralRenderError("the forward-renderer enhancer needs G-buffer passes in the clip", source.clip_dir)
        gen = torch.Generator().manual_seed(self.seed)
        out = self.pipeline.render(source.gbuffer, source.camera, source.env, num_steps=self.num_steps, generator=gen)
        return out.rgb[0, frames].clone()


class Img2ImgAnchors:
    """A local diffusers image-to-image pipeline folder (never downloads). prompt/strength/steps/guidance: its args."""

    def __init__(self, model_dir: str | os.PathLike, prompt: str = "a photorealistic photograph", strength: float = 0.4,
                 num_steps: int = 20, guidance_scale: float = 5.0, seed: int = 0):
        path = Path(model_dir)
        if not path.is_dir() or not (path / "model_index.json").is_file():
            raise NeuralRenderError("img2img enhancer needs a local diffusers pipeline folder (model_index.json)", path)
        try:
            from diffusers import AutoPipelineForImage2Image

            self.pipeline = AutoPipelineForImage2Image.from_pretrained(os.fspath(path), local_files_only=True)
        except Exception as err:  # noqa: BLE001 - boundary: any loading failure of a user folder
            raise NeuralRenderError(f"cannot load the image-to-image pipeline: {type(err).__name__}: {err}",
                                    path) from None
        self.prompt, self.strength, self.num_steps = prompt, float(strength), int(num_steps)
        self.guidance_scale, self.seed, self.name = float(guidance_scale), int(seed), f"img2img:{path}"

    def enhance(self, source: SourceClip, frames: list[int]) -> Tensor:
        from neural_render.render.tonemap import linear_to_srgb, srgb_to_linear

        h, w = source.rendered.shape[-2:]
        images = linear_to_srgb(source.rendered[0, frames].clamp(0, 1))
        out = []
        for k, image in enumerate(images):
            gen = torch.Generator().manual_seed(self.seed + k)
            result = self.pipeline(prompt=self.prompt, image=image[None], strength=self.strength,
                                   num_inference_steps=self.num_steps, guidance_scale=self.guidance_scale,
                                   generator=gen, output_type="pt").images
            x = torch.nn.functional.interpolate(result.float(), size=(h, w), mode="bilinear", align_corners=False)
            out.append(srgb_to_linear(x[0].clamp(0, 1)))
        return torch.stack(out)


def make_enhancer(spec: str, seed: int = 0) -> ImageEnhancer:
    """``forward[:DIR]`` | ``path-traced`` | ``img2img:DIR`` | ``identity`` | ``auto`` (the shipped forward
    renderer when ``data/models/forward_tiny`` exists, else the path-traced proxy anchors)."""
    kind, _, arg = str(spec).partition(":")
    if kind == "auto":
        shipped = Path(__file__).resolve().parents[2] / DEFAULT_FORWARD_MODEL
        return ForwardRendererAnchors(shipped, seed=seed) if shipped.is_dir() else PathTracedAnchors()
    if kind == "forward":
        return ForwardRendererAnchors(arg or DEFAULT_FORWARD_MODEL, seed=seed)
    if kind == "path-traced":
        return PathTracedAnchors()
    if kind == "identity":
        return IdentityAnchors()
    if kind == "img2img":
        if not arg:
            raise NeuralRenderError("img2img enhancer needs a folder: img2img:DIR")
        return Img2ImgAnchors(arg, seed=seed)
    raise NeuralRenderError(f"unknown enhancer {spec!r}; use forward[:DIR], path-traced, img2img:DIR, identity or auto")
