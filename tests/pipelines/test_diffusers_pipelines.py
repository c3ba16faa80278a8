"""The pipelines are diffusers pipelines: ``DiffusionPipeline.from_pretrained`` loads every shipped model folder (and a
freshly saved one) as our class, with our settings, and gives exactly the native pipeline's output for the same
generator; folders of the earlier format (format 1, before issue #25) still load with ``load_pipeline``.

Same process, same inputs, same code path below the loader: outputs are compared bit for bit (torch.equal).
"""

import json
import shutil
from pathlib import Path

import pytest
import torch

from neural_render.data_assets import data_dir

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "pipeline_references.safetensors"
SHIPPED = ("inverse_tiny", "inverse_v2", "forward_tiny", "forward_cache_tiny", "forward_real_lora",
           "forward_real")

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def inputs():
    """The stored reference inputs (video 1x4x3x24x32, camera, env) and the inverse G-buffer recorded for them."""
    from safetensors.torch import load_file

    from neural_render.io.hdr import load_envmap
    from neural_render.types import Camera, EnvMap, GBuffer

    stored = load_file(str(FIXTURE))
    video = stored["input.video"]
    camera = Camera(stored["input.intrinsics"], stored["input.camera_to_world"], video.shape[-1], video.shape[-2])
    sky = load_envmap(data_dir() / "envmaps" / "lebombo.hdr")
    env = EnvMap(sky.image, stored["input.env_rotation"], sky.name)
    gbuffer = GBuffer(**{k.split(".", 1)[1]: v for k, v in stored.items() if k.startswith("inverse.")})
    return video, camera, env, gbuffer


def _diffusers_load(folder):
    from diffusers import DiffusionPipeline

    return DiffusionPipeline.from_pretrained(str(folder), trust_remote_code=True)


def _run(pipe, name, inputs, seed=0):
    """The pipeline's output tensors for ``inputs`` with a generator seeded ``seed``."""
    video, camera, env, gbuffer = inputs
    gen = torch.Generator().manual_seed(seed)
    if name.startswith("inverse"):
        return dict(pipe(video, window=2, overlap=1, generator=gen, progress=False).gbuffer.passes)
    if name in ("forward_tiny", "forward_real_lora", "forward_real"):
        return {"rgb": pipe(gbuffer, camera, env, window=2, overlap=1, generator=gen).rgb}
    import importlib.util

    script = FIXTURE.parents[2] / "scripts" / "make_pipeline_references.py"
    spec = importlib.util.spec_from_file_location("refs", script)
    refs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(refs)
    cache = refs.synthetic_cache(gbuffer, camera, env)
    return {"rgb": pipe(gbuffer, camera, env, cache=cache, window=2, overlap=1, generator=gen).rgb}


def _assert_same(a: dict, b: dict):
    assert sorted(a) == sorted(b)
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("name", SHIPPED)
def test_diffusers_loads_every_shipped_folder_like_the_native_loader(name, inputs):
    from neural_render.hub import _target
    from neural_render.pipelines.base import VideoDiffusionPipeline, load_pipeline

    folder = data_dir() / "models" / name
    kind = {"inverse_tiny": "inverse", "inverse_v2": "inverse", "forward_tiny": "forward",
            "forward_cache_tiny": "forward_cache", "forward_real_lora": "forward",
            "forward_real": "forward"}[name]
    native = _target(kind).from_pretrained(folder)
    loaded = _diffusers_load(folder)
    assert type(loaded) is type(native) and isinstance(loaded, VideoDiffusionPipeline)
    assert loaded.config["_name_or_path"] == str(folder)
    assert loaded.lora_names() == native.lora_names()
    assert not loaded.backbone.training  # configured and in eval mode like a native load
    for attr in ("mode", "passes", "native_size", "skip_passes", "skip_filter_sigma", "forward_config"):
        assert getattr(loaded, attr, None) == getattr(native, attr, None), attr
    expected = _run(native, name, inputs)
    _assert_same(_run(loaded, name, inputs), expected)
    _assert_same(_run(load_pipeline(folder), name, inputs), expected)


def test_every_shipped_folder_is_covered():
    assert sorted(p.name for p in (data_dir() / "models").iterdir() if p.is_dir()) == sorted(SHIPPED)


def test_diffusers_output_matches_the_step0_reference(inputs):
    """The diffusers-loaded forward_tiny reproduces the recorded reference render (tests/fixtures, before issue #25)."""
    from safetensors.torch import load_file

    video, camera, env, gbuffer = inputs
    stored = load_file(str(FIXTURE))
    pipe = _diffusers_load(data_dir() / "models" / "forward_tiny")
    out = pipe(gbuffer, camera, env, generator=torch.Generator().manual_seed(0)).rgb
    assert float((out - stored["forward.rgb"]).abs().max()) <= 1e-5


def test_format1_folder_still_loads(tmp_path, inputs):
    """A folder exported before issue #25 (format 1 model_index.json, no loader shim) loads with load_pipeline and
    renders exactly like the shipped (format 2) folder; diffusers cannot load it (no diffusers index)."""
    from neural_render.pipelines.base import load_pipeline, upgrade_folder
    from neural_render.pipelines.insert import CacheForwardPipeline

    old = tmp_path / "forward_cache_old"
    shutil.copytree(data_dir() / "models" / "forward_cache_tiny", old)
    (old / "neural_render_pipeline.py").unlink()
    (old / "model_index.json").write_text(json.dumps({
        "_class_name": "CacheForwardPipeline", "pipeline_class": "neural_render.pipelines.insert.CacheForwardPipeline",
        "format_version": 1,
        "backbone": {"class_path": "neural_render.models.backbone.svd.SVDBackbone", "folder": "backbone",
                     "lora": ["default"]},
        "codec": {"class_path": "neural_render.models.codec.PixelUnshuffleCodec", "folder": "codec",
                  "storage": "init_args"},
        "denoiser": {"class_path": "neural_render.models.denoiser.Denoiser", "folder": "denoiser"},
        "pass_embedding": None}))
    pipe = load_pipeline(old)
    assert isinstance(pipe, CacheForwardPipeline) and pipe.injection is not None and pipe.lora_names() == ["default"]
    expected = _run(CacheForwardPipeline.from_pretrained(data_dir() / "models" / "forward_cache_tiny"),
                    "forward_cache_tiny", inputs)
    _assert_same(_run(pipe, "forward_cache_tiny", inputs), expected)
    assert upgrade_folder(old) and not upgrade_folder(old)  # rewritten once as format 2, weights untouched
    _assert_same(_run(_diffusers_load(old), "forward_cache_tiny", inputs), expected)


def test_saved_per_pass_pipeline_round_trips_through_diffusers(tmp_path):
    """save_pretrained writes a diffusers-loadable folder; a per-pass model exercises the pass embedding component."""
    from neural_render.models.codec import PixelUnshuffleCodec
    from neural_render.models.denoiser import Denoiser
    from neural_render.models.pass_embedding import PassEmbedding
    from neural_render.pipelines.inverse import InverseRenderingPipeline
    from neural_render.tasks.base import make_backbone

    backbone = make_backbone("svd", config={"in_channels": 12, "out_channels": 12}, tiny=True, seed=0, cond_channels=12)
    torch.manual_seed(0)
    pipe = InverseRenderingPipeline(backbone, Denoiser("flow"), PixelUnshuffleCodec(2), PassEmbedding(dim=32),
                                    passes=["normal", "depth"], num_steps=2, info={"global_step": 3})
    pipe.save_pretrained(tmp_path / "model")
    index = json.loads((tmp_path / "model" / "model_index.json").read_text())
    assert index["pass_embedding"] == ["neural_render.models.pass_embedding", "PassEmbedding"]
    loaded = _diffusers_load(tmp_path / "model")
    native = InverseRenderingPipeline.from_pretrained(tmp_path / "model")
    assert isinstance(loaded, InverseRenderingPipeline) and loaded.passes == ["normal", "depth"] and loaded.is_trained
    video = torch.rand(1, 2, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    a = native(video, generator=torch.Generator().manual_seed(5), progress=False).gbuffer
    b = loaded(video, generator=torch.Generator().manual_seed(5), progress=False).gbuffer
    _assert_same(dict(a.passes), dict(b.passes))
    # the in-memory pipeline agrees up to float rounding only: a saved and reloaded backbone is not bit-identical to
    # the live one (already so before issue #25: test_inverse_pipeline's save/load test fails on torch.equal at e3c3862)
    live = pipe.eval()(video, generator=torch.Generator().manual_seed(5), progress=False).gbuffer
    assert all(torch.allclose(live.passes[k], a.passes[k], atol=1e-4) for k in a.passes)
