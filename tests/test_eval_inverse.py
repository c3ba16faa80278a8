"""`neural-render eval inverse` on a tiny synthetic dataset built here with the synth engine.

* a real (untrained) tiny pipeline runs end to end: table + JSON with model and baseline columns, window test;
* an oracle pipeline that returns the ground truth scores perfectly (0 degrees, inf si-PSNR -> null in JSON), so the
  wiring from predictions to metrics is checked against known answers;
* baselines are recomputed here from the metric functions and must match the JSON;
* bad input exits 2 and writes no JSON.
"""

import json
import math
from pathlib import Path

import pytest
import torch

from neural_render.cli import main


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    data = root / "synth"
    code = main(["synth", "--out", str(data), "--clips", "2", "--frames", "10", "--size", "16x16", "--spp", "2",
                 "--envmaps", "test", "--seed", "5", "--max-objects", "2", "--no-progress"])
    assert code == 0
    return data


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from neural_render.models.codec import PixelUnshuffleCodec
    from neural_render.models.denoiser import Denoiser
    from neural_render.pipelines.inverse import InverseRenderingPipeline
    from neural_render.tasks.base import make_backbone

    c = 12
    backbone = make_backbone("wan", tiny=True, seed=0, cond_channels=c,
                             config={"in_channels": 5 * c, "out_channels": 5 * c, "patch_size": [1, 1, 1]})
    pipe = InverseRenderingPipeline(backbone, Denoiser(kind="x0"), PixelUnshuffleCodec(2), None, mode="joint",
                                    info={"global_step": 0})
    folder = tmp_path_factory.mktemp("model") / "inverse"
    pipe.save_pretrained(folder)
    return folder


def _run(args, capsys):
    code = main(["eval", "inverse", "--threads", "1", *map(str, args)])
    return code, capsys.readouterr()


def test_untrained_model_end_to_end(dataset, tiny_model, tmp_path, capsys):
    out = tmp_path / "res" / "eval.json"
    code, io = _run(["--data", dataset, "--model", tiny_model, "--long-data", dataset, "--train-data", dataset,
                     "--window", "4", "--overlap", "1", "--json", out], capsys)
    assert code == 0, io.err
    assert "WARNING: this model was never trained" in io.out
    assert "normal mean angle" in io.out and "window test" in io.out
    result = json.loads(out.read_text())
    assert result["model_trained"] is False and result["num_clips"] == 2
    for column in ("model", "baseline"):
        for key in ("normal_mean_deg", "albedo_si_psnr_db", "roughness_rmse", "metallic_rmse", "depth_absrel"):
            assert isinstance(result["accuracy"][column][key], float), (column, key)
    assert set(result["accuracy"]["temporal"]["model"]) == {"basecolor", "normal", "depth", "roughness", "metallic"}
    table = result["accuracy"]["comparison"]  # Holm-corrected hierarchical bootstrap, one row per comparison
    names = [row["name"] for row in table["rows"]]
    assert any("pixel-filtered input" in n for n in names) and any("vs input RGB" in n for n in names)
    assert table["correction"] == "holm" and table["m"] == len(names) >= 5
    for row in table["rows"]:
        lo, hi = row["corrected_interval"]
        assert row["n_clips"] == 2 and row["verdict"] in ("better", "worse", "tie") and lo <= hi, row["name"]
        assert (row["verdict"] == "better") == (lo > 0)
    assert "Holm-corrected" in io.out and "pixel-filtered" in io.out
    assert result["accuracy"]["baseline_filtered"]["albedo_si_psnr_db"] is not None
    win = result["windows"]
    assert win["windows_blended"][0] == [0, 4] and win["windows_blended"][-1][1] == 10
    for run in ("blended", "independent", "ground_truth"):
        assert win[run]["basecolor"]["boundary_pairs"] > 0 and win[run]["basecolor"]["within_pairs"] > 0


def test_baselines_match_metric_functions(dataset, tiny_model, tmp_path, capsys):
    from neural_render.data.clip_dataset import find_clips
    from neural_render.io.clip import read_clip
    from neural_render.metrics import (
        albedo_si_psnr,
        angle_stats,
        masked_rmse,
        normal_angles,
    )

    out = tmp_path / "eval.json"
    code, io = _run(["--data", dataset, "--model", tiny_model, "--train-data", dataset, "--json", out], capsys)
    assert code == 0, io.err
    base = json.loads(out.read_text())["accuracy"]["baseline"]
    angles, psnrs, rough = [], [], []
    clips = [read_clip(c) for c in find_clips(dataset)]
    valid_all = torch.cat([c.gbuffer.mask.flatten() > 0.5 for c in clips])
    mean_rough = float(torch.cat([c.gbuffer.roughness.flatten() for c in clips])[valid_all].double().mean())
    for clip in clips:
        g, valid = clip.gbuffer, clip.gbuffer.mask > 0.5
        facing = torch.zeros_like(g.normal)
        facing[:, :, 2] = 1.0
        angles.append(normal_angles(facing, g.normal, valid))
        psnrs.append(float(albedo_si_psnr(clip.rgb.clamp(0, 1), g.basecolor, valid)))
        rough.append(float(masked_rmse(torch.full_like(g.roughness, mean_rough), g.roughness, valid)))
    assert base["normal_mean_deg"] == pytest.approx(angle_stats(torch.cat(angles))["mean"], rel=1e-5)
    assert base["albedo_si_psnr_db"] == pytest.approx(sum(psnrs) / len(psnrs), rel=1e-5)
    assert base["roughness_rmse"] == pytest.approx(sum(rough) / len(rough), rel=1e-4)


class _Oracle:
    """Stands in for a pipeline: returns the ground truth of the clip whose rgb it is given."""

    def __init__(self, dataset):
        from neural_render.data.clip_dataset import find_clips
        from neural_render.io.clip import read_clip

        self.clips = [read_clip(c) for c in find_clips(dataset)]
        self.info, self.is_trained, self.mode = {"global_step": 1}, True, "joint"
        self.passes = ["basecolor", "normal", "depth", "roughness", "metallic"]

    def default_steps(self):
        return 1

    def __call__(self, rgb, window=16, overlap=4, **kwargs):
        from types import SimpleNamespace

        from neural_render.pipelines.windows import plan_windows

        clip = next(c for c in self.clips if torch.equal(c.rgb, rgb))
        return SimpleNamespace(gbuffer=clip.gbuffer, windows=plan_windows(rgb.shape[1], window, overlap))


def test_oracle_scores_perfectly(dataset, tiny_model, tmp_path, capsys, monkeypatch):
    from neural_render.pipelines.inverse import InverseRenderingPipeline

    monkeypatch.setattr(InverseRenderingPipeline, "from_pretrained", classmethod(lambda cls, d: _Oracle(dataset)))
    out = tmp_path / "eval.json"
    code, io = _run(["--data", dataset, "--model", tiny_model, "--train-data", dataset, "--long-data", dataset,
                     "--window", "4", "--overlap", "1", "--json", out], capsys)
    assert code == 0, io.err
    result = json.loads(out.read_text())
    model = result["accuracy"]["model"]
    assert model["normal_mean_deg"] == pytest.approx(0.0, abs=1e-3) and model["normal_pct_11.25"] == 100.0
    assert model["albedo_si_psnr_db"] is None and "inf" in io.out        # +inf is written as null
    assert model["roughness_rmse"] == 0.0 and model["metallic_rmse"] == 0.0
    assert model["depth_absrel"] == pytest.approx(0.0, abs=1e-6) and model["mask_iou"] == 1.0
    temporal = result["accuracy"]["temporal"]
    for name, value in temporal["model"].items():
        assert value == pytest.approx(temporal["ground_truth"][name])      # the oracle IS the ground truth
    assert not math.isnan(temporal["model"]["basecolor"])


@pytest.mark.parametrize("case", ["no_data", "not_a_model", "bad_window", "no_gt"])
def test_bad_input_exits_2_without_json(case, dataset, tiny_model, tmp_path, capsys):
    out = tmp_path / "eval.json"
    args = ["--data", dataset, "--model", tiny_model, "--json", out]
    if case == "no_data":
        args[1] = tmp_path / "missing"
    elif case == "not_a_model":
        (tmp_path / "empty").mkdir()
        args[3] = tmp_path / "empty"
    elif case == "bad_window":
        args += ["--window", "4", "--overlap", "4"]
    else:  # a clip folder without G-buffers: import one from the dataset's rgb only
        import shutil

        clip = tmp_path / "rgb_only" / "clip_000000"
        shutil.copytree(Path(dataset) / "clip_000000", clip)
        meta = json.loads((clip / "meta.json").read_text())
        meta["passes"] = []
        (clip / "meta.json").write_text(json.dumps(meta))
        args[1] = tmp_path / "rgb_only"
    code, io = _run(args, capsys)
    assert code == 2 and "error" in io.err
    assert not out.exists() and not list(tmp_path.glob(".eval.json*"))
