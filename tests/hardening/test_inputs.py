"""Input safety (issue #21, "safe on a fresh machine"): truncated videos, non-2:1 env maps, clip folders whose files
disagree with meta.json and absurd insert scales are refused with exit 2 and one line naming the file; warnings go to
stderr through logging; a normal ``demo`` run prints no traceback (its mesh code needs scipy, a declared dependency).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from neural_render.cli import EXIT_BAD_INPUT, main
from neural_render.demo.scene import demo_scene
from neural_render.errors import NeuralRenderError
from neural_render.io import Clip, ClipMeta, read_clip, read_video, write_clip, write_hdr, write_video

ROOT = Path(__file__).resolve().parents[2]
T = 8

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _frames(t=T, h=32, w=48, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8)


def _truncated(folder: Path, name="cut.mp4", fraction=0.7, lossless=False) -> Path:
    """An 8-frame MP4 written by the project, cut to ``fraction`` of its bytes (lossy: moov first, so it opens)."""
    whole = folder / f"whole_{name}"
    write_video(whole, _frames(), fps=24.0, lossless=lossless)
    cut = folder / name
    cut.write_bytes(whole.read_bytes()[:int(whole.stat().st_size * fraction)])
    return cut


def _error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and lines, err
    return lines[-1]


# ------------------------------------------------------------------------------------------ truncated videos
@pytest.mark.parametrize("fraction", [0.3, 0.5, 0.7, 0.9, 0.99])
@pytest.mark.parametrize("lossless", [False, True])
def test_truncated_mp4_is_refused_naming_the_file(tmp_path, fraction, lossless):
    cut = _truncated(tmp_path, fraction=fraction, lossless=lossless)
    with pytest.raises(NeuralRenderError) as info:
        read_video(cut)
    assert info.value.path == str(cut)
    assert any(word in info.value.reason for word in ("truncated", "moov atom not found", "header")), info.value


def test_lossy_cut_reports_decoded_of_expected_frames(tmp_path):
    cut = _truncated(tmp_path, fraction=0.7)
    with pytest.raises(NeuralRenderError, match=r"truncated: \d of 8 frames decoded"):
        read_video(cut)


def _ffmpeg(*args):
    import imageio_ffmpeg
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def test_good_videos_are_not_refused(tmp_path):
    """No false alarm: project videos (lossy, lossless, odd size), ffmpeg's own at 29.97 fps with B-frames and an
    audio track, an edit-list trim (``-ss`` stream copy), a variable-frame-rate file, Matroska and QuickTime."""
    frames = _frames(5, 17, 23)
    write_video(tmp_path / "lossy.mp4", frames, fps=30000 / 1001)
    write_video(tmp_path / "lossless.mp4", frames, fps=12.5, lossless=True)
    assert np.array_equal(read_video(tmp_path / "lossless.mp4")[0], frames)
    assert read_video(tmp_path / "lossy.mp4")[0].shape == (5, 18, 24, 3)
    src = ["-f", "lavfi", "-i", "testsrc2=size=64x48:rate=30000/1001", "-t", "3"]
    _ffmpeg(*src, "-f", "lavfi", "-i", "sine=frequency=440", "-shortest", "-c:v", "libx264", "-c:a", "aac",
            str(tmp_path / "ntsc.mp4"))
    _ffmpeg("-ss", "1.3", "-i", str(tmp_path / "ntsc.mp4"), "-c", "copy", str(tmp_path / "trimmed.mp4"))
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=60", "-frames:v", "40", "-vf",
            "setpts='if(lt(N,20),N/60,1+(N-20)/15)/TB'", "-fps_mode", "vfr", "-c:v", "libx264",
            str(tmp_path / "vfr.mp4"))
    _ffmpeg(*src, "-c:v", "libx264", str(tmp_path / "ntsc.mkv"))
    _ffmpeg(*src, "-c:v", "libx264", str(tmp_path / "ntsc.mov"))
    for name in ("ntsc.mp4", "trimmed.mp4", "vfr.mp4", "ntsc.mkv", "ntsc.mov"):
        video, fps = read_video(tmp_path / name)
        assert len(video) >= 40 and fps > 0, name
    assert round(read_video(tmp_path / "ntsc.mp4")[1], 2) == 29.97


def test_inverse_on_a_truncated_video_exits_2_and_writes_nothing(tmp_path, untrained_pipelines, capsys):
    cut = _truncated(tmp_path, fraction=0.5)
    out = tmp_path / "out"
    code = main(["inverse", str(cut), "--out", str(out), "--model", str(untrained_pipelines / "inverse_model"),
                 "--steps", "1", "--no-progress"])
    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT
    line = _error_line(err)
    assert line.startswith(f"neural-render: error: {cut}: truncated"), err
    assert not out.exists() and not [p for p in os.listdir(tmp_path) if p.startswith(".") or "tmp" in p]


def test_autolabel_marks_a_truncated_video_failed_with_the_reason(tmp_path, untrained_pipelines, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    _truncated(inputs, name="cut.mp4", fraction=0.5)
    (inputs / "whole_cut.mp4").unlink()
    out = tmp_path / "labels"
    code = main(["autolabel", str(inputs), "--out", str(out), "--model", str(untrained_pipelines / "inverse_model"),
                 "--steps", "1", "--accelerator", "cpu"])
    assert code == 1
    entry = json.loads((out / "manifest.json").read_text())["clips"]["cut"]
    assert entry["status"] == "failed" and "truncated" in entry["reason"], entry
    assert not (out / "cut").exists()


# ------------------------------------------------------------------------------------------ env maps
@pytest.fixture(scope="module")
def scene_clip(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips") / "scene"
    scene = demo_scene(2, 16, 12)
    write_clip(folder, Clip(rgb=None, gbuffer=scene.gbuffer, camera=scene.camera,
                            meta=ClipMeta.for_camera(scene.camera)))
    return folder


@pytest.mark.parametrize("shape", [(16, 16), (8, 24), (9, 16)])
def test_env_map_that_is_not_2_to_1_exits_2(tmp_path, scene_clip, capsys, shape):
    env = tmp_path / "sky.hdr"
    write_hdr(env, np.full((*shape, 3), 0.5, np.float32))
    out = tmp_path / "shaded.mp4"
    assert main(["shade", str(scene_clip), "--envmap", str(env), "--out", str(out)]) == EXIT_BAD_INPUT
    line = _error_line(capsys.readouterr().err)
    assert line.startswith(f"neural-render: error: {env}: ") and "2:1" in line, line
    assert not out.exists()


def test_shipped_env_maps_are_2_to_1():
    from neural_render.io import load_envmap

    shipped = sorted((ROOT / "data" / "envmaps").glob("*.hdr"))
    assert shipped
    for path in shipped:
        env = load_envmap(path)
        assert env.width == 2 * env.height, path


# ------------------------------------------------------------------------------------------ clip meta vs files
def _clip_with_rgb(folder: Path, t=4):
    scene = demo_scene(t, 16, 12)
    write_clip(folder, Clip(rgb=torch.rand(1, t, 3, 12, 16), gbuffer=scene.gbuffer, camera=scene.camera))
    return folder


def _shrink_meta(folder: Path, n: int):
    meta = json.loads((folder / "meta.json").read_text())
    meta["num_frames"] = n
    meta["camera_to_world"] = meta["camera_to_world"][:n]
    (folder / "meta.json").write_text(json.dumps(meta))


def test_meta_num_frames_below_the_frame_files_exits_2(tmp_path, capsys):
    clip = _clip_with_rgb(tmp_path / "clip")
    _shrink_meta(clip, 3)  # a self-consistent meta.json that no longer matches frames/ (4 EXRs) nor rgb.mp4
    out = tmp_path / "shaded.mp4"
    assert main(["shade", str(clip), "--envmap", "venice_sunset", "--out", str(out)]) == EXIT_BAD_INPUT
    line = _error_line(capsys.readouterr().err)
    assert line.startswith(f"neural-render: error: {clip}: meta.json says num_frames=3") and "4 frame EXRs" in line
    assert not out.exists()


def test_meta_num_frames_above_the_frame_files_is_refused_naming_the_folder(tmp_path):
    clip = _clip_with_rgb(tmp_path / "clip")
    (clip / "frames" / "000003.exr").unlink()
    with pytest.raises(NeuralRenderError, match="num_frames=4 but frames/ holds 3 frame EXRs") as info:
        read_clip(clip, frames=slice(0, 2))  # even when the frames asked for exist
    assert info.value.path == str(clip)


def test_rgb_mp4_with_another_frame_count_is_refused(tmp_path):
    clip = _clip_with_rgb(tmp_path / "clip")
    write_video(clip / "rgb.mp4", _frames(6, 12, 16))  # the preview now holds 6 frames, meta.json says 4
    with pytest.raises(NeuralRenderError, match="num_frames=4 but rgb.mp4 holds 6 frames") as info:
        read_clip(clip)
    assert info.value.path == str(clip)


# ------------------------------------------------------------------------------------------ insert scales
@pytest.fixture(scope="module")
def insert_inputs(tmp_path_factory):
    import trimesh

    root = tmp_path_factory.mktemp("insert")
    write_video(root / "in.mp4", np.full((4, 16, 24, 3), 128, np.uint8), fps=8.0)
    trimesh.creation.box(extents=(1.0, 1.0, 1.0)).export(root / "cube.glb")
    return root


@pytest.mark.parametrize("scale, words", [("1e6", "must be a finite number in (0, 10000]"), ("0", "(0, 10000]"),
                                          ("-1", "(0, 10000]"), ("inf", "(0, 10000]"), ("nan", "(0, 10000]"),
                                          ("1e-6", "smaller than a pixel")])
def test_absurd_insert_scale_exits_2_before_model_work(insert_inputs, untrained_pipelines, tmp_path, capsys,
                                                       monkeypatch, scale, words):
    from neural_render import hub
    from neural_render.pipelines.insert import CacheForwardPipeline

    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded before the arguments were checked")

    monkeypatch.setattr(CacheForwardPipeline, "from_pretrained", no_model)
    monkeypatch.setattr(hub, "load_inverse", no_model)
    out = tmp_path / "x.mp4"
    code = main(["insert", str(insert_inputs / "in.mp4"), "--mesh", str(insert_inputs / "cube.glb"), "--at=0,0,-3",
                 "--scale", scale, "--envmap", "venice_sunset", "--model", str(untrained_pipelines / "forward_model"),
                 "--inverse-model", str(untrained_pipelines / "inverse_model"), "--out", str(out), "--no-progress"])
    assert code == EXIT_BAD_INPUT
    line = _error_line(capsys.readouterr().err)
    assert line.startswith("neural-render: error: ") and "--scale" in line and words in line, line
    assert not out.exists()


def test_object_far_larger_than_the_scene_is_refused():
    from neural_render.pipelines.insert_video import MAX_SCENE_RATIO, check_object_vs_scene
    from neural_render.types import GBuffer

    depth = torch.full((1, 2, 1, 4, 4), 0.5)  # relative depth 0.5 x depth scale 10 -> the scene is 5 units deep
    scene = GBuffer(depth=depth)
    check_object_vs_scene(2.0, scene, 10.0, "--depth-scale")
    check_object_vs_scene(MAX_SCENE_RATIO * 5.0, scene, 10.0, "--depth-scale")
    with pytest.raises(NeuralRenderError, match="times the scene's depth extent"):
        check_object_vs_scene(MAX_SCENE_RATIO * 5.0 * 1.01, scene, 10.0, "--depth-scale")


def test_depth_scale_help_is_a_real_explanation():
    from neural_render.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command").choices["insert"]
    text = next(a for a in sub._actions if a.dest == "depth_scale").help
    assert "docstring" not in text and "metres" in text


# ------------------------------------------------------------------------------------------ diagnostics, dependencies
def test_warnings_go_to_stderr_through_logging(tmp_path, untrained_pipelines, capsys):
    write_video(tmp_path / "in.mp4", _frames(3, 16, 16), fps=8.0, lossless=True)
    out = tmp_path / "out"
    assert main(["inverse", str(tmp_path / "in.mp4"), "--out", str(out), "--model",
                 str(untrained_pipelines / "inverse_model"), "--steps", "1", "--window", "3", "--overlap", "1",
                 "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "UNTRAINED" not in captured.out
    assert any(line.startswith("neural-render: WARNING: ") and "UNTRAINED" in line
               for line in captured.err.splitlines()), captured.err


def test_scipy_is_a_declared_dependency():
    import tomllib

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert any(d.split(">")[0].split("=")[0].strip() == "scipy" for d in deps)


@pytest.mark.slow
def test_demo_prints_no_traceback(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "neural_render", "demo", "--out", str(out)], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "No module named" not in proc.stderr, proc.stderr[-3000:]
    assert (out / "insert.mp4").is_file()
