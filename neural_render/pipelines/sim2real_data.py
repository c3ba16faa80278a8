"""Pair data by anchor propagation (RealMaster): rendered clip -> (rendered, realistic) pair folder.

1. Anchors: the clip is cut into segments of at most ``segment`` frames that share their end frames (anchor frames
   0, s-1, 2(s-1), ..., T-1); an :class:`~neural_render.pipelines.sim2real_anchors.ImageEnhancer` makes those frames
   realistic (first and last frame for a clip of <= ``segment`` frames).
2. Propagation (:class:`AnchorPropagationPipeline`, trained by :class:`neural_render.tasks.sim2real.PropagationTask`),
   VACE-style: per segment, the anchors' latents are given CLEAN at their frames (sigma 0, held fixed by the
   sampler, never predicted), the middle frames are generated; the per-frame condition is the control map of the
   rendered clip (Canny edges, or depth for the ablation:
   :func:`~neural_render.pipelines.sim2real_anchors.control_video`)
   concatenated in channels. The output keeps the enhancer's anchor frames exactly.
3. :func:`make_pairs` writes one pair folder per clip (layout: :mod:`neural_render.data.sim2real_pairs`): the
   realistic clip (rgb = propagated video, the source's G-buffers, camera, meta, ``extra["sim2real_pair"]`` = how it
   was made) and ``rendered/`` (rgb = the rendered input), atomically; re-running skips finished pairs.

Limits: codecs with temporal compression are rejected (anchors live at single frames); frame sizes must be multiples
of :attr:`AnchorPropagationPipeline.stride`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import torch
from diffusers.utils import BaseOutput
from torch import Tensor

from neural_render.errors import NeuralRenderError
from neural_render.pipelines.base import VideoDiffusionPipeline, check_output_type, to_output_type
from neural_render.pipelines.sim2real import (
    check_video,
    from_model_space,
    to_model_space,
)
from neural_render.pipelines.sim2real_anchors import (
    CONDITIONINGS,
    RENDERED_DIR,
    control_video,
)

PROPAGATION_CONFIG = "propagation_config.json"
PAIR_PREFIX = "pair_"


def anchor_frames(num_frames: int, segment: int) -> list[int]:
    """Anchor frame indices: 0, s-1, 2(s-1), ... and T-1 (segments of <= ``segment`` frames share end frames)."""
    if num_frames < 2 or segment < 2:
        raise NeuralRenderError(f"anchor propagation needs >= 2 frames and segments of >= 2, got {num_frames}, "
                                f"{segment}")
    frames = list(range(0, num_frames - 1, segment - 1))
    return frames + [num_frames - 1]


@dataclass
class PropagationOutput(BaseOutput):
    """frames: (B, T, 3, H, W) linear realistic video (the anchors' frames exactly the anchors)."""

    frames: Tensor


class AnchorPropagationPipeline(VideoDiffusionPipeline):
    """Edge- (or depth-) conditioned propagation of anchor frames (module doc).

    conditioning: "edges" | "depth"; canny: (low, high, sigma); segment: frames per segment; num_steps: default
    sampler steps (None: 1 for x0, else 20); info: training info (``global_step`` 0 = UNTRAINED).
    """

    SETTINGS_FILE = PROPAGATION_CONFIG
    SETTINGS_REQUIRED = True
    SETTINGS_KEYS = frozenset({"conditioning", "canny", "segment", "num_steps", "info"})
    WHAT = "an anchor propagation model"

    def __init__(self, backbone, denoiser, codec=None, pass_embedding=None, conditioning: str = "edges",
                 canny: tuple[float, float, float] | None = None, segment: int = 8, num_steps: int | None = None,
                 info: dict | None = None, lora=None):
        super().__init__(backbone, denoiser, codec, pass_embedding, lora)
        self.configure(conditioning, canny, segment, num_steps, info)

    def configure(self, conditioning="edges", canny=None, segment=8, num_steps=None, info=None, source=None):
        if self.codec is None or int(getattr(self.codec, "temporal_factor", 1)) != 1:
            raise NeuralRenderError("anchor propagation needs a latent codec without temporal compression", source)
        c = int(self.codec.latent_channels)
        if int(self.backbone.latent_channels) != c or int(self.backbone.cond_channels) != c:
            raise NeuralRenderError(f"propagation backbone needs latent and cond channels == codec channels {c}, got "
                                    f"{self.backbone.latent_channels}, {self.backbone.cond_channels}", source)
        if conditioning not in CONDITIONINGS:
            raise NeuralRenderError(f"conditioning must be one of {CONDITIONINGS}, got {conditioning!r}", source)
        if int(segment) < 2 or (num_steps is not None and int(num_steps) < 1):
            raise NeuralRenderError(f"need segment >= 2 and num_steps >= 1, got {segment}, {num_steps}", source)
        self.conditioning, self.segment = conditioning, int(segment)
        self.canny = None if canny is None else tuple(float(v) for v in canny)
        self.num_steps, self.info = None if num_steps is None else int(num_steps), dict(info or {})
        return self

    def propagation_config(self) -> dict:
        return {"conditioning": self.conditioning, "canny": list(self.canny) if self.canny else None,
                "segment": self.segment, "num_steps": self.num_steps, "info": self.info}

    def settings(self) -> dict:
        """``propagation_config.json``."""
        return self.propagation_config()

    @torch.no_grad()
    def __call__(self, rendered: Tensor, anchors: Tensor, frames: list[int], depth: Tensor | None = None,
                 num_steps: int | None = None, seed: int | None = None, generator: torch.Generator | None = None,
                 output_type: str = "pt", return_dict: bool = False):
        """Propagate ``anchors`` (B, K, 3, H, W) linear, the realistic versions of rendered frames ``frames`` (K
        sorted indices starting at 0 and ending at T-1), over ``rendered`` (B, T, 3, H, W) linear -> (B, T, 3, H, W)
        linear realistic video; segments are the spans between consecutive anchors. depth: (B, T, 1, H, W).

        Noise: segment k uses a generator seeded ``seed + 7919 k`` (default seed 0), or the given ``generator`` for
        every segment. Returns the video tensor, or a :class:`PropagationOutput` with ``return_dict=True`` (the
        default stays the tensor for existing callers, e.g. evaluation/sim2real.py)."""
        check_output_type(output_type)
        seed = 0 if seed is None else int(seed)
        check_video(rendered, self.stride)
        b, t = rendered.shape[:2]
        frames = [int(f) for f in frames]
        if len(frames) < 2 or frames[0] != 0 or frames[-1] != t - 1 or sorted(set(frames)) != frames:
            raise NeuralRenderError(f"anchor frames must be sorted, unique, from 0 to {t - 1}, got {frames}")
        if tuple(anchors.shape) != (b, len(frames), 3, *rendered.shape[-2:]):
            raise NeuralRenderError(f"anchors must be (B, K, 3, H, W) = {(b, len(frames), 3, *rendered.shape[-2:])}, "
                                    f"got {tuple(anchors.shape)}")
        device = self.device
        control = control_video(rendered, depth, self.conditioning, self.canny)
        cond = self.codec.encode(control.to(device))
        anchor_latents = self.codec.encode(to_model_space(anchors.to(device)))
        if num_steps is None:
            steps = self.num_steps or (1 if self.denoiser.kind == "x0" else 20)
        else:
            steps = int(num_steps)
        out = torch.empty(b, t, *cond.shape[2:], device=device)
        for k, (a, c) in enumerate(pairwise(frames)):
            length = c - a + 1
            clean_values = torch.zeros(b, length, *cond.shape[2:], device=device)
            clean_values[:, 0], clean_values[:, -1] = anchor_latents[:, k], anchor_latents[:, k + 1]
            mask = torch.zeros(b, length, dtype=torch.bool, device=device)
            mask[:, 0] = mask[:, -1] = True
            gen = generator if generator is not None else torch.Generator().manual_seed(seed + 7919 * k)
            z = self.denoiser.sample(self.backbone, tuple(clean_values.shape), cond[:, a:c + 1], None,
                                     num_steps=steps, generator=gen, clean=(clean_values, mask), device=device)
            out[:, a:c + 1] = z
        video = from_model_space(self.codec.decode(out).float().cpu())
        video[:, frames] = anchors.float().cpu().clamp(0.0, 1.0)  # anchors kept exactly
        video = to_output_type(video, output_type)
        return PropagationOutput(video) if return_dict else video


def _pair_done(pair_dir: Path) -> bool:
    from neural_render.io.clip import is_complete_clip

    return is_complete_clip(pair_dir) and is_complete_clip(pair_dir / RENDERED_DIR)


def make_pair(source, out_dir: str | os.PathLike, pipeline: AnchorPropagationPipeline, enhancer,
              seed: int = 0) -> dict:
    """Write the pair folder of one :class:`SourceClip` (module doc); returns its record (also in meta extra)."""
    import dataclasses

    from neural_render.io.atomic import atomic_dir
    from neural_render.io.clip import Clip, write_clip
    from neural_render.pipelines.sim2real_anchors import read_source
    from neural_render.types import GBuffer

    source = read_source(source) if isinstance(source, (str, os.PathLike)) else source
    frames = anchor_frames(source.num_frames, pipeline.segment)
    anchors = enhancer.enhance(source, frames)
    h, w = source.rendered.shape[-2:]
    if not torch.is_tensor(anchors) or tuple(anchors.shape) != (len(frames), 3, h, w):
        raise NeuralRenderError(f"enhancer {enhancer.name!r} returned {tuple(getattr(anchors, 'shape', ()))}, expected "
                                f"{(len(frames), 3, h, w)}", source.clip_dir)
    depth = source.gbuffer.depth if pipeline.conditioning == "depth" else None
    if pipeline.conditioning == "depth" and depth is None:
        raise NeuralRenderError("depth conditioning needs a depth pass in the clip", source.clip_dir)
    realistic = pipeline(source.rendered, anchors[None].float(), frames, depth, seed=seed)
    record = {"source": os.fspath(source.clip_dir), "enhancer": enhancer.name, "anchor_frames": frames,
              "conditioning": pipeline.conditioning, "segment": pipeline.segment, "seed": int(seed),
              "propagation_trained_steps": int(pipeline.info.get("global_step", 0) or 0)}
    extra = {**dict(source.meta.extra or {}), "sim2real_pair": record}
    meta = dataclasses.replace(source.meta, extra=extra)
    gbuffer = GBuffer(**source.gbuffer.passes) if source.gbuffer.passes else GBuffer()
    with atomic_dir(out_dir) as tmp:
        write_clip(tmp, Clip(rgb=realistic.contiguous(), gbuffer=gbuffer, camera=source.camera, meta=meta),
                   preview_mp4=False)
        rendered_meta = dataclasses.replace(source.meta, extra={"sim2real_pair": {"role": "rendered"}}, envmap=None,
                                            depth_scale=None)
        write_clip(Path(tmp) / RENDERED_DIR, Clip(rgb=source.rendered.contiguous(), gbuffer=GBuffer(),
                                                   camera=source.camera, meta=rendered_meta), preview_mp4=False)
    return record


def make_pairs(input_root: str | os.PathLike, out_root: str | os.PathLike, pipeline: AnchorPropagationPipeline,
               enhancer, seed: int = 0, limit: int | None = None, progress: bool = False) -> dict:
    """Pair folders ``out_root/pair_<clip name>`` for every clip under ``input_root`` (resumable; module doc).
    Returns {"written", "skipped", "seconds", "pairs": [paths]}."""
    from neural_render.data.clip_dataset import find_clips

    start = time.perf_counter()
    clips = find_clips(input_root)
    if not clips:
        raise NeuralRenderError("no clip folders found", input_root)
    clips = clips[:limit] if limit else clips
    out = Path(out_root)
    if out.exists() and not out.is_dir():
        raise NeuralRenderError("output path exists and is not a folder", out)
    written = skipped = 0
    paths = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(clips), desc="sim2real-data", leave=False)
    try:
        for k, clip in enumerate(clips):
            target = out / f"{PAIR_PREFIX}{clip.name}"
            paths.append(os.fspath(target))
            if _pair_done(target):
                skipped += 1
            else:
                make_pair(clip, target, pipeline, enhancer, seed=seed + k)
                written += 1
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return {"written": written, "skipped": skipped, "seconds": time.perf_counter() - start, "pairs": paths}
