"""Warp error with known flows, object-id masking, window boundary split; PSNR/SSIM helpers."""

import math

import pytest
import torch

from neural_render.errors import NeuralRenderError
from neural_render.metrics import (
    boundary_pairs,
    psnr,
    split_boundary_within,
    ssim,
    temporal_warp_error,
    warp_next_to_current,
    window_spans,
)


def _moving_pattern(t=4, h=12, w=16, dx=2.0, dy=1.0):
    """A smooth pattern translating by (dx, dy) pixels per frame, its exact forward flow and full validity."""
    ii, jj = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    frames = [torch.sin(0.4 * (jj - dx * k)) + torch.cos(0.3 * (ii - dy * k)) for k in range(t)]
    video = torch.stack(frames)[None, :, None]                       # (1, T, 1, H, W)
    flow = torch.stack([torch.full((h, w), dx), torch.full((h, w), dy)])[None, None].expand(1, t, 2, h, w).clone()
    valid = torch.ones(1, t, 1, h, w)
    return video, flow, valid


def test_exact_flow_gives_zero_error_and_wrong_flow_does_not():
    video, flow, valid = _moving_pattern()
    err = temporal_warp_error(video, flow, valid)
    assert err.shape == (1, 3)
    assert float(err.max()) < 1e-5        # integer shifts: bilinear sampling is exact
    wrong = temporal_warp_error(video, torch.zeros_like(flow), valid)
    assert float(wrong.min()) > 0.1


def test_fractional_flow_is_bilinear():
    video = torch.arange(8, dtype=torch.float32).reshape(1, 1, 1, 1, 8).expand(1, 2, 1, 3, 8).clone()
    flow = torch.zeros(1, 2, 2, 3, 8)
    flow[:, :, 0] = 0.25
    warped, ok = warp_next_to_current(video, flow, torch.ones(1, 2, 1, 3, 8))
    assert torch.allclose(warped[0, 0, 0, :, :7], video[0, 1, 0, :, :7] + 0.25)
    assert not ok[0, 0, 0, :, 7].any()     # last column samples outside the frame
    assert ok[0, 0, 0, :, :7].all()


def test_out_of_frame_and_invalid_flow_excluded():
    video, flow, valid = _moving_pattern(dx=3.0, dy=0.0)
    _, ok = warp_next_to_current(video, flow, valid)
    assert not ok[..., -3:].any() and ok[..., :-3].all()
    valid[:, 0] = 0
    err = temporal_warp_error(video, flow, valid)
    assert math.isnan(float(err[0, 0])) and not torch.isnan(err[0, 1:]).any()


def test_object_ids_block_blending_across_objects():
    # two objects, left half id 1 value 0, right half id 2 value 10; static; a fractional flow would blend
    video = torch.zeros(1, 2, 1, 4, 8)
    video[..., 4:] = 10.0
    ids = torch.ones(1, 2, 1, 4, 8, dtype=torch.long)
    ids[..., 4:] = 2
    flow = torch.zeros(1, 2, 2, 4, 8)
    flow[:, :, 0] = 0.5
    valid = torch.ones(1, 2, 1, 4, 8)
    with_ids = temporal_warp_error(video, flow, valid, ids)
    without = temporal_warp_error(video, flow, valid)
    assert float(with_ids[0, 0]) == pytest.approx(0.0, abs=1e-6)
    assert float(without[0, 0]) > 0.5


def test_mask_of_frame_t_limits_pixels():
    video, flow, valid = _moving_pattern()
    noisy = video + 0.5 * torch.rand(video.shape, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(1, 4, 1, 12, 16, dtype=torch.bool)
    mask[..., :2, :2] = True
    full = temporal_warp_error(noisy, flow, valid)
    part = temporal_warp_error(noisy, flow, valid, mask=mask)
    assert not torch.allclose(full, part)


def test_angle_kind_for_normals():
    n = torch.tensor([0.0, 0.0, 1.0]).reshape(1, 1, 3, 1, 1).expand(1, 2, 3, 4, 4).clone()
    n[:, 1] = torch.tensor([0.0, 1.0, 1.0]).reshape(3, 1, 1) / math.sqrt(2)
    err = temporal_warp_error(n, torch.zeros(1, 2, 2, 4, 4), torch.ones(1, 2, 1, 4, 4), kind="angle")
    assert float(err) == pytest.approx(45.0, abs=1e-4)
    with pytest.raises(NeuralRenderError):
        temporal_warp_error(n, torch.zeros(1, 2, 2, 4, 4), torch.ones(1, 2, 1, 4, 4), kind="bogus")


def test_window_spans_and_boundaries():
    spans = window_spans(64, 16, 4)
    assert spans[0] == (0, 16) and spans[-1][1] == 64 and all(b - a == 16 for a, b in spans)
    assert all(spans[i + 1][0] < spans[i][1] for i in range(len(spans) - 1))      # consecutive windows overlap
    assert window_spans(8, 16, 4) == [(0, 8)]
    boundary = boundary_pairs(64, spans)
    assert boundary.shape == (63,)
    expected = set()
    for a, b in spans:
        if a > 0:
            expected.add(a - 1)     # pair (a-1, a): a window starts
        if b < 64:
            expected.add(b - 1)     # pair (b-1, b): a window ends
    assert set(torch.nonzero(boundary).flatten().tolist()) == expected
    with pytest.raises(NeuralRenderError):
        window_spans(64, 16, 16)


def test_split_boundary_within():
    errors = torch.tensor([[1.0, 1.0, 5.0, 1.0, float("nan")]])
    boundary = torch.tensor([False, False, True, False, True])
    out = split_boundary_within(errors, boundary)
    assert out["boundary"] == 5.0 and out["within"] == 1.0 and out["ratio"] == 5.0
    assert out["boundary_pairs"] == 2 and out["within_pairs"] == 3


def test_psnr_and_ssim():
    x = torch.rand(2, 2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    assert torch.isinf(psnr(x, x)).all()
    assert float(psnr(x, x + 0.1)[0]) == pytest.approx(20.0, abs=1e-4)
    assert torch.allclose(ssim(x, x), torch.ones(2, dtype=torch.float64))
    noisy = x + 0.2 * torch.rand(x.shape, generator=torch.Generator().manual_seed(2))
    s = ssim(noisy, x)
    assert (s < 0.99).all() and (s > 0).all()
    with pytest.raises(NeuralRenderError):
        ssim(x[..., :8, :8], x[..., :8, :8])
