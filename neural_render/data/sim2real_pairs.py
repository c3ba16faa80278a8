"""(rendered, realistic) clip pairs for the sim-to-real tasks, and their Lightning DataModule.

Pair folder (one layout for both sources)::

    pair_dir/                a clip folder (io/clip.py): rgb = the REALISTIC clip, plus any G-buffer passes
      rendered/              a clip folder of the same size and length: rgb = the RENDERED clip

* ``neural-render synth --proxy`` writes it per clip (realistic = Mitsuba path tracing, rendered = the classical
  split-sum shader on the exact G-buffers) -- the proxy benchmark with ground truth;
* ``neural-render sim2real-data`` writes it from any rendered clip (realistic = anchor propagation output).

Items (tensors with a leading batch dim of 1; :func:`collate_pairs` concatenates them): ``rendered``, ``realistic``
(1, T, 3, H, W) linear radiance; ``depth`` (1, T, 1, H, W) when ``with_depth`` (from the pair folder's G-buffer);
``clip`` (str), ``start`` (int). Windows of ``num_frames`` frames start at a random frame (seeded by (seed, epoch,
index)) or at 0 with ``random=False``; ``flip`` mirrors the whole window left-right with probability 1/2.
"""

from __future__ import annotations

import os
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from neural_render.errors import NeuralRenderError

RENDERED_DIR = "rendered"


def find_pairs(root: str | os.PathLike) -> list[Path]:
    """Pair folders under ``root`` (sorted; ``root`` itself if it is one). NeuralRenderError when there is none."""
    root = Path(root)
    if (root / "meta.json").is_file() and (root / RENDERED_DIR / "meta.json").is_file():
        return [root]
    if not root.is_dir():
        raise NeuralRenderError("no such pair dataset folder", root)
    pairs = sorted(p.parent.parent for p in root.glob(f"*/{RENDERED_DIR}/meta.json") if not p.parts[-3].startswith("."))
    if not pairs:
        raise NeuralRenderError(f"no (rendered, realistic) pair folders (<clip>/{RENDERED_DIR}/meta.json); make them "
                                "with `neural-render synth --proxy` or `neural-render sim2real-data`", root)
    return pairs


def read_pair(pair_dir: str | os.PathLike, frames: slice | None = None, with_depth: bool = False) -> dict:
    """One pair folder -> {"rendered", "realistic": (1, T, 3, H, W), ["depth": (1, T, 1, H, W)], "meta"}."""
    from neural_render.io.clip import read_clip

    real = read_clip(pair_dir, frames=frames, passes=["depth"] if with_depth else [])
    rendered = read_clip(Path(pair_dir) / RENDERED_DIR, frames=frames, passes=[])
    if real.rgb is None or rendered.rgb is None:
        raise NeuralRenderError("pair folder needs rgb in both the clip and rendered/", pair_dir)
    if real.rgb.shape != rendered.rgb.shape:
        raise NeuralRenderError(f"realistic {tuple(real.rgb.shape)} and rendered {tuple(rendered.rgb.shape)} clips "
                                "differ in size or length", pair_dir)
    out = {"rendered": rendered.rgb, "realistic": real.rgb, "meta": real.meta}
    if with_depth:
        out["depth"] = real.gbuffer.depth
    return out


class PairDataset(Dataset):
    """Random windows of pair folders (module doc). roots: folder(s) of pairs; samples_per_clip: items per pair."""

    def __init__(self, roots, num_frames: int = 8, with_depth: bool = False, random: bool = True, flip: bool = False,
                 seed: int = 0, samples_per_clip: int = 1):
        from neural_render.io.clip import read_meta

        if num_frames < 1 or samples_per_clip < 1:
            raise NeuralRenderError(
                f"num_frames and samples_per_clip must be >= 1, got {num_frames}, {samples_per_clip}")
        roots = [roots] if isinstance(roots, (str, os.PathLike)) else list(roots)
        self.pairs, self.lengths = [], []
        for root in roots:
            for pair in find_pairs(root):
                meta = read_meta(pair)
                if meta.num_frames < num_frames:
                    continue
                if with_depth and "depth" not in meta.passes:
                    raise NeuralRenderError("pair folder has no depth pass (needed for depth conditioning)", pair)
                self.pairs.append(pair)
                self.lengths.append(meta.num_frames)
        if not self.pairs:
            raise NeuralRenderError(f"no pair with at least {num_frames} frames", ", ".join(map(str, roots)))
        self.num_frames, self.with_depth, self.random, self.flip = int(num_frames), bool(with_depth), random, flip
        self.seed, self.samples_per_clip, self.epoch = int(seed), int(samples_per_clip), 0

    def __len__(self) -> int:
        return len(self.pairs) * self.samples_per_clip

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(index)
        k = index % len(self.pairs)
        state = np.random.SeedSequence([self.seed, self.epoch, int(index)]).generate_state(2)
        last = self.lengths[k] - self.num_frames
        start = int(state[0] % (last + 1)) if self.random else 0
        item = read_pair(self.pairs[k], slice(start, start + self.num_frames), self.with_depth)
        item.pop("meta")
        if self.random and self.flip and state[1] % 2:
            item = {name: x.flip(-1) for name, x in item.items()}
        item.update(clip=str(self.pairs[k]), start=start)
        return item


def collate_pairs(items: list[dict]) -> dict:
    """Concatenate items: tensors along the batch dim; ``clip`` a list; ``start`` (B,) long."""
    if not items:
        raise NeuralRenderError("collate_pairs needs at least one item")
    out = {name: torch.cat([it[name] for it in items]) for name in items[0] if torch.is_tensor(items[0][name])}
    out["clip"] = [it["clip"] for it in items]
    out["start"] = torch.tensor([it["start"] for it in items], dtype=torch.long)
    return out


class PairDataModule(pl.LightningDataModule):
    """Train on pair folders under ``train_dir`` (validation on ``val_dir`` when given: first window, no flip)."""

    def __init__(self, train_dir: str | list[str], val_dir: str | None = None, num_frames: int = 8,
                 with_depth: bool = False, flip: bool = True, batch_size: int = 2, num_workers: int = 0,
                 samples_per_clip: int = 1, seed: int = 0, drop_last: bool = True):
        super().__init__()
        if batch_size < 1 or num_workers < 0:
            raise NeuralRenderError(f"batch_size must be >= 1 and num_workers >= 0, got {batch_size}, {num_workers}")
        self.train_dir, self.val_dir = train_dir, val_dir
        self.num_frames, self.with_depth, self.flip = int(num_frames), bool(with_depth), bool(flip)
        self.batch_size, self.num_workers = int(batch_size), int(num_workers)
        self.samples_per_clip, self.seed, self.drop_last = int(samples_per_clip), int(seed), bool(drop_last)
        self.train_set = self.val_set = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None and stage in (None, "fit"):
            self.train_set = PairDataset(self.train_dir, self.num_frames, self.with_depth, True, self.flip, self.seed,
                                         self.samples_per_clip)
        if self.val_set is None and self.val_dir and stage in (None, "fit", "validate"):
            self.val_set = PairDataset(self.val_dir, self.num_frames, self.with_depth, False, False, self.seed)

    def train_dataloader(self) -> DataLoader:
        self.setup("fit")
        drop_last = self.drop_last and len(self.train_set) >= self.batch_size
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True, num_workers=self.num_workers,
                          collate_fn=collate_pairs, drop_last=drop_last)

    def val_dataloader(self) -> DataLoader | list:
        self.setup("validate")
        if self.val_set is None:
            return []
        return DataLoader(self.val_set, batch_size=self.batch_size, shuffle=False, num_workers=self.num_workers,
                          collate_fn=collate_pairs)
