"""`neural-render inverse`: video / frames / clip folder -> clip folder + previews + contact sheet; bad input -> exit 2
with nothing written. The model is a tiny UNTRAINED pipeline built here (mechanics only, never quality)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from neural_render.bench.inverse import build_tiny_pipeline
from neural_render.cli import EXIT_BAD_INPUT, main
from neural_render.io import read_clip, read_image, read_video, write_image, write_video

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    out = {}
    for name, mode, kind, factor in [("joint", "joint", "flow", 2), ("per_pass", "per_pass", "x0", 2),
                                     ("stride4", "per_pass", "x0", 4)]:
        build_tiny_pipeline(mode, kind=kind, factor=factor).save_pretrained(root / name)
        out[name] = root / name
    return out


def frames_uint8(t=5, h=12, w=14, seed=0) -> np.ndarray:
    g = np.random.default_rng(seed)
    base = g.integers(0, 256, size=(1, h // 2, w // 2, 3)).repeat(2, 1).repeat(2, 2)
    return np.clip(base + np.arange(t).reshape(t, 1, 1, 1) * 6, 0, 255).astype(np.uint8)


def test_video_file_gives_clip_previews_and_contact_sheet(tmp_path, models, capsys):
    write_video(tmp_path / "in.mp4", frames_uint8(), fps=10.0, lossless=True)
    out = tmp_path / "out"
    assert main(["inverse", str(tmp_path / "in.mp4"), "--out", str(out), "--model", str(models["joint"]),
                 "--steps", "2", "--window", "3", "--overlap", "1", "--no-progress"]) == 0
    assert "UNTRAINED" in capsys.readouterr().err  # a warning: logged to stderr
    clip = read_clip(out)
    g = clip.gbuffer.validate("output")
    assert clip.rgb.shape == (1, 5, 3, 12, 14) and g.normal.shape == (1, 5, 3, 12, 14)
    assert set(g.passes) == {"basecolor", "normal", "depth", "roughness", "metallic", "mask"}
    extra = clip.meta.extra["inverse"]
    assert extra["trained"] is False and extra["steps"] == 2 and extra["windows"] == [[0, 3], [2, 5]]
    assert clip.meta.fps == 10.0
    for name in g.passes:
        video, _ = read_video(out / "previews" / f"{name}.mp4")
        assert video.shape == (5, 12, 14, 3), name
    assert read_image(out / "contact_sheet.png").shape[1] > 6 * 14
    # the stored rgb is the input video (lossless rgb.mp4 of the same 8-bit frames)
    original, _ = read_video(tmp_path / "in.mp4")
    stored, _ = read_video(out / "rgb.mp4")
    assert np.array_equal(original, stored)


def test_frame_folder_and_clip_folder_inputs(tmp_path, models):
    folder = tmp_path / "frames"
    for i, frame in enumerate(frames_uint8(3)):
        write_image(folder / f"{i:03d}.png", frame)
    assert main(["inverse", str(folder), "--out", str(tmp_path / "a"), "--model", str(models["per_pass"]),
                 "--passes", "normal", "depth", "--size", "8", "--no-progress"]) == 0
    a = read_clip(tmp_path / "a")
    assert set(a.gbuffer.passes) == {"normal", "depth", "mask"} and a.rgb.shape[-2:] == (12, 14)
    assert a.meta.extra["inverse"]["processing_size"] == [6, 8]  # longer side 14 -> 8, 12 -> 6.9 -> 6 (stride 2)
    assert main(["inverse", str(tmp_path / "a"), "--out", str(tmp_path / "b"), "--model", str(models["per_pass"]),
                 "--passes", "basecolor", "--no-progress"]) == 0
    b = read_clip(tmp_path / "b")
    assert torch.equal(b.camera.camera_to_world, a.camera.camera_to_world)
    assert set(b.gbuffer.passes) == {"basecolor", "mask"}


def no_output(root: Path) -> bool:
    return not any(p.name.startswith(("out", ".out")) for p in root.iterdir())


def test_bad_inputs_exit_2_and_write_nothing(tmp_path, models, monkeypatch, capsys):
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"not a video at all" * 50)
    (tmp_path / "empty").mkdir()
    tiny = tmp_path / "tiny"
    for i in range(2):
        write_image(tiny / f"{i}.png", np.zeros((3, 3, 3), np.uint8))
    write_video(tmp_path / "ok.mp4", frames_uint8(2), lossless=True)
    (tmp_path / "broken_model").mkdir()
    (tmp_path / "broken_model" / "model_index.json").write_text(json.dumps({"format_version": 1}))
    cases = [(corrupt, models["joint"], "not a readable video"),
             (tmp_path / "empty", models["joint"], "no frames"),
             (tiny, models["stride4"], "below the model stride"),
             (tmp_path / "missing.mp4", models["joint"], "no such"),
             (tmp_path / "ok.mp4", tmp_path / "no_model", "does not exist"),
             (tmp_path / "ok.mp4", tmp_path / "broken_model", "no backbone entry")]
    for source, model, reason in cases:
        code = main(["inverse", str(source), "--out", str(tmp_path / "out"), "--model", str(model), "--no-progress"])
        err = capsys.readouterr().err
        assert code == EXIT_BAD_INPUT and reason in err, (source, err)
        assert no_output(tmp_path), source
    assert main(["inverse", str(tmp_path / "ok.mp4"), "--out", str(tmp_path / "out"), "--model",
                 str(models["joint"]), "--window", "2", "--overlap", "2"]) == EXIT_BAD_INPUT
    # the default model is the shipped one: a data folder without it is a clear error, not a crash
    data = tmp_path / "data"
    (data / "envmaps").mkdir(parents=True)
    monkeypatch.setenv("NEURAL_RENDER_DATA", str(data))
    assert main(["inverse", str(tmp_path / "ok.mp4"), "--out", str(tmp_path / "out")]) == EXIT_BAD_INPUT
    assert "no shipped inverse model" in capsys.readouterr().err and no_output(tmp_path)
