"""`import` and `shade` commands, and bad input through the CLI: exit 2, file and reason named, nothing half-written."""

import os

import numpy as np
import pytest
import torch

from neural_render.cli import EXIT_BAD_INPUT, main
from neural_render.demo.scene import demo_scene
from neural_render.io import Clip, ClipMeta, read_clip, read_video, write_clip, write_video


@pytest.fixture(scope="module")
def scene_clip(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips") / "scene"
    scene = demo_scene(2, 32, 24)
    write_clip(folder, Clip(rgb=None, gbuffer=scene.gbuffer, camera=scene.camera,
                            meta=ClipMeta.for_camera(scene.camera)))
    return folder


def _leftovers(folder):
    return [p for p in os.listdir(folder) if ".tmp" in p]


def test_import_video_round_trips_frames(tmp_path):
    frames = np.random.default_rng(0).integers(0, 256, (4, 16, 24, 3), dtype=np.uint8)
    write_video(tmp_path / "in.mp4", frames, fps=10.0, lossless=True)
    assert main(["import", str(tmp_path / "in.mp4"), "--out", str(tmp_path / "clip"), "--max-frames", "3"]) == 0
    clip = read_clip(tmp_path / "clip")
    assert clip.meta.num_frames == 3 and clip.meta.fps == 10.0 and clip.meta.rgb_source == "mp4"
    back, _ = read_video(tmp_path / "clip" / "rgb.mp4")
    assert np.array_equal(back, frames[:3])


def test_shade_renders_a_clip(scene_clip, tmp_path, capsys):
    out = tmp_path / "shaded.mp4"
    assert main(["shade", str(scene_clip), "--envmap", "venice_sunset", "--rotate", "30,0,0", "--out", str(out)]) == 0
    frames, _ = read_video(out)
    assert frames.shape == (2, 24, 32, 3) and frames.std() > 5
    assert main(["shade", str(scene_clip), "--envmap", "venice_sunset", "--out", str(tmp_path / "shaded_clip")]) == 0
    shaded = read_clip(tmp_path / "shaded_clip")
    assert shaded.rgb.shape == (1, 2, 3, 24, 32) and torch.isfinite(shaded.rgb).all()


def _bad_files(tmp_path):
    truncated = tmp_path / "trunc_clip"
    write_clip(truncated, Clip(rgb=torch.rand(1, 2, 3, 8, 8), gbuffer=demo_scene(2, 8, 8).gbuffer,
                               camera=demo_scene(2, 8, 8).camera))
    frame = truncated / "frames" / "000001.exr"
    frame.write_bytes(frame.read_bytes()[:200])
    garbage_hdr = tmp_path / "garbage.hdr"
    garbage_hdr.write_bytes(b"#?NOTRADIANCE\nthis is not a header\n\n-Y 2 +X 2\n" + b"\x00" * 7)
    empty_mp4 = tmp_path / "empty.mp4"
    empty_mp4.write_bytes(b"")
    return truncated, garbage_hdr, empty_mp4


def test_bad_inputs_exit_2_naming_the_file(tmp_path, scene_clip, capsys):
    truncated, garbage_hdr, empty_mp4 = _bad_files(tmp_path)
    out_dir = tmp_path / "outs"
    out_dir.mkdir()
    cases = [
        (["contact-sheet", str(truncated), "--out", str(out_dir / "sheet.png")], "000001.exr"),
        (["shade", str(scene_clip), "--envmap", str(garbage_hdr), "--out", str(out_dir / "x.mp4")], "garbage.hdr"),
        (["import", str(empty_mp4), "--out", str(out_dir / "clip")], "empty.mp4"),
        (["shade", str(scene_clip), "--rotate", "1,2", "--out", str(out_dir / "y.mp4")], "yaw,pitch,roll"),
        (["demo", "--frames", "0", "--out", str(out_dir / "demo")], "--frames"),
    ]
    for argv, named in cases:
        assert main(argv) == EXIT_BAD_INPUT, argv
        err = capsys.readouterr().err
        assert err.startswith("neural-render: error:") and named in err, (argv, err)
    assert sorted(os.listdir(out_dir)) == [] and _leftovers(tmp_path) == []
