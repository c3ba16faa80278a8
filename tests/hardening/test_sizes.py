"""Issue #21, size and speed: native processing size by default, one WxH size parser, the memory guard before any
decoding, and the end-to-end inverse benchmark (plumbing only: no timing assertions)."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import torch

from neural_render.cli import main
from neural_render.errors import NeuralRenderError
from neural_render.io import read_clip, write_video
from neural_render.pipelines.frame_size import parse_size_arg, processing_shape
from neural_render.pipelines.inverse import INVERSE_CONFIG, InverseRenderingPipeline

W, H, T = 48, 32, 3  # non-square input: a width/height swap shows


def _video(path, width=W, height=H, frames=T):
    rng = np.random.default_rng(0)
    write_video(path, rng.integers(0, 256, (frames, height, width, 3), dtype=np.uint8), fps=24.0)
    return path


@pytest.fixture()
def native_model(untrained_pipelines, tmp_path):
    """The untrained tiny inverse model with a native size of 16 (its config JSON edited, weights unchanged)."""
    folder = tmp_path / "native_model"
    shutil.copytree(untrained_pipelines / "inverse_model", folder)
    config = json.loads((folder / INVERSE_CONFIG).read_text())
    config["native_size"] = 16
    (folder / INVERSE_CONFIG).write_text(json.dumps(config))
    return folder


def test_parse_size_arg_is_width_by_height_or_longer_side():
    assert parse_size_arg("640x480") == (480, 640)  # (h, w) internally
    assert parse_size_arg("512") == 512 and parse_size_arg(None) is None
    for bad in ("0", "64x", "x64", "axb", "-3", "64x48x2"):
        with pytest.raises(NeuralRenderError, match="WxH or N"):
            parse_size_arg(bad)
    from neural_render.pipelines.frame_size import parse_size_arg as parse_hw
    from neural_render.pipelines.sim2real_video import processing_hw
    from neural_render.synth.frame_size import parse_size

    assert parse_size("160x120") == (160, 120) and parse_size("64") == (64, 64)  # synth / serve / demo: (W, H)
    assert parse_hw("16x8") == (8, 16)  # sim2real: WxH like every command (was HxW)
    assert processing_hw(16, torch.zeros(1, 1, 3, H, W), 8) == processing_shape(H, W, 8, 16) == (8, 16)


def test_default_processing_size_is_the_native_size_and_outputs_are_at_the_input_size(native_model, tmp_path, capsys):
    video = _video(tmp_path / "in.mp4")
    out = tmp_path / "out"
    assert main(["inverse", str(video), "--out", str(out), "--model", str(native_model), "--no-progress"]) == 0
    pipe = InverseRenderingPipeline.from_pretrained(native_model)
    assert pipe.native_size == 16
    proc = processing_shape(H, W, pipe.stride, 16)
    assert max(proc) == 16
    clip = read_clip(out)
    assert clip.meta.extra["inverse"]["processing_size"] == list(proc)
    assert (clip.meta.width, clip.meta.height) == (W, H) and clip.gbuffer.normal.shape[-2:] == (H, W)
    assert f"processed at {proc[1]}x{proc[0]}" in capsys.readouterr().out
    # the written G-buffers are the pipeline's result (lossless EXR)
    from neural_render.io.video_input import read_input

    rgb, *_ = read_input(video)
    expected = pipe(rgb, progress=False).gbuffer.passes
    for name, x in expected.items():
        assert torch.equal(clip.gbuffer.passes[name], x), name


def test_size_option_is_width_by_height_in_inverse_and_autolabel(native_model, tmp_path):
    video = _video(tmp_path / "in.mp4")
    assert main(["inverse", str(video), "--out", str(tmp_path / "a"), "--model", str(native_model), "--size", "16x8",
                 "--no-progress"]) == 0
    assert read_clip(tmp_path / "a").meta.extra["inverse"]["processing_size"] == [8, 16]  # (h, w)
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    shutil.copy(video, inputs / "clip.mp4")
    assert main(["autolabel", str(inputs), "--out", str(tmp_path / "labels"), "--model", str(native_model),
                 "--size", "16x8"]) == 0
    assert read_clip(tmp_path / "labels" / "clip").meta.extra["inverse"]["processing_size"] == [8, 16]


def test_a_folder_without_native_size_uses_the_input_size_with_a_warning(untrained_pipelines, tmp_path, capsys):
    video = _video(tmp_path / "in.mp4")
    model = untrained_pipelines / "inverse_model"
    assert main(["inverse", str(video), "--out", str(tmp_path / "out"), "--model", str(model), "--no-progress"]) == 0
    assert "records no native size" in capsys.readouterr().err
    stride = InverseRenderingPipeline.from_pretrained(model).stride
    assert read_clip(tmp_path / "out").meta.extra["inverse"]["processing_size"] == list(
        processing_shape(H, W, stride, None))


def test_memory_guard_refuses_before_decoding_with_a_hint(native_model, tmp_path, capsys, monkeypatch):
    import neural_render.io.video_input as video_input

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded an input the memory guard should have refused")

    monkeypatch.setattr(video_input, "read_input", no_decoding)
    monkeypatch.setattr(InverseRenderingPipeline, "sample_latents", no_decoding)
    from neural_render.pipelines.memory import BASE_BYTES

    monkeypatch.setenv("NEURAL_RENDER_MEMORY_BUDGET", str(BASE_BYTES + 2 * 2**20))  # room for 1 or 2 of the 3 frames
    video = _video(tmp_path / "in.mp4")
    out = tmp_path / "out"
    code = main(["inverse", str(video), "--out", str(out), "--model", str(native_model), "--size", "48x32",
                 "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and not out.exists()
    lines = [line for line in err.strip().splitlines() if "error" in line]
    assert len(lines) == 1 and "Traceback" not in err
    assert "too big for memory" in lines[0] and "NEURAL_RENDER_MEMORY_BUDGET" in lines[0] and str(video) in lines[0]
    assert re.search(r" try .*a shorter clip \(at most [12] frames\)", lines[0])


def test_memory_estimate_hints_a_smaller_size_or_a_shorter_clip():
    from neural_render.pipelines.memory import MemoryEstimate, check_memory

    big = MemoryEstimate(8, (3000, 4000), (3000, 4000), 10)  # an old model: processing at the input size

    def shape(side):
        return processing_shape(3000, 4000, 8, side)

    with pytest.raises(NeuralRenderError, match=r"--size \d+"):
        check_memory(big, "v.mp4", budget=32 * 2**30, size_hint=shape)
    native = MemoryEstimate(240, (3000, 4000), shape(64), 10)  # outputs at the input size dominate
    with pytest.raises(NeuralRenderError, match="shorter clip .at most \\d+ frames"):
        check_memory(native, "v.mp4", budget=64 * 2**30, size_hint=shape)
    check_memory(MemoryEstimate(24, (512, 512), (64, 64), 10), "v.mp4", budget=8 * 2**30)  # fits


def test_the_end_to_end_inverse_bench_runs_at_tiny_size(native_model, tmp_path, capsys):
    assert main(["bench", "inverse-e2e", "--size", "32x24", "--frames", "3", "--model", str(native_model),
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["processing_size"] == "16x12" and result["video"] == "32x24"
    assert result["written_vs_pipeline_max_abs_diff"] == 0.0
    assert result["e2e_s"] > 0 and result["model_s"] > 0 and result["ratio"] > 0
