"""Training reader over clip folders: random frame windows, random crops, kornia resizes.

Item ``i`` (clip ``i % num_clips``; ``samples_per_clip`` items per clip) is a dict whose tensors carry a leading
batch dimension of 1 so they are valid project types; :func:`collate_clips` concatenates items into a batch:

* ``rgb``        (1, T, 3, h, w) linear radiance (bilinear resize, antialiased when shrinking)
* ``gbuffer``    :class:`GBuffer` (1, T, C, h, w) (nearest-exact resize: no blended depths/normals at edges)
* ``camera``     :class:`Camera` B = 1 with the window's poses and intrinsics adjusted for crop and resize
                 (cx -= x0, cy -= y0, then fx, cx *= w / crop_w and fy, cy *= h / crop_h)
* ``env``        ``"encodings"``: {"ldr", "log", "dir"} each (1, T, 3, eh, ew) camera-space env encodings of the
                 window's poses (render/envmap.py); ``"envmap"``: {"image": (1, 3, H, W), "rotation": (1, 3, 3)} of the
                 clip's env map (rotation included, :meth:`EnvMap.rotated` semantics); None: no env entry
* ``flow``, ``flow_valid``, ``object_id`` (1, T, 2 / 1 / 1, h, w) when ``with_aux`` and the clip has synth aux
  files (synth/dataset.py); flow is rescaled to the output pixels
* ``clip`` (str) and ``start`` (int): where the window came from.

Randomness (window start, crop offset) comes from a private generator seeded by (seed, epoch, index):
reproducible, independent of DataLoader workers; call :meth:`set_epoch` to draw new windows each epoch.
``random=False`` takes the first window and a centred crop.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset

from neural_render.errors import NeuralRenderError
from neural_render.types import Camera, GBuffer
from neural_render.types.gbuffer import PASS_CHANNELS

ENV_MODES = ("encodings", "envmap", None)


def find_clips(root: str | os.PathLike) -> list[Path]:
    """Clip folders under ``root`` (folders holding meta.json, sorted), or ``root`` itself if it is one."""
    root = Path(root)
    if (root / "meta.json").is_file():
        return [root]
    if not root.is_dir():
        raise NeuralRenderError("no such dataset folder", root)
    return sorted(p.parent for p in root.glob("*/meta.json") if not p.parent.name.startswith("."))


class ClipDataset(Dataset):
    """Random windows of clip folders (see module doc).

    roots: a dataset folder, a clip folder, or a list of either. num_frames: window length T; frame_stride: step
    between window frames. crop: (h, w) crop before resizing (None = full frame); size: (h, w) output (None = crop
    size). passes: G-buffer passes to load. env: one of ENV_MODES; env_size: (h, w) of the encodings.
    """

    def __init__(self, roots, num_frames: int = 8, frame_stride: int = 1, crop: tuple[int, int] | None = None,
                 size: tuple[int, int] | None = None, passes=tuple(PASS_CHANNELS), env: str | None = "encodings",
                 env_size: tuple[int, int] = (32, 64), with_aux: bool = False, random: bool = True, seed: int = 0,
                 samples_per_clip: int = 1):
        from neural_render.io.clip import read_meta

        if num_frames < 1 or frame_stride < 1 or samples_per_clip < 1:
            raise NeuralRenderError("num_frames, frame_stride and samples_per_clip must be >= 1")
        if env not in ENV_MODES:
            raise NeuralRenderError(f"env must be one of {ENV_MODES}, got {env!r}")
        unknown = [p for p in passes if p not in PASS_CHANNELS]
        if unknown:
            raise NeuralRenderError(f"unknown G-buffer passes {unknown}")
        roots = [roots] if isinstance(roots, (str, os.PathLike)) else list(roots)
        span = (num_frames - 1) * frame_stride + 1
        self.clips, self.metas = [], []
        for root in roots:
            for clip in find_clips(root):
                meta = read_meta(clip)
                if meta.num_frames >= span:
                    self.clips.append(clip)
                    self.metas.append(meta)
        if not self.clips:
            raise NeuralRenderError(f"no clip with at least {span} frames found", ", ".join(map(str, roots)))
        for clip, meta in zip(self.clips, self.metas):
            missing = [p for p in passes if p not in meta.passes]
            if missing or meta.rgb_source is None:
                raise NeuralRenderError(f"clip lacks {missing or ['rgb']}", clip)
            if crop is not None and (crop[0] > meta.height or crop[1] > meta.width):
                raise NeuralRenderError(f"crop {crop} exceeds the clip size {meta.height}x{meta.width}", clip)
            if env is not None and meta.envmap is None:
                raise NeuralRenderError("clip has no env map but env was requested", clip)
        self.num_frames, self.frame_stride, self.span = num_frames, frame_stride, span
        self.crop, self.size, self.passes = crop, size, [p for p in PASS_CHANNELS if p in passes]
        self.env, self.env_size, self.with_aux = env, env_size, with_aux
        self.random, self.seed, self.samples_per_clip, self.epoch = random, seed, samples_per_clip, 0
        self._env_cache: dict[str, object] = {}

    def __len__(self) -> int:
        return len(self.clips) * self.samples_per_clip

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _window(self, index: int, meta) -> tuple[int, int, int, int, int]:
        """(start frame, y0, x0, crop_h, crop_w) for item ``index``."""
        import numpy as np
        state = np.random.SeedSequence([int(self.seed), int(self.epoch), int(index)]).generate_state(1)[0]
        gen = torch.Generator().manual_seed(int(state))
        ch, cw = self.crop if self.crop is not None else (meta.height, meta.width)
        last = meta.num_frames - self.span
        if self.random:
            start = int(torch.randint(0, last + 1, (1,), generator=gen))
            y0 = int(torch.randint(0, meta.height - ch + 1, (1,), generator=gen))
            x0 = int(torch.randint(0, meta.width - cw + 1, (1,), generator=gen))
        else:
            start, y0, x0 = 0, (meta.height - ch) // 2, (meta.width - cw) // 2
        return start, y0, x0, ch, cw

    def __getitem__(self, index: int) -> dict:
        from neural_render.io.clip import read_clip

        if not 0 <= index < len(self):
            raise IndexError(index)
        clip_dir, meta = self.clips[index % len(self.clips)], self.metas[index % len(self.clips)]
        start, y0, x0, ch, cw = self._window(index, meta)
        frames = slice(start, start + self.span, self.frame_stride)
        clip = read_clip(clip_dir, frames=frames, passes=self.passes)
        out_h, out_w = self.size if self.size is not None else (ch, cw)

        def crop(x: Tensor) -> Tensor:
            return x[..., y0:y0 + ch, x0:x0 + cw]

        rgb = _resize(crop(clip.rgb), out_h, out_w, smooth=True)
        gbuffer = GBuffer(**{k: _resize(crop(v), out_h, out_w, smooth=False) for k, v in clip.gbuffer.passes.items()})
        sx, sy = out_w / cw, out_h / ch
        fx, fy, cx, cy = clip.camera.intrinsics[0].tolist()
        k = torch.tensor([[fx * sx, fy * sy, (cx - x0) * sx, (cy - y0) * sy]], dtype=torch.float32)
        camera = Camera(k, clip.camera.camera_to_world, out_w, out_h)
        item = {"rgb": rgb, "gbuffer": gbuffer, "camera": camera, "clip": str(clip_dir), "start": start}
        if self.env is not None:
            env = self._envmap(clip_dir, meta)
            if self.env == "encodings":
                from neural_render.render.envmap import env_encodings
                item["env"] = env_encodings(env, camera.camera_to_world, *self.env_size)
            else:
                item["env"] = {"image": env.image[None], "rotation": env.rotation[None]}
        if self.with_aux:
            item.update(self._aux(clip_dir, range(frames.start, frames.stop, frames.step), crop, out_h, out_w, sx, sy))
        return item

    def _envmap(self, clip_dir: Path, meta):
        from neural_render.io.clip import read_clip_envmap
        key = str(clip_dir)
        if key not in self._env_cache:
            if len(self._env_cache) > 64:
                self._env_cache.clear()
            self._env_cache[key] = read_clip_envmap(clip_dir, meta)
        return self._env_cache[key]

    def _aux(self, clip_dir: Path, frames, crop, out_h: int, out_w: int, sx: float, sy: float) -> dict:
        from neural_render.synth.dataset import FLOW_FILE, read_flow, read_object_ids
        if not (clip_dir / FLOW_FILE.format(0)).is_file():
            return {}
        flows, valids, ids = [], [], []
        for t in frames:
            flow, valid = read_flow(clip_dir, t)
            flows.append(torch.from_numpy(flow))
            valids.append(torch.from_numpy(valid))
            ids.append(torch.from_numpy(read_object_ids(clip_dir, t)))
        flow = _resize(crop(torch.stack(flows)[None]), out_h, out_w, smooth=False)
        flow = flow * torch.tensor([sx, sy]).reshape(1, 1, 2, 1, 1)
        return {"flow": flow, "flow_valid": _resize(crop(torch.stack(valids)[None]), out_h, out_w, smooth=False),
                "object_id": _resize(crop(torch.stack(ids)[None]).float(), out_h, out_w, smooth=False).long()}


def _resize(x: Tensor, height: int, width: int, smooth: bool) -> Tensor:
    """(B, T, C, h, w) -> (B, T, C, height, width) with kornia: bilinear (+antialias) or nearest-exact."""
    b, t, c, h, w = x.shape
    if (h, w) == (height, width):
        return x.contiguous()
    from kornia.geometry.transform import resize
    flat = x.reshape(b * t, c, h, w)
    if smooth:
        y = resize(flat, (height, width), interpolation="bilinear", align_corners=False, antialias=True)
    else:
        y = resize(flat, (height, width), interpolation="nearest-exact")
    return y.reshape(b, t, c, height, width).contiguous()


def collate_clips(items: list[dict]) -> dict:
    """Concatenate dataset items along the batch dimension (GBuffer, Camera and nested env dicts included)."""
    if not items:
        raise NeuralRenderError("collate_clips needs at least one item")

    def merge(values: list):
        first = values[0]
        if isinstance(first, Tensor):
            return torch.cat(values, 0)
        if isinstance(first, GBuffer):
            return GBuffer(**{k: torch.cat([v.passes[k] for v in values], 0) for k in first.passes})
        if isinstance(first, Camera):
            sizes = {(c.width, c.height) for c in values}
            if len(sizes) != 1:
                raise NeuralRenderError(f"cannot batch cameras of different sizes {sorted(sizes)}")
            return Camera(torch.cat([c.intrinsics for c in values]), torch.cat([c.camera_to_world for c in values]),
                          first.width, first.height)
        if isinstance(first, dict):
            return {k: merge([v[k] for v in values]) for k in first}
        return list(values)

    return {k: merge([item[k] for item in items]) for k in items[0]}
