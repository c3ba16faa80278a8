"""`eval forward --real` (issue #26): tiny auto-labelled "real" clips (random G-buffers, no env map, 32x32, 4 frames,
two sources) re-rendered by the shipped forward_tiny with the lighting absent; rows, the domain switch, one PSNR by
hand, the CLI (JSON, exit 0; bad input -> exit 2 with one line), the test-split log and the README section."""

import json
import math
from pathlib import Path

import pytest
import torch

from neural_render.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[2]
FORWARD_TINY = ROOT / "data" / "models" / "forward_tiny"


def write_real_clips(root: Path, names=("box_00", "box_01", "photo_fruits"), real_set: str | None = "val",
                     gbuffers: bool = True, size: int = 32, frames: int = 4) -> Path:
    """Clip folders like ``neural-render autolabel`` output: rgb + random G-buffers, no env map."""
    from neural_render.io import Clip, ClipMeta, write_clip
    from neural_render.types import Camera, GBuffer

    for k, name in enumerate(names):
        g = torch.Generator().manual_seed(k)

        def rand(c, g=g):
            return torch.rand(1, frames, c, size, size, generator=g)

        camera = Camera.from_fov(60.0, size, size, torch.eye(4).repeat(1, frames, 1, 1))
        normal = torch.nn.functional.normalize(rand(3) - 0.5, dim=2)
        mask = torch.ones(1, frames, 1, size, size)
        if k == 0:  # background pixels, where the inverse model writes zero normals
            mask[..., :4, :4], normal[..., :4, :4] = 0.0, 0.0
        gb = GBuffer(basecolor=rand(3), normal=normal, depth=0.5 + rand(1), roughness=rand(1), metallic=rand(1),
                     mask=mask) if gbuffers else GBuffer()
        extra = {"inverse": {"source": f"real/{name}"}} if gbuffers else {}
        if real_set:
            extra["real_set"] = real_set
        meta = ClipMeta.for_camera(camera, fps=8.0, extra=extra)
        write_clip(root / name, Clip(rgb=rand(3), gbuffer=gb, camera=camera, meta=meta), preview_mp4=False)
    return root


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    from neural_render.evaluation.common import find_eval_clips

    return find_eval_clips(write_real_clips(tmp_path_factory.mktemp("real") / "val"))


@pytest.fixture(scope="module")
def pipes():
    """(forward_tiny, forward_tiny + a rank-2 LoRA with non-zero B matrices)."""
    from neural_render import hub
    from neural_render.models.lora import add_lora

    torch.set_num_threads(1)
    pipe, lora_pipe = hub.load_forward(FORWARD_TINY), hub.load_forward(FORWARD_TINY)
    add_lora(lora_pipe.backbone, rank=2)
    with torch.no_grad():
        for name, p in lora_pipe.backbone.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.05, generator=torch.Generator().manual_seed(3))
    return pipe, lora_pipe


@pytest.fixture(scope="module")
def result(pipes, clips):
    from neural_render.evaluation.forward_real import evaluate_real

    return evaluate_real(pipes[0], clips, lora_pipe=pipes[1], seed=0)


def test_rows_groups_and_comparisons(result, clips):
    from neural_render.evaluation.forward_real import BASECOLOR, E_REAL, E_SYNTHETIC, LORA, ORACLE, format_report

    assert result["kind"] == "forward_real" and result["num_clips"] == 3
    assert result["sources"] == ["box", "box", "photo_fruits"] and result["groups"] == ["box", "photo_fruits"]
    assert list(result["mean"]) == [E_REAL, E_SYNTHETIC, LORA, BASECOLOR, ORACLE]
    assert all(len(v) == 3 for v in result["per_clip"].values())
    names = [row["name"] for row in result["comparison"]["rows"]]
    assert f"{E_REAL} vs {E_SYNTHETIC} (PSNR dB)" in names and f"{LORA} vs {E_SYNTHETIC} (SSIM)" in names
    assert f"{E_REAL} vs {LORA} (PSNR dB)" in names and f"{E_REAL} vs {BASECOLOR} (PSNR dB)" in names
    assert result["comparison"]["m"] == 8 and all(row["groups"] == 2 for row in result["comparison"]["rows"])
    assert result["mean"][LORA]["psnr_db"] != result["mean"][E_REAL]["psnr_db"]  # the LoRA changes the render
    text = format_report({**result, "data": "x", "split": "val"})
    assert "lighting absent" in text and "2 source(s)" in text and "domain switch e_real -> e_synthetic" in text


def test_psnr_matches_a_direct_computation(result, pipes, clips):
    """e_real's PSNR of the first clip = 10 log10(1 / MSE) of sRGB(clamp) of a render made here (env None)."""
    from neural_render.io import read_clip
    from neural_render.render.tonemap import linear_to_srgb

    clip = read_clip(clips[0])
    pred = pipes[0](clip.gbuffer.replace(mask=None), clip.camera, None, domain="real",
                    generator=torch.Generator().manual_seed(0)).rgb
    mse = ((linear_to_srgb(pred.clamp(0, 1)) - linear_to_srgb(clip.rgb.clamp(0, 1))).double() ** 2).mean()
    assert result["per_clip"]["neural forward, e_real"][0][0] == pytest.approx(10 * math.log10(1 / float(mse)),
                                                                             abs=1e-4)
    basecolor = ((linear_to_srgb(clip.gbuffer.basecolor) - linear_to_srgb(clip.rgb)).double() ** 2).mean()
    assert result["per_clip"]["trivial: auto-labelled basecolor as RGB"][0][0] == pytest.approx(
        10 * math.log10(1 / float(basecolor)), abs=1e-4)


def test_domain_switch_is_zero_exactly_when_the_shifters_are(result, pipes, clips):
    from neural_render.evaluation.forward_real import evaluate_real

    switch = result["domain_switch"]
    assert switch["mean_abs"] > 0 and switch["mean_abs_display"] > 0 and len(switch["per_clip"]) == 3
    assert result["per_clip"]["neural forward, e_real"] != result["per_clip"]["neural forward, e_synthetic"]
    pipe = pipes[0]
    saved = [left.detach().clone() for left in pipe.domain_shifters.left]
    try:
        with torch.no_grad():
            for left in pipe.domain_shifters.left:
                left.zero_()
        zero = evaluate_real(pipe, clips[:2], seed=0)
    finally:
        with torch.no_grad():
            for left, value in zip(pipe.domain_shifters.left, saved):
                left.copy_(value)
    assert zero["domain_switch"]["mean_abs"] == 0.0 and zero["domain_switch"]["max_abs_display"] == 0.0
    assert zero["per_clip"]["neural forward, e_real"] == zero["per_clip"]["neural forward, e_synthetic"]
    assert "real LoRA" not in zero["mean"]


def test_cli_writes_the_json_and_logs_nothing_for_val(clips, tmp_path, capsys):
    log = FORWARD_TINY / "test_scorings.jsonl"
    before = log.read_text() if log.is_file() else None
    out = tmp_path / "eval_val_forward_real.json"
    assert main(["eval", "forward", "--real", "--data", str(clips[0].parent), "--model", str(FORWARD_TINY),
                 "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "neural forward, e_real" in printed and "(split: val)" in printed and "test_scorings" not in printed
    record = json.loads(out.read_text())
    assert record["kind"] == "forward_real" and record["split"] == "val" and record["written_by"].startswith(
        "neural-render eval forward")
    assert (log.read_text() if log.is_file() else None) == before


def test_real_test_split_is_recognised_and_logged(tmp_path):
    """An auto-labelled folder named test, or clips whose meta says real_set test, is a TEST split: its scoring is
    logged beside the model like the synthetic test split's."""
    from neural_render.evaluation.common import dataset_split, log_test_scoring

    named = write_real_clips(tmp_path / "labelled" / "test", names=("box_00",), real_set=None, size=8, frames=1)
    (named / "autolabel.json").write_text("{}")
    recorded = write_real_clips(tmp_path / "other", names=("box_00",), real_set="test", size=8, frames=1)
    plain = write_real_clips(tmp_path / "plain" / "test", names=("box_00",), real_set=None, gbuffers=False, size=8,
                             frames=1)
    assert dataset_split(named) == "test" and dataset_split(named / "box_00") == "test"
    assert dataset_split(recorded) == "test" and dataset_split(plain) is None
    model = tmp_path / "model"
    model.mkdir()
    assert log_test_scoring(model, named, "eval forward --real", "x.json")
    assert json.loads((model / "test_scorings.jsonl").read_text())["command"] == "eval forward --real"
    assert not log_test_scoring(model, plain, "eval forward --real")


def test_bad_inputs_exit_2_with_one_line(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    bare = write_real_clips(tmp_path / "bare", names=("box_00",), gbuffers=False, size=8, frames=1)
    good = write_real_clips(tmp_path / "good", names=("box_00",), size=8, frames=1)
    base = ["eval", "forward", "--model", str(FORWARD_TINY)]
    cases = [([*base, "--real", "--data", str(empty)], "no clip folders"),
             ([*base, "--real", "--data", str(bare)], "not an auto-labelled clip"),
             ([*base, "--real", "--data", str(good), "--lora-model", str(ROOT / "data" / "models" / "inverse_tiny")],
              "not a forward pipeline"),
             ([*base, "--real", "--data", str(good), "--lora-model", str(tmp_path / "nope")], "nope"),
             ([*base, "--data", str(good), "--lora-model", str(FORWARD_TINY)], "--lora-model is only for --real")]
    for argv, needle in cases:
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0] and "Traceback" not in err[0], (argv, err)


def test_report_renders_the_json(result, tmp_path):
    from neural_render.evaluation.common import write_json
    from neural_render.evaluation.report import _eval_files, section

    path = write_json(tmp_path / "eval_val_forward_real.json",
                      {"data": "/somewhere/data_cache/real_64_labelled/val", "split": "val",
                       "lora_model": "/x/data/models/forward_real_lora", **result}, "eval forward")
    (tmp_path / "eval_val_bogus_real.json").write_text(path.read_text())
    assert [(s, k) for s, k, _ in _eval_files(tmp_path)] == [("val", "forward_real")]
    text = "\n".join(section("val", "forward_real", path, "data/models/m/eval_val_forward_real.json"))
    assert text.startswith("**forward on real footage (re-rendered from auto-labelled G-buffers, lighting absent), "
                           "val (held-out real sources")
    assert "`data_cache/real_64_labelled/val`, 3 clips in 2 source group(s)" in text
    assert "| neural forward, e_real |" in text and "| real LoRA |" in text and "(oracle) |" in text
    assert "hierarchical bootstrap (source, then clip)" in text and "over the 8 comparisons" in text
    assert "| neural forward, e_real vs neural forward, e_synthetic (PSNR dB) |" in text
    assert "domain switch e_real -> e_synthetic" in text and "display sRGB" in text
    assert "real LoRA row: `data/models/forward_real_lora`" in text
