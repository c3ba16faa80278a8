"""DiffusionRendererPipeline's interface on the tiny fixture checkpoints: outputs, seeding, refused inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from neural_render.errors import NeuralRenderError
from neural_render.pipelines.diffusion_renderer import (
    DiffusionRendererPipeline,
    DiffusionRendererPipelineOutput,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "diffusion_renderer"
B, T, H, W = 1, 3, 16, 32


@pytest.fixture(scope="module")
def inverse():
    return DiffusionRendererPipeline.from_diffusion_renderer(FIXTURES / "inverse")


@pytest.fixture(scope="module")
def forward():
    return DiffusionRendererPipeline.from_diffusion_renderer(FIXTURES / "forward")


def _video(seed=0, batch=B, size=(H, W)):
    return torch.rand(batch, T, 3, *size, generator=torch.Generator().manual_seed(seed))


def test_output_types_and_seeding(inverse):
    kw = {"video": _video(), "passes": "normal", "num_inference_steps": 2}
    out = inverse(**kw, generator=torch.Generator().manual_seed(3))
    assert isinstance(out, DiffusionRendererPipelineOutput) and out.frames.shape == (B, T, 3, H, W)
    assert float(out.frames.min()) >= 0 and float(out.frames.max()) <= 1
    again = inverse(**kw, generator=torch.Generator().manual_seed(3), output_type="np", return_dict=False)[0]
    assert isinstance(again, np.ndarray) and again.shape == (B, T, H, W, 3)
    np.testing.assert_array_equal(again, out.frames.permute(0, 1, 3, 4, 2).numpy())
    other = inverse(**kw, generator=torch.Generator().manual_seed(4)).frames
    assert float((other - out.frames).abs().max()) > 1e-3
    latents = inverse(**kw, generator=torch.Generator().manual_seed(3), output_type="latent").frames
    assert latents.shape == (B, T, 4, H // 2, W // 2)


def test_one_pass_per_sample_in_a_batch(inverse):
    video = _video(batch=2)
    noise = torch.randn(2, T, 4, H // 2, W // 2, generator=torch.Generator().manual_seed(5))
    both = inverse(video=video, passes=["depth", 0], num_inference_steps=2, latents=noise).frames
    for i, p in enumerate(("depth", "basecolor")):
        alone = inverse(video=video[i:i + 1], passes=p, num_inference_steps=2, latents=noise[i:i + 1]).frames
        # batch splits differ in the last float bit; the Euler step from sigma 700 magnifies that (test_parity.py)
        torch.testing.assert_close(both[i:i + 1], alone, atol=1e-4, rtol=0)


def test_forward_needs_every_gbuffer_and_env(forward):
    g = {k: _video(i) for i, k in enumerate(forward.settings.gbuffers)}
    e = {k: _video(9 + i, size=(16, 16)) for i, k in enumerate(forward.settings.env_labels)}
    assert forward(gbuffers=g, env=e, num_inference_steps=1).frames.shape == (B, T, 3, H, W)
    with pytest.raises(NeuralRenderError, match=r"missing \['metallic'\]"):
        forward(gbuffers={k: v for k, v in g.items() if k != "metallic"}, env=e)
    with pytest.raises(NeuralRenderError, match=r"unknown \['albedo'\]"):
        forward(gbuffers={**g, "albedo": g["basecolor"]}, env=e)
    with pytest.raises(NeuralRenderError, match="takes gbuffers= and env="):
        forward(video=_video())
    with pytest.raises(NeuralRenderError, match=r"env_ldr: batch x frames \(1, 2\)"):
        forward(gbuffers=g, env={**e, "env_ldr": e["env_ldr"][:, :2]})


def test_refused_inputs(inverse):
    with pytest.raises(NeuralRenderError, match="within \\[0, 1\\]"):
        inverse(video=_video() * 2 - 1)
    with pytest.raises(NeuralRenderError, match="17x32 px is not a multiple of 2"):
        inverse(video=_video(size=(18, 32))[..., :17, :])
    with pytest.raises(NeuralRenderError, match="expected a \\(B, T, 3, H, W\\) tensor"):
        inverse(video=_video()[:, :, :1])
    with pytest.raises(NeuralRenderError, match="unknown pass 'albedo'"):
        inverse(video=_video(), passes="albedo")
    with pytest.raises(NeuralRenderError, match="latents of shape"):
        inverse(video=_video(), latents=torch.zeros(B, T, 4, 4, 4))
    with pytest.raises(NeuralRenderError, match="output_type 'pil'"):
        inverse(video=_video(), output_type="pil")
    with pytest.raises(NeuralRenderError, match="takes video="):
        inverse(gbuffers={"basecolor": _video()})
