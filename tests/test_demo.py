"""The README demo command end to end (shipped clip + tiny untrained models built here, classical and neural
renderers), its bad inputs (exit 2, nothing written), the shipped clip, and the analytic scene's exact G-buffers."""

import json
import math
import os

import numpy as np
import pytest
import torch

from neural_render.cli import EXIT_BAD_INPUT, main
from neural_render.demo.scene import demo_scene, ground_gbuffer, orbit_camera
from neural_render.io import read_image, read_video

OUTPUTS = ("input.mp4", "gbuffers.mp4", "relit_kiara_1_dawn.mp4", "relit_st_fagans_interior.mp4", "edit.mp4",
           "insert.mp4", "contact_sheet.png", "summary.json")

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def models(untrained_pipelines):
    """Untrained tiny inverse + forward pipelines (tests/conftest.py): plumbing only."""
    return untrained_pipelines


def _check_outputs(out, printed, frames, height, width, others=()):
    for name in OUTPUTS:
        assert (out / name).is_file() and str(out / name) in printed, name
    # complete, nothing else (no temporaries), and marked as the demo's own output (a re-run may replace it)
    assert sorted(os.listdir(out)) == sorted([*OUTPUTS, *others, ".neural-render-output.json"])
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".")] == []
    videos = {}
    for name in OUTPUTS[:6]:
        videos[name], _ = read_video(out / name)
        want = (frames, height, 5 * width if name == "gbuffers.mp4" else width, 3)
        assert videos[name].shape == want, (name, videos[name].shape)
    a, b = (videos[n].astype(float) for n in OUTPUTS[2:4])
    assert np.abs(a - b).mean() > 3  # the two relights really differ
    source = videos["input.mp4"].astype(float)
    for name in ("edit.mp4", "insert.mp4"):
        changed = np.abs(videos[name].astype(float) - source).max(-1) > 30
        assert 0.002 < changed.mean() < 0.6, name  # something, not everything, changed
    sheet = read_image(out / "contact_sheet.png")
    assert sheet.shape[1] >= (1 + min(frames, 5)) * width and sheet.shape[0] >= 10 * height  # light + frames; 10 rows
    return json.loads((out / "summary.json").read_text())


def test_demo_on_the_shipped_clip_with_the_classical_shader(tmp_path, models, capsys):
    users = tmp_path / "users"
    users.mkdir()
    (users / "keep.txt").write_text("a file of the user's: the demo refuses the folder and leaves it alone")
    argv = ["--inverse-model", str(models / "inverse_model"), "--classical", "--frames", "4"]
    assert main(["demo", "--out", str(users), *argv]) == EXIT_BAD_INPUT
    assert "not written by `neural-render demo`" in capsys.readouterr().err and os.listdir(users) == ["keep.txt"]
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), *argv]) == 0
    captured = capsys.readouterr()
    printed = captured.out
    assert "UNTRAINED" in captured.err and "classical split-sum shader" in printed and "wall time" in printed
    assert "neural-render demo --clip real_box" in printed  # the default demo offers the real clip
    summary = _check_outputs(out, printed, 4, 96, 128)
    assert summary["renderer"] == "classical split-sum shader" and summary["forward_model"] is None
    assert summary["edit"]["target"].endswith("(clip object ids)") and summary["frames"] == 4


def test_demo_on_another_clip_with_a_forward_model(tmp_path, models, capsys):
    """A clip without object ids or demo settings: edit mask and insert spot come from the estimated G-buffers."""
    from neural_render.data_assets import envmap_path
    from neural_render.io import Clip, ClipMeta, load_envmap, write_clip
    from neural_render.render.shade import prepare_ibl, shade

    scene = demo_scene(3, 32, 24)
    env = load_envmap(envmap_path("kiara_1_dawn"))
    rgb = shade(scene.gbuffer, scene.camera, prepare_ibl(env))
    meta = ClipMeta.for_camera(scene.camera, fps=8.0, envmap={"path": str(envmap_path("kiara_1_dawn").resolve()),
                                                              "rotation_deg": [0.0, 0.0, 0.0]})
    write_clip(tmp_path / "clip", Clip(rgb, type(scene.gbuffer)(), scene.camera, meta), rgb_format="mp4")
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--clip", str(tmp_path / "clip"), "--inverse-model",
                 str(models / "inverse_model"), "--model", str(models / "forward_model")]) == 0
    printed = capsys.readouterr().out
    assert "neural forward model forward" in printed
    summary = _check_outputs(out, printed, 3, 24, 32)
    assert summary["renderer"] == "neural forward model forward_model"
    assert summary["edit"]["target"].startswith("nearest 30 %")


def test_demo_bad_input_exits_2_and_writes_nothing(tmp_path, models, capsys, monkeypatch):
    from neural_render.data_assets import data_dir

    out = tmp_path / "demo"
    inverse = str(models / "inverse_model")
    cases = [
        (["--inverse-model", str(tmp_path / "no_model")], "no_model"),
        (["--inverse-model", inverse, "--envmaps", "no_such_env", "kiara_1_dawn"], "no_such_env"),
        (["--inverse-model", inverse, "--envmaps", str(tmp_path / "sky.hdr"), "kiara_1_dawn"], "sky.hdr"),
        (["--inverse-model", inverse, "--frames", "1"], "--frames"),
        (["--inverse-model", inverse, "--clip", "no_such_clip"], "no_such_clip"),
        (["--inverse-model", inverse, "--model", str(tmp_path / "no_forward")], "no_forward"),
    ]
    for extra, named in cases:
        assert main(["demo", "--out", str(out), *extra]) == EXIT_BAD_INPUT, extra
        err = capsys.readouterr().err
        assert err.startswith("neural-render: error:") and named in err, (extra, err)
    # a data folder without the shipped inverse model: the error names the folder and the training script
    shipped = tmp_path / "data"
    shipped.mkdir()
    for name in ("envmaps", "clips"):
        os.symlink(data_dir() / name, shipped / name)
    monkeypatch.setenv("NEURAL_RENDER_DATA", str(shipped))
    assert main(["demo", "--out", str(out)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert str(shipped / "models" / "inverse_tiny") in err and "scripts/train_inverse_tiny.py" in err
    assert not out.exists() and sorted(os.listdir(tmp_path)) == ["data"]


def test_shipped_demo_clip_is_small_and_complete():
    from neural_render.data_assets import clip_path, data_dir, envmap_split
    from neural_render.demo.run import load_demo_clip

    folder = clip_path("demo_lebombo")
    assert folder == data_dir() / "clips" / "demo_lebombo"
    assert sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) < 2_000_000
    clip = load_demo_clip(folder)
    assert clip.video.shape == (1, 16, 3, 96, 128) and clip.camera.num_frames == 16
    assert clip.env is not None and clip.env.name in envmap_split()["val"]  # lit by a held-out (val) env map
    assert clip.object_ids.shape == (1, 16, 1, 96, 128) and clip.depth_scale > 0
    target = clip.settings["edit_object_id"]
    assert all(bool((clip.object_ids[0, t] == target).any()) for t in range(16))
    assert len(clip.settings["insert"]["at"]) == 3 and clip.settings["insert"]["scale"] > 0


def test_demo_on_the_shipped_real_clip(tmp_path, capsys):
    """--clip real_box: real footage at 64x48 (the clip's demo settings) with the shipped inverse_v2 unless
    --inverse-model is given; the contact sheet calls the input real footage."""
    from neural_render.data_assets import clip_path, data_dir
    from neural_render.demo.run import load_demo_clip

    clip = load_demo_clip(clip_path("real_box"), frames=3)
    assert clip.video.shape == (1, 3, 3, 48, 64) and (clip.camera.width, clip.camera.height) == (64, 48)
    assert abs(float(clip.camera.intrinsics[0, 0]) - 32 / math.tan(math.radians(30))) < 1e-3  # FOV 60 kept
    assert clip.settings["inverse_model"] == "inverse_v2" and clip.env is None and clip.object_ids is None
    shipped = [data_dir() / "models" / name for name in ("inverse_v2", "forward_tiny")]
    if not all((m / "model_index.json").is_file() for m in shipped):
        pytest.skip("the shipped models are not in this checkout")
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--clip", "real_box", "--frames", "4", "--no-cache"]) == 0
    printed = capsys.readouterr().out
    assert "real_box, 4 frames of 64x48" in printed and "--clip real_box" not in printed
    summary = _check_outputs(out, printed, 4, 48, 64)
    assert summary["inverse_model"] == str(shipped[0]) and summary["size"] == [64, 48]


def test_rotating_light_by_turning_the_camera_equals_turning_the_env():
    """The demo's trick: shading with the sky turned by R equals shading with the world turned by R^T.

    90 degrees of yaw is a whole number of env columns, so baking the turned sky resamples nothing.
    """
    from neural_render.data_assets import envmap_path
    from neural_render.io import load_envmap
    from neural_render.render.rotation import euler_to_matrix
    from neural_render.render.shade import prepare_ibl, shade
    from neural_render.types import Camera

    scene = demo_scene(1, 24, 16)
    env = load_envmap(envmap_path("kiara_1_dawn"))
    direct = shade(scene.gbuffer, scene.camera, prepare_ibl(env.rotated(yaw=90.0)))
    turn = torch.eye(4)
    turn[:3, :3] = euler_to_matrix(90.0).T
    turned = Camera(scene.camera.intrinsics, turn @ scene.camera.camera_to_world, 24, 16)
    assert torch.allclose(shade(scene.gbuffer, turned, prepare_ibl(env)), direct, atol=1e-4, rtol=1e-4)


def test_ground_disk_is_exact():
    cam = orbit_camera(2, 32, 24)
    g = ground_gbuffer(cam, (0.5, 0.5, 0.5), 0.8, 0.0, 2.0)
    valid = g.mask[0, :, 0] > 0.5
    # back-project depth to world: every valid pixel lies on y = 0 within the disk
    rays = cam.ray_directions()[0, 0]  # (3, H, W)
    points_cam = rays / -rays[2:3] * g.depth[0, :, 0][:, None]  # planar depth -> point
    origin = cam.camera_to_world[0, :, :3, 3, None, None]
    world = torch.einsum("tij,tjhw->tihw", cam.rotations()[0], points_cam) + origin
    assert float(world[:, 1][valid].abs().max()) < 1e-4
    assert float((world[:, 0] ** 2 + world[:, 2] ** 2)[valid].max()) <= 4.0 + 1e-3
    # its camera-space normal is world +Y
    n_world = torch.einsum("tij,tjhw->tihw", cam.rotations()[0], g.normal[0])
    assert torch.allclose(n_world[:, 1][valid], torch.ones(int(valid.sum())), atol=1e-5)


def test_anchored_depth_scale_recovers_the_metric_scale_of_relative_depth():
    """Relative depth = metric / 5 on the analytic ground: a known ground point pins the scale back to ~5."""
    from neural_render.pipelines.insert import anchored_depth_scale

    cam = orbit_camera(4, 64, 48)
    g = ground_gbuffer(cam, (0.5, 0.5, 0.5), 0.8, 0.0, 2.0)
    scale = anchored_depth_scale(cam, g.depth / 5.0, [0.3, 0.0, 0.8])
    assert scale is not None and abs(scale - 5.0) < 0.25
    assert anchored_depth_scale(cam, g.depth / 5.0, [0.0, 0.0, 50.0]) is None  # behind the camera: no frame


def test_shipped_demo_inserts_through_the_shipped_cache_injection(tmp_path, capsys):
    """With the shipped models, the demo's insertion uses data/models/forward_cache_tiny (the 3D cache injected);
    --no-cache inserts with the plain forward model; every other output is the same."""
    from neural_render.data_assets import data_dir

    shipped = [data_dir() / "models" / name for name in ("inverse_tiny", "forward_tiny", "forward_cache_tiny")]
    if not all((m / "model_index.json").is_file() for m in shipped):
        pytest.skip("the shipped models are not in this checkout")
    runs = {}
    for name, extra in (("cache", []), ("plain", ["--no-cache"])):
        assert main(["demo", "--out", str(tmp_path / name), "--frames", "4", *extra]) == 0
        printed = capsys.readouterr().out
        runs[name] = json.loads((tmp_path / name / "summary.json").read_text())
        assert ("(3D-cache injection)" in printed) == (name == "cache")
    assert runs["cache"]["insert_model"] == str(shipped[2]) and "3D-cache injection" in runs["cache"]["insert_renderer"]
    assert runs["plain"]["insert_model"] is None and runs["plain"]["insert_renderer"] == runs["plain"]["renderer"]
    videos = {name: {v: read_video(tmp_path / name / v)[0].astype(float) for v in ("edit.mp4", "insert.mp4")}
              for name in runs}
    assert np.array_equal(videos["cache"]["edit.mp4"], videos["plain"]["edit.mp4"])
    assert np.abs(videos["cache"]["insert.mp4"] - videos["plain"]["insert.mp4"]).max() > 3
