"""Regression: the shipped models (data/models/inverse_tiny, forward_tiny, forward_cache_tiny) give the outputs recorded
in tests/fixtures/pipeline_references.safetensors (made by scripts/make_pipeline_references.py from the tree before the
issue #25 refactor; the script's own functions build the inputs and run the pipelines here too).

Tolerance: max |difference| <= 1e-5 per tensor (outputs are linear radiance / G-buffer values in about [-1, 1]). On the
machine that made the references the difference is ~1e-7 or exactly 0 (float32 CPU, one thread); the margin covers
other CPUs' vectorised kernels, not behaviour changes (a changed sampler, seed or window plan moves values by >1e-3).
"""

import importlib.util
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "fixtures" / "pipeline_references.safetensors"
TOLERANCE = 1e-5


def _script():
    script = REPO / "scripts" / "make_pipeline_references.py"
    spec = importlib.util.spec_from_file_location("make_pipeline_references", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def outputs():
    from safetensors.torch import load_file

    from neural_render.data_assets import data_dir

    stored = load_file(str(FIXTURE))
    inputs = {k.removeprefix("input."): v for k, v in stored.items() if k.startswith("input.")}
    expected = {k: v for k, v in stored.items() if not k.startswith("input.")}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        actual = _script().reference_outputs(data_dir(), inputs)
    finally:
        torch.set_num_threads(threads)
    return expected, actual


def test_reference_file_covers_every_shipped_model(outputs):
    expected, actual = outputs
    assert {k.split(".")[0] for k in expected} == {"inverse", "forward", "cache", "relight"}
    assert sorted(expected) == sorted(actual)


@pytest.mark.parametrize("key", ["inverse.basecolor", "inverse.normal", "inverse.depth", "inverse.roughness",
                                 "inverse.metallic", "inverse.mask", "forward.rgb", "forward.windowed", "cache.rgb",
                                 "relight.rgb"])
def test_shipped_model_output_unchanged(outputs, key):
    expected, actual = outputs
    assert actual[key].shape == expected[key].shape
    diff = float((actual[key] - expected[key]).abs().max())
    assert diff <= TOLERANCE, f"{key}: max |difference| {diff:.3g} > {TOLERANCE:g}"
