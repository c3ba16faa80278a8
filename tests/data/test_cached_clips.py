"""Packed in-memory training data: round trip of clip folders, cache reuse/invalidation, windows, mirrors, batches
that the inverse task accepts."""

import os

import pytest
import torch

from neural_render.data.cached_clips import CachedInverseDataModule, pack_clips
from neural_render.errors import NeuralRenderError
from neural_render.io.clip import Clip, write_clip
from neural_render.types import Camera, GBuffer


def _clip(seed: int, t: int = 5, h: int = 8, w: int = 12) -> Clip:
    g = torch.Generator().manual_seed(seed)
    normal = torch.nn.functional.normalize(torch.randn(1, t, 3, h, w, generator=g), dim=2)
    gb = GBuffer(basecolor=torch.rand(1, t, 3, h, w, generator=g), normal=normal,
                 depth=torch.rand(1, t, 1, h, w, generator=g) + 1.0, roughness=torch.rand(1, t, 1, h, w, generator=g),
                 metallic=torch.rand(1, t, 1, h, w, generator=g), mask=torch.ones(1, t, 1, h, w))
    cam = Camera(torch.tensor([[10.0, 10.0, w / 2, h / 2]]), torch.eye(4).expand(1, t, 4, 4).clone(), w, h)
    return Clip(rgb=torch.rand(1, t, 3, h, w, generator=g) * 2, gbuffer=gb, camera=cam)


@pytest.fixture
def dataset(tmp_path):
    root = tmp_path / "ds"
    clips = [_clip(i) for i in range(3)]
    for i, clip in enumerate(clips):
        write_clip(root / f"clip_{i:06d}", clip, preview_mp4=False)
    return root, clips


def test_pack_round_trip_and_reuse(dataset, tmp_path):
    root, clips = dataset
    cache = tmp_path / "c" / "pack.safetensors"
    pack_clips(root, cache)
    from safetensors.torch import load_file

    tensors = load_file(str(cache))
    assert tensors["rgb"].shape == (3, 5, 3, 8, 12) and tensors["rgb"].dtype == torch.float16
    for i, clip in enumerate(clips):
        assert torch.allclose(tensors["rgb"][i].float(), clip.rgb[0], rtol=1e-3, atol=1e-3)
        assert torch.allclose(tensors["normal"][i].float(), clip.gbuffer.normal[0], atol=1e-3)
    stamp = os.stat(cache).st_mtime_ns
    pack_clips(root, cache)
    assert os.stat(cache).st_mtime_ns == stamp            # up to date: not rewritten
    write_clip(root / "clip_000003", _clip(9), preview_mp4=False)
    pack_clips(root, cache)
    assert load_file(str(cache))["rgb"].shape[0] == 4     # a new clip invalidates the cache


def test_windows_crops_and_mirror(dataset, tmp_path):
    root, clips = dataset
    dm = CachedInverseDataModule(str(root), cache=str(tmp_path / "p.safetensors"), num_frames=3, crop=[4, 6],
                                 hflip=True, batch_size=2, samples_per_clip=8, seed=1)
    dm.setup("fit")
    ds = dm.train_set
    flips = 0
    for index in range(len(ds)):
        item = ds[index]
        assert item["rgb"].shape == (1, 3, 3, 4, 6) and item["gbuffer"].shape == (1, 3, 4, 6)
        clip = clips[index % 3]
        s = item["start"]
        full = clip.gbuffer.normal[:, s:s + 3].half().float()
        # locate the crop: try every offset, unflipped and mirrored (normal x negated)
        found = None
        for y0 in range(8 - 4 + 1):
            for x0 in range(12 - 6 + 1):
                ref = full[..., y0:y0 + 4, x0:x0 + 6]
                mirrored = ref.flip(-1) * torch.tensor([-1.0, 1.0, 1.0]).view(1, 1, 3, 1, 1)
                if torch.equal(item["gbuffer"].normal, ref):
                    found = False
                elif torch.equal(item["gbuffer"].normal, mirrored):
                    found = True
        assert found is not None
        flips += found
    assert 0 < flips < len(ds)                            # both orientations occur
    epoch0 = [ds[i] for i in range(len(ds))]
    assert all(torch.equal(a["rgb"], ds[i]["rgb"]) for i, a in enumerate(epoch0))          # reproducible
    ds.set_epoch(1)
    assert any(not torch.equal(a["rgb"], ds[i]["rgb"]) for i, a in enumerate(epoch0))      # new windows per epoch


def test_illumination_gain(dataset, tmp_path):
    root, _ = dataset
    kwargs = {"cache": str(tmp_path / "p.safetensors"), "num_frames": 5, "hflip": False, "samples_per_clip": 4,
              "seed": 3}
    plain = CachedInverseDataModule(str(root), **kwargs)
    gained = CachedInverseDataModule(str(root), exposure_std=0.5, white_balance_std=0.2, **kwargs)
    plain.setup("fit")
    gained.setup("fit")
    ratios = []
    for i in range(len(plain.train_set)):
        a, b = plain.train_set[i], gained.train_set[i]
        assert torch.equal(a["gbuffer"].basecolor, b["gbuffer"].basecolor)       # targets untouched
        ratio = b["rgb"] / a["rgb"]
        per_channel = ratio.mean(dim=(0, 1, 3, 4))
        assert torch.allclose(ratio, per_channel.view(1, 1, 3, 1, 1).expand_as(ratio), rtol=1e-4)
        ratios.append(per_channel)
    ratios = torch.stack(ratios)
    assert ratios.std(dim=0).min() > 0.05 and (ratios[:, 0] != ratios[:, 1]).all()   # varies per window and channel


def test_batches_feed_the_inverse_task(dataset, tmp_path):
    from neural_render.models.codec import PixelUnshuffleCodec
    from neural_render.models.denoiser import Denoiser
    from neural_render.tasks.base import make_backbone
    from neural_render.tasks.inverse import InverseTask

    root, _ = dataset
    dm = CachedInverseDataModule(str(root), cache=str(tmp_path / "p.safetensors"), num_frames=2, crop=[8, 8],
                                 batch_size=2)
    batch = next(iter(dm.train_dataloader()))
    c = 12
    backbone = make_backbone("wan", tiny=True, seed=0, cond_channels=c,
                             config={"in_channels": 5 * c, "out_channels": 5 * c, "patch_size": [1, 1, 1]})
    task = InverseTask(backbone, Denoiser(kind="x0"), PixelUnshuffleCodec(2), mode="joint")
    loss = task.training_step(batch, 0)
    assert torch.isfinite(loss) and loss > 0


def test_bad_inputs(tmp_path, dataset):
    root, _ = dataset
    with pytest.raises(NeuralRenderError):
        pack_clips(tmp_path / "missing", tmp_path / "x.safetensors")
    with pytest.raises(NeuralRenderError):
        CachedInverseDataModule(str(root), cache=str(tmp_path / "p.safetensors"), num_frames=9).setup("fit")
    write_clip(root / "clip_000009", _clip(3, h=10), preview_mp4=False)
    with pytest.raises(NeuralRenderError):
        pack_clips(root, tmp_path / "y.safetensors")


def test_several_train_folders_are_concatenated(dataset, tmp_path):
    root, clips = dataset
    other = tmp_path / "sky"
    extra = [_clip(20 + i) for i in range(2)]
    for i, clip in enumerate(extra):
        write_clip(other / f"clip_{i:06d}", clip, preview_mp4=False)
    dm = CachedInverseDataModule([str(root), str(other)], num_frames=5, hflip=False, batch_size=2)
    dm.setup("fit")
    ds = dm.train_set
    assert len(ds) == 5 and (other / ".packed_inverse.safetensors").is_file()
    for index, clip in enumerate(clips + extra):      # folder order, then clip order
        assert torch.allclose(ds[index]["rgb"][0], clip.rgb[0].half().float())
    small = tmp_path / "small"
    write_clip(small / "clip_000000", _clip(30, h=4), preview_mp4=False)
    with pytest.raises(NeuralRenderError, match="different sizes"):
        CachedInverseDataModule([str(root), str(small)]).setup("fit")
    with pytest.raises(NeuralRenderError, match="cache only with one"):
        CachedInverseDataModule([str(root), str(other)], cache=str(tmp_path / "x.safetensors"))


def test_scale_range_rescales_regions_to_the_crop(tmp_path):
    """scale_range: regions of crop/s pixels box-filtered to the crop; normals unit, mask binary, values averaged."""
    from neural_render.data.cached_clips import CachedClipDataset

    g = torch.Generator().manual_seed(0)
    n, t, h, w = 2, 3, 16, 16
    normal = torch.nn.functional.normalize(torch.randn(n, t, 3, h, w, generator=g), dim=2)
    tensors = {"rgb": torch.rand(n, t, 3, h, w, generator=g), "normal": normal,
               "mask": (torch.rand(n, t, 1, h, w, generator=g) > 0.5).float()}
    ds = CachedClipDataset(tensors, ["a", "b"], num_frames=2, crop=(4, 4), scale_range=(0.25, 0.25), seed=3)
    item = ds[0]
    assert item["rgb"].shape == (1, 2, 3, 4, 4)
    # s = 1/4: the whole 16x16 frame, 4x4 box-averaged
    start = item["start"]
    expect = torch.nn.functional.avg_pool2d(tensors["rgb"][0, start:start + 2], 4)
    assert torch.allclose(item["rgb"][0], expect, atol=1e-6)
    assert torch.allclose(item["gbuffer"].normal.norm(dim=2), torch.ones(1, 2, 4, 4), atol=1e-5)
    assert set(item["gbuffer"].mask.unique().tolist()) <= {0.0, 1.0}
    wide = CachedClipDataset(tensors, ["a", "b"], num_frames=2, crop=(4, 4), scale_range=(0.25, 1.0), seed=3)
    for index in range(2):
        for epoch in range(8):
            wide.set_epoch(epoch)
            assert wide[index]["rgb"].shape == (1, 2, 3, 4, 4)
    with pytest.raises(NeuralRenderError):
        CachedClipDataset(tensors, ["a", "b"], num_frames=2, crop=(4, 4), scale_range=(0.0, 1.0))
    with pytest.raises(NeuralRenderError):
        CachedClipDataset(tensors, ["a", "b"], num_frames=2, crop=None, scale_range=(0.5, 1.0))
