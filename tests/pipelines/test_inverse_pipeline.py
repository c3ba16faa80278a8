"""InverseRenderingPipeline: windows == one window, any resolution, modes, mask/normals, seeds, save/load, errors.

Pipelines here are tiny and UNTRAINED (random weights) or use a mock "identity" backbone: they test mechanics
(shapes, windowing, resizing, persistence), never G-buffer quality."""

import json

import pytest
import torch

from neural_render.bench.inverse import build_tiny_pipeline
from neural_render.errors import NeuralRenderError
from neural_render.models.codec import PixelUnshuffleCodec
from neural_render.models.denoiser import Denoiser
from neural_render.models.pass_embedding import PassEmbedding
from neural_render.pipelines.base import load_pipeline
from neural_render.pipelines.inverse import (
    InverseRenderingPipeline,
    processing_shape,
    rgb_to_model,
)
from neural_render.types.gbuffer import PREDICTED_PASSES

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


class CondEcho(torch.nn.Module):
    """Mock backbone for the x0 denoiser: predicts the condition latent (repeated per pass block), so a pipeline
    built on it maps a video to basecolor = clamp(rgb, 0, 1) exactly (basecolor packing == the model input)."""

    def __init__(self, channels: int, blocks: int = 1):
        super().__init__()
        self.latent_channels, self.cond_channels, self.blocks = channels * blocks, channels, blocks
        self.context_dim, self.spatial_multiple = 8, 1
        from neural_render.models.backbone import FrameRule

        self.frame_rule = FrameRule()
        self.anchor = torch.nn.Parameter(torch.zeros(()))

    def forward(self, noisy, timestep, cond=None, context=None, added=None):
        return cond.repeat(1, 1, self.blocks, 1, 1) + 0 * self.anchor


def video(frames=5, height=8, width=8, seed=0):
    return torch.rand(1, frames, 3, height, width, generator=torch.Generator().manual_seed(seed)) * 1.2


def echo_pipeline(mode="per_pass"):
    blocks = 1 if mode == "per_pass" else len(PREDICTED_PASSES)
    embedding = PassEmbedding(dim=8) if mode == "per_pass" else None
    return InverseRenderingPipeline(CondEcho(12, blocks), Denoiser("x0"), PixelUnshuffleCodec(2), embedding, mode=mode)


def test_rgb_to_model_is_display_srgb_in_minus_one_one():
    from neural_render.render.tonemap import linear_to_srgb

    x = torch.tensor([-0.5, 0.0, 0.18, 1.0, 4.0])
    assert torch.allclose(rgb_to_model(x), linear_to_srgb(x.clamp(0, 1)) * 2 - 1)
    assert float(rgb_to_model(x).min()) == -1.0 and float(rgb_to_model(x).max()) == pytest.approx(1.0, abs=1e-6)


def test_processing_shape_snaps_to_the_stride_and_rejects_tiny_inputs():
    assert processing_shape(19, 23, 4) == (20, 24)
    assert processing_shape(30, 60, 8, 32) == (16, 32)
    assert processing_shape(30, 60, 8, (17, 40)) == (16, 40)
    with pytest.raises(NeuralRenderError, match="below the model stride"):
        processing_shape(3, 40, 4)


@pytest.mark.parametrize("mode", ["per_pass", "joint"])
def test_identity_model_round_trips_the_input_at_any_resolution(mode):
    pipe = echo_pipeline(mode)
    x = video(4, 8, 8)
    out = pipe(x, progress=False, window=3, overlap=1)
    assert torch.allclose(out.gbuffer.basecolor, x.clamp(0, 1), atol=1e-5)  # exact size: exact round trip
    assert out.processing_size == (8, 8) and out.windows == [(0, 3), (1, 4)]
    smooth = torch.nn.functional.interpolate(video(3, 4, 5, seed=2)[0], size=(19, 23), mode="bilinear",
                                             align_corners=True)[None]
    odd = pipe(smooth, progress=False, processing_size=(12, 14))
    assert odd.gbuffer.basecolor.shape == (1, 3, 3, 19, 23) and odd.processing_size == (12, 14)
    assert (odd.gbuffer.basecolor - smooth.clamp(0, 1)).abs().mean() < 0.03  # resized there and back


def test_windows_covering_the_video_equal_one_window_and_overlaps_change_nothing_else():
    pipe = build_tiny_pipeline("per_pass", kind="flow")
    x = video(6, 8, 8)
    full = pipe(x, num_steps=2, window=6, overlap=2, progress=False, return_latents=True)
    longer = pipe(x, num_steps=2, window=10, overlap=2, progress=False)
    for name, value in full.gbuffer.passes.items():
        assert torch.equal(value, longer.gbuffer.passes[name]), name
    # the same as sampling the whole clip at once with the denoiser (same per-pass seed)
    cond = pipe.codec.encode(rgb_to_model(x))
    context = pipe.pass_embedding.embed("normal")
    direct = pipe.denoiser.sample(pipe.backbone, tuple(cond.shape), cond, context, num_steps=2,
                                  generator=torch.Generator().manual_seed(7919 * pipe.passes.index("normal")))
    assert torch.equal(full.latents["normal"], direct)
    windowed = pipe(x, num_steps=2, window=4, overlap=2, progress=False)
    assert windowed.windows == [(0, 4), (2, 6)]
    assert windowed.gbuffer.normal.shape == full.gbuffer.normal.shape


def test_long_video_is_processed_in_windows_no_larger_than_the_window():
    pipe = build_tiny_pipeline("joint", kind="x0")
    calls = []
    forward = pipe.backbone.forward

    def spy(noisy, *args, **kwargs):
        calls.append(noisy.shape[1])
        return forward(noisy, *args, **kwargs)

    pipe.backbone.forward = spy
    out = pipe(video(40, 8, 8), window=16, overlap=4, progress=False)
    assert max(calls) == 16 and len(calls) == len(out.windows) == 3  # starts 0, 12, 24
    assert out.gbuffer.depth.shape == (1, 40, 1, 8, 8)
    # streaming decodes window-sized chunks that reassemble into exactly the returned G-buffer
    chunks = list(pipe.stream(video(40, 8, 8), window=16, overlap=4, progress=False))
    assert [(a, b) for a, b, _ in chunks] == [(0, 16), (16, 32), (32, 40)]
    for name, value in out.gbuffer.passes.items():
        assert torch.equal(torch.cat([c.passes[name] for _, _, c in chunks], dim=1), value), name


def test_outputs_are_valid_gbuffers_with_mask_unit_normals_and_zero_background():
    pipe = build_tiny_pipeline("joint", kind="flow")
    out = pipe(video(3, 10, 6), num_steps=2, progress=False)
    g = out.gbuffer.validate("pipeline output")
    assert set(g.passes) == set(PREDICTED_PASSES) | {"mask"}
    fg = g.mask > 0.5
    assert torch.allclose(g.normal.norm(dim=2, keepdim=True)[fg], torch.ones(()), atol=1e-4)
    for name, x in g.passes.items():
        assert float((x * (~fg)).abs().max()) == 0.0, name
    assert torch.equal(g.mask, (g.depth > 0).float())  # mask from depth: background is depth 0
    only = pipe(video(3, 10, 6), passes=["normal"], num_steps=2, progress=False).gbuffer
    assert set(only.passes) == {"normal", "mask"}
    # zero_background=False: same mask, same values on the foreground, the predicted values kept on the background
    kept = pipe(video(3, 10, 6), num_steps=2, progress=False, zero_background=False).gbuffer
    assert torch.equal(kept.mask, g.mask) and bool((~fg).any())
    for name in PREDICTED_PASSES:
        a, b = g.passes[name], kept.passes[name]
        assert torch.equal(a * fg, b * fg), name
        assert float((b * (~fg)).abs().max()) > 0.0, name


def test_per_pass_runs_differ_by_pass_and_seeds_are_reproducible():
    pipe = build_tiny_pipeline("per_pass", kind="x0")
    x = video(2, 8, 8)
    latents = pipe(x, progress=False, return_latents=True).latents
    assert not torch.allclose(latents["basecolor"], latents["roughness"], atol=1e-3)  # the context selects
    flow = build_tiny_pipeline("per_pass", kind="flow")
    a = flow(x, passes=["depth"], num_steps=2, seed=3, progress=False).gbuffer.depth
    b = flow(x, passes=["depth"], num_steps=2, seed=3, progress=False).gbuffer.depth
    c = flow(x, passes=["depth"], num_steps=2, generator=torch.Generator().manual_seed(4), progress=False).gbuffer.depth
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_save_and_load_keep_settings_and_outputs(tmp_path):
    pipe = build_tiny_pipeline("per_pass", kind="flow")
    pipe.configure(mode="per_pass", passes=["normal", "depth"], mask_threshold=0.05, processing_size=8, num_steps=2,
                   info={"global_step": 12})
    pipe.save_pretrained(tmp_path / "model")
    config = json.loads((tmp_path / "model" / "inverse_config.json").read_text())
    assert config["passes"] == ["normal", "depth"] and config["processing_size"] == 8 and config["num_steps"] == 2
    loaded = InverseRenderingPipeline.from_pretrained(tmp_path / "model")
    assert isinstance(load_pipeline(tmp_path / "model"), InverseRenderingPipeline)
    assert loaded.passes == ["normal", "depth"] and loaded.mask_threshold == 0.05 and loaded.is_trained
    x = video(3, 12, 12)
    a, b = pipe(x, progress=False).gbuffer, loaded(x, progress=False).gbuffer
    assert a.normal.shape == (1, 3, 3, 12, 12)
    for name in a.passes:
        assert torch.equal(a.passes[name], b.passes[name]), name
    # a plain VideoDiffusionPipeline folder (no inverse_config.json) loads with the mode inferred
    from neural_render.pipelines.base import VideoDiffusionPipeline

    plain = VideoDiffusionPipeline(pipe.backbone, pipe.denoiser, pipe.codec, pipe.pass_embedding)
    plain.save_pretrained(tmp_path / "plain")
    inferred = InverseRenderingPipeline.from_pretrained(tmp_path / "plain")
    assert inferred.mode == "per_pass" and inferred.passes == list(PREDICTED_PASSES) and not inferred.is_trained


def test_temporal_codec_pads_frames_and_crops_back():
    import diffusers

    from neural_render.models.codec import DiffusersVAECodec
    from neural_render.tasks.base import make_backbone

    torch.manual_seed(0)
    vae = diffusers.AutoencoderKLWan(base_dim=8, z_dim=4, dim_mult=[1, 2], num_res_blocks=1, temperal_downsample=[True],
                                     latents_mean=[0.0] * 4, latents_std=[1.0] * 4)
    codec = DiffusersVAECodec(vae)
    backbone = make_backbone("wan", config={"in_channels": 4, "out_channels": 4, "patch_size": (1, 1, 1)}, tiny=True,
                             cond_channels=4, seed=0)
    pipe = InverseRenderingPipeline(backbone, Denoiser("x0"), codec, PassEmbedding(dim=32), passes=["depth"])
    out = pipe(video(6, 8, 8), window=4, overlap=2, progress=False)  # 6 frames -> padded to 1 + 2k = 7
    assert out.gbuffer.depth.shape == (1, 6, 1, 8, 8) and out.gbuffer.mask is not None
    assert out.windows[0][0] == 0 and out.windows[-1][1] == 6


def test_bad_inputs_and_folders_raise_project_errors(tmp_path):
    pipe = build_tiny_pipeline("per_pass", kind="x0", factor=4)
    with pytest.raises(NeuralRenderError, match="below the model stride"):
        pipe(video(2, 3, 16), progress=False)
    with pytest.raises(NeuralRenderError, match="no frames"):
        pipe(torch.zeros(1, 0, 3, 8, 8), progress=False)
    with pytest.raises(NeuralRenderError, match="not predicted"):
        pipe(video(2, 8, 8), passes=["shininess"], progress=False)
    with pytest.raises(NeuralRenderError):
        pipe(video(2, 8, 8), window=4, overlap=4, progress=False)
    with pytest.raises(NeuralRenderError, match="does not exist"):
        InverseRenderingPipeline.from_pretrained(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(NeuralRenderError):
        InverseRenderingPipeline.from_pretrained(tmp_path / "empty")
    with pytest.raises(NeuralRenderError, match="joint mode"):
        InverseRenderingPipeline(pipe.backbone, pipe.denoiser, pipe.codec, None, mode="joint")
    with pytest.raises(NeuralRenderError, match="pass embedding"):
        InverseRenderingPipeline(pipe.backbone, pipe.denoiser, pipe.codec, None, mode="per_pass")
