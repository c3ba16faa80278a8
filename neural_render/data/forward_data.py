"""Forward (G-buffer -> RGB) training data: clip datasets, per-buffer dropout, the DataModule.

The forward inputs each item carries (presence flags, env encodings, split-sum prior) are built by
:func:`neural_render.models.conditioning.prepare_forward_inputs` (the conditioning shared with the inference
pipelines; its module doc lists the keys). Datasets (:class:`ForwardClipDataset`, :class:`ForwardDataModule`) read
clip folders (synthetic ones from ``neural-render synth`` or "real" ones: videos auto-labelled by the inverse
renderer, see ``domain``). Per-buffer dropout (training): with probability ``gbuffer_dropout`` a sample drops each
pass independently with probability 1/2 (at least one pass kept); the prior is then shaded from the kept passes
only, exactly as at inference.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from neural_render.errors import NeuralRenderError
from neural_render.models.conditioning import (  # noqa: F401 - display_pack, forward_cond_channels: see below
    FORWARD_PASSES,
    cached_ibl,
    display_pack,
    forward_cond_channels,
    prepare_forward_inputs,
)
from neural_render.types import Camera, GBuffer
from neural_render.types.gbuffer import depth_scale_of

# Compatibility re-exports (issue #25 moved the conditioning to models/conditioning.py): ``display_pack`` is still
# imported from here by neural_render/evaluation/{forward,insert}.py and ``forward_cond_channels`` by tests outside
# tests/data and tests/tasks; remove them once those import neural_render.models.conditioning.
DOMAINS = ("synthetic", "real")


# ------------------------------------------------------------------------------------------- dropout
def drop_passes(present: Tensor, probability: float, generator: torch.Generator) -> Tensor:
    """Per-buffer dropout of presence flags (B, 5): with ``probability`` a row drops each given pass w.p. 1/2,
    keeping at least one. Returns new flags (float)."""
    out = present.clone().float()
    for row in range(out.shape[0]):
        if float(torch.rand((), generator=generator)) >= probability:
            continue
        keep = (torch.rand(out.shape[1], generator=generator) < 0.5).float() * out[row]
        if keep.sum() == 0:
            given = torch.nonzero(out[row]).flatten()
            keep[given[int(torch.randint(len(given), (), generator=generator))]] = 1.0
        out[row] = keep
    return out


# ------------------------------------------------------------------------------------------- datasets
class ForwardClipDataset(Dataset):
    """Forward-task items from clip folders (every clip must have rgb; passes / env map may be missing).

    Item ``i`` (clip ``i % num_clips``): {"rgb" (1, T, 3, h, w) linear target, "domain" (1,) long (0 synthetic,
    1 real), "clip", "start"} + the forward inputs of the window (module doc) with B = 1, after dropout.
    roots: dataset / clip folder(s). domain: "synthetic" | "real". num_frames, frame_stride: window. crop: (h, w)
    random crop (None = full frame); size: (h, w) output size after the crop (rgb bilinear, passes nearest,
    intrinsics scaled; None = crop size), e.g. to bring real videos to the training size. gbuffer_dropout: see module
    doc. env_dropout: probability that a sample's env map is dropped (lighting condition absent, so no prior either:
    the target is still the render under its own env map), as it always is for real clips. random: random windows
    (else the first, centred). cache: keep decoded clips in memory. Randomness: private
    generator seeded by (seed, epoch, index).
    """

    def __init__(self, roots, domain: str = "synthetic", num_frames: int = 4, frame_stride: int = 1,
                 crop: tuple[int, int] | None = None, gbuffer_dropout: float = 0.0, with_prior: bool = True,
                 size: tuple[int, int] | None = None, random: bool = True, seed: int = 0, samples_per_clip: int = 1,
                 cache: bool = True, max_clips: int | None = None, env_dropout: float = 0.0):
        from neural_render.data.clip_dataset import find_clips
        from neural_render.io.clip import read_meta

        if domain not in DOMAINS:
            raise NeuralRenderError(f"domain must be one of {DOMAINS}, got {domain!r}")
        if not 0.0 <= env_dropout <= 1.0:
            raise NeuralRenderError(f"env_dropout must be in [0, 1], got {env_dropout}")
        if not 0.0 <= gbuffer_dropout <= 1.0 or num_frames < 1 or frame_stride < 1 or samples_per_clip < 1:
            raise NeuralRenderError("need 0 <= gbuffer_dropout <= 1 and num_frames, frame_stride, "
                                    "samples_per_clip >= 1")
        roots = [roots] if isinstance(roots, (str, os.PathLike)) else list(roots)
        self.span = (num_frames - 1) * frame_stride + 1
        self.clips, self.metas = [], []
        for root in roots:
            for clip in find_clips(root):
                meta = read_meta(clip)
                if meta.num_frames >= self.span and meta.rgb_source is not None:
                    self.clips.append(clip)
                    self.metas.append(meta)
        if max_clips is not None:
            self.clips, self.metas = self.clips[: int(max_clips)], self.metas[: int(max_clips)]
        if not self.clips:
            raise NeuralRenderError(f"no clip with rgb and at least {self.span} frames", ", ".join(map(str, roots)))
        sizes = {(m.height, m.width) for m in self.metas}
        if crop is None and size is None and len(sizes) > 1:
            raise NeuralRenderError(f"clips have different sizes {sorted(sizes)}; give a crop or a size", roots[0])
        for clip, meta in zip(self.clips, self.metas):
            if crop is not None and (crop[0] > meta.height or crop[1] > meta.width):
                raise NeuralRenderError(f"crop {crop} exceeds the clip size {meta.height}x{meta.width}", clip)
        self.domain, self.num_frames, self.frame_stride, self.crop = domain, num_frames, frame_stride, crop
        self.size = None if size is None else (int(size[0]), int(size[1]))
        self.gbuffer_dropout, self.with_prior, self.random = float(gbuffer_dropout), with_prior, random
        self.seed, self.samples_per_clip, self.cache, self.epoch = seed, samples_per_clip, cache, 0
        self.env_dropout = float(env_dropout)
        self._clips: dict[int, tuple] = {}

    def __len__(self) -> int:
        return len(self.clips) * self.samples_per_clip

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _load(self, k: int) -> tuple:
        """(rgb (1,T,3,H,W), {pass: (1,T,C,H,W)}, camera, env or None, env key) of clip k (memoised)."""
        if k in self._clips:
            return self._clips[k]
        from neural_render.io.clip import read_clip, read_clip_envmap
        clip_dir, meta = self.clips[k], self.metas[k]
        clip = read_clip(clip_dir, passes=[p for p in (*FORWARD_PASSES, "mask") if p in meta.passes])
        env = read_clip_envmap(clip_dir, meta) if meta.envmap is not None else None
        env_key = None
        if env is not None:
            path = Path(meta.envmap["path"])
            env_key = str((path if path.is_absolute() else Path(clip_dir) / path).resolve())
        passes = {k: v for k, v in clip.gbuffer.passes.items() if k in FORWARD_PASSES}  # mask: validation only
        value = (clip.rgb, passes, clip.camera, env, env_key)
        if self.cache:
            self._clips[k] = value
        return value

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(index)
        k = index % len(self.clips)
        rgb, passes, camera, env, env_key = self._load(k)
        meta = self.metas[k]
        state = np.random.SeedSequence([int(self.seed), int(self.epoch), int(index)]).generate_state(1)[0]
        gen = torch.Generator().manual_seed(int(state))
        ch, cw = self.crop if self.crop is not None else (meta.height, meta.width)
        if self.random:
            start = int(torch.randint(0, meta.num_frames - self.span + 1, (1,), generator=gen))
            y0 = int(torch.randint(0, meta.height - ch + 1, (1,), generator=gen))
            x0 = int(torch.randint(0, meta.width - cw + 1, (1,), generator=gen))
        else:
            start, y0, x0 = 0, (meta.height - ch) // 2, (meta.width - cw) // 2
        frames = slice(start, start + self.span, self.frame_stride)

        oh, ow = self.size if self.size is not None else (ch, cw)

        def window(x: Tensor, smooth: bool = False) -> Tensor:
            from neural_render.data.clip_dataset import _resize
            return _resize(x[:, frames, :, y0:y0 + ch, x0:x0 + cw], oh, ow, smooth).contiguous()

        fx, fy, cx, cy = camera.intrinsics[0].tolist()
        sx, sy = ow / cw, oh / ch
        cam = Camera(torch.tensor([[fx * sx, fy * sy, (cx - x0) * sx, (cy - y0) * sy]]),
                     camera.camera_to_world[:, frames], ow, oh)
        given = {name: window(x) for name, x in passes.items()}
        present = torch.tensor([[float(n in given) for n in FORWARD_PASSES]])
        if self.gbuffer_dropout > 0 and given:
            present = drop_passes(present, self.gbuffer_dropout, gen)
        kept = {n: x for n, x in given.items() if present[0, FORWARD_PASSES.index(n)] > 0}
        if self.env_dropout > 0 and env is not None and float(torch.rand((), generator=gen)) < self.env_dropout:
            env = None  # drawn only when enabled: other settings keep their exact random stream
        depth_scale = depth_scale_of(given["depth"]) if "depth" in given else None
        if kept:
            ibl = cached_ibl(env.image, env_key) if (env is not None and self.with_prior and "normal" in kept) else None
            inputs = prepare_forward_inputs(GBuffer(**kept), cam, env, self.with_prior, ibl, depth_scale)
        else:  # a "real" clip without any pass: control absent
            inputs = prepare_forward_inputs(GBuffer(basecolor=torch.zeros(1, self.num_frames, 3, oh, ow)), cam, env,
                                            self.with_prior, None, depth_scale)
            inputs["present"].zero_()
            inputs["prior_present"].zero_()
        inputs.update({"rgb": window(rgb, smooth=True), "domain": torch.tensor([DOMAINS.index(self.domain)]),
                       "clip": str(self.clips[k]), "start": start})
        return inputs


def collate_forward(items: list[dict]) -> dict:
    """Batch forward items (see :func:`neural_render.data.clip_dataset.collate_clips`)."""
    from neural_render.data.clip_dataset import collate_clips
    return collate_clips(items)


def _lightning_datamodule():
    import lightning.pytorch as pl
    return pl.LightningDataModule


class ForwardDataModule(_lightning_datamodule()):
    """Training data of the forward task: synthetic clips (+ optional "real" auto-labelled clips), shuffled together.

    train_roots: synthetic dataset folder(s); real_roots: folder(s) of real-domain clips (``neural-render autolabel``
    output, or :func:`neural_render.data.degraded_real.make_degraded_real_clips` stand-ins); val_roots: synthetic
    validation folder(s) (default: none). real_samples_per_clip: windows drawn per real clip and epoch (default:
    ``samples_per_clip``); raise it to balance a small real set against a large synthetic one. env_dropout: of the
    synthetic clips (:class:`ForwardClipDataset`; real clips carry no env map), so that a missing lighting condition
    does not by itself tell the model which domain a sample is from (Realiz3D stage 2 with real footage).
    Other arguments: :class:`ForwardClipDataset`. Windows are redrawn every epoch (the task calls :meth:`set_epoch`).
    """

    def __init__(self, train_roots: list[str] | str, real_roots: list[str] | str | None = None,
                 val_roots: list[str] | str | None = None, num_frames: int = 4, frame_stride: int = 1,
                 crop: tuple[int, int] | None = None, gbuffer_dropout: float = 0.3, with_prior: bool = True,
                 size: tuple[int, int] | None = None, batch_size: int = 4, num_workers: int = 0, seed: int = 0,
                 samples_per_clip: int = 1, max_train_clips: int | None = None, max_val_clips: int | None = 4,
                 cache: bool = True, real_samples_per_clip: int | None = None, env_dropout: float = 0.0):
        super().__init__()
        self.kwargs = dict(num_frames=num_frames, frame_stride=frame_stride, crop=crop, size=size,
                           with_prior=with_prior, seed=seed, cache=cache)
        self.train_roots, self.real_roots, self.val_roots = train_roots, real_roots, val_roots
        self.gbuffer_dropout, self.samples_per_clip = gbuffer_dropout, samples_per_clip
        self.real_samples_per_clip = samples_per_clip if real_samples_per_clip is None else int(real_samples_per_clip)
        if self.real_samples_per_clip < 1:
            raise NeuralRenderError(f"real_samples_per_clip must be >= 1, got {real_samples_per_clip}")
        self.batch_size, self.num_workers, self.seed = int(batch_size), int(num_workers), int(seed)
        self.max_train_clips, self.max_val_clips = max_train_clips, max_val_clips
        self.env_dropout = float(env_dropout)
        self.train_sets: list[ForwardClipDataset] = []
        self.val_set: ForwardClipDataset | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_sets:
            return
        self.train_sets = [ForwardClipDataset(self.train_roots, "synthetic", gbuffer_dropout=self.gbuffer_dropout,
                                              samples_per_clip=self.samples_per_clip, max_clips=self.max_train_clips,
                                              env_dropout=self.env_dropout, **self.kwargs)]
        if self.real_roots:
            self.train_sets.append(ForwardClipDataset(self.real_roots, "real", gbuffer_dropout=self.gbuffer_dropout,
                                                      samples_per_clip=self.real_samples_per_clip,
                                                      max_clips=self.max_train_clips, **self.kwargs))
        if self.val_roots:
            self.val_set = ForwardClipDataset(self.val_roots, "synthetic", random=False, max_clips=self.max_val_clips,
                                              **self.kwargs)

    def set_epoch(self, epoch: int) -> None:
        for ds in self.train_sets:
            ds.set_epoch(epoch)

    def train_dataloader(self):
        from torch.utils.data import ConcatDataset, DataLoader
        self.setup()
        gen = torch.Generator().manual_seed(self.seed)
        return DataLoader(ConcatDataset(self.train_sets), batch_size=self.batch_size, shuffle=True, generator=gen,
                          collate_fn=collate_forward, num_workers=self.num_workers, drop_last=True)

    def val_dataloader(self):
        from torch.utils.data import DataLoader
        self.setup()
        if self.val_set is None:
            return []
        return DataLoader(self.val_set, batch_size=self.batch_size, shuffle=False, collate_fn=collate_forward)
