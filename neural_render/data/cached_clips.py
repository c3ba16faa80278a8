"""In-memory training data for small synthetic datasets: every clip packed once into one safetensors file.

Reading EXR frames costs ~30 ms per frame on a CPU, far more than a tiny model's training step, so for CPU training
the clips of a dataset folder (all the same size and length, as ``neural-render synth`` writes them) are packed once
into ``<cache>`` (float16, written atomically beside a JSON key naming the clips and the dataset's synth.json) and
held in memory. The batches equal :class:`neural_render.data.inverse_data.InverseDataModule`'s: ``rgb``
(B, T, 3, h, w) linear radiance, ``gbuffer`` :class:`GBuffer` (float32), ``clip`` (list of folder paths), ``start``.

Augmentation (all from a private generator seeded by (seed, epoch, index): reproducible, worker independent):
random window of ``num_frames`` frames, random ``crop`` (h, w) -- with ``scale_range`` (lo, hi), 0 < lo <= hi <= 1,
the crop is taken from a region of ``crop / s`` pixels (s log-uniform in the range) box-filtered down to ``crop``:
the same scene at several pixel scales, so a model trained on 64-px crops of 128-px clips runs at 64 to 128 px
(multi-scale; normals are renormalised after filtering, the mask is thresholded at 1/2) --, with ``hflip`` a
horizontal mirror with
probability 1/2 (the camera-space normal's x is negated, which is exactly the mirrored scene's normal), and a random
illumination gain of the input RGB: ``rgb * exp(exposure_std * n + white_balance_std * n_c)`` with standard normal
n (per clip window) and n_c (per colour channel) -- unseen env maps differ from the training ones in brightness and
tint, which the G-buffers (albedo included) must not follow.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Dataset

from neural_render.errors import NeuralRenderError
from neural_render.types import GBuffer
from neural_render.types.gbuffer import PASS_CHANNELS, PREDICTED_PASSES

DEFAULT_PASSES = (*PREDICTED_PASSES, "mask")
CACHE_VERSION = 1


def _key(root: Path, clips: list[Path], passes: list[str]) -> dict:
    spec = root / "synth.json"
    digest = hashlib.sha256(spec.read_bytes()).hexdigest() if spec.is_file() else None
    return {"version": CACHE_VERSION, "clips": [c.name for c in clips], "passes": passes, "synth_json_sha256": digest}


def pack_clips(root: str | os.PathLike, cache: str | os.PathLike, passes=DEFAULT_PASSES) -> Path:
    """Pack every clip under ``root`` into ``cache`` (a .safetensors file) unless an up-to-date cache exists.

    Tensors: ``rgb`` (N, T, 3, H, W) and one (N, T, C, H, W) per pass, float16. Returns the cache path."""
    from safetensors.torch import save_file

    from neural_render.data.clip_dataset import find_clips
    from neural_render.io.atomic import atomic_path
    from neural_render.io.clip import read_clip

    root, cache = Path(root), Path(cache)
    passes = [str(p) for p in passes]
    if any(p not in PASS_CHANNELS for p in passes):
        raise NeuralRenderError(f"unknown passes {passes}")
    clips = find_clips(root)
    if not clips:
        raise NeuralRenderError("no clip folders found", root)
    key = _key(root, clips, passes)
    key_path = cache.with_suffix(".json")
    if cache.is_file() and key_path.is_file():
        try:
            if json.loads(key_path.read_text()) == key:
                return cache
        except (OSError, ValueError):
            pass
    tensors: dict[str, list[torch.Tensor]] = {"rgb": [], **{p: [] for p in passes}}
    shape = None
    for clip_dir in clips:
        clip = read_clip(clip_dir, passes=passes)
        if clip.rgb is None:
            raise NeuralRenderError("clip has no rgb", clip_dir)
        if shape is None:
            shape = clip.rgb.shape
        elif clip.rgb.shape != shape:
            raise NeuralRenderError(f"clip shape {tuple(clip.rgb.shape)} differs from the first clip's {tuple(shape)}"
                                    " (packing needs equal sizes and lengths)", clip_dir)
        tensors["rgb"].append(clip.rgb[0].half())
        for p in passes:
            tensors[p].append(clip.gbuffer.passes[p][0].half())
    cache.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(cache) as tmp:
        save_file({k: torch.stack(v).contiguous() for k, v in tensors.items()}, tmp)
    with atomic_path(key_path) as tmp:
        Path(tmp).write_text(json.dumps(key))
    return cache


class CachedClipDataset(Dataset):
    """Random windows / crops / mirrors of packed clips (module doc). Item tensors carry a batch dimension of 1."""

    def __init__(self, tensors: dict[str, torch.Tensor], clip_names: list[str], num_frames: int = 8,
                 crop: tuple[int, int] | None = None, hflip: bool = False, seed: int = 0, samples_per_clip: int = 1,
                 exposure_std: float = 0.0, white_balance_std: float = 0.0,
                 scale_range: tuple[float, float] | None = None):
        self.tensors, self.names = tensors, clip_names
        _, t, _, h, w = tensors["rgb"].shape
        if not 1 <= num_frames <= t:
            raise NeuralRenderError(f"num_frames must be in [1, {t}] (clip length), got {num_frames}")
        if crop is not None and (crop[0] > h or crop[1] > w or min(crop) < 1):
            raise NeuralRenderError(f"crop {crop} does not fit the clip size {h}x{w}")
        self.num_frames, self.crop, self.hflip = int(num_frames), crop, bool(hflip)
        self.seed, self.samples_per_clip, self.epoch = int(seed), int(samples_per_clip), 0
        self.passes = [k for k in tensors if k != "rgb"]
        if exposure_std < 0 or white_balance_std < 0:
            raise NeuralRenderError(f"gain std must be >= 0, got {exposure_std}, {white_balance_std}")
        self.exposure_std, self.white_balance_std = float(exposure_std), float(white_balance_std)
        if scale_range is not None:
            lo, hi = (float(v) for v in scale_range)
            if not 0.0 < lo <= hi <= 1.0:
                raise NeuralRenderError(f"scale_range must satisfy 0 < lo <= hi <= 1, got {scale_range}")
            if crop is None:
                raise NeuralRenderError("scale_range needs a crop (the output size of the rescaled region)")
            scale_range = (lo, hi)
        self.scale_range = scale_range

    def __len__(self) -> int:
        return len(self.names) * self.samples_per_clip

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __getitem__(self, index: int) -> dict:
        import numpy as np

        if not 0 <= index < len(self):
            raise IndexError(index)
        i = index % len(self.names)
        state = np.random.SeedSequence([self.seed, self.epoch, int(index)]).generate_state(1)[0]
        gen = torch.Generator().manual_seed(int(state))
        _, t, _, h, w = self.tensors["rgb"].shape
        out_h, out_w = ch, cw = self.crop if self.crop is not None else (h, w)
        if self.scale_range is not None:
            lo, hi = self.scale_range
            u = float(torch.rand((), generator=gen))
            scale = math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))
            ch, cw = min(h, round(out_h / scale)), min(w, round(out_w / scale))
        start = int(torch.randint(0, t - self.num_frames + 1, (1,), generator=gen))
        y0 = int(torch.randint(0, h - ch + 1, (1,), generator=gen))
        x0 = int(torch.randint(0, w - cw + 1, (1,), generator=gen))
        flip = self.hflip and bool(torch.rand((), generator=gen) < 0.5)
        log_gain = (self.exposure_std * torch.randn((), generator=gen)
                    + self.white_balance_std * torch.randn(3, generator=gen)).view(1, 1, 3, 1, 1)

        def take(x: torch.Tensor) -> torch.Tensor:
            y = x[i, start:start + self.num_frames, :, y0:y0 + ch, x0:x0 + cw].float()
            if (ch, cw) != (out_h, out_w):
                y = torch.nn.functional.interpolate(y, size=(out_h, out_w), mode="area")
            return (y.flip(-1) if flip else y)[None].contiguous()

        passes = {p: take(self.tensors[p]) for p in self.passes}
        if (ch, cw) != (out_h, out_w):
            if "normal" in passes:
                passes["normal"] = torch.nn.functional.normalize(passes["normal"], dim=2)
            if "mask" in passes:
                passes["mask"] = (passes["mask"] > 0.5).float()
        if flip and "normal" in passes:
            passes["normal"][:, :, 0] *= -1.0
        rgb = take(self.tensors["rgb"]) * torch.exp(log_gain)
        return {"rgb": rgb, "gbuffer": GBuffer(**passes), "clip": self.names[i], "start": start}


class CachedInverseDataModule(pl.LightningDataModule):
    """Training batches for the inverse task from a packed dataset (module doc); no validation set.

    train_dir: synth dataset folder, or a list of them (e.g. env-map scenes + procedural-sky scenes; each is packed
    into its own default cache and the clips are concatenated: all must have the same size and length); cache:
    packed file of a single folder (default ``<train_dir>/.packed_inverse.safetensors``); num_frames, crop ([h, w]
    or int), scale_range ([lo, hi]), hflip, exposure_std, white_balance_std, batch_size, samples_per_clip, seed: as
    above; passes: packed passes.
    """

    def __init__(self, train_dir: str | list[str], cache: str | None = None, num_frames: int = 8, crop=None,
                 hflip: bool = True, batch_size: int = 4, samples_per_clip: int = 1, seed: int = 0,
                 passes=DEFAULT_PASSES,
                 exposure_std: float = 0.0, white_balance_std: float = 0.0,
                 scale_range: list[float] | None = None):
        super().__init__()
        if batch_size < 1 or samples_per_clip < 1:
            raise NeuralRenderError(
                f"batch_size and samples_per_clip must be >= 1, got {batch_size}, {samples_per_clip}")
        dirs = [str(train_dir)] if isinstance(train_dir, (str, os.PathLike)) else [str(d) for d in train_dir]
        if not dirs or (cache is not None and len(dirs) > 1):
            raise NeuralRenderError(f"train_dir must name one folder or a non-empty list (cache only with one), got "
                                    f"{train_dir!r}")
        self.train_dirs = dirs
        self.caches = [cache] if cache else [str(Path(d) / ".packed_inverse.safetensors") for d in dirs]
        self.num_frames, self.hflip, self.batch_size = int(num_frames), bool(hflip), int(batch_size)
        if crop is None:
            self.crop = None
        else:
            self.crop = (int(crop), int(crop)) if isinstance(crop, int) else tuple(int(c) for c in crop)
        self.samples_per_clip, self.seed, self.passes = int(samples_per_clip), int(seed), [str(p) for p in passes]
        self.exposure_std, self.white_balance_std = float(exposure_std), float(white_balance_std)
        self.scale_range = None if scale_range is None else tuple(float(v) for v in scale_range)
        self.train_set = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        from safetensors.torch import load_file

        from neural_render.data.clip_dataset import find_clips

        parts = [load_file(str(pack_clips(d, c, self.passes))) for d, c in zip(self.train_dirs, self.caches)]
        shapes = {tuple(part["rgb"].shape[1:]) for part in parts}
        if len(shapes) > 1:
            raise NeuralRenderError(f"train folders {self.train_dirs} hold clips of different sizes/lengths {shapes}")
        tensors = {k: torch.cat([part[k] for part in parts]) for k in parts[0]}
        names = [str(c) for d in self.train_dirs for c in find_clips(d)]
        self.train_set = CachedClipDataset(tensors, names, self.num_frames, self.crop, self.hflip, self.seed,
                                           self.samples_per_clip, self.exposure_std, self.white_balance_std,
                                           self.scale_range)

    def train_dataloader(self) -> DataLoader:
        from neural_render.data.inverse_data import collate_inverse

        self.setup("fit")
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True, num_workers=0,
                          collate_fn=collate_inverse, drop_last=len(self.train_set) >= self.batch_size)
