"""scripts/probe_material_cue.py: the exact decomposition on a hand-made clip, an end-to-end run on a tiny synth set
(the untrained probe IS the constant, so its first row ties it exactly), and bad input (exit 2, no JSON)."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from neural_render.cli import main as cli_main

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "probe_material_cue.py"


@pytest.fixture(scope="module")
def probe():
    spec = importlib.util.spec_from_file_location("probe_material_cue", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_decomposition_exact(probe):
    # one clip, 1 frame of 2x2 pixels: 3 ground pixels (roughness 0.3, dielectric) and 1 object pixel (0.9, metal)
    rough = torch.tensor([0.3, 0.3, 0.3, 0.9]).view(1, 1, 1, 2, 2)
    metal = torch.tensor([0.0, 0.0, 0.0, 1.0]).view(1, 1, 1, 2, 2)
    data = {"roughness": rough, "metallic": metal, "mask": torch.ones_like(rough)}
    ground = torch.tensor([True, True, True, False]).view(1, 1, 1, 2, 2)
    out = probe.decomposition(data, ground, {"roughness": 0.6, "metallic": 0.25})
    assert out["ground_share"] == pytest.approx(0.75)
    r = out["roughness"]
    assert r["constant"] == pytest.approx(0.3)
    assert r["ground_exact"] == pytest.approx((0.25 * 0.3 ** 2) ** 0.5)
    assert r["objects_exact"] == pytest.approx((0.75 * 0.3 ** 2) ** 0.5)
    m = out["metallic"]
    assert m["constant"] == pytest.approx(((3 * 0.25 ** 2 + 0.75 ** 2) / 4) ** 0.5)
    assert m["ground_exact"] == pytest.approx((0.75 ** 2 / 4) ** 0.5)
    # a pixel outside the foreground mask is not scored
    data["mask"] = torch.tensor([1.0, 1.0, 1.0, 0.0]).view(1, 1, 1, 2, 2)
    out = probe.decomposition(data, ground, {"roughness": 0.6, "metallic": 0.25})
    assert out["ground_share"] == pytest.approx(1.0) and out["roughness"]["ground_exact"] == pytest.approx(0.0)


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    data = tmp_path_factory.mktemp("probe") / "synth"
    code = cli_main(["synth", "--out", str(data), "--clips", "2", "--frames", "2", "--size", "16x16", "--spp", "2",
                     "--envmaps", "train", "--seed", "11", "--max-objects", "2", "--no-progress"])
    assert code == 0
    return data


def test_end_to_end(probe, tiny_set, tmp_path):
    out = tmp_path / "res" / "probe.json"
    d = str(tiny_set)
    assert probe.main(["--train", d, "--val", d, "--test", d, "--minutes", "0.005", "--scores", "1",
                       "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["train_clips"] == 2 and len(result["probe"]) == 2
    first = result["probe"][0]
    assert first["step"] == 0 and result["probe"][1]["step"] >= 1
    for split in ("val", "test"):
        for name in ("roughness", "metallic"):
            row = first[split][name]
            assert row["model"] == pytest.approx(row["constant"], abs=1e-6)  # zero-initialised output
            assert result["decomposition"][split][name]["constant"] == pytest.approx(row["constant"], abs=1e-6)
    assert 0.0 <= result["decomposition"]["val"]["ground_share"] <= 1.0


def test_bad_input(probe, tmp_path, capsys):
    out = tmp_path / "probe.json"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert probe.main(["--train", str(empty), "--val", str(empty), "--test", str(empty), "--json", str(out)]) == 2
    assert "no clip folders" in capsys.readouterr().err
    assert not out.exists()
