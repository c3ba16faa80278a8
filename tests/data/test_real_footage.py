"""The real-footage set (neural_render/data/real_footage.py) on a tiny committed excerpt of opencv-doc."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from neural_render.data.real_footage import (
    VIDEO_SPLITS,
    find_opencv_doc,
    make_real_set,
    photo_pan,
    square_frames,
    video_clip_starts,
)
from neural_render.io import read_clip

ROOT = Path(__file__).resolve().parents[2]
EXCERPT = ROOT / "tests" / "fixtures" / "opencv_doc_excerpt"
TEXTURES = ROOT / "data" / "textures"


def test_clip_starts_are_non_overlapping_and_spread():
    assert video_clip_starts(100, 4, 2, 3) == [0, 48, 88]       # 12 spans of 8 frames, 3 evenly spread
    assert video_clip_starts(7, 4, 2, 3) == []                 # shorter than one clip
    starts = video_clip_starts(457, 8, 2, 24)
    assert len(starts) == 24 and all(b - a >= 16 for a, b in zip(starts, starts[1:])) and starts[-1] + 16 <= 457


def test_square_frames_and_pan_shapes():
    frames = np.random.default_rng(0).integers(0, 255, (3, 48, 80, 3), dtype=np.uint8)
    assert square_frames(frames, 16).shape == (3, 16, 16, 3)
    photo = np.random.default_rng(1).integers(0, 255, (60, 90, 3), dtype=np.uint8)
    a, b = photo_pan(photo, 5, 16, seed=3), photo_pan(photo, 5, 16, seed=3)
    assert a.shape == (5, 16, 16, 3) and np.array_equal(a, b)          # deterministic
    assert not np.array_equal(a[0], a[-1])                               # it moves


def test_every_split_has_its_own_sources():
    splits = {v.name: v.split for v in VIDEO_SPLITS}
    assert splits == {"tree": "train", "vtest": "train", "cup": "val", "box": "test"}


def test_make_real_set_on_the_excerpt(tmp_path):
    doc = find_opencv_doc(EXCERPT)
    assert doc is not None
    out = tmp_path / "real"
    record = make_real_set(doc, out, TEXTURES, size=16, frames=4, stride=2, max_clips=2)
    assert record["counts"] == {"train": 5, "val": 2, "test": 3}      # tree 2 + vtest 2 + baboon; cup 2; box 2 + fruits
    assert json.loads((out / "real_set.json").read_text())["counts"] == record["counts"]
    by_source: dict[str, set] = {}
    for clip in record["clips"]:
        by_source.setdefault(clip["source"], set()).add(clip["split"])
        assert (out / clip["clip"] / "meta.json").is_file()
    assert all(len(s) == 1 for s in by_source.values())                  # a source never spans two splits
    assert "photo_chessboard" not in by_source                           # not a texture of the engine: unused
    assert by_source["photo_fruits"] == {"test"} and by_source["photo_baboon"] == {"train"}
    clip = read_clip(out / "test" / "box_01")
    assert tuple(clip.rgb.shape) == (1, 4, 3, 16, 16) and clip.meta.extra["source_frames"] == [8, 10, 12, 14]
    assert float(clip.rgb.min()) >= 0 and float(clip.rgb.max()) <= 1
    assert clip.meta.fps == pytest.approx(15.0)                            # the excerpt is 30 fps, every 2nd frame
    # resumable: a second call keeps the finished clips untouched
    stamp = (out / "test" / "box_01" / "meta.json").stat().st_mtime_ns
    make_real_set(doc, out, TEXTURES, size=16, frames=4, stride=2, max_clips=2)
    assert (out / "test" / "box_01" / "meta.json").stat().st_mtime_ns == stamp


def test_a_missing_video_is_one_clear_error(tmp_path):
    import shutil

    from neural_render.errors import NeuralRenderError

    doc = tmp_path / "doc"
    shutil.copytree(find_opencv_doc(EXCERPT), doc)
    (doc / "opencv4" / "html" / "box.mp4.gz").unlink()
    with pytest.raises(NeuralRenderError, match="box.mp4.gz.*video missing"):
        make_real_set(doc, tmp_path / "real", TEXTURES, size=16, frames=4, stride=2, max_clips=1)
