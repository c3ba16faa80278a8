"""Render a clip folder's G-buffers with a forward pipeline (what ``neural-render forward`` does; :func:`shade_clip`:
the classical split-sum baseline of ``neural-render shade``).

The clip's passes (any subset of pipelines/forward's passes: basecolor, normal, depth, roughness, metallic) are
rendered under an env map with the clip's per-frame cameras, in overlapping latent windows; the output is an
``.mp4`` (display sRGB) or a clip folder (linear EXR rgb + the G-buffers used + their mask, meta ``extra["forward"]``
recording the env map, rotation, passes and model). Inputs are all checked before the model runs.
"""

from __future__ import annotations

import os
from pathlib import Path

from neural_render.pipelines.forward_options import forward_options


def select_passes(meta, passes: list[str] | None, source) -> list[str]:
    """The forward passes to render: ``passes`` (None: every forward pass the clip stores); NeuralRenderError for
    unknown passes or passes the clip (``meta``: its ClipMeta; ``source``: its folder) lacks."""
    from neural_render.errors import NeuralRenderError
    from neural_render.models.conditioning import FORWARD_PASSES

    stored = [p for p in FORWARD_PASSES if p in meta.passes]
    chosen = stored if passes is None else list(dict.fromkeys(passes))
    bad = [p for p in chosen if p not in FORWARD_PASSES]
    if bad:
        raise NeuralRenderError(f"--passes: unknown {bad}; the forward model takes {list(FORWARD_PASSES)}")
    missing = [p for p in chosen if p not in stored]
    if missing or not chosen:
        raise NeuralRenderError(f"clip lacks the passes {missing or list(FORWARD_PASSES)} (stored: {stored})", source)
    return chosen


def render_clip(clip_dir: str | os.PathLike, out: str | os.PathLike, envmap: str | None = None,
                rotate: str = "0,0,0", passes: list[str] | None = None, model: str | None = None,
                device: str = "cpu", exposure: float = 0.0, processing_size=None, **sampling) -> Path:
    """Render ``clip_dir`` into ``out`` (.mp4 or a clip folder, owner "forward"; module doc) and return ``out``.

    envmap: shipped name or file (None: the clip's own), turned by ``rotate`` ('yaw,pitch,roll' degrees); model:
    hub spec (None: the shipped forward_tiny; a DiffusionRenderer forward folder loads too); exposure: stops, for
    the MP4; processing_size: None (the model's default) | N (longer side) | (h, w), for models that take one
    (:func:`forward_options`); sampling: keyword arguments of the pipeline's render (num_steps: None = the model's
    default; window, overlap, domain, reassign_blocks, reassign_steps, generator)."""
    import dataclasses

    from neural_render import hub
    from neural_render.io import Clip, read_clip, read_meta, write_clip
    from neural_render.io.envmap_input import given_or_clip_env
    from neural_render.io.video_output import write_mp4

    out = Path(out)
    meta = read_meta(clip_dir)
    passes = select_passes(meta, passes, clip_dir)
    env = given_or_clip_env(envmap, rotate, clip_dir, meta, "clip names no env map; pass --envmap")
    clip = read_clip(clip_dir, passes=passes + (["mask"] if "mask" in meta.passes else []), rgb=False)
    gbuffer = clip.gbuffer.replace(mask=None)
    folder = hub.resolve_model(model, "forward")
    pipe = hub.load_forward(folder, device)
    steps = sampling.pop("num_steps", None)
    options = forward_options(pipe, steps, processing_size, strict=True, source=folder)
    rgb = pipe.render(gbuffer, clip.camera, env, **sampling, **options).rgb
    if out.suffix.lower() == ".mp4":
        write_mp4(out, rgb, clip.meta.fps, exposure, owner="forward")
    else:
        meta = dataclasses.replace(clip.meta, envmap=None, extra=dict(clip.meta.extra, forward={
            "envmap": envmap or "clip", "rotate": rotate, "passes": passes, "model": str(folder)}))
        clip = Clip(rgb=rgb, gbuffer=clip.gbuffer, camera=clip.camera, meta=meta)  # the mask is kept
        write_clip(out, clip, owner="forward")
    return out


def shade_clip(clip_dir: str | os.PathLike, out: str | os.PathLike, envmap: str | None = None,
               rotate: str = "0,0,0", exposure: float = 0.0) -> Path:
    """The classical baseline (``neural-render shade``): the clip's G-buffers (at least normals; missing material
    passes take render/shade's defaults) shaded by the split-sum shader under ``envmap`` (None: the clip's own)
    turned by ``rotate``, into ``out`` (.mp4 display sRGB at ``exposure`` stops, or a clip folder); returns ``out``."""
    from neural_render.errors import NeuralRenderError
    from neural_render.io import Clip, read_clip, write_clip
    from neural_render.io.envmap_input import given_or_clip_env
    from neural_render.io.video_output import write_mp4
    from neural_render.render.shade import prepare_ibl, shade

    clip = read_clip(clip_dir, rgb=False)
    if clip.gbuffer.normal is None:
        raise NeuralRenderError("clip has no normal pass to shade", clip_dir)
    env = given_or_clip_env(envmap, rotate, clip_dir, clip.meta, "clip names no env map; pass --envmap")
    rgb = shade(clip.gbuffer, clip.camera, prepare_ibl(env))
    out = Path(out)
    if out.suffix.lower() == ".mp4":
        write_mp4(out, rgb, clip.meta.fps, exposure, owner="shade")
    else:
        write_clip(out, Clip(rgb=rgb, gbuffer=clip.gbuffer, camera=clip.camera, meta=clip.meta), owner="shade")
    return out
