"""CLI of the sim-to-real feature on a tiny proxy dataset: `synth --proxy` (fresh == added later), `sim2real-data`,
`sim2real` (model folder and bare IC-LoRA + base; MP4 and clip output), `eval sim2real` (table + JSON, spawned
objects), and bad input -> exit 2 (LoRA for another backbone, video of the wrong size, missing files)."""

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch

from neural_render.cli import main
from neural_render.io.clip import read_clip
from neural_render.models.backbone import build_backbone
from neural_render.models.codec import PixelUnshuffleCodec
from neural_render.models.denoiser import Denoiser
from neural_render.models.ic_lora import add_ic_lora, save_ic_lora
from neural_render.tasks.sim2real import PropagationTask, Sim2RealTask

torch.set_num_threads(1)
SYNTH = ["--clips", "2", "--frames", "4", "--size", "16x16", "--spp", "2", "--envmaps", "test", "--seed", "11",
         "--min-objects", "2", "--max-objects", "3", "--spawn-prob", "1.0", "--no-progress"]


def _wan(cond=0):
    return build_backbone("wan", config={"in_channels": 12, "out_channels": 12}, tiny=True, seed=0, cond_channels=cond)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("sim2real_cli")
    assert main(["synth", "--out", str(root / "proxy"), *SYNTH, "--proxy"]) == 0
    task = Sim2RealTask(_wan(), Denoiser("x0"), PixelUnshuffleCodec(2), lora_rank=2, window=2, overlap=1,
                        ema_decay=None)
    with torch.no_grad():
        for name, p in task.backbone.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02, generator=torch.Generator().manual_seed(1))
    task.export(root / "model", use_ema=False)
    save_ic_lora(task.backbone, root / "bare_lora", info={"target": "residual", "base": str(root / "model")})
    prop = PropagationTask(_wan(cond=12), Denoiser("x0"), PixelUnshuffleCodec(2), segment=4, ema_decay=None)
    prop.export(root / "prop", use_ema=False)
    return root


def test_proxy_added_to_a_finished_dataset_equals_a_fresh_proxy_render(setup, tmp_path):
    assert main(["synth", "--out", str(tmp_path / "plain"), *SYNTH]) == 0
    assert not (tmp_path / "plain" / "clip_000000" / "rendered").exists()
    assert main(["synth", "--out", str(tmp_path / "plain"), *SYNTH, "--proxy"]) == 0  # adds rendered/ only
    for i in range(2):
        fresh = read_clip(setup / "proxy" / f"clip_{i:06d}" / "rendered").rgb
        added = read_clip(tmp_path / "plain" / f"clip_{i:06d}" / "rendered").rgb
        real = read_clip(setup / "proxy" / f"clip_{i:06d}").rgb
        assert torch.equal(fresh, added) and fresh.shape == real.shape
        assert not torch.allclose(fresh, real, atol=1e-3)  # split-sum is not the path-traced render


def test_sim2real_command_outputs_and_bad_input(setup, tmp_path, capsys):
    clip = setup / "proxy" / "clip_000000"
    out = tmp_path / "out.mp4"
    assert main(["sim2real", str(clip), "--lora", str(setup / "model"), "--out", str(out), "--strength", "0.5",
                 "--no-progress"]) == 0
    assert "WARNING" in capsys.readouterr().err  # the tiny test model was never trained: said so
    from neural_render.io.video import read_video, write_video

    frames, _ = read_video(out)
    assert frames.shape[0] == 4
    # bare IC-LoRA folder + base (named in its ic_lora.json), clip-folder output
    assert main(["sim2real", str(out), "--lora", str(setup / "bare_lora"), "--out", str(tmp_path / "clip_out"),
                 "--no-progress"]) == 0
    assert read_clip(tmp_path / "clip_out").rgb.shape == (1, 4, 3, 16, 16)
    # LoRA made for another backbone (SVD) on the Wan base -> exit 2 naming the LoRA folder
    svd = build_backbone("svd", config={"in_channels": 12, "out_channels": 12}, tiny=True, seed=0)
    add_ic_lora(svd, rank=2)
    save_ic_lora(svd, tmp_path / "svd_lora", info={"base": str(setup / "model")})
    capsys.readouterr()
    assert main(["sim2real", str(out), "--lora", str(tmp_path / "svd_lora"), "--out", str(tmp_path / "x.mp4")]) == 2
    err = capsys.readouterr().err
    assert "svd_lora" in err and "svd" in err and not (tmp_path / "x.mp4").exists()
    # video whose size is not a multiple of the model stride -> exit 2, nothing written
    write_video(tmp_path / "odd.mp4", np.zeros((2, 18, 16, 3), np.uint8), fps=12, lossless=True)
    assert main(["sim2real", str(tmp_path / "odd.mp4"), "--lora", str(setup / "model"), "--out",
                 str(tmp_path / "y.mp4")]) == 2
    assert "stride" in capsys.readouterr().err and not (tmp_path / "y.mp4").exists()
    assert main(["sim2real", str(tmp_path / "missing.mp4"), "--lora", str(setup / "model"), "--out",
                 str(tmp_path / "z.mp4")]) == 2
    assert main(["sim2real", str(out), "--lora", str(tmp_path), "--out", str(tmp_path / "z.mp4")]) == 2


def test_sim2real_data_command(setup, tmp_path, capsys):
    assert main(["sim2real-data", str(setup / "proxy"), "--out", str(tmp_path / "pairs"), "--model",
                 str(setup / "prop"), "--enhancer", "path-traced", "--no-progress"]) == 0
    assert "2 pair(s) written" in capsys.readouterr().out
    made = read_clip(tmp_path / "pairs" / "pair_clip_000001")
    assert made.meta.extra["sim2real_pair"]["anchor_frames"] == [0, 3]
    assert main(["sim2real-data", str(setup / "proxy"), "--out", str(tmp_path / "p2"), "--model",
                 str(setup / "model")]) == 2  # an IC-LoRA model is not a propagation model


def test_eval_sim2real_table_and_json(setup, tmp_path, capsys):
    assert main(["eval", "sim2real", "--data", str(setup / "proxy"), "--model", str(setup / "model"),
                 "--propagation", str(setup / "prop"), "--json", str(tmp_path / "eval.json")]) == 0
    text = capsys.readouterr().out
    for label in ("IC-LoRA", "anchor propagation", "raw input", "raw input + pixel filter", "path-traced target",
                  "goal PSNR", "of which the pixel filter alone", "goal edge"):
        assert label in text
    record = json.loads((tmp_path / "eval.json").read_text())
    summary = record["summary"]
    assert summary["input"]["clips"] == 2 and summary["ic_lora"]["spawned_pixels"] > 0
    assert summary["filtered_input"]["psnr"] != summary["input"]["psnr"]  # the filter changes the input
    first = record["clips"][0]
    assert first["target"]["psnr"] is None or first["target"]["psnr"] > 90  # target vs itself (inf -> null)
    assert first["anchor_frames"] == [0, 3]
