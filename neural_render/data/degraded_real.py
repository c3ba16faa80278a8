"""Stand-ins for the "real" domain of Realiz3D training before an inverse model exists: path-traced clips whose
G-buffers are degraded like auto-labels (blurred, noisy, slightly biased), written as clip folders.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from neural_render.types import GBuffer


def degrade_gbuffer(gbuffer: GBuffer, generator: torch.Generator, strength: float = 1.0) -> GBuffer:
    """Stand-in for auto-labelled G-buffers (before an inverse model exists): blurred, noisy, slightly biased passes.

    Per clip: 3x3 box blur, additive Gaussian noise (std 0.05 * strength), basecolor gain in [0.8, 1.2] per
    channel, roughness / metallic shifted by +-0.1; normals re-normalised; ranges clamped. Mask is dropped.
    """
    def noise(x: Tensor, std: float) -> Tensor:
        return x + torch.randn(x.shape, generator=generator) * std * strength

    def blur(x: Tensor) -> Tensor:
        b, t, c, h, w = x.shape
        return F.avg_pool2d(x.reshape(b * t, c, h, w), 3, 1, 1, count_include_pad=False).reshape(b, t, c, h, w)

    out = {}
    for name, x in gbuffer.passes.items():
        if name == "mask":
            continue
        y = noise(blur(x), 0.05)
        if name == "basecolor":
            y = y * (0.8 + 0.4 * torch.rand(1, 1, 3, 1, 1, generator=generator))
        if name in ("roughness", "metallic"):
            y = y + (torch.rand((), generator=generator) - 0.5) * 0.2 * strength
        if name == "normal":
            y = F.normalize(y, dim=2, eps=1e-6)
        elif name == "depth":
            y = y.clamp_min(0.0)
        else:
            y = y.clamp(0.0, 1.0)
        out[name] = y.float()
    return GBuffer(**out)


def make_degraded_real_clips(source: str | os.PathLike, out: str | os.PathLike, max_clips: int | None = None,
                             seed: int = 0, strength: float = 1.0) -> list[Path]:
    """Write "real"-domain stand-in clips: each source clip's rgb with :func:`degrade_gbuffer` passes (atomic per clip).

    Existing complete clips in ``out`` are kept. The env map path is made absolute so the copies stay valid.
    """
    from neural_render.data.clip_dataset import find_clips
    from neural_render.io.clip import Clip, is_complete_clip, read_clip, write_clip

    written = []
    for i, clip_dir in enumerate(find_clips(source)[:max_clips]):
        target = Path(out) / clip_dir.name
        written.append(target)
        if is_complete_clip(target):
            continue
        clip = read_clip(clip_dir)
        meta = clip.meta
        if meta.envmap is not None:
            path = Path(meta.envmap["path"])
            env = dict(meta.envmap, path=str((path if path.is_absolute() else clip_dir / path).resolve()))
            meta = dataclasses.replace(meta, envmap=env, depth_scale=None,
                                       extra=dict(meta.extra, real_stand_in={"source": str(clip_dir), "seed": seed}))
        gen = torch.Generator().manual_seed(int(seed) * 100003 + i)
        write_clip(target, Clip(clip.rgb, degrade_gbuffer(clip.gbuffer, gen, strength), clip.camera, meta),
                   preview_mp4=False)
    return written
