"""In-memory toy data: smooth random moving videos and a fixed per-pixel colour transform of them.

A clip is ``input`` (T,3,H,W) in [-1,1] — a smooth random pattern translating one pixel per frame — and
``target`` = :func:`toy_target` (input) = ``TOY_COLOR_MATRIX @ rgb`` per pixel, i.e. (g, b, -r): a signed
permutation, so targets stay in [-1,1]. Everything is generated from ``seed`` with a private generator.
Used to prove the training loop learns (``configs/data/toy.yaml``) and by smoke tests; no files are read.
"""

from __future__ import annotations

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from neural_render.errors import NeuralRenderError

#: target rgb = M @ input rgb, per pixel
TOY_COLOR_MATRIX = ((0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (-1.0, 0.0, 0.0))


def toy_target(video: Tensor) -> Tensor:
    """(..., 3, H, W) -> (..., 3, H, W): the fixed colour transform TOY_COLOR_MATRIX per pixel."""
    m = torch.tensor(TOY_COLOR_MATRIX, dtype=video.dtype, device=video.device)
    return torch.einsum("ij,...jhw->...ihw", m, video)


def toy_clip(generator: torch.Generator, frames: int, height: int, width: int) -> Tensor:
    """One smooth random clip (frames, 3, height, width) in [-1, 1], translating right by 1 px per frame."""
    coarse = torch.rand(1, 3, max(2, height // 4), max(2, (width + frames) // 4), generator=generator) * 2 - 1
    canvas = F.interpolate(coarse, size=(height, width + frames), mode="bilinear", align_corners=True)[0]
    return torch.stack([canvas[:, :, frames - 1 - t: frames - 1 - t + width] for t in range(frames)])


class ToyVideoDataset(Dataset):
    """``num_clips`` clips; item i = {"input": (T,3,H,W), "target": (T,3,H,W), "pass_id": 0}."""

    def __init__(self, num_clips: int, frames: int, height: int, width: int, seed: int):
        if min(num_clips, frames, height, width) < 1:
            raise NeuralRenderError(
                f"toy data sizes must be >= 1, got clips={num_clips} T={frames} H={height} W={width}")
        g = torch.Generator().manual_seed(int(seed))
        self.inputs = torch.stack([toy_clip(g, frames, height, width) for _ in range(num_clips)])
        self.targets = toy_target(self.inputs)

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def __getitem__(self, i: int) -> dict:
        return {"input": self.inputs[i], "target": self.targets[i], "pass_id": torch.tensor(0)}


class ToyDataModule(pl.LightningDataModule):
    """Train on ``num_clips`` fixed clips (no shuffling: with batch_size == num_clips every step sees the same
    batch), validate on ``num_val_clips`` other clips. Sizes: frames T, height H, width W (pixels)."""

    def __init__(self, num_clips: int = 2, num_val_clips: int = 2, frames: int = 4, height: int = 32, width: int = 32,
                 batch_size: int = 2, seed: int = 0):
        super().__init__()
        self.num_clips, self.num_val_clips = int(num_clips), int(num_val_clips)
        self.frames, self.height, self.width = int(frames), int(height), int(width)
        self.batch_size, self.seed = int(batch_size), int(seed)
        self.train_set: ToyVideoDataset | None = None
        self.val_set: ToyVideoDataset | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            self.train_set = ToyVideoDataset(self.num_clips, self.frames, self.height, self.width, self.seed)
            self.val_set = ToyVideoDataset(self.num_val_clips, self.frames, self.height, self.width, self.seed + 1)

    def train_dataloader(self) -> DataLoader:
        self.setup()
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=False, drop_last=False)

    def val_dataloader(self) -> DataLoader:
        self.setup()
        return DataLoader(self.val_set, batch_size=self.batch_size, shuffle=False)
