"""`forward`, `relight`, `edit` and `eval forward` commands with tiny models built here; bad input -> exit 2, the file
and reason named, nothing written."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from neural_render.cli import EXIT_BAD_INPUT, main
from neural_render.data_assets import envmap_path
from neural_render.demo.scene import demo_scene
from neural_render.io import (
    Clip,
    ClipMeta,
    read_clip,
    read_video,
    write_clip,
    write_hdr,
    write_image,
    write_video,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def files(tmp_path_factory, untrained_pipelines):
    root = tmp_path_factory.mktemp("cli_forward")
    for name in ("forward_model", "inverse_model"):  # the shared untrained pipelines (tests/conftest.py)
        (root / name).symlink_to(untrained_pipelines / name, target_is_directory=True)
    scene = demo_scene(3, 16, 16)
    meta = ClipMeta.for_camera(scene.camera, envmap={"path": str(envmap_path("kiara_1_dawn").resolve()),
                                                     "rotation_deg": [0.0, 0.0, 0.0]})
    write_clip(root / "clip", Clip(torch.rand(1, 3, 3, 16, 16), scene.gbuffer, scene.camera, meta), preview_mp4=False)
    small = demo_scene(3, 8, 8)
    write_clip(root / "small_clip", Clip(None, small.gbuffer, small.camera), preview_mp4=False)
    ramp = np.linspace(30, 220, 16)
    frames = np.stack([np.stack([ramp[None, :] + 0 * ramp[:, None] + 5 * t, ramp[:, None] + 0 * ramp[None, :],
                                 np.full((16, 16), 90.0 + 10 * t)], -1) for t in range(3)]).astype(np.uint8)
    write_video(root / "video.mp4", frames, fps=8.0, lossless=True)
    mask = np.zeros((16, 16, 3), np.uint8)
    mask[4:12, 4:12] = 255
    write_image(root / "mask.png", mask)
    write_image(root / "small_mask.png", mask[:8, :8])
    nan_env = np.ones((8, 16, 3), np.float32)
    nan_env[2, 3, 1] = np.nan
    from neural_render.io.exr import write_exr
    write_exr(root / "nan_env.exr", {k: nan_env[..., i] for i, k in enumerate("RGB")})
    write_hdr(root / "tiny_env.hdr", np.ones((1, 1, 3), np.float32))
    return root


def models(files):
    return ["--model", str(files / "forward_model")]


def inverse(files):
    return ["--inverse-model", str(files / "inverse_model")]


def test_forward_command(files, tmp_path):
    out = tmp_path / "fwd.mp4"
    assert main(["forward", str(files / "clip"), "--envmap", "venice_sunset", "--rotate", "30,10,5",
                 "--out", str(out), *models(files)]) == 0
    frames, _ = read_video(out)
    assert frames.shape == (3, 16, 16, 3) and frames.std() > 1
    assert main(["forward", str(files / "clip"), "--passes", "normal", "--out", str(tmp_path / "fwd_clip"),
                 *models(files)]) == 0
    clip = read_clip(tmp_path / "fwd_clip")
    assert clip.rgb.shape == (1, 3, 3, 16, 16) and list(clip.gbuffer.passes) == ["normal", "mask"]


def test_relight_and_edit_commands(files, tmp_path):
    out = tmp_path / "relit.mp4"
    assert main(["relight", str(files / "video.mp4"), "--envmap", "venice_sunset", "--out", str(out),
                 *models(files), *inverse(files)]) == 0
    assert read_video(out)[0].shape == (3, 16, 16, 3)
    assert read_video(tmp_path / "relit.side_by_side.mp4")[0].shape == (3, 16, 32, 3)
    folder = tmp_path / "relit_many"
    assert main(["relight", str(files / "clip"), "--envmap", "venice_sunset", "--envmap-sequence", "kiara_1_dawn",
                 "--out", str(folder), *models(files), *inverse(files)]) == 0
    assert sorted(os.listdir(folder)) == [".neural-render-output.json", "relit_0_venice_sunset.mp4",
                                          "relit_1_kiara_1_dawn.mp4", "side_by_side.mp4"]
    assert read_video(folder / "side_by_side.mp4")[0].shape == (3, 16, 48, 3)
    given = tmp_path / "relit_given.mp4"  # precomputed G-buffers (the clip's exact ones) instead of the inverse model
    assert main(["relight", str(files / "clip"), "--gbuffer", str(files / "clip"), "--envmap", "venice_sunset",
                 "--out", str(given), *models(files), "--inverse-model", str(tmp_path / "unused")]) == 0
    assert read_video(given)[0].shape == (3, 16, 16, 3)
    edited = tmp_path / "edit.mp4"
    assert main(["edit", str(files / "video.mp4"), "--mask", str(files / "mask.png"), "--set", "roughness=0.1",
                 "--set", "metallic=1", "--set", "basecolor=#aa2211", "--envmap", "venice_sunset",
                 "--out", str(edited), *models(files), *inverse(files)]) == 0
    before, _ = read_video(files / "video.mp4")
    after, _ = read_video(edited)
    assert after.shape == before.shape
    outside = np.ones((16, 16), bool)
    outside[4:12, 4:12] = False
    assert np.abs(after[:, outside].astype(int) - before[:, outside].astype(int)).mean() < 6  # lossy MP4 only
    assert (tmp_path / "edit.side_by_side.mp4").is_file()


def test_eval_forward_command(files, tmp_path, capsys):
    data = tmp_path / "heldout"
    data.mkdir()
    os.symlink(files / "clip", data / "clip_000000")
    assert main(["eval", "forward", "--data", str(data), *models(files), "--json", str(tmp_path / "e.json")]) == 0
    text = capsys.readouterr().out
    for row in ("neural forward, all passes", "classical split-sum, exact G-buffers", "trivial: basecolor as RGB",
                "neural forward, normal only", "neural forward, basecolor only",
                "classical split-sum + pixel filter (sigma 0.5 px)"):
        assert row in text
    assert (tmp_path / "e.json").is_file()


def test_eval_forward_reference_model(files, tmp_path, capsys):
    """--reference-model: a second model's row and its paired comparison (the model against itself: exactly 0)."""
    import json

    data = tmp_path / "heldout"
    data.mkdir()
    for k in range(2):  # a paired comparison needs two clips
        os.symlink(files / "clip", data / f"clip_00000{k}")
    model = models(files)[1]
    assert main(["eval", "forward", "--data", str(data), *models(files), "--reference-model", model,
                 "--json", str(tmp_path / "e.json")]) == 0
    result = json.loads((tmp_path / "e.json").read_text())
    name = f"reference {Path(model).name}, all passes"
    assert result["reference_model"] == model and name in result["mean"]
    row = next(r for r in result["comparison"]["rows"] if r["name"].endswith(f"{name} (PSNR dB)"))
    assert row["diff_mean"] == 0.0 and row["verdict"] == "tie"
    capsys.readouterr()
    assert main(["eval", "forward", "--real", "--data", str(data), *models(files), "--reference-model", model]) == 2
    assert "--reference-model is not for --real" in capsys.readouterr().err


@pytest.mark.parametrize("trained", [False, True])
def test_eval_forward_measures_the_domain_switch(files, tmp_path, capsys, trained):
    """Fresh (zero-initialised) shifters: switching e_domain changes nothing, exactly; 'trained' ones (W_left set
    non-zero, as training does) change the render and the eval says by how much."""
    import json

    from neural_render.data.forward_data import forward_cond_channels
    from neural_render.models.codec import PixelUnshuffleCodec
    from neural_render.models.denoiser import Denoiser
    from neural_render.tasks.base import make_backbone
    from neural_render.tasks.forward import ForwardTask

    backbone = make_backbone("svd", config={"in_channels": 12, "out_channels": 12}, tiny=True, seed=0,
                             cond_channels=forward_cond_channels(12, True))
    task = ForwardTask(backbone, Denoiser("x0"), PixelUnshuffleCodec(2), ema_decay=None, window=2, overlap=1,
                       stage="shifters", domain_shifter={"rank": 2, "embed_dim": 4, "seed": 0})
    if trained:
        with torch.no_grad():
            for left in task.domain_shifters.left:
                left.normal_(0.0, 0.5, generator=torch.Generator().manual_seed(1))
    task.export(tmp_path / "model")
    data = tmp_path / "heldout"
    data.mkdir()
    os.symlink(files / "clip", data / "clip_000000")
    assert main(["eval", "forward", "--data", str(data), "--model", str(tmp_path / "model"),
                 "--json", str(tmp_path / "e.json")]) == 0
    assert "domain switch e_synthetic -> e_real" in capsys.readouterr().out
    switch = json.loads((tmp_path / "e.json").read_text())["domain_switch"]
    assert (switch["mean_abs"] > 1e-4) if trained else (switch["mean_abs"] == 0.0 and switch["max_abs"] == 0.0)


def test_bad_inputs_exit_2_and_write_nothing(files, tmp_path, capsys):
    out_dir = tmp_path / "outs"
    out_dir.mkdir()
    video, clip, mask = str(files / "video.mp4"), str(files / "clip"), str(files / "mask.png")
    m, i = models(files), inverse(files)
    cases = [
        (["forward", clip, "--envmap", str(files / "nan_env.exr"), "--out", str(out_dir / "a.mp4"), *m], "nan_env.exr"),
        (["forward", clip, "--envmap", str(files / "tiny_env.hdr"), "--out", str(out_dir / "b.mp4"), *m],
         "tiny_env.hdr"),
        (["forward", clip, "--rotate", "1,2", "--out", str(out_dir / "c.mp4"), *m], "yaw,pitch,roll"),
        (["forward", clip, "--passes", "shininess", "--out", str(out_dir / "d.mp4"), *m], "shininess"),
        (["relight", video, "--envmap", str(files / "nan_env.exr"), "--out", str(out_dir / "e.mp4"), *m, *i],
         "nan_env.exr"),
        (["relight", video, "--envmap", "venice_sunset", "--envmap-sequence", "kiara_1_dawn",
          "--out", str(out_dir / "f.mp4"), *m, *i], "output folder"),
        (["edit", video, "--mask", str(files / "small_mask.png"), "--set", "roughness=0.1", "--envmap", "venice_sunset",
          "--out", str(out_dir / "g.mp4"), *m, *i], "small_mask.png"),
        (["edit", video, "--mask", mask, "--set", "roughness=2", "--envmap", "venice_sunset",
          "--out", str(out_dir / "h.mp4"), *m, *i], "roughness=2"),
        (["edit", video, "--mask", mask, "--set", "shininess=1", "--envmap", "venice_sunset",
          "--out", str(out_dir / "j.mp4"), *m, *i], "shininess=1"),
        (["edit", video, "--mask", mask, "--set", "basecolor=#zz0000", "--envmap", "venice_sunset",
          "--out", str(out_dir / "k.mp4"), *m, *i], "#zz0000"),
        (["edit", video, "--mask", mask, "--set", "metallic=1", "--out", str(out_dir / "l.mp4"), *m, *i], "--envmap"),
        (["forward", clip, "--out", str(out_dir / "n.mp4"), "--model", str(tmp_path / "nope")], "nope"),
        (["relight", video, "--envmap", "venice_sunset", "--gbuffer", str(files / "small_clip"),
          "--out", str(out_dir / "o.mp4"), *m, *i], "small_clip"),
        (["edit", video, "--mask", mask, "--set", "metallic=1", "--envmap", "venice_sunset", "--gbuffer",
          str(files / "small_clip"), "--out", str(out_dir / "p.mp4"), *m, *i], "small_clip"),
    ]
    for argv, named in cases:
        assert main(argv) == EXIT_BAD_INPUT, argv
        err = capsys.readouterr().err
        assert err.startswith("neural-render: error:") and named in err, (argv, err)
    assert sorted(os.listdir(out_dir)) == []
