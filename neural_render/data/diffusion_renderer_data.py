"""Training data for fine-tuning DiffusionRenderer checkpoints: windows of this toolkit's clip folders.

:class:`DiffusionRendererDataModule` wraps :class:`~neural_render.data.clip_dataset.ClipDataset` (random windows and
crops, seeded, ``set_epoch``) and batches with :func:`~neural_render.data.clip_dataset.collate_clips`:

* ``rgb`` (B, T, 3, H, W) linear radiance; ``gbuffer`` :class:`GBuffer` with the five passes + mask;
  ``camera`` :class:`Camera` (per-frame poses, B = clips)
* ``env`` (``kind="forward"`` only): {"image": (B, 3, He, We) HDR, "rotation": (B, 3, 3)}: each clip's env map with
  its rotation; the task projects it per frame in camera space (pipelines/diffusion_renderer_env.py)
* ``clip`` (list of folder names), ``start`` (list of window starts).

Frame sizes must be multiples of the checkpoint's stride (VAE factor x 2^(UNet levels - 1); 64 for the released
models): give ``size`` (and ``crop``) accordingly.
"""

from __future__ import annotations

import lightning.pytorch as pl
from torch.utils.data import DataLoader

from neural_render.data.inverse_data import size_pair
from neural_render.errors import NeuralRenderError
from neural_render.types.gbuffer import PREDICTED_PASSES

KINDS = ("inverse", "forward")


class DiffusionRendererDataModule(pl.LightningDataModule):
    """Clip folders under ``train_dir`` (and ``val_dir``) for a DiffusionRenderer fine-tune (module doc).

    kind: "inverse" (RGB + G-buffers) or "forward" (+ env map; every clip must name one); num_frames /
    frame_stride: window; crop: [h, w] random crop (None: full frame); size: [h, w] after the crop (None: crop
    size); batch_size, num_workers; samples_per_clip: windows per clip per epoch; seed: window / crop randomness.
    """

    def __init__(self, train_dir: str, val_dir: str | None = None, kind: str = "inverse", num_frames: int = 24,
                 frame_stride: int = 1, crop: int | list[int] | None = None, size: int | list[int] | None = None,
                 batch_size: int = 1, num_workers: int = 0, samples_per_clip: int = 1, seed: int = 0,
                 drop_last: bool = True):
        super().__init__()
        if kind not in KINDS:
            raise NeuralRenderError(f"kind must be one of {KINDS}, got {kind!r}")
        if batch_size < 1 or num_workers < 0 or num_frames < 1 or samples_per_clip < 1:
            raise NeuralRenderError("need batch_size, num_frames, samples_per_clip >= 1 and num_workers >= 0")
        self.train_dir, self.val_dir, self.kind = train_dir, val_dir, kind
        self.num_frames, self.frame_stride = int(num_frames), int(frame_stride)
        self.crop, self.size = size_pair(crop, "crop"), size_pair(size, "size")
        self.batch_size, self.num_workers = int(batch_size), int(num_workers)
        self.samples_per_clip, self.seed, self.drop_last = int(samples_per_clip), int(seed), bool(drop_last)
        self.train_set = None
        self.val_set = None

    def _dataset(self, root: str, random: bool):
        from neural_render.data.clip_dataset import ClipDataset

        return ClipDataset(root, num_frames=self.num_frames, frame_stride=self.frame_stride, crop=self.crop,
                           size=self.size, passes=(*PREDICTED_PASSES, "mask"),
                           env="envmap" if self.kind == "forward" else None, random=random, seed=self.seed,
                           samples_per_clip=self.samples_per_clip if random else 1)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None and stage in (None, "fit"):
            self.train_set = self._dataset(self.train_dir, True)
        if self.val_set is None and self.val_dir and stage in (None, "fit", "validate"):
            self.val_set = self._dataset(self.val_dir, False)

    def set_epoch(self, epoch: int) -> None:
        if self.train_set is not None:
            self.train_set.set_epoch(epoch)

    def _loader(self, dataset, shuffle: bool) -> DataLoader:
        from neural_render.data.clip_dataset import collate_clips

        drop_last = shuffle and self.drop_last and len(dataset) >= self.batch_size
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=shuffle, num_workers=self.num_workers,
                          collate_fn=collate_clips, drop_last=drop_last)

    def train_dataloader(self) -> DataLoader:
        self.setup("fit")
        return self._loader(self.train_set, True)

    def val_dataloader(self):
        self.setup("validate")
        return [] if self.val_set is None else self._loader(self.val_set, False)
