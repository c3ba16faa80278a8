"""neural_render.hub: the one resolver and validation of model folders (shipped name, path, default), its errors
(missing folder, folder without the files a pipeline needs, DiffusionRenderer checkpoint not supported yet) and
the extension point for foreign loaders; and that the commands go through it (exit 2, one line naming the folder)."""

import json
import sys

import pytest

from neural_render import hub
from neural_render.cli import EXIT_BAD_INPUT, main
from neural_render.data_assets import data_dir
from neural_render.errors import NeuralRenderError


def _dr_folder(root):
    """A folder laid out like a DiffusionRenderer checkpoint (diffusers format, no weights needed to recognise it)."""
    root.mkdir()
    index = {"_class_name": hub.DIFFUSION_RENDERER_CLASS, "_diffusers_version": "0.32.0",
             "unet": ["diffusers", "UNetSpatioTemporalConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
             "scheduler": ["diffusers", "EulerDiscreteScheduler"]}
    (root / "model_index.json").write_text(json.dumps(index))
    for name in ("unet", "vae", "scheduler"):
        (root / name).mkdir()
    return root


def test_shipped_name_path_and_default_resolve_to_the_same_checked_folder():
    shipped = data_dir() / "models" / "inverse_tiny"
    assert hub.resolve_model(None, "inverse") == shipped
    assert hub.resolve_model("inverse_tiny", "inverse") == shipped
    assert hub.resolve_model(str(shipped), "inverse") == shipped
    assert hub.resolve_model(None, "forward") == data_dir() / "models" / "forward_tiny"
    assert {"inverse_tiny", "forward_tiny", "forward_cache_tiny"} <= set(hub.shipped_names())
    assert hub.default_model("forward_cache") == data_dir() / "models" / "forward_cache_tiny"


def test_an_existing_path_wins_over_a_shipped_name(tmp_path, monkeypatch):
    own = tmp_path / "inverse_tiny"
    own.mkdir()
    (own / "model_index.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    assert hub.resolve_model("inverse_tiny", "inverse") == own.relative_to(tmp_path)


def test_missing_folder_and_missing_default_name_the_folder(tmp_path, monkeypatch):
    with pytest.raises(NeuralRenderError, match="model folder does not exist") as err:
        hub.resolve_model(tmp_path / "nope", "inverse")
    assert err.value.path == str(tmp_path / "nope")
    with pytest.raises(NeuralRenderError, match="shipped model names: .*inverse_tiny"):
        hub.resolve_model("inverse_tinyy", "inverse")
    data = tmp_path / "data"
    (data / "envmaps").mkdir(parents=True)
    monkeypatch.setenv("NEURAL_RENDER_DATA", str(data))
    with pytest.raises(NeuralRenderError, match="no shipped inverse model here; pass --inverse-model DIR") as err:
        hub.resolve_model(None, "inverse", option="--inverse-model")
    assert err.value.path == str(data / "models" / "inverse_tiny") and "train_inverse_tiny.py" in err.value.reason
    assert hub.default_model("forward") is None and hub.shipped_names() == []


@pytest.mark.parametrize("make, words", [
    (lambda d: None, "no readable model_index.json"),
    (lambda d: (d / "model_index.json").write_text("[1, 2]"), "no readable model_index.json"),
    (lambda d: (d / "model_index.json").write_text("{not json"), "no readable model_index.json"),
    (lambda d: (d / "model_index.json").write_text(json.dumps(
        {"format_version": 1, "backbone": {"class_path": "x", "folder": "backbone"},
         "denoiser": {"class_path": "y", "folder": "denoiser"}})), "backbone, denoiser, which are missing"),
    (lambda d: (d / "model_index.json").write_text(json.dumps(
        {"_class_name": "SomePipeline", "unet": ["diffusers", "UNet2DModel"], "safety_checker": [None, None]})),
     "unet, which are missing"),
])
def test_folder_without_the_files_a_pipeline_needs_is_refused(tmp_path, make, words):
    folder = tmp_path / "model"
    folder.mkdir()
    make(folder)
    with pytest.raises(NeuralRenderError, match=words) as err:
        hub.check_model_folder(folder, "forward")
    assert err.value.path == str(folder) and "forward pipeline" in err.value.reason
    file = tmp_path / "file"
    file.write_text("x")
    with pytest.raises(NeuralRenderError, match="a file, not a folder"):
        hub.resolve_model(file, "inverse")


@pytest.fixture
def no_foreign_loaders(monkeypatch):
    """The hub as if no loader for foreign formats were registered (issue #24 registers DiffusionRenderer's)."""
    monkeypatch.setattr(hub, "LOADER_MODULES", [])
    monkeypatch.setattr(hub, "_LOADERS", {})


def test_diffusion_renderer_folder_is_recognised_and_refused_until_a_loader_is_registered(tmp_path,
                                                                                         no_foreign_loaders):
    folder = _dr_folder(tmp_path / "dr_inverse")
    assert hub.is_diffusion_renderer_folder(folder)
    assert not hub.is_diffusion_renderer_folder(data_dir() / "models" / "inverse_tiny")
    custom = {"_class_name": ["reference_pipeline", hub.DIFFUSION_RENDERER_CLASS]}  # diffusers custom-pipeline form
    assert hub.pipeline_class_name(custom) == hub.DIFFUSION_RENDERER_CLASS
    assert hub.pipeline_class_name({"_class_name": 3}) is None and hub.pipeline_class_name({}) is None
    with pytest.raises(NeuralRenderError, match="DiffusionRenderer checkpoint .*not supported yet") as err:
        hub.resolve_model(folder, "inverse")
    assert err.value.path == str(folder)
    # the extension point: a registered loader makes it loadable (for that kind only)
    calls = []
    hub.register_loader(hub.DIFFUSION_RENDERER_CLASS, "inverse", lambda path, device: calls.append((path, device)) or 1)
    assert hub.load_inverse(folder, "cpu") == 1 and [(p, str(d)) for p, d in calls] == [(folder, "cpu")]
    with pytest.raises(NeuralRenderError, match="not supported yet"):
        hub.load_forward(folder)
    with pytest.raises(ValueError, match="unknown model kind"):
        hub.register_loader(hub.DIFFUSION_RENDERER_CLASS, "nonsense", lambda path, device: None)


def test_loader_modules_are_imported_on_first_need(tmp_path, monkeypatch, no_foreign_loaders):
    (tmp_path / "probe_dr_loader.py").write_text(
        "from neural_render import hub\n"
        "hub.register_loader(hub.DIFFUSION_RENDERER_CLASS, 'forward', lambda folder, device: ('loaded', folder))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(hub, "LOADER_MODULES", ["probe_dr_loader"])
    monkeypatch.setattr(hub, "_IMPORTED", set())
    folder = _dr_folder(tmp_path / "dr")
    try:
        assert hub.load_forward(folder) == ("loaded", folder)
        with pytest.raises(NeuralRenderError, match="not supported yet"):
            hub.load_inverse(folder)  # registered for forward only
    finally:
        sys.modules.pop("probe_dr_loader", None)


def test_loaders_build_the_kind_of_pipeline_from_a_shipped_name():
    from neural_render.pipelines.forward import ForwardPipeline
    from neural_render.pipelines.insert import CacheForwardPipeline
    from neural_render.pipelines.inverse import InverseRenderingPipeline

    assert isinstance(hub.load_inverse("inverse_tiny"), InverseRenderingPipeline)
    forward = hub.load_forward("forward_tiny", "cpu")
    assert isinstance(forward, ForwardPipeline) and not isinstance(forward, CacheForwardPipeline)
    cache = hub.load_cache_forward()
    assert isinstance(cache, CacheForwardPipeline) and cache.injection is not None
    folder, note = hub.resolve_cache_forward(None)
    assert folder == data_dir() / "models" / "forward_cache_tiny" and note is None


def _error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("neural-render: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_commands_refuse_bad_model_folders_with_exit_2(tmp_path, capsys, no_foreign_loaders):
    video = tmp_path / "in.mp4"
    video.write_bytes(b"")  # never read: the model folder is checked first
    dr = _dr_folder(tmp_path / "dr")
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [(["inverse", str(video), "--out", str(tmp_path / "o1"), "--model", str(dr)], "not supported yet"),
             (["eval", "inverse", "--data", str(tmp_path), "--model", str(empty)], "model_index.json"),
             (["serve", "--inverse-model", str(dr)], "not supported yet"),
             (["demo", "--out", str(tmp_path / "o2"), "--inverse-model", str(empty)], "model_index.json")]
    for argv, words in cases:
        assert main(argv) == EXIT_BAD_INPUT, argv
        line = _error_line(capsys.readouterr().err)
        assert words in line and argv[-1] in line, line
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


def test_diffusion_renderer_checkpoints_load_through_the_listed_loader_module():
    """Issue #24: with its module in LOADER_MODULES, DiffusionRenderer folders load as inverse / forward models;
    the other kind and the cache-injection kind (insert) stay clear errors naming the folder."""
    from pathlib import Path

    fixtures = Path(__file__).resolve().parent / "fixtures" / "diffusion_renderer"
    assert hub.LOADER_MODULES == ["neural_render.pipelines.diffusion_renderer_hub"]
    inverse = hub.load_inverse(fixtures / "inverse", "cpu")
    assert type(inverse).__name__ == "DiffusionRendererInversePipeline" and inverse.info["folder"] == str(
        fixtures / "inverse")
    assert type(hub.load_forward(fixtures / "forward")).__name__ == "DiffusionRendererForwardPipeline"
    with pytest.raises(NeuralRenderError, match="inverse checkpoint where a forward one is needed") as err:
        hub.load_relight(fixtures / "inverse", fixtures / "inverse")
    assert err.value.path == str(fixtures / "inverse")
    with pytest.raises(NeuralRenderError, match="as a cache-injection forward pipeline is not supported yet") as err:
        hub.load_cache_forward(fixtures / "forward")
    assert err.value.path == str(fixtures / "forward")
