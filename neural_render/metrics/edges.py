"""Edge maps and edge agreement (pure functions): Canny edges (kornia) and edge F1 with a pixel tolerance.

Canny: kornia's ``filters.canny`` on the luminance of display-space frames (values in [0, 1]): Gaussian blur
(``sigma``, 5x5), Sobel gradients, non-maximum suppression, double threshold (``low``, ``high`` on the gradient
magnitude) with hysteresis. Output: (B, T, 1, H, W) bool.

Edge F1 with tolerance ``r`` pixels (the structure-preservation score of the sim-to-real eval): an edge pixel of
``pred`` is a hit when an edge pixel of ``reference`` lies within the (2r+1) x (2r+1) square around it (Chebyshev
distance <= r), and vice versa; precision = hits of pred / edges of pred, recall = hits of reference / edges of
reference, F1 = 2PR / (P + R), per clip over all frames. Both empty -> 1 (nothing to miss); one empty -> 0.
"""

from __future__ import annotations

import torch
from torch import Tensor

from neural_render.errors import NeuralRenderError
from neural_render.metrics._common import check_pair, check_video

CANNY_LOW = 0.1
CANNY_HIGH = 0.2
CANNY_SIGMA = 1.0


def canny_edges(video: Tensor, low: float = CANNY_LOW, high: float = CANNY_HIGH, sigma: float = CANNY_SIGMA) -> Tensor:
    """Canny edges of display-space frames (B, T, 3 or 1, H, W) in [0, 1] -> (B, T, 1, H, W) bool."""
    from kornia.filters import canny

    check_video("video", video)
    b, t, c, h, w = video.shape
    if c not in (1, 3):
        raise NeuralRenderError(f"canny_edges needs 1 or 3 channels, got {c}")
    if not 0.0 <= low < high:
        raise NeuralRenderError(f"Canny thresholds need 0 <= low < high, got {low}, {high}")
    frames = video.reshape(b * t, c, h, w).float()
    _, edges = canny(frames, low_threshold=float(low), high_threshold=float(high), sigma=(float(sigma), float(sigma)))
    return (edges > 0.5).reshape(b, t, 1, h, w)


def _dilate(edges: Tensor, radius: int) -> Tensor:
    if radius == 0:
        return edges
    b, t = edges.shape[:2]
    k = 2 * radius + 1
    grown = torch.nn.functional.max_pool2d(edges.float().flatten(0, 1), k, stride=1, padding=radius)
    return grown.unflatten(0, (b, t)) > 0.5


def edge_precision_recall_f1(pred_edges: Tensor, reference_edges: Tensor, tolerance: int = 2
                             ) -> tuple[Tensor, Tensor, Tensor]:
    """(precision, recall, F1) per clip, each (B,) float64, of boolean edge maps (B, T, 1, H, W) (module doc)."""
    check_pair(pred_edges, reference_edges, 1)
    if int(tolerance) < 0:
        raise NeuralRenderError(f"tolerance must be >= 0 pixels, got {tolerance}")
    p, r = pred_edges.bool(), reference_edges.bool()
    n_p = p.flatten(1).sum(1).double()
    n_r = r.flatten(1).sum(1).double()
    hit_p = (p & _dilate(r, int(tolerance))).flatten(1).sum(1).double()
    hit_r = (r & _dilate(p, int(tolerance))).flatten(1).sum(1).double()
    precision = torch.where(n_p > 0, hit_p / n_p.clamp_min(1), (n_r == 0).double())
    recall = torch.where(n_r > 0, hit_r / n_r.clamp_min(1), (n_p == 0).double())
    denom = precision + recall
    f1 = torch.where(denom > 0, 2 * precision * recall / denom.clamp_min(1e-12), torch.zeros_like(denom))
    return precision, recall, f1


def edge_f1(pred: Tensor, reference: Tensor, tolerance: int = 2, low: float = CANNY_LOW, high: float = CANNY_HIGH,
            sigma: float = CANNY_SIGMA) -> Tensor:
    """Edge F1 (B,) float64 between the Canny edges of two display-space videos (B, T, 3, H, W) in [0, 1]."""
    check_pair(pred, reference)
    return edge_precision_recall_f1(canny_edges(pred, low, high, sigma), canny_edges(reference, low, high, sigma),
                                    tolerance)[2]
