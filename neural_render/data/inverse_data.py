"""DataModule for the inverse task: :class:`ClipDataset` windows of synthetic clip folders -> {rgb, gbuffer}.

Batches: ``rgb`` (B, T, 3, H, W) linear radiance, ``gbuffer`` :class:`GBuffer` (B, T, C, H, W) with ``passes``
(default the five predicted passes + mask), ``clip`` (list of folder names), ``start`` (B,) window starts. No env
maps or cameras are loaded (the inverse task does not use them). Training windows and crops are random (seeded;
:class:`InverseTask` calls ``set_epoch`` so every epoch draws new ones); validation takes the first window and a
centred crop of each clip.
"""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

from neural_render.errors import NeuralRenderError
from neural_render.types import GBuffer
from neural_render.types.gbuffer import PREDICTED_PASSES

DEFAULT_PASSES = (*PREDICTED_PASSES, "mask")


def collate_inverse(items: list[dict]) -> dict:
    """ClipDataset items -> {"rgb": (B,T,3,H,W), "gbuffer": GBuffer, "clip": [str], "start": (B,) long}."""
    if not items:
        raise NeuralRenderError("collate_inverse needs at least one item")
    names = list(items[0]["gbuffer"].passes)
    return {"rgb": torch.cat([it["rgb"] for it in items]),
            "gbuffer": GBuffer(**{n: torch.cat([it["gbuffer"].passes[n] for it in items]) for n in names}),
            "clip": [str(it["clip"]) for it in items],
            "start": torch.tensor([int(it["start"]) for it in items], dtype=torch.long)}


def size_pair(value, what: str) -> tuple[int, int] | None:
    """None, N or [h, w] (a crop or frame size option) -> None or (h, w); NeuralRenderError otherwise."""
    if value is None:
        return None
    if isinstance(value, int):
        return (value, value)
    if len(value) != 2:
        raise NeuralRenderError(f"{what} must be an int or [h, w], got {value}")
    return int(value[0]), int(value[1])


class InverseDataModule(pl.LightningDataModule):
    """Train on clip folders under ``train_dir`` (val on ``val_dir`` when given).

    num_frames / frame_stride: window length and frame step; crop: [h, w] random crop (None = full frame);
    size: [h, w] output size after the crop (None = crop size); passes: G-buffer passes to load (``mask`` is needed
    for the task's loss mask); samples_per_clip: windows per clip per epoch; seed: window/crop randomness.
    """

    def __init__(self, train_dir: str, val_dir: str | None = None, num_frames: int = 8, frame_stride: int = 1,
                 crop: int | list[int] | None = None, size: int | list[int] | None = None,
                 passes: list[str] | tuple[str, ...] = DEFAULT_PASSES, batch_size: int = 2, num_workers: int = 0,
                 samples_per_clip: int = 1, val_samples_per_clip: int = 1, seed: int = 0, drop_last: bool = True):
        super().__init__()
        if batch_size < 1 or num_workers < 0:
            raise NeuralRenderError(f"batch_size must be >= 1 and num_workers >= 0, got {batch_size}, {num_workers}")
        self.train_dir, self.val_dir = train_dir, val_dir
        self.num_frames, self.frame_stride = int(num_frames), int(frame_stride)
        self.crop, self.size = size_pair(crop, "crop"), size_pair(size, "size")
        self.passes = [str(p) for p in passes]
        self.batch_size, self.num_workers = int(batch_size), int(num_workers)
        self.samples_per_clip, self.val_samples_per_clip = int(samples_per_clip), int(val_samples_per_clip)
        self.seed, self.drop_last = int(seed), bool(drop_last)
        self.train_set = None
        self.val_set = None

    def _dataset(self, root: str, random: bool, samples: int):
        from neural_render.data.clip_dataset import ClipDataset

        return ClipDataset(root, num_frames=self.num_frames, frame_stride=self.frame_stride, crop=self.crop,
                           size=self.size, passes=self.passes, env=None, random=random, seed=self.seed,
                           samples_per_clip=samples)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None and stage in (None, "fit"):
            self.train_set = self._dataset(self.train_dir, True, self.samples_per_clip)
        if self.val_set is None and self.val_dir and stage in (None, "fit", "validate"):
            self.val_set = self._dataset(self.val_dir, False, self.val_samples_per_clip)

    def train_dataloader(self) -> DataLoader:
        self.setup("fit")
        drop_last = self.drop_last and len(self.train_set) >= self.batch_size
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True, num_workers=self.num_workers,
                          collate_fn=collate_inverse, drop_last=drop_last, persistent_workers=False)

    def val_dataloader(self) -> DataLoader | list:
        self.setup("validate")
        if self.val_set is None:
            return []
        return DataLoader(self.val_set, batch_size=self.batch_size, shuffle=False, num_workers=self.num_workers,
                          collate_fn=collate_inverse)
