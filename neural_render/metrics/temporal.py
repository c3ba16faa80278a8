"""Temporal consistency (pure functions): warp error with ground-truth forward flow, window-boundary analysis.

Flow convention (synth/flow.py, stored by the synthetic engine): ``flow[t]`` (2, H, W) moves the pixel centre
p = (j + 0.5, i + 0.5) of frame t to p + flow in frame t+1 (x right, y down, pixels); ``flow_valid[t]`` is 1 where
that point is visible at t+1. ``object_id`` (B, T, 1, H, W): 0 background, k > 0 object k.

Warp error: the prediction of frame t+1 is sampled at p + flow[t] (bilinear) -- "warped back to t" -- and compared
with the prediction of frame t. A pixel counts only where the flow is valid, (optionally) the mask of frame t is
set, and every bilinear corner with non-zero weight lies inside frame t+1 and shows the same object id as the
pixel at t (so values never blend across object boundaries). For material passes (albedo, roughness, metallic)
the ground truth itself has (near-)zero warp error; camera-space normals and depth change with camera and object
motion, so report the ground truth's own warp error beside a prediction's as the floor.

Window analysis: a frame pair (t, t+1) is a *boundary pair* when the set of inference windows covering t differs
from the set covering t+1 (a window starts at t+1 or ends at t); all other pairs are *within* pairs.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from neural_render.errors import NeuralRenderError
from neural_render.metrics._common import check_video, masked_mean, valid_mask

ERROR_KINDS = ("abs", "angle")


def _check_aux(video: Tensor, flow: Tensor, flow_valid: Tensor, object_id: Tensor | None) -> None:
    check_video("video", video)
    b, t, _, h, w = video.shape
    check_video("flow", flow, 2)
    check_video("flow_valid", flow_valid, 1)
    others = [("flow", flow), ("flow_valid", flow_valid)]
    if object_id is not None:
        check_video("object_id", object_id, 1)
        others.append(("object_id", object_id))
    for name, x in others:
        if (x.shape[0], x.shape[1], x.shape[3], x.shape[4]) != (b, t, h, w):
            raise NeuralRenderError(
                f"{name} {tuple(x.shape)} does not match video {tuple(video.shape)} in (B, T, H, W)")
    if t < 2:
        raise NeuralRenderError(f"temporal metrics need at least 2 frames, got {t}")


def warp_next_to_current(video: Tensor, flow: Tensor, flow_valid: Tensor, object_id: Tensor | None = None,
                         mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Warp frame t+1 of ``video`` back to frame t with the forward flow of frame t (bilinear).

    video: (B, T, C, H, W); flow: (B, T, 2, H, W) pixels; flow_valid: (B, T, 1, H, W); object_id: (B, T, 1, H, W)
    integer ids or None (no id check); mask: (B, T, 1, H, W) validity of frame t or None.
    Returns (warped (B, T-1, C, H, W), valid (B, T-1, 1, H, W) bool) for t = 0..T-2 (see module doc).
    """
    _check_aux(video, flow, flow_valid, object_id)
    b, t, c, h, w = video.shape
    n = b * (t - 1)
    nxt = video[:, 1:].reshape(n, c, h * w)
    f = flow[:, :-1].reshape(n, 2, h, w).double()
    jj = torch.arange(w, dtype=torch.float64, device=video.device).reshape(1, 1, w)
    ii = torch.arange(h, dtype=torch.float64, device=video.device).reshape(1, h, 1)
    x, y = jj + f[:, 0], ii + f[:, 1]           # sampling position in pixel-index coordinates (centre of j = j)
    x0, y0 = torch.floor(x), torch.floor(y)
    wx, wy = x - x0, y - y0
    valid = (flow_valid[:, :-1].reshape(n, h, w) > 0.5) & torch.isfinite(x) & torch.isfinite(y)
    if mask is not None:
        valid &= valid_mask(mask, video)[:, :-1].reshape(n, h, w)
    ids_now = object_id[:, :-1].reshape(n, h, w) if object_id is not None else None
    ids_next = object_id[:, 1:].reshape(n, h * w) if object_id is not None else None
    warped = torch.zeros(n, c, h, w, dtype=video.dtype, device=video.device)
    eps = 1e-9
    for dy, dx in ((0, 0), (0, 1), (1, 0), (1, 1)):
        weight = (wx if dx else 1.0 - wx) * (wy if dy else 1.0 - wy)
        cx, cy = x0 + dx, y0 + dy
        used = weight > eps
        inside = (cx >= 0) & (cx <= w - 1) & (cy >= 0) & (cy <= h - 1)
        valid &= ~used | inside
        index = (cy.clamp(0, h - 1) * w + cx.clamp(0, w - 1)).nan_to_num(0).long().reshape(n, 1, h * w)
        if ids_next is not None:
            same = torch.gather(ids_next, 1, index[:, 0]).reshape(n, h, w) == ids_now
            valid &= ~used | same
        values = torch.gather(nxt, 2, index.expand(n, c, h * w)).reshape(n, c, h, w)
        warped = warped + torch.where(used & inside, weight, 0.0).to(video.dtype)[:, None] * values
    return warped.reshape(b, t - 1, c, h, w), valid.reshape(b, t - 1, 1, h, w)


def pair_difference(current: Tensor, warped: Tensor, kind: str = "abs") -> Tensor:
    """Per-pixel difference (N..., 1, H, W) of two fields (..., C, H, W): "abs" = mean |a - b| over channels,
    "angle" = angle in degrees between (normal) vectors."""
    if kind == "abs":
        return (current - warped).abs().mean(dim=-3, keepdim=True)
    if kind == "angle":
        a = torch.nn.functional.normalize(current.double(), dim=-3, eps=1e-12)
        b = torch.nn.functional.normalize(warped.double(), dim=-3, eps=1e-12)
        cross = torch.linalg.cross(a, b, dim=-3).norm(dim=-3, keepdim=True)
        dot = (a * b).sum(dim=-3, keepdim=True)
        return torch.rad2deg(torch.atan2(cross, dot)).to(current.dtype)
    raise NeuralRenderError(f"kind must be one of {ERROR_KINDS}, got {kind!r}")


def temporal_warp_error(video: Tensor, flow: Tensor, flow_valid: Tensor, object_id: Tensor | None = None,
                        mask: Tensor | None = None, kind: str = "abs") -> Tensor:
    """Warp error per frame pair, (B, T-1) float64: mean over valid pixels of :func:`pair_difference` between frame
    t and frame t+1 warped back to t (NaN for a pair without valid pixels). Arguments: :func:`warp_next_to_current`."""
    warped, valid = warp_next_to_current(video, flow, flow_valid, object_id, mask)
    diff = pair_difference(video[:, :-1], warped, kind).double()
    return masked_mean(diff, valid, (2, 3, 4))


def window_spans(num_frames: int, window: int, overlap: int) -> list[tuple[int, int]]:
    """[start, stop) spans of overlapping windows over ``num_frames`` frames: stride ``window - overlap``, the last
    window shifted back to end at the last frame (one window when num_frames <= window)."""
    if window < 1 or not 0 <= overlap < window or num_frames < 1:
        raise NeuralRenderError(f"need window >= 1, 0 <= overlap < window, frames >= 1; got window={window}, "
                                f"overlap={overlap}, frames={num_frames}")
    if num_frames <= window:
        return [(0, num_frames)]
    stride = window - overlap
    starts = list(range(0, num_frames - window, stride)) + [num_frames - window]
    return [(s, s + window) for s in sorted(set(starts))]


def boundary_pairs(num_frames: int, spans) -> Tensor:
    """(T-1,) bool: pair (t, t+1) crosses a window boundary (covering window sets differ), see module doc."""
    spans = [(int(a), int(b)) for a, b in spans]
    if any(not 0 <= a < b <= num_frames for a, b in spans):
        raise NeuralRenderError(f"window spans {spans} do not fit in {num_frames} frames")

    def covering(t: int) -> frozenset:
        return frozenset(i for i, (a, b) in enumerate(spans) if a <= t < b)

    return torch.tensor([covering(t) != covering(t + 1) for t in range(num_frames - 1)], dtype=torch.bool)


def split_boundary_within(pair_errors: Tensor, boundary: Tensor) -> dict[str, float]:
    """Mean of per-pair errors (B, T-1) (NaNs ignored) over boundary and within pairs; ``ratio`` = boundary/within.

    Returns {"boundary", "within", "ratio", "boundary_pairs", "within_pairs"} (NaN where a group is empty)."""
    errors = torch.as_tensor(pair_errors, dtype=torch.float64)
    if errors.ndim == 1:
        errors = errors[None]
    boundary = torch.as_tensor(boundary, dtype=torch.bool).reshape(1, -1).expand_as(errors)

    def mean(sel: Tensor) -> float:
        vals = errors[sel & ~torch.isnan(errors)]
        return float(vals.mean()) if vals.numel() else math.nan

    b, w = mean(boundary), mean(~boundary)
    return {"boundary": b, "within": w, "ratio": b / w if w and not math.isnan(w) else math.nan,
            "boundary_pairs": int(boundary[0].sum()), "within_pairs": int((~boundary[0]).sum())}
