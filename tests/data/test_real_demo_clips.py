"""The two shipped real clips (data/clips/real_box, real_pedestrians; issue #26) and the function that writes them
(neural_render/data/real_demo_clips.py), the latter on a tiny gzip'd video made here."""

import gzip
import json

import numpy as np
import pytest

from neural_render.data.real_demo_clips import REAL_DEMO_CLIPS, RealDemoClip, read_frames, write_real_demo_clips
from neural_render.data_assets import clip_path, data_dir
from neural_render.errors import NeuralRenderError
from neural_render.io import read_clip, read_video, write_video


@pytest.mark.parametrize("name", [c.name for c in REAL_DEMO_CLIPS])
def test_shipped_real_clips_are_small_and_complete(name):
    folder = clip_path(name)
    assert folder == data_dir() / "clips" / name
    assert sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) < 300_000
    clip = read_clip(folder)
    assert clip.rgb.shape == (1, 24, 3, 96, 128) and clip.meta.rgb_source == "mp4"
    assert np.allclose(clip.camera.camera_to_world, np.eye(4))  # identity poses: a static camera
    spec = next(c for c in REAL_DEMO_CLIPS if c.name == name)
    assert clip.meta.extra["source_frames"] == list(spec.frames) and "Apache-2.0" in clip.meta.extra["licence"]
    assert clip.meta.extra["demo"]["size"] == [64, 48] and clip.meta.extra["demo"]["inverse_model"] == "inverse_v2"
    assert name in (data_dir() / "clips" / "CREDITS.md").read_text()
    frames = read_video(folder / "rgb.mp4")[0].astype(float)
    assert frames.std() > 20 and np.abs(np.diff(frames, axis=0)).mean() > 0.2  # real content that changes


def test_write_real_demo_clips_from_a_gzipped_video(tmp_path):
    doc = tmp_path / "doc"
    (doc / "videos").mkdir(parents=True)
    rng = np.random.default_rng(0)
    source = np.repeat(np.repeat(rng.integers(0, 256, (10, 6, 8, 3), dtype=np.uint8), 4, 1), 4, 2)  # (10, 24, 32)
    write_video(tmp_path / "v.mp4", source, fps=10.0, lossless=True)
    (doc / "videos" / "v.mp4.gz").write_bytes(gzip.compress((tmp_path / "v.mp4").read_bytes()))
    spec = RealDemoClip("tiny", "videos/v.mp4.gz", (2, 4, 6), 5.0)
    assert np.array_equal(read_frames(doc / spec.path, spec.frames), source[[2, 4, 6]])
    [folder] = write_real_demo_clips(doc, tmp_path / "clips", clips=(spec,))
    meta = json.loads((folder / "meta.json").read_text())
    assert (meta["width"], meta["height"], meta["num_frames"], meta["fps"]) == (128, 96, 3, 5.0)
    assert meta["extra"]["source_frames"] == [2, 4, 6] and meta["extra"]["source_fps"] == 10.0
    frames = read_video(folder / "rgb.mp4")[0]
    # 4x4 blocks of the source, 4x upsampled by area resampling = 16x16 blocks of the same colour (lossless)
    assert np.array_equal(frames[:, ::16, ::16], source[[2, 4, 6], ::4, ::4])
    with pytest.raises(NeuralRenderError, match="no frame 12"):
        read_frames(doc / spec.path, (1, 12))
    with pytest.raises(NeuralRenderError, match="missing"):
        write_real_demo_clips(doc, tmp_path / "clips", clips=(RealDemoClip("x", "videos/none.avi", (0,), 1.0),))
