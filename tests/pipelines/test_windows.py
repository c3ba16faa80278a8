"""Temporal windows blended in latent space: spans, weights, in-place blending, equivalence with one window, seams."""

import itertools

import pytest
import torch

from neural_render.errors import NeuralRenderError
from neural_render.models.denoiser import Denoiser
from neural_render.pipelines.windows import (
    OverlapBlender,
    plan_windows,
    window_weights,
    windowed_sample,
)
from neural_render.tasks.base import make_backbone

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


class PositionModel(torch.nn.Module):
    """Deterministic mock backbone for the x0 denoiser: x0_hat of frame j of a window = cond + j / (L - 1).

    A window therefore always ramps from +0 to +1 over its own frames: stitched windows without blending jump back
    by 1 at every boundary (a seam); blended ones must hand over smoothly."""

    latent_channels = cond_channels = 2

    def forward(self, noisy, timestep, cond=None, context=None, added=None):
        length = noisy.shape[1]
        ramp = torch.linspace(0.0, 1.0, length).view(1, length, 1, 1, 1) if length > 1 else torch.zeros(1, 1, 1, 1, 1)
        return cond + ramp


def test_plan_windows_matches_the_metric_spans_and_covers_every_frame():
    from neural_render.metrics.temporal import window_spans

    for frames, window, overlap in [(1, 16, 4), (16, 16, 4), (17, 16, 4), (64, 16, 4), (10, 4, 3), (9, 3, 0)]:
        spans = plan_windows(frames, window, overlap)
        assert spans == window_spans(frames, window, overlap)
        assert spans[0][0] == 0 and spans[-1][1] == frames
        assert all(b - a == min(window, frames) for a, b in spans)
        assert all(a1 <= b0 for (_, b0), (a1, _) in itertools.pairwise(spans))  # no gaps
    with pytest.raises(NeuralRenderError):
        plan_windows(8, 4, 4)
    with pytest.raises(NeuralRenderError):
        plan_windows(0, 4, 1)


def test_weights_are_positive_linear_ramps_summing_to_one():
    spans = plan_windows(23, 8, 3)  # last window shifted back: a wider final overlap
    weights = window_weights(spans, 23)
    total = torch.zeros(23)
    for (a, b), w in zip(spans, weights):
        assert w.shape == (b - a,) and bool((w > 0).all()) and bool((w <= 1).all())
        total[a:b] += w
    assert torch.allclose(total, torch.ones(23), atol=1e-6)
    assert torch.allclose(weights[0][-3:], torch.tensor([3, 2, 1]) / 4.0)  # falling ramp into the next window
    assert torch.allclose(weights[1][:3], torch.tensor([1, 2, 3]) / 4.0)


def test_in_place_blender_equals_a_dense_weighted_average():
    g = torch.Generator().manual_seed(0)
    frames, spans = 19, plan_windows(19, 6, 2)
    values = [torch.randn(2, b - a, 3, 4, 4, generator=g) for a, b in spans]
    weights = window_weights(spans, frames)
    num, den = torch.zeros(2, frames, 3, 4, 4), torch.zeros(frames)
    for (a, b), v, w in zip(spans, values, weights):
        num[:, a:b] += v * w.view(1, -1, 1, 1, 1)
        den[a:b] += w
    target = torch.full((2, frames, 3, 4, 4), float("nan"))
    blender = OverlapBlender(target, spans)
    for k, v in enumerate(values):
        blender.add(k, v)
    assert torch.allclose(target, num / den.view(1, -1, 1, 1, 1), atol=1e-6)
    with pytest.raises(NeuralRenderError):
        blender.reset() or blender.add(1, values[1])  # out of order


def test_blender_keeps_old_values_for_frames_a_later_window_still_reads():
    spans = [(0, 4), (2, 6)]
    target = torch.arange(6, dtype=torch.float32).view(1, 6, 1)
    blender = OverlapBlender(target, spans)
    blender.add(0, torch.full((1, 4, 1), 100.0))
    assert target[0, :, 0].tolist() == [100, 100, 2, 3, 4, 5]  # frames 2-3 wait for window 1: still the old input
    blender.add(1, torch.full((1, 4, 1), 200.0))
    assert torch.allclose(target[0, :, 0], torch.tensor([100, 100, 100 + 100 / 3, 100 + 200 / 3, 200, 200]))


@pytest.mark.parametrize("kind,steps", [("flow", 3), ("edm", 2), ("x0", 1)])
def test_one_window_is_bit_identical_to_denoiser_sample(kind, steps):
    backbone = make_backbone("wan", config={"in_channels": 4, "out_channels": 4, "patch_size": (1, 1, 1)}, tiny=True,
                             cond_channels=4, seed=0).eval()
    denoiser = Denoiser(kind)
    g = torch.Generator().manual_seed(1)
    cond = torch.randn(1, 5, 4, 4, 4, generator=g)
    context = torch.randn(1, 1, 32, generator=g)
    reference = denoiser.sample(backbone, (1, 5, 4, 4, 4), cond, context, num_steps=steps,
                                generator=torch.Generator().manual_seed(7))

    def predict(x, sigma, a, b):
        return denoiser.guided_x0(backbone, x, sigma, cond[:, a:b], context)

    with torch.no_grad():
        windowed = windowed_sample(denoiser, predict, (1, 5, 4, 4, 4), plan_windows(5, 8, 2), steps,
                                   generator=torch.Generator().manual_seed(7))
    assert torch.equal(windowed, reference)


def test_overlap_blending_removes_the_seam_of_independent_windows():
    denoiser, frames = Denoiser("x0"), 22
    cond = torch.zeros(1, frames, 2, 2, 2)
    seen = []

    def predict(x, sigma, a, b):
        seen.append(b - a)
        return denoiser.guided_x0(PositionModel(), x, sigma, cond[:, a:b], None)

    def jumps(overlap: int) -> torch.Tensor:
        out = windowed_sample(denoiser, predict, tuple(cond.shape), plan_windows(frames, 8, overlap), 1)
        assert torch.equal(out, out[:, :, :1, :1, :1].expand_as(out))  # constant within a frame
        return (out[0, 1:, 0, 0, 0] - out[0, :-1, 0, 0, 0]).abs()

    hard = jumps(0)        # windows touch: no blending
    soft = jumps(4)
    assert max(seen) == 8  # the model never saw more than one window
    step_inside = 1.0 / 7  # consecutive frames of one window differ by 1/(L-1)
    assert float(hard.max()) == pytest.approx(1.0, abs=1e-6)  # the seam: back from +1 to +0
    assert float(soft.max()) <= 2 * step_inside + 1e-6  # blended hand-over: no jump beyond the ramps' slopes


def test_constant_video_gives_constant_output_across_window_boundaries():
    backbone = make_backbone("wan", config={"in_channels": 4, "out_channels": 4, "patch_size": (1, 1, 1)}, tiny=True,
                             cond_channels=4, seed=3).eval()
    denoiser = Denoiser("x0")
    cond = torch.full((1, 11, 4, 4, 4), 0.3)
    context = torch.randn(1, 1, 32, generator=torch.Generator().manual_seed(0))

    def predict(x, sigma, a, b):
        return denoiser.guided_x0(backbone, x, sigma, cond[:, a:b], context)

    with torch.no_grad():
        out = windowed_sample(denoiser, predict, (1, 11, 4, 4, 4), plan_windows(11, 4, 2), 1)
    assert torch.allclose(out, out[:, :1].expand_as(out), atol=1e-5)


class CausalCodec:
    """Frame rule of a causal video codec with temporal factor 4: T = 1 + 4k video frames -> 1 + k latent frames."""

    temporal_factor = 4

    def latent_frames(self, frames: int) -> int:
        if (frames - 1) % 4:
            raise NeuralRenderError(f"needs 1 + 4k frames, got {frames}")
        return 1 + (frames - 1) // 4


def test_fit_windows_respects_codec_and_backbone_frame_rules():
    from neural_render.models.backbone import FrameRule
    from neural_render.pipelines.windows import fit_windows, video_span

    even = FrameRule(multiple=2, minimum=2, description="even")
    padded, latent, spans = fit_windows(30, CausalCodec(), even, window=17, overlap=4)
    assert padded == 33 and latent == 9  # 30 frames -> 33 = 1 + 4 * 8 -> 9 latent frames
    assert all(even(b - a) for a, b in spans) and spans[-1][1] == 9  # 17 frames -> 5 latents -> 4 (even)
    assert video_span(0, 1, 4, 30) == (0, 1) and video_span(1, 3, 4, 30) == (1, 9)
    assert video_span(8, 9, 4, 30) == (29, 30)
    padded, latent, spans = fit_windows(3, CausalCodec(), even, window=16, overlap=4)  # one short window
    assert (padded, latent, spans) == (5, 2, [(0, 2)])
    padded, latent, spans = fit_windows(7, type("Plain", (), {"latent_frames": lambda self, t: t})(), FrameRule(),
                                        window=4, overlap=1)
    assert (padded, latent, spans) == (7, 7, [(0, 4), (3, 7)])
    with pytest.raises(NeuralRenderError):
        fit_windows(8, CausalCodec(), FrameRule(multiple=8, minimum=8), window=9, overlap=1)
