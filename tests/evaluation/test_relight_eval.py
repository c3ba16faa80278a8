"""`neural-render eval relight` on a tiny synth set: the relit data is rendered by the engine, every method row is
printed (relight, input unchanged, classical on the estimate, pixel-filtered classical, exact-G-buffer reference)
and the JSON carries the Holm-corrected intervals. Untrained tiny models: mechanics only, never quality."""

import json

import pytest
import torch

from neural_render.cli import main
from neural_render.evaluation.relight import CLASSICAL, FILTERED, REFERENCE, RELIGHT, UNCHANGED


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("relight_eval")
    envs = root / "envs"
    envs.mkdir()
    from neural_render.data_assets import envmap_path

    for name in ("venice_sunset", "kiara_1_dawn"):
        (envs / f"{name}.hdr").write_bytes(envmap_path(name).read_bytes())
    data = root / "data"
    assert main(["synth", "--out", str(data), "--clips", "3", "--frames", "2", "--size", "16x16", "--spp", "2",
                 "--envmaps", str(envs), "--seed", "5", "--no-progress"]) == 0
    return data


def test_eval_relight_rows_and_intervals(tiny_set, untrained_pipelines, tmp_path, capsys):
    torch.set_num_threads(1)
    out = tmp_path / "relight.json"
    relit = tmp_path / "relit"
    code = main(["eval", "relight", "--data", str(tiny_set), "--relight-data", str(relit),
                 "--model", str(untrained_pipelines / "forward_model"),
                 "--inverse-model", str(untrained_pipelines / "inverse_model"), "--json", str(out)])
    text = capsys.readouterr().out
    assert code == 0
    for row in (RELIGHT, UNCHANGED, CLASSICAL, FILTERED, REFERENCE):
        assert row in text
    assert "Holm" in text and relit.is_dir()
    result = json.loads(out.read_text())
    assert result["written_by"] == "neural-render eval relight" and result["num_clips"] == 3
    rows = result["comparison"]["rows"]
    assert [r["name"].split(" vs ")[1].split(" (")[0] for r in rows][::2] == [UNCHANGED, CLASSICAL, FILTERED]
    for row in rows:
        lo, hi = row["corrected_interval"]
        assert lo <= row["diff_mean"] <= hi and row["verdict"] in ("better", "worse", "tie")
    # the relit clips are the same scenes under the next env map of the dataset's list
    src = json.loads((tiny_set / "clip_000000" / "meta.json").read_text())["extra"]["synth"]
    dst = json.loads((relit / "clip_000000" / "meta.json").read_text())["extra"]["synth"]
    assert src["env"]["name"] != dst["env"]["name"] and src["objects"] == dst["objects"]
