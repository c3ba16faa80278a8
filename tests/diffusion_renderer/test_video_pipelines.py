"""What the toolkit adds around DiffusionRenderer checkpoints (issue #24 B): windows blended at every step, any
aspect ratio, env projection in pure torch, the toolkit's layout; on the tiny fixture checkpoints."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from neural_render.errors import NeuralRenderError
from neural_render.pipelines.diffusion_renderer import DiffusionRendererPipeline, load_for_command
from neural_render.pipelines.diffusion_renderer_env import encoding_directions, env_encodings, shared_pose
from neural_render.pipelines.diffusion_renderer_values import processing_shape
from neural_render.pipelines.windows import plan_windows, window_weights
from neural_render.render.rotation import euler_to_matrix
from neural_render.types import EnvMap, GBuffer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "diffusion_renderer"
T, H, W = 40, 96, 160  # two 24-frame windows, not square

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _video(seed: int = 0) -> torch.Tensor:
    return torch.rand(1, T, 3, H, W, generator=torch.Generator().manual_seed(seed)) * 1.5  # linear, some > 1


def test_inverse_40_frames_two_windows_not_square():
    pipe = load_for_command(FIXTURES / "inverse", "inverse")
    out = pipe(_video(), passes=["normal"], num_steps=1, processing_size=128)
    assert out.processing_size == (64, 128) and out.windows == [(0, 24), (16, 40)]
    g = out.gbuffer
    assert set(g.passes) == {"normal", "mask"} and g.normal.shape == (1, T, 3, H, W)
    assert bool(torch.isfinite(g.normal).all()) and g.normal.dtype == torch.float32
    torch.testing.assert_close(g.normal.norm(dim=2), torch.ones(1, T, H, W), atol=1e-4, rtol=0)
    assert float(g.normal.std()) > 1e-3  # a real output, not a constant
    assert bool((g.mask == 1).all())  # DiffusionRenderer predicts no mask


def test_forward_relights_40_frames_under_a_rotated_env_map():
    from neural_render.pipelines.relight import static_camera

    pipe = load_for_command(FIXTURES / "forward", "forward")
    gen = torch.Generator().manual_seed(1)
    g = GBuffer(basecolor=torch.rand(1, T, 3, H, W, generator=gen),
                normal=torch.nn.functional.normalize(torch.randn(1, T, 3, H, W, generator=gen), dim=2),
                depth=1 + torch.rand(1, T, 1, H, W, generator=gen), roughness=torch.rand(1, T, 1, H, W, generator=gen),
                metallic=torch.rand(1, T, 1, H, W, generator=gen))
    env = EnvMap(torch.rand(3, 16, 32, generator=gen) * 4).rotated(yaw=40, pitch=15, roll=5)
    out = pipe(g, static_camera(_video()), env, num_steps=1, processing_size=128)
    assert out.rgb.shape == (1, T, 3, H, W) and out.prior is None
    assert bool(torch.isfinite(out.rgb).all()) and 0 <= float(out.rgb.min()) and float(out.rgb.max()) <= 1
    assert out.latents.shape == (1, T, 4, 32, 64)
    with pytest.raises(NeuralRenderError, match=r"needs every pass; missing \['metallic'\]"):
        pipe(g.replace(metallic=None), static_camera(_video()), env)
    with pytest.raises(NeuralRenderError, match="needs an env map"):
        pipe(g, static_camera(_video()), None)


def test_overlap_is_the_blend_of_both_windows_latents():
    """One Euler step of 10 frames in windows [0, 6) and [4, 10): frames 4, 5 are the ramp-weighted mean of what each
    window gives alone (from the same noise), the rest is each window's own result."""
    r = DiffusionRendererPipeline.from_diffusion_renderer(FIXTURES / "inverse")
    gen = torch.Generator().manual_seed(2)
    cond = r.encode_inverse(torch.rand(1, 10, 3, 16, 32, generator=gen))
    noise = torch.randn(1, 10, 4, 8, 16, generator=gen)
    tokens, ids = r.empty_tokens(1), r.pass_ids("depth", 1)
    spans = plan_windows(10, 6, 2)
    assert spans == [(0, 6), (4, 10)]
    blended = r.denoise(cond, tokens, ids, 1, latents=noise, window=6, overlap=2)
    alone = [r.denoise(cond[:, a:b], tokens, ids, 1, latents=noise[:, a:b]) for a, b in spans]
    w0, w1 = window_weights(spans, 10)
    expected = torch.cat([alone[0][:, :4],
                          w0[4:, None, None, None] * alone[0][:, 4:] + w1[:2, None, None, None] * alone[1][:, :2],
                          alone[1][:, 2:]], dim=1)
    # the pipeline blends the predictions and steps once; stepping from sigma 700 rounds latents near 2000 to float32
    # (2.4e-4 apart), so blend-then-step and step-then-blend agree to that (tests/diffusion_renderer/test_parity.py)
    torch.testing.assert_close(blended, expected, atol=5e-4, rtol=0)
    assert float((alone[0][:, 4:] - alone[1][:, :2]).abs().max()) > 0.1  # the two windows disagree there
    assert torch.allclose(w0[4:] + w1[:2], torch.ones(2))


def test_processing_shape_keeps_the_aspect_ratio():
    assert processing_shape(1080, 1920, 64, 512) == (512, 960)  # the reference's rule: shorter side 512, round up
    assert processing_shape(96, 160, 64, 512) == (512, 896)
    assert processing_shape(512, 512, 64, 512) == (512, 512)
    assert processing_shape(96, 160, 64, 512, 192) == (128, 192)  # N = longer side (the toolkit's rule)
    assert processing_shape(96, 160, 64, 512, (64, 128)) == (64, 128)
    with pytest.raises(NeuralRenderError):
        processing_shape(96, 160, 64, 512, 32)


def test_env_encoding_layout_and_rotation():
    d = encoding_directions(8, 16)
    torch.testing.assert_close(d.norm(dim=-1), torch.ones(8, 16))
    assert float(d[0, :, 1].min()) > 0.9 and float(d[-1, :, 1].max()) < -0.9  # zenith at the top
    assert float(d[3:5, 7:9, 2].min()) > 0.9  # the image centre looks along camera +Z (behind the camera)
    # a sky bright only around world +X: with the identity pose it lands where e ~ +X (right of the centre)
    image = torch.full((3, 32, 64), 0.01)
    image[:, 14:18, 15:18] = 50.0  # u ~ 0.25, v ~ 0.5: direction +X on the horizon (types/envmap.py convention)
    identity = torch.eye(4).expand(1, 1, 4, 4)
    ldr = env_encodings(EnvMap(image), identity, 16, 32)["env_ldr"][0, 0, 0]
    peak = divmod(int(ldr.argmax()), 32)
    assert encoding_directions(16, 32)[peak][0] > 0.9
    # turning the camera by R and the sky by R leaves the encodings unchanged
    turn = euler_to_matrix(70.0, 20.0, 10.0)
    pose = torch.eye(4)
    pose[:3, :3] = turn
    both = env_encodings(EnvMap(image).rotated(matrix=turn), pose.expand(1, 1, 4, 4), 16, 32)
    plain = env_encodings(EnvMap(image), identity, 16, 32)
    for key in ("env_ldr", "env_log", "env_nrm"):
        torch.testing.assert_close(both[key], plain[key], atol=1e-3, rtol=0)  # R^T R e rounding at a sharp edge
    turned = env_encodings(EnvMap(image).rotated(yaw=90.0), identity, 16, 32)["env_ldr"]
    assert float((turned - plain["env_ldr"]).abs().max()) > 0.5
    poses = torch.eye(4).repeat(1, 3, 1, 1)
    assert shared_pose(poses)
    poses[0, 2, :3, :3] = turn
    assert not shared_pose(poses)


def test_load_for_command_refuses_the_other_kind():
    with pytest.raises(NeuralRenderError, match="a DiffusionRenderer forward checkpoint where an inverse one"):
        load_for_command(FIXTURES / "forward", "inverse")
    with pytest.raises(NeuralRenderError, match="inverse checkpoint where a forward one"):
        load_for_command(FIXTURES / "inverse", "forward")


def test_hub_loads_diffusion_renderer_folders_once_registered(monkeypatch):
    from neural_render import hub

    monkeypatch.setattr(hub, "_LOADERS", dict(hub._LOADERS))  # registration stays local to this test
    spec = importlib.util.find_spec("neural_render.pipelines.diffusion_renderer_hub")
    spec.loader.exec_module(importlib.util.module_from_spec(spec))  # runs it without caching it in sys.modules
    pipe = hub.load_inverse(FIXTURES / "inverse")
    assert type(pipe).__name__ == "DiffusionRendererInversePipeline" and pipe.default_steps() == 20
    assert pipe.processing_shape(96, 160) == (512, 896) and pipe.is_trained and pipe.mode == "per_pass"
    assert type(hub.load_forward(FIXTURES / "forward")).__name__ == "DiffusionRendererForwardPipeline"
    with pytest.raises(NeuralRenderError, match="where an inverse one is needed"):
        hub.load_inverse(FIXTURES / "forward")
