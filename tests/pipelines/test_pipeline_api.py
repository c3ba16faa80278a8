"""diffusers conventions of the pipelines (issue #25): generator / seed alias, output_type, return_dict,
callback_on_step_end, BaseOutput results, the old entry points (render, decompose, relight) as aliases of __call__,
window / overlap in video frames everywhere. Run on the shipped models at 32x24 (a second each)."""

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline
from diffusers.utils import BaseOutput

from neural_render.data_assets import data_dir
from neural_render.errors import NeuralRenderError

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def shipped():
    from neural_render.pipelines.forward import ForwardPipeline
    from neural_render.pipelines.inverse import InverseRenderingPipeline

    models = data_dir() / "models"
    return (InverseRenderingPipeline.from_pretrained(models / "inverse_tiny"),
            ForwardPipeline.from_pretrained(models / "forward_tiny"))


@pytest.fixture(scope="module")
def clip():
    from neural_render.data_assets import envmap_path
    from neural_render.demo.scene import demo_scene
    from neural_render.io import load_envmap
    from neural_render.render.shade import prepare_ibl, shade

    scene = demo_scene(3, 32, 24)
    env = load_envmap(envmap_path("venice_sunset")).rotated(30.0, 0.0, 0.0)
    video = shade(scene.gbuffer, scene.camera, prepare_ibl(env)).clamp(0.0, 1.0)
    return video, scene.gbuffer, scene.camera, env


def test_pipelines_are_diffusers_pipelines_with_components(shipped):
    inverse, forward = shipped
    assert isinstance(inverse, DiffusionPipeline) and isinstance(forward, DiffusionPipeline)
    assert set(inverse.components) == {"backbone", "denoiser", "codec", "pass_embedding", "lora"}
    assert forward.components["domain_shifters"] is forward.domain_shifters
    assert forward.config["backbone"] == ("neural_render.models.backbone.svd", "SVDBackbone")


def test_seed_alias_generator_output_type_and_return_dict(shipped, clip):
    inverse, forward = shipped
    video, gbuffer, camera, env = clip
    a = inverse(video, seed=3, progress=False)
    b = inverse(video, generator=torch.Generator().manual_seed(3), progress=False)  # joint model: one generator
    assert isinstance(a, BaseOutput)
    assert all(torch.equal(a.gbuffer.passes[k], b.gbuffer.passes[k]) for k in a.gbuffer.passes)
    c = inverse(video, seed=3, progress=False, output_type="np")
    assert isinstance(c.gbuffer["normal"], np.ndarray) and c.gbuffer["normal"].shape == (1, 3, 3, 24, 32)
    assert np.array_equal(c.gbuffer["normal"], a.gbuffer.normal.numpy())
    f = forward(gbuffer, camera, env, seed=5)
    assert torch.equal(f.rgb, forward(gbuffer, camera, env, generator=torch.Generator().manual_seed(5)).rgb)
    assert torch.equal(forward(gbuffer, camera, env).rgb, forward(gbuffer, camera, env, seed=0).rgb)  # default seed 0
    rgb, latents, prior = forward(gbuffer, camera, env, seed=5, return_dict=False)
    assert torch.equal(rgb, f.rgb) and torch.equal(latents, f.latents) and torch.equal(prior, f.prior)
    np_out = forward(gbuffer, camera, env, seed=5, output_type="np")
    assert isinstance(np_out.rgb, np.ndarray) and np.array_equal(np_out.rgb, f.rgb.numpy())
    with pytest.raises(NeuralRenderError, match="output_type"):
        forward(gbuffer, camera, env, output_type="pil")


def test_old_entry_points_are_aliases_of_call(shipped, clip):
    from neural_render.pipelines.relight import RelightPipeline

    inverse, forward = shipped
    video, gbuffer, camera, env = clip
    assert torch.equal(forward.render(gbuffer, camera, env, seed=2).rgb, forward(gbuffer, camera, env, seed=2).rgb)
    relight = RelightPipeline(inverse, forward)
    out = relight(video, [env], camera=camera, seed=4)
    assert isinstance(relight, DiffusionPipeline) and isinstance(out, BaseOutput) and len(out.videos) == 1
    old = relight.relight(video, [env], camera=camera, seed=4)
    assert torch.equal(old.videos[0], out.videos[0]) and out.processing_size == old.processing_size
    decomposed = relight.decompose(video, seed=4)
    assert all(torch.equal(decomposed.passes[k], out.gbuffer.passes[k]) for k in decomposed.passes)
    assert relight(video, seed=4).videos == []  # no env map: decomposition only
    direct = forward(out.gbuffer, camera, env, seed=4).rgb
    assert torch.equal(direct, out.videos[0])


def test_callback_on_step_end_sees_and_replaces_latents(shipped, clip):
    inverse, forward = shipped
    video, gbuffer, camera, env = clip
    seen = []

    def record(pipe, step, sigma, kwargs):
        seen.append((pipe, step, tuple(kwargs["latents"].shape)))
        return {}

    plain = forward(gbuffer, camera, env, seed=1)
    same = forward(gbuffer, camera, env, seed=1, callback_on_step_end=record)
    assert torch.equal(plain.rgb, same.rgb) and seen == [(forward, 0, tuple(plain.latents.shape))]
    zeroed = forward(gbuffer, camera, env, seed=1,
                     callback_on_step_end=lambda pipe, step, sigma, kw: {"latents": torch.zeros_like(kw["latents"])})
    assert torch.equal(zeroed.latents, torch.zeros_like(plain.latents)) and not torch.equal(zeroed.rgb, plain.rgb)
    steps = []
    inverse(video, seed=0, progress=False, callback_on_step_end=lambda p, i, s, kw: steps.append(i) or {})
    assert steps == [0]  # joint x0 model: one sampling run of one step
    with pytest.raises(NeuralRenderError, match="not among"):
        forward(gbuffer, camera, env, callback_on_step_end=record, callback_on_step_end_tensor_inputs=["noise"])


def test_window_counts_video_frames_in_every_pipeline(shipped):
    from neural_render.pipelines.windows import latent_window, video_window

    _, forward = shipped
    assert latent_window(9, 4, 4) == (3, 1) and latent_window(5, 2, 1) == (5, 2)
    for lat, over, f in [(3, 1, 4), (1, 0, 4), (4, 2, 1), (5, 2, 2)]:
        assert latent_window(*video_window(lat, over, f), f) == (lat, over)
    assert forward.latent_windows(None, None) == (4, 2)  # the model's config (latent frames as trained)
    assert forward.latent_windows(3, 1) == (3, 1)  # no temporal compression: video == latent frames
    codec = forward.codec
    try:
        codec.temporal_factor = 4  # as a causal video VAE would have
        assert forward.latent_windows(9, 4) == (3, 1) and forward.latent_windows(9, None) == (3, 2)
    finally:
        del codec.temporal_factor
