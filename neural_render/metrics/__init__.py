"""Metrics (pure functions over (B, T, C, H, W) tensors): G-buffer accuracy, image similarity, temporal consistency.

* :mod:`.gbuffer`  normal angular error stats, scale-invariant albedo PSNR, RMSE, scale-and-shift-invariant AbsRel
* :mod:`.image`    PSNR, SSIM
* :mod:`.temporal` warp error with ground-truth flow, window-boundary vs within-window split
"""

from neural_render.metrics.gbuffer import (
    ANGLE_THRESHOLDS_DEG,
    albedo_si_mse,
    albedo_si_psnr,
    angle_stats,
    angular_error_deg,
    depth_absrel_ssi,
    fit_scale_shift,
    least_squares_scale,
    masked_rmse,
    normal_angles,
    normal_error_stats,
    psnr_from_mse,
)
from neural_render.metrics.image import psnr, ssim
from neural_render.metrics.temporal import (
    boundary_pairs,
    pair_difference,
    split_boundary_within,
    temporal_warp_error,
    warp_next_to_current,
    window_spans,
)

__all__ = [
    "ANGLE_THRESHOLDS_DEG", "albedo_si_mse", "albedo_si_psnr", "angle_stats", "angular_error_deg", "boundary_pairs",
    "depth_absrel_ssi", "fit_scale_shift", "least_squares_scale", "masked_rmse", "normal_angles", "normal_error_stats",
    "pair_difference", "psnr", "psnr_from_mse", "split_boundary_within", "ssim", "temporal_warp_error",
    "warp_next_to_current", "window_spans",
]
